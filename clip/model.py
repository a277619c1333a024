"""CLIP with OpenAI's state-dict names, attention through `F.scaled_dot_product_attention`.

Both visual towers (ViT and ModifiedResNet) keep every parameter name and shape of OpenAI's release,
so their weights, and the `model_state_dict` of BIKE checkpoints, load strictly. Internally tokens are
batch-first ([batch, length, width]), which is what the fused attention kernels want.
"""
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Optional, Tuple, Union

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .weights import WeightsMismatchError


class ArchitectureError(ValueError):
    """network.arch (or network.pretrained, joint_st, drop_out) asks for a model that cannot be built here."""


# Keys OpenAI's TorchScript archives carry beside the weights; they describe the model, they are not weights.
NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size")


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the input dtype, as OpenAI's CLIP does for fp16 weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return super().forward(x)
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class _QuickGELUFunction(torch.autograd.Function):
    """x * sigmoid(1.702 x) that keeps only x for backward: autograd would keep three tensors of the
    MLP's widest size per block (a fifth of a ViT's activation memory) where one suffices."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(1.702 * x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        gate = torch.sigmoid(1.702 * x)
        return grad_output * gate * (1 + 1.702 * x * (1 - gate))


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _QuickGELUFunction.apply(x)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch for a random subset of samples while training."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
        return x * mask / keep_prob


class SelfAttention(nn.Module):
    """Multi-head self-attention with `nn.MultiheadAttention`'s parameter names (in_proj_*, out_proj)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"attention width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, drop_path: float = 0.0, layer_norm_eps: float = 1e-5):
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.ln_1 = LayerNorm(width, eps=layer_norm_eps)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(width * 4, width)),
        ]))
        self.ln_2 = LayerNorm(width, eps=layer_norm_eps)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.ln_1(x), causal=causal))
        return x + self.drop_path(self.mlp(self.ln_2(x)))


class Transformer(nn.Module):
    """A stack of residual attention blocks on batch-first tokens; `causal` is the text tower's mask."""

    def __init__(self, width: int, layers: int, heads: int, causal: bool = False,
                 drop_path_rates: Optional[list] = None, layer_norm_eps: float = 1e-5):
        super().__init__()
        rates = drop_path_rates or [0.0] * layers
        self.width = width
        self.layers = layers
        self.causal = causal
        self.grad_checkpointing = False
        self.resblocks = nn.Sequential(*[
            ResidualAttentionBlock(width, heads, rates[i], layer_norm_eps) for i in range(layers)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, self.causal, use_reentrant=False)
            else:
                x = block(x, causal=self.causal)
        return x


class VisionTransformer(nn.Module):
    """CLIP's ViT image tower, optionally with joint space-time attention over the T frames of a clip."""

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int,
                 output_dim: int, drop_path_rates: Optional[list] = None, emb_dropout: float = 0.0,
                 joint_st: bool = False, num_frames: int = 8):
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.joint_st = joint_st
        self.num_frames = num_frames
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        if joint_st:
            self.time_embedding = nn.Parameter(scale * torch.randn(num_frames, width))
        self.emb_dropout = nn.Dropout(emb_dropout)
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, drop_path_rates=drop_path_rates)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def patch_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """`conv1` (kernel = stride = patch) as one matmul over the non-overlapping patches: the same
        numbers, but the convolution's backward took a fifth of a CPU training step for a few GFLOP.
        The weight stays `conv1.weight` [width, 3, patch, patch], so OpenAI's state dicts load as before."""
        weight = self.conv1.weight
        channels, patch = weight.shape[1], weight.shape[-1]
        batch, grid_h, grid_w = x.shape[0], x.shape[-2] // patch, x.shape[-1] // patch
        x = x[..., :grid_h * patch, :grid_w * patch]  # the convolution drops an incomplete last row/column
        patches = x.reshape(batch, channels, grid_h, patch, grid_w, patch).permute(0, 2, 4, 1, 3, 5)
        return F.linear(patches.reshape(batch, grid_h * grid_w, channels * patch * patch), weight.flatten(1))

    def embed_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens of each image with the class token in front and position embeddings added."""
        x = self.patch_embedding(x)  # [N, grid*grid, width]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)

    def join_frames(self, x: torch.Tensor) -> torch.Tensor:
        """[B*T, 1+P, C] -> [B, 1+P*T, C]: all patches of a clip in one sequence with a time embedding.

        The clip keeps a single class token (they are identical across frames before attention).
        """
        frames, length, width = x.shape
        if frames % self.num_frames:
            raise ValueError(f"joint space-time attention expects a multiple of {self.num_frames} frames, got {frames}")
        batch = frames // self.num_frames
        patches = x[:, 1:].reshape(batch, self.num_frames, length - 1, width)
        patches = patches + self.time_embedding.to(x.dtype)[None, :, None, :]
        patches = patches.transpose(1, 2).reshape(batch, (length - 1) * self.num_frames, width)
        cls = x.reshape(batch, self.num_frames, length, width)[:, 0, :1]
        return torch.cat([cls, patches], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(x)
        if self.joint_st:
            x = self.join_frames(x)
        x = self.ln_pre(self.emb_dropout(x))
        x = self.transformer(x)
        return self.ln_post(x[:, 0]) @ self.proj


class Bottleneck(nn.Module):
    """ResNet bottleneck with anti-aliased (avg-pool) downsampling, as in CLIP's ModifiedResNet."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        return self.relu(out + identity)


