"""Clips per second decoded on the GPU (data.decode_device: cuda) next to the CPU, on bench_data's clips.

Each line decodes the 8 training-sampled frames of every benchmark clip in turn, in this one process,
for `--seconds`: videos with TorchCodec on 'cpu' (one thread) and on 'cuda' (NVDEC), frame folders with
torchvision on the CPU and with nvJPEG in one batch per clip. GPU work is synchronised before a line's
clock stops. Needs a CUDA device; bench_data's clips are generated on first use.

    python -m benchmarks.bench_gpu_decode [--seconds 5]
"""
import argparse
import time

import numpy as np
import torch

from benchmarks.bench_data import DEFAULT_ROOT, NUM_SEGMENTS, ensure_bench_data
from datasets.decoding import VideoBackendError, check_cuda_decoding, open_video, read_frame_folder
from datasets.sampling import segment_train_indices
from datasets.synthetic import IMAGE_TMPL


def rate(load, count, seconds):
    """Clips per wall second of `load(index)` over the clips in turn, for at least `seconds`."""
    load(0)  # warm-up: decoder creation, CUDA context, caches
    torch.cuda.synchronize()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        load(done % count)
        done += 1
    torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=DEFAULT_ROOT, help="bench_data's clips (generated if missing)")
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        check_cuda_decoding()
    except VideoBackendError as err:
        raise SystemExit(f"error: {err}") from None
    torch.set_num_threads(1)
    data = ensure_bench_data(args.root, args.clips)
    rng = np.random.default_rng(0)
    samples = [segment_train_indices(clip.num_frames, NUM_SEGMENTS, rng) for clip in data.clips]

    def video(device):
        return lambda i: open_video(str(data.video_path(data.clips[i])), device=device).get_frames(samples[i])

    def frames(device):
        return lambda i: read_frame_folder(str(data.frames_root / data.clips[i].name), IMAGE_TMPL, samples[i] + 1,
                                           device)
    print(f"{torch.cuda.get_device_name()}, {len(data.clips)} clips, {NUM_SEGMENTS} frames per clip")
    for name, load in (("video, TorchCodec, cpu", video("cpu")), ("video, TorchCodec, cuda (NVDEC)", video("cuda")),
                       ("frames, torchvision, cpu", frames("cpu")), ("frames, nvJPEG, cuda", frames("cuda"))):
        print(f"{name:<34} {rate(load, len(data.clips), args.seconds):8.1f} clips/s")


if __name__ == "__main__":
    main()
