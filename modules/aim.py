"""AIM adapters (Yang et al., ICLR 2023, "AIM: Adapting Image Models for Efficient Video Action Recognition").

A frozen CLIP ViT learns space-time reasoning through a few small modules per residual block:
  1. temporal attention: the block's own pretrained attention, applied across the T frames of a clip (each token
     position attends to the same position in the clip's other frames), then a T-Adapter, added to the stream;
  2. the block's spatial attention, then an S-Adapter (with its own skip connection);
  3. the block's MLP, with an MLP-Adapter beside it, scaled by 0.5.
Before the first block, a learned time embedding is added to every token of each frame (AIM adds it before
`ln_pre`; here it enters with the first block, so the tower's own forward stays as it is).

Every adapter's last layer (and the time embedding) starts at zero, so at step 0 the adapted tower computes the
frozen tower's numbers exactly: each extra term is an exact zero added to the value the original block adds.
The adapted block takes over the original block's submodules under their own names, so every state-dict name
of the tower stays; all that AIM adds is named `aim_*` (`is_aim_parameter`).

The tower's input is a batch of whole clips, [B*T, 3, H, W] with each clip's T frames consecutive, as
`modules.video_clip.VideoEncoder` gives it.
"""
import sys

import torch
from torch import nn

from clip.model import ArchitectureError, ResidualAttentionBlock, VisionTransformer

PREFIX = "aim_"
MLP_ADAPTER_SCALE = 0.5  # AIM's weight of the MLP-Adapter beside the pretrained MLP


def is_aim_parameter(name: str) -> bool:
    """Whether a parameter (or state-dict) name, with any prefix, belongs to the AIM adapters."""
    return any(part.startswith(PREFIX) for part in name.split("."))


class Adapter(nn.Module):
    """Bottleneck fc -> GELU -> fc; with `skip`, the input is added to the result (AIM's S-Adapter).

    The last fc starts at zero, so the bottleneck's output starts at exactly zero.
    """

    def __init__(self, width: int, hidden: int, skip: bool, **factory):
        super().__init__()
        self.skip = skip
        self.fc1 = nn.Linear(width, hidden, **factory)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width, **factory)
        nn.init.trunc_normal_(self.fc1.weight, std=0.02)
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc2(self.act(self.fc1(x)))
        return x + out if self.skip else out


