"""open_clip models (LAION, DataComp, MetaCLIP, ConvNeXt, EVA, ...) as BIKE's CLIP: `network.arch: open_clip:<name>`.

open_clip (the optional `open-clip-torch` package) builds the model by name and gives its tokenizer and
preprocessing constants; `OpenClipModel` gives it the interface the BIKE video model uses (`encode_image`,
`encode_text(return_token=True)`, `logit_scale`, `config`, `tokenizer`). Its parameter names are open_clip's
own, so open_clip state dicts and BIKE checkpoints of it load strictly. OpenAI's models never come here.

Weights (`network.pretrained`): a local file (`.bin`/`.pt`/`.pth` state dict or `.safetensors`), an open_clip
pretrained tag (downloaded by open_clip and cached when the network answers), or nothing (random init).
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from .model import ArchitectureError
from .weights import WeightsMismatchError, WeightsUnavailableError

logger = logging.getLogger(__name__)

PREFIX = "open_clip:"
INSTALL_HINT = "pip install -r requirements-open-clip.txt (the open-clip-torch package)"


def is_open_clip_arch(arch) -> bool:
    return isinstance(arch, str) and arch.startswith(PREFIX)


def model_name(arch: str) -> str:
    """`open_clip:ViT-B-32` -> `ViT-B-32`."""
    name = arch[len(PREFIX):].strip()
    if not name:
        raise ArchitectureError(f"network.arch {arch!r} names no model: write open_clip:<model name>, "
                                "e.g. open_clip:ViT-B-32")
    return name


def import_open_clip():
    """The open_clip package, or an error that says how to install it."""
    try:
        import open_clip
    except ImportError as error:
        raise ImportError(f"open_clip models (network.arch: open_clip:...) need the open-clip-torch package, which "
                          f"is not installed ({error}): {INSTALL_HINT}") from None
    return open_clip


@dataclass(frozen=True)
class OpenClipConfig:
    """The dimensions the BIKE video model is sized from (the fields of `CLIPConfig` it reads)."""

    model_name: str
    embed_dim: int
    image_resolution: int
    context_length: int
    transformer_width: int


class OpenClipModel(nn.Module):
    """An open_clip CLIP or CustomTextCLIP whose parts become this module's own (same parameter names).

    `tokenizer` is the model's own (texts -> ids [N, context_length]); `image_mean`/`image_std` its
    preprocessing constants.
    Per-token text features (VCS) are every token's final-LayerNorm output through the text projection,
    as BIKE does for OpenAI's models; the pooled feature is open_clip's own `encode_text`.
    """

    def __init__(self, model: nn.Module, name: str, tokenizer, image_mean: Sequence[float],
                 image_std: Sequence[float]):
        super().__init__()
        open_clip = import_open_clip()
        self.custom_text = isinstance(model, open_clip.CustomTextCLIP)
        if not (self.custom_text or type(model) is open_clip.CLIP):
            raise ArchitectureError(f"open_clip model {name} is a {type(model).__name__}; BIKE supports open_clip's "
                                    f"CLIP and CustomTextCLIP models (CoCa's captioning decoder has no place in BIKE)")
        text = model.text if self.custom_text else model
        own_text_tower = isinstance(text, open_clip.transformer.TextTransformer) and text.cls_emb is None
        if self.custom_text and not own_text_tower:
            raise ArchitectureError(f"open_clip model {name}: its text tower ({type(text).__name__}) does not give "
                                    f"the per-token text features BIKE uses; only open_clip's own TextTransformer "
                                    f"(without a class token) is supported")
        for child_name, child in model.named_children():
            self.add_module(child_name, child)
        for param_name, param in model.named_parameters(recurse=False):
            self.register_parameter(param_name, param)
        for buffer_name, buffer in model.named_buffers(recurse=False):
            self.register_buffer(buffer_name, buffer, persistent=buffer_name not in model._non_persistent_buffers_set)
        if getattr(model, "logit_bias", None) is not None:
            self.logit_bias.requires_grad_(False)  # SigLIP's bias is unused by BIKE (and would stall DDP)
        if self.custom_text:
            self.text.output_tokens = True  # the text tower then returns (pooled, per-token features)
        else:
            self.text_pool_type, self.text_eos_id = model.text_pool_type, getattr(model, "text_eos_id", None)
        size = model.visual.image_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        if height != width:
            raise ArchitectureError(f"open_clip model {name} takes {height}x{width} images; BIKE uses square crops")
        text_width = text.width if self.custom_text else model.transformer.width
        embed_dim = int(open_clip.get_model_config(name)["embed_dim"])
        self.config = OpenClipConfig(model_name=name, embed_dim=embed_dim, image_resolution=height,
                                     context_length=model.context_length, transformer_width=text_width)
        self.context_length = model.context_length
        self.tokenizer = tokenizer
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.visual.parameters()).dtype

    def set_grad_checkpointing(self, enabled: bool = True):
        self.visual.set_grad_checkpointing(enabled)
        if self.custom_text:
            self.text.set_grad_checkpointing(enabled)
        else:
            self.transformer.grad_checkpointing = enabled

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image.to(self.dtype))

    def _project(self, x: torch.Tensor, projection) -> torch.Tensor:
        if projection is None:
            return x
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection

    def encode_text(self, text: torch.Tensor, return_token: bool = False):
        """Pooled text embedding [N, D]; with `return_token`, also every token's projected feature [N, L, D]."""
        if self.custom_text:
            pooled, tokens = self.text(text)
            projection = self.text.text_projection
        else:
            from open_clip.transformer import text_global_pool
            cast_dtype = self.transformer.get_cast_dtype()
            x = self.token_embedding(text).to(cast_dtype) + self.positional_embedding.to(cast_dtype)
            tokens = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))
            projection = self.text_projection
            pooled = self._project(text_global_pool(tokens, text, self.text_pool_type, eos_token_id=self.text_eos_id),
                                   projection)
        if return_token:
            return pooled, self._project(tokens, projection)
        return pooled


