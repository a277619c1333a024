"""One training step of a tiny BIKE model on a fixed batch; run alone, or under torchrun as a script.

Under torchrun each rank takes its contiguous share of the batch; rank 0 saves the loss and the
(DDP-averaged) gradients to the file named by argv[1], for comparison with one process on the whole batch.
    torchrun ... tests/ddp_step.py OUT {fixed|trained} [cpu|cuda] [fp32|amp]
"""
import sys

import torch
from torch.nn.parallel import DistributedDataParallel

import clip
from modules import VideoHeader, text_prompt
from modules.video_clip import VideoEncoder
from utils.distributed import init_distributed
from workflows.training import ClassTexts, training_step_loss
from utils.precision import autocast_for

BATCH, FRAMES, SIZE = 4, 4, 32
LABELS = torch.tensor([0, 3, 0, 5])
CLASS_NAMES = [f"class number {i}" for i in range(6)]


def loss_and_gradients(rank: int, world_size: int, fix_text: bool, distributed: bool, device="cpu",
                       precision="fp32"):
    device = torch.device(device)
    autocast = autocast_for(precision, device)
    torch.manual_seed(0)
    model = clip.create_model("ViT-Tiny/16", image_resolution=SIZE)
    header = VideoHeader.for_clip("Transf", "VCS", model)
    encoder = VideoEncoder(model).to(device)
    header.to(device)
    if fix_text:
        for name, parameter in model.named_parameters():
            if not name.startswith("visual.") and name != "logit_scale":
                parameter.requires_grad_(False)
    texts = ClassTexts.build(encoder, text_prompt(CLASS_NAMES), fix_text, device, autocast)
    frames = torch.randn(BATCH, FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)).to(device)
    share = BATCH // world_size
    local = slice(rank * share, (rank + 1) * share)
    train_encoder, train_header = encoder, header
    if distributed:
        device_ids = [device.index] if device.type == "cuda" else None
        train_encoder = DistributedDataParallel(encoder, device_ids=device_ids)
        train_header = DistributedDataParallel(header, device_ids=device_ids)
    with autocast():
        loss = training_step_loss(train_encoder, train_header, frames[local], LABELS[local].to(device), texts, "NCE")
    loss.backward()
    gradients = {f"clip.{k}": p.grad.float().cpu() for k, p in model.named_parameters() if p.grad is not None}
    gradients.update({f"header.{k}": p.grad.float().cpu() for k, p in header.named_parameters()})
    return loss.detach().float().cpu(), gradients


if __name__ == "__main__":
    device_type, precision = (sys.argv[3:5] + ["cpu", "fp32"][len(sys.argv[3:5]):])
    context = init_distributed(force_cpu=device_type == "cpu")
    result = loss_and_gradients(context.rank, context.world_size, fix_text=sys.argv[2] == "fixed", distributed=True,
                                device=context.device, precision=precision)
    if context.is_main:
        torch.save({"loss": result[0], "gradients": result[1]}, sys.argv[1])
