"""Model throughput against the hardware: frames/s of a training step and of inference, and the share of
the matmul peak measured in the same process.

    python benchmarks/bench_model.py                                  # CPU: ViT-B/32, 8 frames, batch 2
    python benchmarks/bench_model.py --arch ViT-B/16 --batch 32       # GPU (bf16 by default there)
    python benchmarks/bench_model.py --arch open_clip:ViT-B-32        # an open_clip model (random init)

The model is BIKE's (CLIP with random weights of the named architecture, Transf + VCS header, text tower
frozen with its class features computed once), with the settings the programs use (malloc keeping freed
memory, `utils.allocator`; SDPA attention; no compile unless asked). FLOPs are counted by torch's
FlopCounterMode on the real step, so efficiency = counted FLOPs / seconds / peak. The first line is
measured with glibc's malloc defaults, before the programs' setting is applied; "bf16 weights+masters" is
the bf16 training step the programs do not use (bf16 weights, float32 masters in the optimizer), kept to
show why; the last compares every line with OpenAI's own CLIP package running the same visual tower in fp32.
"""
import argparse
import contextlib
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import clip  # noqa: E402
from modules import VideoHeader, text_prompt  # noqa: E402
from benchmarks import openai_baseline  # noqa: E402
from benchmarks.step_profile import breakdown  # noqa: E402
from benchmarks.tensor_memory import TensorMemory  # noqa: E402
from utils import allocator  # noqa: E402
from modules.video_clip import VideoEncoder, class_features, view_scores  # noqa: E402
from workflows.training import ClassTexts, freeze_towers, training_step_loss  # noqa: E402
from utils.precision import (autocast_for, compute_dtype, grad_scaler, inference_weight_dtype,  # noqa: E402
                             resolve_precision)

DTYPES = {name: compute_dtype(name) for name in ("fp32", "bf16", "amp")}  # amp: fp16 autocast + GradScaler


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(function, device, min_seconds, warmup=2):
    """Median seconds per call, after warm-up, over at least `min_seconds` and 5 calls: the median
    ignores the slow calls of a busy shared machine."""
    for _ in range(warmup):
        function()
    synchronize(device)
    durations, start = [], time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(durations) < 5:
        begin = time.perf_counter()
        function()
        synchronize(device)
        durations.append(time.perf_counter() - begin)
    return statistics.median(durations)


def matmul_peak(dtype, device, min_seconds, rounds=4):
    """FLOP/s of a large square matmul, best of `rounds`: the practical ceiling for transformer work here."""
    n = 8192 if device.type == "cuda" else 1536
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return max(2 * n ** 3 / timed(lambda: a @ b, device, min_seconds / rounds) for _ in range(rounds))


@dataclasses.dataclass
class Result:
    """One line of the table: frames/s and model FLOP/s of the training step and of inference."""

    label: str
    precision: str
    train: tuple = None  # (frames/s, FLOP/s)
    inference: tuple = None
    memory: str = ""
    profile: str = ""

    def line(self, peak: float) -> str:
        parts = [f"{self.label:<20}"]
        for name, figures in (("train", self.train), ("inference", self.inference)):
            if figures:
                parts.append(f"{name} {figures[0]:8.2f} frames/s {100 * figures[1] / peak:5.1f}% of {self.precision} peak")
        line = " | ".join(parts) + self.memory
        return line + (f"\n{'':<20}   self time: {self.profile}" if self.profile else "")


