"""Inference speed of the exported files (onnxruntime, torch.export) against the eager path, in one run.

    python benchmarks/bench_export.py [--arch ViT-B/32] [--frames 8] [--frame_size 240x320] [--classes 400]

One video a call: uint8 frames [1, T, H, W, 3] to test.py's scores, one view (1 clip, 1 crop). The
baseline is the project's eager path as tools/predict.py runs it (torchvision's test transform on the
uint8 frames, normalisation, `view_scores`); the other lines are the exported recognizer: as an eager
module, as the .pt2 program, and in onnxruntime, in fp32 and half precision. CLIP has random weights of
the named architecture (speed does not depend on them). The lines are timed in interleaved rounds (each
round calls every line once): videos/s of the median and of the fastest call, and the median over rounds
of the ratio to the baseline line's call of the same round.
"""
import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import clip  # noqa: E402
from datasets.transforms import normalize_on_device, test_transform  # noqa: E402
from modules import VideoHeader, text_prompt  # noqa: E402
from modules.video_clip import VideoEncoder, class_features, view_scores  # noqa: E402
from tools.export import frame_size  # noqa: E402
from workflows.export import (ExportedRecognizer, ExportMetadata, PRECISIONS, example_frames, export,  # noqa: E402
                              load_onnx, load_pt2)


def recognizer_for(args, precision):
    torch.manual_seed(0)
    model = clip.create_model(args.arch)
    encoder, header = VideoEncoder(model).eval(), VideoHeader.for_clip("Transf", "VCS", model).eval()
    names = [f"class {index}" for index in range(args.classes)]
    with torch.no_grad():
        eot, tokens = class_features(encoder, text_prompt(names))
    height, width = args.frame_size
    metadata = ExportMetadata(
        classes=names, frame_height=height, frame_width=width, input_size=model.config.image_resolution,
        num_segments=args.frames, seg_length=1, test_clips=1, test_crops=1, dense=False, precision=precision,
        arch=args.arch, sim_header="Transf", interaction="VCS", source_checkpoint="random weights", source_sha256="")
    return ExportedRecognizer(encoder, header, eot, tokens, metadata).to(PRECISIONS[precision]).eval()


def eager_baseline(recognizer, frames, autocast):
    """tools/predict.py's path for frames [1, T, H, W, 3]: torchvision transform, normalise, score."""
    transform = test_transform(recognizer.metadata.input_size, 1)
    clip_frames = frames[0].permute(0, 3, 1, 2)

    def call():
        with torch.no_grad(), autocast():
            views = normalize_on_device(transform(clip_frames))[None]
            return view_scores(recognizer.encoder, recognizer.header, views, recognizer.unit_class_eot,
                               recognizer.unit_class_tokens)
    return call


def no_grad(function, frames):
    def call():
        with torch.no_grad():
            return function(frames)
    return call


def interleaved(calls, seconds, warmup=2, min_rounds=10):
    """Seconds of each call in rounds that run every call once (the order rotated each round), for at least
    `seconds` in all: on a shared machine the load changes within seconds, so lines timed one after the
    other compare different loads, while the calls of one round share it."""
    for call in calls:
        for _ in range(warmup):
            call()
    durations, start, rounds = [[] for _ in calls], time.perf_counter(), 0
    while time.perf_counter() - start < seconds or rounds < min_rounds:
        for index in ((rounds + offset) % len(calls) for offset in range(len(calls))):
            begin = time.perf_counter()
            calls[index]()
            durations[index].append(time.perf_counter() - begin)
        rounds += 1
    return durations


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="ViT-B/32")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--frame_size", type=frame_size, default=(240, 320))
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args(argv)
    fp32 = recognizer_for(args, "fp32")
    frames = example_frames(fp32.metadata, batch=1)
    bf16_autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    lines = [("eager, tools/predict.py's path, fp32", eager_baseline(fp32, frames, contextlib.nullcontext)),
             ("eager, tools/predict.py's path, bf16 autocast", eager_baseline(fp32, frames, bf16_autocast)),
             ("exported recognizer as an eager module, fp32", no_grad(fp32, frames))]
    with tempfile.TemporaryDirectory() as folder:
        for precision, suffix in (("fp32", "pt2"), ("bf16", "pt2"), ("fp32", "onnx"), ("fp16", "onnx")):
            path = Path(folder) / f"model-{precision}.{suffix}"
            export(fp32 if precision == "fp32" else recognizer_for(args, precision), path)
            size = path.stat().st_size / 2**20
            if suffix == "onnx":
                session, _ = load_onnx(path)
                call = (lambda s: lambda: s.run(None, {"frames": frames.numpy()}))(session)
                lines.append((f"onnxruntime {session.get_providers()[0]}, {precision} ({size:.0f} MiB)", call))
            else:
                module, _ = load_pt2(path)
                lines.append((f"torch.export .pt2, {precision} ({size:.0f} MiB)", no_grad(module, frames)))
        load = os.getloadavg()[0]
        durations = interleaved([call for _, call in lines], args.seconds * len(lines))
    print(f"{args.arch}, {args.frames} frames of {args.frame_size[0]}x{args.frame_size[1]}, 1 view, "
          f"{args.classes} classes, batch 1, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{len(durations[0])} interleaved rounds, load average {load:.1f} before and {os.getloadavg()[0]:.1f} after")
    print("| path | videos/s (median) | videos/s (fastest) | vs eager fp32 |\n| --- | ---: | ---: | ---: |")
    for (name, _), times in zip(lines, durations):
        ratio = statistics.median(base / time for base, time in zip(durations[0], times))  # within each round
        print(f"| {name} | {1 / statistics.median(times):.2f} | {1 / min(times):.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
