"""One training step of a tiny BIKE model on a fixed batch; run alone, or under torchrun as a script.

Under torchrun each rank takes its contiguous share of the batch; rank 0 saves the loss and the
(DDP-averaged) gradients to the file named by argv[1], for comparison with one process on the whole batch.
"""
import contextlib
import sys

import torch
from torch.nn.parallel import DistributedDataParallel

import clip
from modules import VideoHeader, text_prompt
from modules.video_clip import VideoEncoder
from utils.distributed import init_distributed
from utils.training import ClassTexts, training_step_loss

BATCH, FRAMES, SIZE = 4, 4, 32
LABELS = torch.tensor([0, 3, 0, 5])
CLASS_NAMES = [f"class number {i}" for i in range(6)]


def loss_and_gradients(rank: int, world_size: int, fix_text: bool, distributed: bool):
    torch.manual_seed(0)
    model = clip.create_model("ViT-Tiny/16", image_resolution=SIZE)
    header = VideoHeader.for_clip("Transf", "VCS", model)
    encoder = VideoEncoder(model)
    if fix_text:
        for name, parameter in model.named_parameters():
            if not name.startswith("visual.") and name != "logit_scale":
                parameter.requires_grad_(False)
    texts = ClassTexts.build(encoder, text_prompt(CLASS_NAMES), fix_text, "cpu", contextlib.nullcontext)
    frames = torch.randn(BATCH, FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    share = BATCH // world_size
    local = slice(rank * share, (rank + 1) * share)
    train_encoder, train_header = encoder, header
    if distributed:
        train_encoder, train_header = DistributedDataParallel(encoder), DistributedDataParallel(header)
    loss = training_step_loss(train_encoder, train_header, frames[local], LABELS[local], texts, "NCE")
    loss.backward()
    gradients = {f"clip.{k}": p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    gradients.update({f"header.{k}": p.grad.clone() for k, p in header.named_parameters()})
    return loss.detach(), gradients


if __name__ == "__main__":
    context = init_distributed(force_cpu=True)
    result = loss_and_gradients(context.rank, context.world_size, fix_text=sys.argv[2] == "fixed", distributed=True)
    if context.is_main:
        torch.save({"loss": result[0], "gradients": result[1]}, sys.argv[1])