def state_bytes(*tensors) -> int:
    """Size of the distinct storages behind `tensors`: weights, optimizer state, frozen text features."""
    storages = {id(t.untyped_storage()): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def training_memory(forward, update, state: int, device) -> str:
    """The training step's memory: activations (what the forward pass keeps for backward, counted exactly)
    and the step's peak (weights, optimizer state and text features `state` plus the most the step adds)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with TensorMemory() as memory:
        loss = forward()
        activations = memory.live
        update(loss)
        del loss
    figures = f" | activations {activations / 2**30:.3f} GiB, step peak {(state + memory.peak) / 2**30:.3f} GiB"
    if device.type == "cuda":
        figures += f" (CUDA allocator peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB)"
    return figures


def counted_flops(function):
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def autocast(precision, device):
    return autocast_for(precision, device)()


def build(arch, frames, size, device, compile_visual, grad_checkpointing):
    if clip.open_clip_backbone.is_open_clip_arch(arch):  # open_clip:<model>, random init
        model = clip.open_clip_backbone.load(arch, grad_checkpointing=grad_checkpointing).to(device)
    else:
        model = clip.create_model(arch, num_frames=frames, grad_checkpointing=grad_checkpointing).to(device)
    if size != model.config.image_resolution:
        raise SystemExit(f"{arch} takes {model.config.image_resolution}-pixel images, not {size}")
    header = VideoHeader.for_clip("Transf", "VCS", model).to(device)
    freeze_towers(model, fix_text=True, fix_video=False)
    encoder = VideoEncoder(model)
    if compile_visual:
        model.visual.compile()
    return model, header, encoder


def step_inputs(args, model, header, encoder, precision, device, dtype=torch.float32):
    """(frozen class texts, trainable parameters, frames, labels) of a benchmarked step."""
    with autocast(precision, device):
        prompts = text_prompt([f"action {i}" for i in range(args.classes)], tokenizer=encoder.tokenize)
        texts = ClassTexts.build(encoder, prompts, True, device, contextlib.nullcontext)
    trainable = [p for p in list(model.parameters()) + list(header.parameters()) if p.requires_grad]
    frames = torch.randn(args.batch, args.frames, 3, args.size, args.size, device=device, dtype=dtype)
    return texts, trainable, frames, torch.arange(args.batch, device=device) % args.classes


def measure(args, precision, device, compile_visual, grad_checkpointing, label_suffix="") -> list:
    model, header, encoder = build(args.arch, args.frames, args.size, device, compile_visual, grad_checkpointing)
    texts, trainable, frames, labels = step_inputs(args, model, header, encoder, precision, device)
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, fused=True)
    scaler = grad_scaler(precision)

    def forward():
        with autocast(precision, device):
            return training_step_loss(encoder, header, frames, labels, texts, "NCE")

    def update(loss):
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def train_step():
        update(forward())

    @torch.no_grad()
    def inference():
        with autocast(precision, device):
            view_scores(encoder, header, frames[:, None], texts.eot, texts.tokens)

    encoder.train()
    header.train()
    train_step()  # creates the optimizer state
    train_seconds = timed(train_step, device, args.seconds)
    state = state_bytes(*model.parameters(), *header.parameters(), texts.prompts, texts.eot, texts.tokens,
                        *(t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)))
    memory = "" if compile_visual else training_memory(forward, update, state, device)
    plain = not (compile_visual or grad_checkpointing or label_suffix)
    profile = f"train: {breakdown(train_step, device)}" if plain else ""
    model.set_grad_checkpointing(False)  # model FLOPs: recomputation is a cost, not useful work
    train_flops = counted_flops(train_step)
    model.set_grad_checkpointing(grad_checkpointing)
    encoder.eval()
    header.eval()
    infer_seconds = timed(inference, device, args.seconds)
    infer_flops = counted_flops(inference)
    clip_count = args.batch * args.frames
    if plain:
        profile += f"; inference: {breakdown(inference, device)}"
    label = (precision + (" + compile" if compile_visual else "") + (" + grad ckpt" if grad_checkpointing else "")
             + label_suffix)
    results = [Result(label, precision, (clip_count / train_seconds, train_flops / train_seconds),
                      (clip_count / infer_seconds, infer_flops / infer_seconds), memory, profile)]
    if precision == "bf16" and plain:
        # What the evaluation programs run (inference_weight_dtype): bf16 weights under autocast, so no
        # forward casts a weight; the frames arrive in fp32 as normalize_on_device gives them.
        encoder.to(inference_weight_dtype(precision))
        header.to(inference_weight_dtype(precision))
        with torch.no_grad(), autocast(precision, device):
            eot, tokens = class_features(encoder, texts.prompts)
            seconds = timed(lambda: view_scores(encoder, header, frames[:, None], eot, tokens), device, args.seconds)
        results.append(Result(precision + " weights", precision,
                              inference=(clip_count / seconds, infer_flops / seconds)))
    return results


def master_weights_line(args, device) -> Result:
    """The bf16 training step the programs do not run, for the record of why: bf16 weights (no casts in the
    forward) with float32 master copies that fused AdamW updates, copied back into the weights each step."""
    model, header, encoder = build(args.arch, args.frames, args.size, device, False, False)
    texts, trainable, frames, labels = step_inputs(args, model, header, encoder, "bf16", device, torch.bfloat16)
    masters = [p.detach().float().clone() for p in trainable]
    optimizer = torch.optim.AdamW(masters, lr=1e-5, fused=True)
    encoder.to(torch.bfloat16)
    header.to(torch.bfloat16)
    texts = dataclasses.replace(texts, eot=texts.eot.to(torch.bfloat16), tokens=texts.tokens.to(torch.bfloat16))

    def train_step():
        training_step_loss(encoder, header, frames, labels, texts, "NCE").float().backward()
        for master, weight in zip(masters, trainable):
            master.grad, weight.grad = weight.grad.float(), None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            torch._foreach_copy_(trainable, masters)

    encoder.train()
    header.train()
    train_step()
    seconds = timed(train_step, device, args.seconds)
    flops = counted_flops(train_step)
    return Result("bf16 weights+masters", "bf16", train=(args.batch * args.frames / seconds, flops / seconds),
                  profile=f"train: {breakdown(train_step, device)}")


def openai_reference_line(args, device) -> tuple:
    """(line, (train, inference) frames/s) of OpenAI's own package on the same visual tower in fp32, or
    (why there is no such line, None)."""
    if clip.open_clip_backbone.is_open_clip_arch(args.arch):
        return "no OpenAI baseline for open_clip models", None
    frames = torch.randn(args.batch * args.frames, 3, args.size, args.size, device=device)
    steps = openai_baseline.steps(clip.architectures.architecture(args.arch), frames)
    if steps is None:
        root = openai_baseline.reference_root()
        return f"no OpenAI baseline: the reference package is missing ({openai_baseline.INSTALL.format(root=root)})", None
    train_step, inference = steps
    rates = tuple(len(frames) / timed(step, device, args.seconds) for step in (train_step, inference))
    return (f"{'OpenAI CLIP fp32':<20} | train {rates[0]:8.2f} frames/s | inference {rates[1]:8.2f} frames/s "
            f"(openai-clip 1.0.1, visual tower alone)", rates)


def add_model_arguments(parser: argparse.ArgumentParser):
    """The benchmarked model and input, the same options in every model benchmark."""
    parser.add_argument("--arch", default="ViT-B/32")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--classes", type=int, default=400, help="class prompts (text features computed once)")
    parser.add_argument("--precisions", nargs="+", default=None, choices=list(DTYPES),
                        help="default: fp32 and bf16 on CPU, bf16 on GPU (amp: fp16 autocast, GPU only)")
    parser.add_argument("--compile", action="store_true", help="also measure with torch.compile of the visual tower")
    parser.add_argument("--grad_checkpointing", action="store_true", help="also measure with activation recomputation")
    parser.add_argument("--seconds", type=float, default=8.0, help="minimum timing window per figure")
    parser.add_argument("--cpu", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    precisions = args.precisions or (["bf16"] if device.type == "cuda" else ["fp32", "bf16"])
    torch.manual_seed(0)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.arch}, {args.frames} frames, batch {args.batch}, {args.size}px, Transf+VCS, text frozen; {name}; "
          f"torch {torch.__version__}")
    print(f"programs' default precision here: {resolve_precision(None, device)}", flush=True)
    first_peaks = {p: matmul_peak(DTYPES[p], device, args.seconds / 2) for p in precisions}
    results = []
    if device.type == "cpu" and allocator.enabled():
        # glibc's defaults first: the programs' malloc setting cannot be undone within a process.
        print(f"measuring {precisions[-1]} with glibc's malloc defaults ...", flush=True)
        results += measure(args, precisions[-1], device, False, False, " glibc malloc")
    print(f"malloc: {'freed memory kept' if allocator.keep_freed_memory() else 'the C library defaults'}", flush=True)
    # Compiled variants last, each followed by a reset: compiled code left behind slowed later eager lines.
    variants = [(False, False)] + [(False, True)] * args.grad_checkpointing + [(True, False)] * args.compile
    for precision in precisions:
        for compile_visual, grad_checkpointing in variants:
            print(f"measuring {precision}{' + compile' * compile_visual}{' + grad ckpt' * grad_checkpointing} ...",
                  flush=True)
            try:
                results += measure(args, precision, device, compile_visual, grad_checkpointing)
            except torch.OutOfMemoryError as error:  # a larger model may only fit with recomputation
                print(f"  out of memory: {str(error).splitlines()[0]}", flush=True)
            if compile_visual:
                torch.compiler.reset()
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the next variant starts from free memory
    if "bf16" in precisions:
        print("measuring bf16 weights with float32 masters ...", flush=True)
        results.append(master_weights_line(args, device))
    print("measuring the OpenAI baseline ...", flush=True)
    baseline, baseline_rates = openai_reference_line(args, device)
    # The ceiling is the best the machine showed, at the start or the end (shared machines drift).
    last_peaks = {p: matmul_peak(DTYPES[p], device, args.seconds / 2) for p in precisions}
    peaks = {p: max(first_peaks[p], last_peaks[p]) for p in precisions}
    print("matmul peak: " + ", ".join(f"{p} {peaks[p] / 1e9:.0f} GFLOP/s (start {first_peaks[p] / 1e9:.0f}, end "
                                      f"{last_peaks[p] / 1e9:.0f})" for p in precisions))
    for result in results:
        print(result.line(peaks[result.precision]))
    print(baseline)
    if baseline_rates:
        print("over the OpenAI baseline: " + "; ".join(
            f"{r.label} " + ", ".join(f"{name} {figures[0] / rate:.2f}x" for name, figures, rate in
                                      (("train", r.train, baseline_rates[0]), ("inference", r.inference, baseline_rates[1]))
                                      if figures) for r in results))


if __name__ == "__main__":
    main()
