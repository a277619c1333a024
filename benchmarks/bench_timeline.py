"""Peak memory and windows scored per second of the timeline (`predict_timeline`) along long videos.

    python -m benchmarks.bench_timeline [--minutes 5 30] [--window 4] [--stride 2]

On first use it writes synthetic videos of the given lengths to `.cache/bench_timeline/` (demo clips of
all eight classes one after another, cycled; 64x88 pixels, 12 fps, x264 ultrafast: about a minute for 30
minutes of video). Each video is then run in a child process of its own, with a random-weight ViT-Tiny/16
(32 px, 8 frames, Transf + VCS, one view): the child prints windows and seconds, and the parent reads the
child's peak resident memory from the kernel (`wait4`); the child also reports its peak before the first
frame (libraries and model). Bounded memory means the same peak for 5 and 30 minutes.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import av

CACHE = Path(".cache/bench_timeline")
HEIGHT, WIDTH = 64, 88
CLIPS_PER_CLASS = 2


def write_long_video(path: Path, minutes: float):
    """Demo clips of every class in turn, cycled to `minutes` of video."""
    from datasets.synthetic import CLASS_NAMES, FPS, clip_params_for, render_clip
    clips = [render_clip(label, clip_params_for(0, label // 2, index), HEIGHT, WIDTH)
             for index in range(CLIPS_PER_CLASS) for label in range(len(CLASS_NAMES))]
    total = round(minutes * 60 * FPS)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.height, stream.width, stream.pix_fmt = HEIGHT, WIDTH, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        written, number = 0, 0
        while written < total:
            for frame in clips[number % len(clips)][: total - written]:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                written += 1
            number += 1
        container.mux(stream.encode())
    os.replace(partial, path)


def child(video: str, window: float, stride: float):
    """Runs the timeline on `video` and prints 'windows seconds peak-RSS-before-in-KiB'."""
    import resource

    import torch

    from datasets.synthetic import CLASS_NAMES
    from utils.config import build_config
    from workflows.prediction import Predictor
    from workflows.timeline import predict_timeline

    torch.manual_seed(0)
    config = build_config({"data": {"dataset": "bench", "num_classes": len(CLASS_NAMES), "num_segments": 8, "input_size": 32, "label_list": "unused.csv",
                                    "test_clips": 1, "test_crops": 1},
                           "network": {"arch": "ViT-Tiny/16", "init": False, "sim_header": "Transf",
                                       "interaction": "VCS"}})
    predictor = Predictor(config, CLASS_NAMES)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the model and libraries, before any frame
    start = time.perf_counter()
    timeline = predict_timeline(predictor, video, window, stride, batch_size=16, progress=False)
    print(len(timeline.windows), time.perf_counter() - start, before, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 30])
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--stride", type=float, default=2.0)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.window, args.stride)
    print(f"timeline: windows of {args.window:g} s every {args.stride:g} s; ViT-Tiny/16 random weights, 32 px, "
          f"8 frames, 1 view; {HEIGHT}x{WIDTH} video at 12 fps; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"{'minutes':>8} {'frames':>8} {'windows':>8} {'seconds':>8} {'windows/s':>10} {'peak RSS MiB':>18} "
          f"{'before frames MiB':>18}")
    first_peak = None
    for minutes in args.minutes:
        video = CACHE / f"long_{minutes:g}min.mp4"
        if not video.exists():
            write_long_video(video, minutes)
        process = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_timeline", "--child", str(video),
                                    "--window", str(args.window), "--stride", str(args.stride)],
                                   stdout=subprocess.PIPE, text=True)
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        if status:
            sys.exit(f"error: the timeline child failed on {video} (status {status})")
        windows, seconds, before = output.split()[-3:]
        peak = usage.ru_maxrss / 1024  # KiB on Linux
        first_peak = first_peak or peak
        frames = round(minutes * 60 * 12)
        print(f"{minutes:>8g} {frames:>8d} {int(windows):>8d} {float(seconds):>8.1f} "
              f"{int(windows) / float(seconds):>10.1f} {peak:>10.0f} ({peak / first_peak:.2f}x) "
              f"{int(before) / 1024:>18.0f}")


if __name__ == "__main__":
    main()