class AIMBlock(nn.Module):
    """A ViT residual block (OpenAI's or open_clip's) with AIM's temporal attention and adapters.

    Its submodules are the original block's, under the same names. The branch modules one layout lacks
    (OpenAI's blocks have `drop_path` and no layer scale; open_clip's have `ls_1`/`ls_2` and no drop path;
    only open_clip's custom block has `ln_attn`) are identities here.
    """

    def __init__(self, block: nn.Module, num_frames: int, hidden: int, time_embedding: bool):
        super().__init__()
        for name, child in block.named_children():
            self.add_module(name, child)
        for name in ("drop_path", "ls_1", "ls_2", "ln_attn"):
            if name not in self._modules:
                self.add_module(name, nn.Identity())
        reference = block.ln_1.weight
        width = reference.shape[0]
        factory = dict(device=reference.device, dtype=reference.dtype)
        self.num_frames = num_frames
        self.aim_temporal = Adapter(width, hidden, skip=False, **factory)
        self.aim_spatial = Adapter(width, hidden, skip=True, **factory)
        self.aim_mlp = Adapter(width, hidden, skip=False, **factory)
        self.aim_time_embedding = nn.Parameter(torch.zeros(num_frames, width, **factory)) if time_embedding else None
        self.train(block.training)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The block's pretrained self-attention over the sequences of x [N, L, D] (already normalised)."""
        if isinstance(self.attn, nn.MultiheadAttention):  # open_clip's default block
            return self.attn(x, x, x, need_weights=False)[0]
        return self.ln_attn(self.attn(x))

    def clips(self, x: torch.Tensor) -> torch.Tensor:
        """[B*T, L, D] -> [B, T, L, D]."""
        frames, length, width = x.shape
        if frames % self.num_frames:
            raise ValueError(f"the AIM adapters were built for clips of {self.num_frames} frames; the image tower "
                             f"got {frames} images, not a whole number of clips")
        return x.view(frames // self.num_frames, self.num_frames, length, width)

    def temporal_attention(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, L, D]: each token position attends across the clip's T frames, with the block's own attention."""
        clips, frames, length, width = x.shape
        over_time = x.transpose(1, 2).reshape(clips * length, frames, width)
        out = self.attend(self.ln_1(over_time))
        return out.view(clips, length, frames, width).transpose(1, 2)

    def forward(self, x: torch.Tensor, *_mask_arguments, **_mask_keywords) -> torch.Tensor:
        """x [B*T, L, D] -> [B*T, L, D]. The towers' Transformers pass every block its mask arguments (OpenAI's
        `causal`, open_clip's k_x/v_x/attn_mask); image towers attend without masks, so they are not used."""
        if self.aim_time_embedding is not None:
            x = (self.clips(x) + self.aim_time_embedding.to(x.dtype)[:, None, :]).flatten(0, 1)
        temporal = self.aim_temporal(self.temporal_attention(self.clips(x))).flatten(0, 1)
        x = x + self.drop_path(temporal)
        x = x + self.drop_path(self.ls_1(self.aim_spatial(self.attend(self.ln_1(x)))))
        normed = self.ln_2(x)
        # The MLP-Adapter joins the MLP's branch: one drop-path draw for the branch, as the original block makes.
        return x + self.drop_path(self.ls_2(self.mlp(normed)) + MLP_ADAPTER_SCALE * self.aim_mlp(normed))


def _residual_blocks(visual: nn.Module) -> nn.Module:
    """The list of residual blocks of a supported ViT image tower; refuses every other tower."""
    supported = "OpenAI CLIP ViTs and open_clip VisionTransformers"
    open_clip_transformer = sys.modules.get("open_clip.transformer")  # imported whenever a model of it exists
    if isinstance(visual, VisionTransformer):
        if visual.joint_st:
            raise ArchitectureError("network.peft=aim and network.joint_st do not go together: AIM adds its own "
                                    "temporal attention to a tower that embeds each frame alone")
        block_types = (ResidualAttentionBlock,)
    elif open_clip_transformer is not None and isinstance(visual, open_clip_transformer.VisionTransformer):
        if isinstance(visual.patch_dropout, open_clip_transformer.PatchDropout):
            raise ArchitectureError("network.peft=aim needs the same tokens in every frame of a clip; this open_clip "
                                    "model drops patches at random (its patch_dropout)")
        block_types = (open_clip_transformer.ResidualAttentionBlock,
                       open_clip_transformer.CustomResidualAttentionBlock)
    else:
        raise ArchitectureError(f"network.peft=aim adapts the ViT image towers of {supported}; this model's image "
                                f"tower is a {type(visual).__name__}")
    blocks = visual.transformer.resblocks
    for block in blocks:
        if isinstance(block, AIMBlock):
            raise ArchitectureError("this image tower already has AIM adapters")
        if type(block) not in block_types:
            raise ArchitectureError(f"network.peft=aim adapts the residual blocks of {supported}; this tower has a "
                                    f"{type(block).__name__}")
    return blocks


def add_aim_adapters(visual: nn.Module, num_frames: int, bottleneck_ratio: float = 0.25) -> None:
    """Inserts AIM adapters into every residual block of the ViT image tower `visual`, in place.

    `num_frames`: T, the frames of each clip (consecutive in the tower's batch). `bottleneck_ratio`: the adapters'
    hidden width over the tower's width (AIM's 0.25). The new parameters are created on the tower's device, in
    its dtype, and train; freezing the pretrained ones is the caller's choice.
    """
    blocks = _residual_blocks(visual)
    if num_frames < 1:
        raise ArchitectureError(f"AIM adapters need at least one frame per clip, got {num_frames}")
    width = blocks[0].ln_1.weight.shape[0]
    hidden = int(width * bottleneck_ratio)
    if hidden < 1:
        raise ArchitectureError(f"network.aim_bottleneck_ratio {bottleneck_ratio} gives adapters of width {hidden} "
                                f"for an image tower of width {width}; they need a width of 1 or more")
    for index, block in enumerate(blocks):
        blocks[index] = AIMBlock(block, num_frames, hidden, time_embedding=index == 0)
