"""What single-threaded frame conversion costs the data tools (tools/extract_frames.py, tools/prepare_videos.py).

Every PyAV conversion of the project runs with one swscale thread (`datasets.decoding.CONVERSION_THREADS`):
PyAV keeps a conversion context per thread, and a threaded one inherited by forked workers hangs them.
This prints, on the same generated 640x480 H.264 videos in one run:
  - the conversion alone (decoded frames to RGB at the tools' 320-pixel short side, BICUBIC), one swscale
    thread against FFmpeg's automatic count, rounds taking turns;
  - extract_frames and prepare_videos over the videos with 1 and 2 worker processes (wall seconds).
The automatic-thread conversions run last, after every tool run: after them this process must not fork.

    python -m benchmarks.bench_extract [--videos 4] [--frames 96] [--rounds 5]
"""
import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from datasets.synthetic import write_mp4
from tools.extract_frames import FrameOptions, extract_all, resized
from tools.prepare_videos import EncodeOptions, prepare_all


def make_videos(folder, count, frames):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    names = []
    for number in range(count):
        moving = np.stack([np.roll(base, 4 * k + number, axis=1) for k in range(frames)])  # compressible motion
        write_mp4(folder / f"v{number}.mp4", moving, fps=24)
        names.append(f"v{number}.mp4")
    return names


def tool_seconds(run, names, folder, options, workers):
    out = Path(tempfile.mkdtemp(dir=folder))
    start = time.perf_counter()
    outcomes = run(names, folder, out, options, workers=workers, progress=False)
    assert all(outcome.status != "failed" for outcome in outcomes)
    return time.perf_counter() - start


def conversion_seconds(frames, threads):
    width, height = resized(frames[0].width, frames[0].height, 320)
    start = time.perf_counter()
    for frame in frames:
        frame.reformat(width=width, height=height, format="rgb24", interpolation="BICUBIC", threads=threads)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench_extract-"))
    names = make_videos(folder, args.videos, args.frames)
    print(f"{args.videos} videos of {args.frames} frames, 640x480 H.264; {os.cpu_count()} CPUs; median of "
          f"{args.rounds} rounds")
    for label, run, options in (("extract_frames", extract_all, FrameOptions()),
                                ("prepare_videos", prepare_all, EncodeOptions())):
        for workers in (1, 2):
            seconds = statistics.median(tool_seconds(run, names, folder, options, workers)
                                        for _ in range(args.rounds))
            print(f"{label:15s} {workers} worker(s): {seconds:6.2f} s, "
                  f"{args.videos * args.frames / seconds:7.1f} frames/s")
    with av.open(str(folder / names[0])) as container:
        frames = list(container.decode(video=0))
    rounds = {1: [], 0: []}
    for _ in range(args.rounds):
        for threads in rounds:
            rounds[threads].append(conversion_seconds(frames, threads))
    one, auto = (statistics.median(rounds[threads]) for threads in (1, 0))
    print(f"conversion to RGB at short side 320: one thread {len(frames) / one:7.1f} frames/s, automatic threads "
          f"{len(frames) / auto:7.1f} frames/s (one thread at {auto / one:.2f}x)")


if __name__ == "__main__":
    main()
