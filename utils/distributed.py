"""All process-group handling: start-up from torchrun's environment, gathering with and without gradients,
and ending a run so that one failing process ends the whole job.

One process without torchrun is a world of size 1 and every function here is then a no-op.
"""
import logging
import os
import socket
import sys
import traceback
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from utils.allocator import keep_freed_memory
from utils.errors import report_user_errors

logger = logging.getLogger(__name__)

# Well above what rank 0 may spend outside collectives while the others wait in one: writing a ViT-L/14
# checkpoint with AdamW state (about 5 GB) twice to slow network storage, or the last uneven attribute
# shard. NCCL's own default is 10 minutes.
DEFAULT_TIMEOUT_MINUTES = 60.0


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def add_distributed_arguments(parser):
    """--cpu and --dist_timeout, the options of every program that runs under torchrun."""
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU exists")
    parser.add_argument("--dist_timeout", type=float, default=DEFAULT_TIMEOUT_MINUTES, metavar="MINUTES",
                        help="how long a process waits for the others in a collective before the job fails "
                             f"(default {DEFAULT_TIMEOUT_MINUTES:g} minutes)")
    return parser


def cuda_device_index(local_rank: int, local_world_size: int, device_count: int) -> int:
    """The GPU of local process `local_rank` among the `device_count` this process sees.

    Each process may see every GPU of its node (plain torchrun) or only its own (SLURM, Kubernetes: then
    `device_count` is 1), hence the modulo. More processes than visible GPUs means two processes on one
    GPU, which NCCL refuses: that is an error that says what to start instead.
    """
    if device_count < 1:
        raise ValueError("no GPU is visible to this process")
    if device_count > 1 and local_world_size > device_count:
        raise RuntimeError(f"{local_world_size} processes were started on this node ({socket.gethostname()}) but "
                           f"only {device_count} GPUs are visible, so processes would share a GPU, which NCCL "
                           f"does not allow: start one process per GPU (torchrun --nproc_per_node={device_count}), "
                           "or give each process its own GPU through CUDA_VISIBLE_DEVICES")
    return local_rank % device_count


def init_distributed(force_cpu: bool = False, timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES) -> DistributedContext:
    """Joins the process group torchrun describes (NCCL on GPU, gloo on CPU), or runs alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() and not force_cpu
    device = torch.device("cpu")
    if use_cuda:
        device = torch.device("cuda", cuda_device_index(local_rank, local_world_size, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=device if use_cuda else None,
                                timeout=timedelta(minutes=timeout_minutes))
        logger.info("process %d of %d on %s (%s)", rank, world_size, device, socket.gethostname())
    return DistributedContext(rank, world_size, local_rank, device)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: every rank's tensor, concatenated in rank order. Backward: the gradient of this rank's
    slice summed over the ranks (each rank's loss uses every slice)."""

    @staticmethod
    def forward(ctx, tensor):
        ctx.rank, ctx.size = dist.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, gradient):
        gradient = gradient.contiguous()
        dist.all_reduce(gradient)  # a reduce-scatter would move half the bytes, but gloo lacks it in older torch
        return gradient[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenation of every rank's `tensor` (rank order, same shape on every rank) that gradients flow
    back through.

    The backward pass sums the gradients every rank computes for each slice, so with DDP's gradient
    averaging a step equals one process holding the combined batch.
    """
    if world_size() == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor)


def all_gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenation of every rank's `tensor` (rank order), for labels and evaluation outputs."""
    if world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def gather_to_main(value) -> list:
    """Every rank's picklable `value` in rank order on rank 0 (None elsewhere); [value] when alone."""
    if world_size() == 1:
        return [value]
    gathered = [None] * world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def broadcast_from_main(value):
    """Rank 0's picklable `value` on every rank (what rank 0's file system holds, for ranks that cannot see it)."""
    if world_size() == 1:
        return value
    box = [value if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def max_over_processes(value: int, device) -> int:
    """The largest of every process's `value`, the same answer in every process (one all-reduce of a single
    number on `device`, the device of the process group's backend)."""
    if world_size() == 1:
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def barrier():
    if world_size() > 1:
        dist.barrier()


def cleanup():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def abort_job(error: BaseException):
    """Ends this process at once with its traceback, tagged with its rank, on stderr.

    Leaving the process group normally would wait for the other processes, which are blocked in their next
    collective (with NCCL until the timeout, and the real error lost in the noise). Exiting instead makes
    torchrun stop the other processes of the job and report this one's failure.
    """
    rank = dist.get_rank()
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    sys.stderr.write("".join(f"[rank {rank}] {line}" for line in "".join(lines).splitlines(keepends=True)))
    sys.stderr.write(f"[rank {rank}] failed on {socket.gethostname()}: ending the job\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(1)


def end_job(status):
    """Ends this process at once with `status`, after its own message (an `error:` line, argparse's
    usage; a message given as the status): like `abort_job`, without a traceback."""
    if not isinstance(status, int):
        print(status, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status if isinstance(status, int) else 1)


def run_program(main):
    """Runs an entry point's `main()` with malloc keeping freed memory (`utils.allocator`): leaves the process group after a success; a user error ends the
    program with one `error: ...` line (`report_user_errors`); after any other exception in a job of
    several processes, ends this process at once (`abort_job`), so the job fails promptly. Returns what
    `main` returns."""
    try:
        report_user_errors(keep_freed_memory)
        result = report_user_errors(main)
    except SystemExit as exit_request:
        if exit_request.code not in (None, 0) and world_size() > 1:
            end_job(exit_request.code)
        cleanup()
        raise
    except BaseException as error:
        if world_size() > 1:
            abort_job(error)
        raise
    cleanup()
    return result
