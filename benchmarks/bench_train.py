"""End-to-end training throughput: the real data loader on synthetic MP4s against the same training loop
fed one batch already on the device ("model only"), both in this run.

    python benchmarks/bench_train.py                                          # CPU: ViT-B/32, batch 2, 1 worker
    python benchmarks/bench_train.py --arch ViT-B/16 --batch 32 --workers 14  # GPU

Both phases run `workflows.training.train_one_epoch` (normalisation on the device, bf16 autocast, NCE loss,
the optimizer and schedule of the config) on BIKE's model with random weights, Transf + VCS, text frozen.
The loader is train.py's (persistent workers, pinned memory on a GPU) over the data benchmark's MP4s
(`.cache/bench_data`, 320x426, decoding only the sampled frames), its list repeated to fill the steps.
The first `--warmup` steps of each phase are not timed; the data wait is the time the loop spent asking
for its next batch.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_data import DEFAULT_ROOT, ensure_bench_data  # noqa: E402
from benchmarks.bench_model import add_model_arguments, build  # noqa: E402
from datasets.build import build_dataset  # noqa: E402
from modules import text_prompt  # noqa: E402
from workflows.training_run import train_loader_for  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.distributed import init_distributed  # noqa: E402
from utils.solver import build_optimizer, build_scheduler  # noqa: E402
from workflows.training import ClassTexts, train_one_epoch  # noqa: E402
from utils.precision import autocast_for  # noqa: E402

BASE_CONFIG = Path(__file__).resolve().parent.parent / "configs/k400/k400_train_rgb_vitb-32-f8.yaml"


class TimedBatches:
    """Iterates `batches`, noting when the loop asked for each batch and when it got it."""

    def __init__(self, batches):
        self.batches = batches
        self.asked, self.got = [], []

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        self.asked, self.got = [], []
        iterator = iter(self.batches)
        while True:
            self.asked.append(time.perf_counter())
            try:
                batch = next(iterator)
            except StopIteration:
                self.asked.pop()
                return
            self.got.append(time.perf_counter())
            yield batch

    def rates(self, first: int, end: float, batch_frames: int):
        """(frames/s, share of time waiting for data) over the steps from `first` to the loop's `end`."""
        seconds = end - self.asked[first]
        waited = sum(got - asked for asked, got in zip(self.asked[first:], self.got[first:]))
        return batch_frames * (len(self.got) - first) / seconds, waited / seconds


def repeated_list(data, steps: int, batch: int) -> Path:
    """The MP4 list repeated until it holds `steps` batches (each clip is decoded afresh every time)."""
    lines = data.videos_list.read_text().splitlines()
    needed = steps * batch
    path = data.videos_list.with_name(f"videos_x{needed}.txt")
    path.write_text("\n".join(lines[i % len(lines)] for i in range(needed)) + "\n")
    return path


def bench_config(args, list_file, data):
    overrides = [f"network.arch={args.arch}", f"data.num_segments={args.frames}", f"data.input_size={args.size}",
                 f"data.batch_size={args.batch}", f"data.workers={args.workers}", "data.modality=video",
                 f"data.train_root={data.videos_root}", f"data.train_list={list_file}",
                 f"data.label_list={data.labels}", "data.num_classes=8", "logging.print_freq=1000000"]
    return load_config(BASE_CONFIG, overrides)


def run_phase(name, batches, warmup, encoder, header, optimizer, scheduler, texts, config, ctx, autocast):
    timed_batches = TimedBatches(batches)
    train_one_epoch(encoder, header, timed_batches, optimizer, scheduler, None, texts, config, 0, ctx.device,
                    autocast, show_progress=False)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    frames_per_second, wait = timed_batches.rates(warmup, time.perf_counter(), config.data.batch_size *
                                                  config.data.num_segments)
    print(f"{name:<34} {frames_per_second:9.2f} frames/s   data wait {100 * wait:5.1f}% of the time", flush=True)
    return frames_per_second


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per phase")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps at the start of each phase")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--root", default=DEFAULT_ROOT, help="where the benchmark clips are (generated if absent)")
    parser.add_argument("--cpu", action="store_true")
    args = parser.parse_args(argv)
    ctx = init_distributed(force_cpu=args.cpu)
    torch.manual_seed(0)
    data = ensure_bench_data(args.root, 24)
    config = bench_config(args, repeated_list(data, args.warmup + args.steps, args.batch), data)
    autocast = autocast_for(args.precision, ctx.device)
    model, header, encoder = build(args.arch, args.frames, args.size, ctx.device, False, False)
    loader = train_loader_for(build_dataset(config, "train"), config, ctx)
    texts = ClassTexts.build(encoder, text_prompt(loader.dataset.class_names), True, ctx.device, autocast)
    optimizer = build_optimizer(config.solver, model, [header])
    scheduler = build_scheduler(optimizer, config.solver, len(loader))
    name = torch.cuda.get_device_name() if ctx.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.arch}, {args.frames} frames, batch {args.batch}, {args.size}px, {args.precision}, Transf+VCS, "
          f"text frozen; {args.workers} loader worker(s); {name}; torch {torch.__version__}", flush=True)

    frames, labels = next(iter(loader))
    on_device = [(frames.to(ctx.device), labels.to(ctx.device))] * len(loader)
    common = (args.warmup, encoder, header, optimizer, scheduler, texts, config, ctx, autocast)
    model_only = run_phase("model only (one batch on the device)", on_device, *common)
    end_to_end = run_phase("end to end (data loader, MP4s)", loader, *common)
    print(f"end to end / model only: {100 * end_to_end / model_only:.1f}%")


if __name__ == "__main__":
    main()
