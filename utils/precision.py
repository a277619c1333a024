"""Numeric precision of a run: the choices, the default of a device, autocast, the weights' dtype and the
gradient scaler. The one home of these for the programs and the benchmarks."""
import contextlib
from typing import Optional

import torch

from utils.errors import UsageError
from utils.hardware import native_bf16_flags

PRECISIONS = ("amp", "fp16", "bf16", "fp32")
AUTOCAST_DTYPES = {"amp": torch.float16, "bf16": torch.bfloat16}  # after resolve_precision: fp16 is amp
PRECISION_HELP = ("amp: fp16 autocast, float32 weights, loss scaling in training (GPU default); fp16: the same as "
                  "amp (the original's name; float16 weights would lose most updates); bf16: bf16 autocast (evaluation "
                  "programs hold bf16 weights; the default on a CPU with AMX or AVX512-BF16); "
                  "fp32 (the default on other CPUs)")


def default_precision(device: torch.device) -> str:
    """fp16 autocast with a grad scaler on GPU ('amp', as the original); on CPU bf16 where the CPU multiplies
    bf16 natively (AVX512-BF16 or AMX: faster than fp32 there, see benchmarks/bench_model.py), else fp32."""
    if device.type == "cuda":
        return "amp"
    return "bf16" if native_bf16_flags() else "fp32"


def precision_label(requested: Optional[str], precision: str) -> str:
    """The run's precision as its first log line names it: why, when it is the default."""
    if requested:
        return precision
    if precision == "amp":
        return "amp (the GPU default)"
    if precision == "bf16":
        return f"bf16 (the default on this CPU: {'/'.join(native_bf16_flags())}; --precision fp32 for float32)"
    return "fp32 (the default on a CPU without native bf16)"


def resolve_precision(requested: Optional[str], device: torch.device) -> str:
    """The requested precision, else `default_precision`.

    'fp16' is 'amp': AdamW steps on float16 weights round most updates of CLIP's learning rates (5e-6)
    to zero, so the weights stay float32 and only the computation runs in float16.
    """
    precision = requested or default_precision(device)
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    if precision in ("amp", "fp16") and device.type != "cuda":
        raise UsageError(f"--precision {precision} needs a GPU; on CPU use bf16 or fp32")
    return "amp" if precision == "fp16" else precision


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype the matrix products of `precision` run in (under autocast for amp and bf16)."""
    return AUTOCAST_DTYPES.get(precision, torch.float32)


def autocast_for(precision: str, device: torch.device):
    """A factory of the autocast context of `precision` (a no-op for fp32)."""
    if precision in AUTOCAST_DTYPES:
        return lambda: torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext


def inference_weight_dtype(precision: str) -> torch.dtype:
    """The dtype evaluation programs hold their weights in: bf16 for bf16, so that no forward casts a weight
    (faster on CPU: benchmarks/bench_model.py measures it). amp keeps float32 weights: the GPU default, not
    measured with float16 weights yet. Training keeps float32 weights for AdamW's small updates."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def grad_scaler(precision: str):
    """The loss scaler of fp16 training ('amp'), None for the other precisions."""
    return torch.amp.GradScaler("cuda") if precision == "amp" else None
