"""What parameter-efficient fine-tuning (`network.peft`) saves: trainable parameters, training memory and the
step time of full fine-tuning, `lora` and `aim`, with and without gradient checkpointing, in one run.

    python benchmarks/bench_peft.py                                  # ViT-B/16 and ViT-L/14, 8 frames, bf16
    python benchmarks/bench_peft.py --archs ViT-B/16 --steps 3       # one tower, fewer timed steps

The model is BIKE's training model (CLIP with random weights of the named architecture, Transf + VCS header,
text tower frozen with its class features computed once). Memory is counted exactly, not sampled: parameters,
gradients and AdamW's two moments from the tensors themselves, and the activations a step keeps for backward
by `benchmarks/tensor_memory.py` at one and at two clips, which separates what each clip adds from what a step
holds whatever the batch (e.g. bf16 copies of the weights). The projection adds them up for a per-GPU batch:
    total(batch) = parameters + gradients + optimizer state + fixed activations + batch x activations per clip
It leaves out the allocator's fragmentation and the CUDA context (about 0.5-1 GB on a GPU), so a real GPU
needs a little more; `benchmarks/run_gpu.sh` runs this script on a GPU, where the allocator's peak is printed
beside it. Step time is the median of `--steps` steps of one clip after a warm-up step, in the same process for
every mode, so the ratios to full fine-tuning compare like with like.
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import clip  # noqa: E402
from clip.architectures import architecture  # noqa: E402
from benchmarks.bench_model import state_bytes, step_inputs, timed  # noqa: E402
from benchmarks.tensor_memory import TensorMemory  # noqa: E402
from modules import VideoHeader  # noqa: E402
from modules.peft import apply_peft  # noqa: E402
from modules.video_clip import VideoEncoder  # noqa: E402
from utils import allocator  # noqa: E402
from utils.precision import autocast_for, grad_scaler  # noqa: E402
from workflows.training import freeze_towers, training_step_loss  # noqa: E402

MODES = ("full", "lora", "aim")
GIB = 2 ** 30


def build(arch, frames, mode, grad_checkpointing, device):
    """BIKE's training model with the image tower fully trainable (`full`) or adapted (`lora`, `aim`: the
    defaults of network.peft_rank 8 on the attention's projections, network.aim_bottleneck_ratio 0.25)."""
    model = clip.create_model(arch, num_frames=frames, grad_checkpointing=grad_checkpointing)
    header = VideoHeader.for_clip("Transf", "VCS", model)
    freeze_towers(model, fix_text=True, fix_video=False)
    apply_peft(model, {"peft": "none" if mode == "full" else mode}, frames)
    return model.to(device), header.to(device), VideoEncoder(model)


class Step:
    """One training step of `mode` (bf16 autocast, AdamW over the trainable parameters), its state and memory."""

    def __init__(self, args, mode, grad_checkpointing, device):
        self.device, self.precision = device, args.precision
        self.model, self.header, self.encoder = build(args.arch, args.frames, mode, grad_checkpointing, device)
        self.args = args
        self.texts, self.trainable, _, _ = step_inputs(args, self.model, self.header, self.encoder, args.precision,
                                                       device)
        self.optimizer = torch.optim.AdamW(self.trainable, lr=1e-5)
        self.scaler = grad_scaler(args.precision)
        self.encoder.train()
        self.header.train()

    def inputs(self, clips):
        frames = torch.randn(clips, self.args.frames, 3, self.args.size, self.args.size, device=self.device)
        return frames, torch.arange(clips, device=self.device) % self.args.classes

    def forward(self, frames, labels):
        with autocast_for(self.precision, self.device)():
            return training_step_loss(self.encoder, self.header, frames, labels, self.texts, "NCE")

    def update(self, loss):
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def run(self, clips=1):
        self.update(self.forward(*self.inputs(clips)))

    def activations(self, clips) -> int:
        """Bytes the forward pass of `clips` clips keeps alive for backward (counted exactly)."""
        frames, labels = self.inputs(clips)
        with TensorMemory() as memory:
            loss = self.forward(frames, labels)
            kept = memory.live
            self.update(loss)
            del loss
        return kept

    def state(self) -> dict:
        """Bytes of parameters, gradients (one per trainable parameter, as backward leaves them) and optimizer
        state (after a step has created it)."""
        parameters = list(self.model.parameters()) + list(self.header.parameters())
        optimizer = [t for s in self.optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        return {"parameters": state_bytes(*parameters, self.texts.eot, self.texts.tokens),
                "gradients": sum(p.numel() * p.element_size() for p in self.trainable),
                "optimizer": state_bytes(*optimizer) if optimizer else 0}


def measure(args, mode, grad_checkpointing, device) -> dict:
    step = Step(args, mode, grad_checkpointing, device)
    step.run()  # creates the optimizer state
    one, two = step.activations(1), step.activations(2)
    result = step.state()
    result.update(per_clip=two - one, fixed=2 * one - two,
                  trainable=sum(p.numel() for p in step.trainable),
                  total=sum(p.numel() for p in step.model.parameters()) + sum(p.numel() for p in step.header.parameters()),
                  seconds=timed(step.run, device, min_seconds=0, warmup=1) if args.steps else None)
    return result


def projected(result, batch) -> float:
    return (result["parameters"] + result["gradients"] + result["optimizer"] + result["fixed"]
            + batch * result["per_clip"]) / GIB


def line(label, result, full) -> str:
    speed = ""
    if result["seconds"] is not None:
        speed = (f" | step {result['seconds']:.2f} s/clip, {full['seconds'] / result['seconds']:.2f}x full's"
                 if full else f" | step {result['seconds']:.2f} s/clip")
    return (f"{label:<18} trainable {result['trainable'] / 1e6:7.2f}M of {result['total'] / 1e6:.1f}M "
            f"({100 * result['trainable'] / result['total']:5.2f}%) | params {result['parameters'] / GIB:.2f} "
            f"grads {result['gradients'] / GIB:.2f} optim {result['optimizer'] / GIB:.2f} GiB | activations "
            f"{result['per_clip'] / GIB:.3f} GiB/clip + {result['fixed'] / GIB:.2f} | projected batch 32: "
            f"{projected(result, 32):6.1f} GiB, 16: {projected(result, 16):6.1f} GiB{speed}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["ViT-B/16", "ViT-L/14"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32", "amp"))
    parser.add_argument("--steps", type=int, default=3, help="timed steps per line (0: memory only)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    allocator.keep_freed_memory()
    device = torch.device(args.device)
    torch.manual_seed(0)
    for arch in args.archs:
        args.arch, args.batch = arch, 1
        args.size = architecture(arch).image_resolution
        print(f"{arch}, {args.frames} frames, {args.size} px, {args.precision}, {device}, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
        for grad_checkpointing in (False, True):
            full = None
            for mode in args.modes:
                result = measure(args, mode, grad_checkpointing, device)
                full = result if mode == "full" else full
                label = mode + (" + grad ckpt" if grad_checkpointing else "")
                print(line(label, result, None if mode == "full" else full), flush=True)


if __name__ == "__main__":
    main()
