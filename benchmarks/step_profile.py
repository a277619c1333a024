"""Where a step's time goes, in one line: the share of the operators' own (self) time per kind of work.

Kinds: matmul (linear layers, the patch embedding, their backward), attention (the SDPA kernels),
copies (dtype casts, cat, indexing), optimizer (AdamW's fused kernel), elementwise (every other aten
operator: activations, norms, adds, reductions) and other (autograd and Python bookkeeping).
"""
import torch
from torch.profiler import ProfilerActivity, profile

MATMUL = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mv", "aten::dot",
          "aten::_addmm_activation", "aten::convolution_backward", "aten::mkldnn_convolution",
          "aten::_convolution", "aten::cudnn_convolution"}
COPIES = {"aten::copy_", "aten::_to_copy", "aten::clone", "aten::cat", "aten::stack", "aten::index",
          "aten::index_select", "aten::embedding", "aten::contiguous", "aten::_unsafe_index", "aten::gather"}
KINDS = ("matmul", "attention", "elementwise", "copies", "optimizer", "other")


def kind(name: str) -> str:
    if name in MATMUL:
        return "matmul"
    if "attention" in name or "flash" in name:
        return "attention"
    if "adam" in name.lower() or "_foreach" in name or name.startswith("Optimizer."):
        return "optimizer"
    if name in COPIES:
        return "copies"
    return "elementwise" if name.startswith("aten::") else "other"


def breakdown(step, device, calls: int = 3) -> str:
    """Runs `step` once to warm up, then `calls` times under torch.profiler; returns the one-line shares."""
    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        for _ in range(calls):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    totals = dict.fromkeys(KINDS, 0.0)
    for event in profiler.key_averages():
        if event.device_type != torch.autograd.DeviceType.CPU:
            continue  # a CUDA kernel: its time is already its launching operator's device time
        own = event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total
        totals[kind(event.key)] += own
    whole = sum(totals.values()) or 1.0
    return ", ".join(f"{name} {100 * totals[name] / whole:.0f}%" for name in KINDS)