class AttentionPool2d(nn.Module):
    """Attention pooling of a feature map, queried by the mean feature (CLIP's ResNet head)."""

    def __init__(self, spatial_dim: int, embed_dim: int, heads: int, output_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spatial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)  # [N, HW, C]
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.positional_embedding.to(x.dtype)
        batch, length, width = x.shape
        head_dim = width // self.heads

        def split_heads(t):
            return t.view(batch, t.shape[1], self.heads, head_dim).transpose(1, 2)

        # Only the mean token's output is used, so only it is a query.
        query = split_heads(self.q_proj(x[:, :1]))
        out = F.scaled_dot_product_attention(query, split_heads(self.k_proj(x)), split_heads(self.v_proj(x)))
        return self.c_proj(out.transpose(1, 2).reshape(batch, width))


class ModifiedResNet(nn.Module):
    """CLIP's ResNet image tower: 3-conv stem, anti-aliased strides, attention pooling."""

    def __init__(self, layers: Tuple[int, int, int, int], output_dim: int, heads: int,
                 input_resolution: int = 224, width: int = 64):
        super().__init__()
        self.output_dim = output_dim
        self.input_resolution = input_resolution
        self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        inplanes = width
        stages = []
        for index, blocks in enumerate(layers):
            planes = width * 2 ** index
            stage = [Bottleneck(inplanes, planes, stride=1 if index == 0 else 2)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes) for _ in range(1, blocks)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, heads, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.conv1.weight.dtype)
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.relu(bn(conv(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


@dataclass(frozen=True)
class CLIPConfig:
    """Everything that determines the shapes of a CLIP model; OpenAI's `build_model` arguments."""

    embed_dim: int
    image_resolution: int
    vision_layers: Union[int, Tuple[int, int, int, int]]
    vision_width: int
    vision_patch_size: Optional[int]
    context_length: int
    vocab_size: int
    transformer_width: int
    transformer_heads: int
    transformer_layers: int

    @property
    def is_vit(self) -> bool:
        return isinstance(self.vision_layers, int)

    @classmethod
    def from_state_dict(cls, state_dict: dict) -> "CLIPConfig":
        """Infers every dimension from the weights, as OpenAI's `build_model` does."""
        try:
            if "visual.proj" in state_dict:
                vision_width = state_dict["visual.conv1.weight"].shape[0]
                vision_layers = sum(1 for k in state_dict
                                    if k.startswith("visual.") and k.endswith(".attn.in_proj_weight"))
                patch_size = state_dict["visual.conv1.weight"].shape[-1]
                grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
                image_resolution = patch_size * grid
            else:
                vision_layers = tuple(
                    len({k.split(".")[2] for k in state_dict if k.startswith(f"visual.layer{b}.")})
                    for b in (1, 2, 3, 4))
                vision_width = state_dict["visual.layer1.0.conv1.weight"].shape[0]
                patch_size = None
                grid = round((state_dict["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
                image_resolution = grid * 32
            transformer_width = state_dict["ln_final.weight"].shape[0]
            return cls(
                embed_dim=state_dict["text_projection"].shape[1],
                image_resolution=image_resolution,
                vision_layers=vision_layers,
                vision_width=vision_width,
                vision_patch_size=patch_size,
                context_length=state_dict["positional_embedding"].shape[0],
                vocab_size=state_dict["token_embedding.weight"].shape[0],
                transformer_width=transformer_width,
                transformer_heads=transformer_width // 64,
                transformer_layers=len({k.split(".")[2] for k in state_dict if k.startswith("transformer.resblocks.")}),
            )
        except KeyError as missing:
            raise ValueError(f"not a CLIP state dict: key {missing} is missing") from None

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class CLIP(nn.Module):
    """OpenAI's CLIP, plus the options BIKE's configs use.

    Options: `num_frames` (T, for joint space-time attention), `drop_path` (stochastic depth rate of the
    last visual layer, rising linearly from 0 over the visual layers), `emb_dropout` (dropout on the token
    embeddings of both towers), `joint_st` (ViT only), `grad_checkpointing` (both towers).
    """

    def __init__(self, config: CLIPConfig, num_frames: int = 8, drop_path: float = 0.0,
                 emb_dropout: float = 0.0, joint_st: bool = False, grad_checkpointing: bool = False):
        super().__init__()
        self.config = config
        self.context_length = config.context_length
        self.vocab_size = config.vocab_size
        if config.is_vit:
            rates = torch.linspace(0, drop_path, config.vision_layers).tolist() if drop_path > 0 else None
            self.visual = VisionTransformer(
                input_resolution=config.image_resolution, patch_size=config.vision_patch_size,
                width=config.vision_width, layers=config.vision_layers, heads=config.vision_width // 64,
                output_dim=config.embed_dim, drop_path_rates=rates, emb_dropout=emb_dropout,
                joint_st=joint_st, num_frames=num_frames)
        else:
            if joint_st or drop_path > 0:
                raise ArchitectureError("joint_st and drop_path (network.drop_out) are only available for ViT CLIP "
                                        "models")
            self.visual = ModifiedResNet(
                layers=config.vision_layers, output_dim=config.embed_dim, heads=config.vision_width * 32 // 64,
                input_resolution=config.image_resolution, width=config.vision_width)
        self.transformer = Transformer(config.transformer_width, config.transformer_layers,
                                       config.transformer_heads, causal=True)
        self.token_embedding = nn.Embedding(config.vocab_size, config.transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.transformer_width))
        self.emb_dropout = nn.Dropout(emb_dropout)
        self.ln_final = LayerNorm(config.transformer_width)
        self.text_projection = nn.Parameter(torch.empty(config.transformer_width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self.initialize_parameters()
        self.set_grad_checkpointing(grad_checkpointing)

    def initialize_parameters(self):
        """OpenAI's initialisation, so that random-init models train as the original would."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        if isinstance(self.visual, ModifiedResNet):
            pool = self.visual.attnpool
            std = pool.c_proj.in_features ** -0.5
            for linear in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
                nn.init.normal_(linear.weight, std=std)
            for stage in (self.visual.layer1, self.visual.layer2, self.visual.layer3, self.visual.layer4):
                for name, param in stage.named_parameters():
                    if name.endswith("bn3.weight"):
                        nn.init.zeros_(param)
        width, layers = self.transformer.width, self.transformer.layers
        proj_std = width ** -0.5 * (2 * layers) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width ** -0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    def set_grad_checkpointing(self, enabled: bool = True):
        self.transformer.grad_checkpointing = enabled
        if isinstance(self.visual, VisionTransformer):
            self.visual.transformer.grad_checkpointing = enabled

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image.to(self.dtype))

    def encode_text(self, text: torch.Tensor, return_token: bool = False):
        """EOT-token embedding of each text; with `return_token`, also every token's projected feature.

        Returns a tensor [N, D], or with `return_token` a tuple ([N, D], [N, context_length, D]).
        """
        x = self.token_embedding(text).to(self.dtype) + self.positional_embedding.to(self.dtype)
        x = self.transformer(self.emb_dropout(x))
        x = self.ln_final(x).to(self.dtype)
        # The end-of-text token has the largest id in each sequence.
        eot = x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)] @ self.text_projection
        if return_token:
            return eot, x @ self.text_projection
        return eot

    def forward(self, image: torch.Tensor, text: torch.Tensor):
        """OpenAI's contract: (logits_per_image, logits_per_text), scaled cosine similarities."""
        image_features = F.normalize(self.encode_image(image), dim=-1)
        text_features = F.normalize(self.encode_text(text), dim=-1)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


def build_model(state_dict: dict, visual_only: bool = False, **options) -> CLIP:
    """A CLIP sized from `state_dict` and loaded with it (fp32); `options` go to `CLIP`.

    `visual_only` loads just the image tower and leaves the text tower random (BIKE's `network.init:
    False`). The weights may lack `visual.time_embedding`, which joint space-time attention adds; every
    other mismatch is an error.
    """
    weights = {k: v for k, v in state_dict.items() if k not in NON_WEIGHT_KEYS}
    model = CLIP(CLIPConfig.from_state_dict(weights), **options)
    if visual_only:
        visual = {k[len("visual."):]: v for k, v in weights.items() if k.startswith("visual.")}
        load_weights(model.visual, visual, allow_missing=("time_embedding",), what="CLIP visual weights")
    else:
        load_weights(model, weights, allow_missing=("visual.time_embedding",))
    return model


def load_weights(module: nn.Module, state_dict: dict, allow_missing=(), what: str = "CLIP weights"):
    """Strict loading whose error lists every missing, unexpected and wrongly shaped key."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict and k not in allow_missing]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [f"{k}: expected {tuple(own[k].shape)}, got {tuple(state_dict[k].shape)}"
                   for k in state_dict if k in own and own[k].shape != state_dict[k].shape]
    if missing or unexpected or wrong_shape:
        lines = [f"{what} do not fit the {type(module).__name__} model:"]
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong_shape)):
            if keys:
                lines.append(f"  {title} ({len(keys)}): " + ", ".join(keys))
        raise WeightsMismatchError("\n".join(lines))
    module.load_state_dict(state_dict, strict=False)