def resolve_weights(name: str, pretrained: Optional[str], cache_dir=None) -> Tuple[Optional[Path], dict]:
    """(local weights file or None, the tag's pretrained config or {}) for `network.pretrained`.

    A known tag is downloaded (and cached) by open_clip; offline, the error names the model, the tag,
    where the file comes from and where to put it.
    """
    if not pretrained:
        return None, {}
    open_clip = import_open_clip()
    tag_config = open_clip.get_pretrained_cfg(name, pretrained)
    if tag_config:
        try:
            return Path(open_clip.download_pretrained(tag_config, cache_dir=cache_dir)), tag_config
        except Exception as error:  # network, hub and file-system errors all mean: not available here
            source = tag_config.get("hf_hub") or tag_config.get("url") or "open_clip's hub"
            raise WeightsUnavailableError(
                f"open_clip weights of model {name}, tag {pretrained!r}, are not cached and could not be downloaded "
                f"from {source} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
                f"Download that file (.bin/.safetensors) on a machine with network access and set "
                f"network.pretrained to its local path, or put it into the open_clip cache "
                f"({cache_dir or 'the Hugging Face cache, ~/.cache/huggingface'}).") from None
    path = Path(pretrained).expanduser()
    if not path.is_file():
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise FileNotFoundError(f"network.pretrained {pretrained!r} is neither an existing weights file nor a "
                                f"pretrained tag of open_clip model {name} (its tags: {', '.join(tags) or 'none'})")
    return path, {}


def preprocess_constants(tag_config: dict) -> Tuple[tuple, tuple]:
    """(mean, std) of the model's preprocessing: its pretrained tag's, else open_clip's defaults (OpenAI's)."""
    import_open_clip()
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict
    merged = merge_preprocess_dict(PreprocessCfg(), tag_config)
    return tuple(merged["mean"]), tuple(merged["std"])


def _load_file(model: nn.Module, name: str, path: Path, visual_only: bool):
    """open_clip's own loading (its formats and conversions), strict; `visual_only` keeps the text tower random."""
    open_clip = import_open_clip()
    random_text = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("visual.")}
    try:
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
    except Exception as error:  # torch/safetensors raise several types; all mean this file does not fit
        raise WeightsMismatchError(f"cannot load {path} (network.pretrained) into open_clip model {name}: "
                                   f"{type(error).__name__}: {error}") from None
    if visual_only:
        model.load_state_dict(random_text, strict=False)


def load(arch: str, pretrained: Optional[str] = None, load_weights: bool = True, pretrain: bool = True,
         download_root=None, grad_checkpointing: bool = False, joint_st: bool = False, drop_path: float = 0.0,
         emb_dropout: float = 0.0, device="cpu") -> OpenClipModel:
    """An open_clip model as BIKE's CLIP, in fp32 on `device` (the "meta" device builds shapes only), eval mode.

    `load_weights=False` builds the architecture only (random init; the tag still decides the
    preprocessing constants), for loading a BIKE checkpoint into it. `pretrain=False` loads only the image
    tower's weights (BIKE's `network.init: False`). Options OpenAI's ViT implements in this project's own
    code (joint space-time attention, drop path, embedding dropout) are refused, naming their config keys.
    """
    name = model_name(arch)
    for key, value in (("network.joint_st", joint_st), ("network.drop_out", drop_path),
                       ("network.emb_dropout", emb_dropout)):
        if value:
            raise ArchitectureError(f"{key} is not available for open_clip models ({arch}); set it to False/0")
    open_clip = import_open_clip()
    if name not in open_clip.list_models():
        close = [known for known in open_clip.list_models() if name.lower()[:5] in known.lower()]
        raise ArchitectureError(f"network.arch {arch!r}: open_clip has no model {name!r}"
                                + (f" (similar: {', '.join(close[:10])})" if close else ""))
    if load_weights:
        path, tag_config = resolve_weights(name, pretrained, download_root)
    else:
        path, tag_config = None, (open_clip.get_pretrained_cfg(name, pretrained) if pretrained else {})
    try:
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as error:  # HF tokenizers need `transformers` and their vocabulary files
        raise ValueError(f"the tokenizer of open_clip model {name} cannot be built here "
                         f"({type(error).__name__}: {error})") from None
    model = open_clip.create_model(name, pretrained=None, pretrained_image=False, pretrained_text=False, device=device)
    if path is not None:
        _load_file(model, name, path, visual_only=not pretrain)
        logger.info("open_clip %s: weights from %s", name, path)
    elif load_weights:
        logger.warning("open_clip %s is randomly initialised (network.pretrained is empty): it is NOT a pretrained "
                       "model", name)
    mean, std = preprocess_constants(tag_config)
    wrapped = OpenClipModel(model, name, tokenizer, mean, std)
    wrapped.set_grad_checkpointing(grad_checkpointing)
    return wrapped.float().eval()
