"""Which scaled-dot-product-attention kernel is fastest for the shapes CLIP and BIKE's header use.

    python benchmarks/bench_attention.py                    # CPU: fp32 and bf16
    python benchmarks/bench_attention.py --precisions bf16  # on a GPU (also fp16)

Shapes: the image towers' self-attention over 50 (ViT-B/32), 197 (ViT-B/16) and 257 (ViT-L/14) tokens of
16 frames, and the temporal transformer over 8, 16 and 32 frames of 2 clips. For each shape and
backend (math, flash, memory-efficient, cuDNN on CUDA) it times forward + backward and forward alone
(median call) and marks the fastest; "default" is what `F.scaled_dot_product_attention` picks itself.
A backend that cannot run a shape prints "n/a".
"""
import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_model import DTYPES, timed  # noqa: E402

# (name, batch, heads, tokens, head width)
SHAPES = [("ViT-B/32 tokens", 16, 12, 50, 64), ("ViT-B/16 tokens", 16, 12, 197, 64),
          ("ViT-L/14 tokens", 16, 16, 257, 64), ("header, 8 frames", 2, 8, 8, 64),
          ("header, 16 frames", 2, 8, 16, 64), ("header, 32 frames", 2, 8, 32, 64)]
BACKENDS = {"default": None, "math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}


def attention_steps(shape, dtype, device):
    _, batch, heads, tokens, width = shape
    q, k, v = (torch.randn(batch, heads, tokens, width, device=device, dtype=dtype, requires_grad=True)
               for _ in range(3))
    upstream = torch.randn(batch, heads, tokens, width, device=device, dtype=dtype)

    def train():
        F.scaled_dot_product_attention(q, k, v).backward(upstream)

    @torch.no_grad()
    def inference():
        F.scaled_dot_product_attention(q, k, v)

    return train, inference


def milliseconds(step, backend, device, seconds):
    """Median milliseconds of `step` under `backend`, or None when the backend cannot run it."""
    try:
        if backend is None:
            return 1e3 * timed(step, device, seconds)
        with sdpa_kernel(backend):
            return 1e3 * timed(step, device, seconds)
    except RuntimeError:
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum timing window per figure")
    parser.add_argument("--cpu", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    backends = {name: b for name, b in BACKENDS.items() if device.type == "cuda" or name != "cudnn"}
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}; torch {torch.__version__}; milliseconds per call, forward+backward / forward; * fastest")
    for precision in args.precisions:
        for shape in SHAPES:
            train, inference = attention_steps(shape, DTYPES[precision], device)
            figures = {backend: (milliseconds(train, kernel, device, args.seconds),
                                 milliseconds(inference, kernel, device, args.seconds))
                       for backend, kernel in backends.items()}
            best = [min((f[i], b) for b, f in figures.items() if f[i] is not None)[1] for i in (0, 1)]
            cells = [f"{b} " + " / ".join("n/a" if f[i] is None else f"{f[i]:.2f}{'*' * (best[i] == b)}"
                                          for i in (0, 1)) for b, f in figures.items()]
            print(f"{precision:<5} {shape[0]:<18} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
