"""Under torchrun: `fail` makes rank 1 raise while rank 0 waits in a collective; `succeed` ends normally.

On the CPU (gloo), where leaving the process group does not wait for the other ranks as NCCL's does, this
script makes `destroy_process_group` wait as NCCL's would (`fail`), or report that it ran (`succeed`).
With `gpu` after the mode it runs on the GPUs with NCCL as it is (scripts/gpu_smoke.sh).
"""
import sys
import time

import torch.distributed as dist

from utils.distributed import barrier, init_distributed, run_program


def main():
    ctx = init_distributed(force_cpu=not ON_GPU)
    if sys.argv[1] == "fail" and ctx.rank == 1:
        raise ValueError("cannot decode video_042.mp4 (simulated failure of rank 1)")
    barrier()
    print(f"rank {ctx.rank} done", flush=True)


def destroy_like_nccl(*args, **kwargs):
    time.sleep(600)


def destroy_and_report(*args, destroy=dist.destroy_process_group, **kwargs):
    destroy(*args, **kwargs)
    print("left the process group", flush=True)


ON_GPU = sys.argv[2:] == ["gpu"]

if __name__ == "__main__":
    if not ON_GPU:
        dist.destroy_process_group = destroy_like_nccl if sys.argv[1] == "fail" else destroy_and_report
    run_program(main)
