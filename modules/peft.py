"""Parameter-efficient fine-tuning of CLIP's image tower (`network.peft`): one home for "make this tower
parameter-efficient", for saving it in the original layout and for restoring it exactly.

    apply_peft(clip_model, config.network, num_frames)   # none: nothing; lora / aim: adapters, base frozen

`lora` goes through Hugging Face's peft (requirements-peft.txt). The attention's fused query/key/value
weight (`attn.in_proj_weight`, a raw parameter of clip/model.py's SelfAttention) is adapted with peft's
`target_parameters`, one rank-r update of the fused [3W, W] matrix, as peft's own LoRA for
nn.MultiheadAttention (open_clip's attention, adapted as one unit with its out_proj) does; Linear targets
(out_proj, c_fc, c_proj) are peft's LoRA Linear layers. peft renames what it wraps (`...base_layer.weight`,
`...lora_A.default.weight`): `merged_state_dict` gives the original names with each update merged, so a
LoRA checkpoint loads like any BIKE checkpoint, and `lora_resume_state` what an exact resume needs beyond it.

`aim` adds modules/aim.py's adapters, which keep every original name and add `aim_*` ones: an AIM checkpoint
holds them beside the CLIP weights, and a program that loads it calls `apply_peft` with the checkpoint's
recorded network section first (workflows/inference.checkpoint_clip).
"""
import re
import warnings

import torch
from torch import nn

from clip.model import ArchitectureError, load_weights
from modules.aim import add_aim_adapters, is_aim_parameter

ADAPTER = "default"  # peft's adapter name: the one set of adapters a run trains
PEFT_INSTALL_HINT = "pip install -r requirements-peft.txt (Hugging Face's peft)"
_BASE_LAYER = re.compile(r"\.base_layer(?=\.)")


def apply_peft(clip_model: nn.Module, network, num_frames: int) -> None:
    """Makes `clip_model.visual` parameter-efficient in place, as `network` (the config's network section, or
    the one a checkpoint recorded) says: `peft` none does nothing; lora / aim add adapters and freeze every
    other parameter of the image tower (the rest of the model is left as it is)."""
    mode = network.get("peft", "none")
    if mode == "none":
        return
    visual = clip_model.visual
    blocks = vit_blocks(visual, mode)
    if mode == "lora":
        add_lora(blocks, visual, list(network.get("peft_targets", ("in_proj", "out_proj"))),
                 network.get("peft_rank", 8), network.get("peft_alpha", 16.0), network.get("peft_dropout", 0.0))
    elif mode == "aim":
        add_aim_adapters(visual, num_frames, network.get("aim_bottleneck_ratio", 0.25))
    else:
        raise ArchitectureError(f"network.peft {mode!r}: expected none, lora or aim")
    for name, parameter in visual.named_parameters():
        parameter.requires_grad_(is_adapter_parameter(name))


def vit_blocks(visual: nn.Module, mode: str) -> nn.Module:
    """The residual blocks of a ViT image tower (OpenAI's or open_clip's), or the error naming what fits."""
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None:
        raise ArchitectureError(f"network.peft {mode}: the image encoder is a {type(visual).__name__}, and lora and "
                                "aim adapt ViT encoders only (OpenAI's and open_clip's ViTs); this one supports "
                                "network.peft none (full fine-tuning, or frozen with network.fix_video)")
    return blocks


def is_adapter_parameter(name: str) -> bool:
    """Whether a parameter name is an adapter's (LoRA's or AIM's) rather than a pretrained weight."""
    return ".lora_" in name or is_aim_parameter(name)


def import_peft():
    try:
        import peft
    except ImportError as error:
        raise ImportError(f"network.peft lora needs Hugging Face's peft, which is not installed ({error}): "
                          f"{PEFT_INSTALL_HINT}") from None
    return peft


def add_lora(blocks: nn.Module, visual: nn.Module, targets: list, rank: int, alpha: float, dropout: float) -> None:
    """peft's LoRA on the `targets` of every block: in_proj (the fused query/key/value weight), out_proj, or any
    Linear of the block by its attribute name (c_fc, c_proj). A name that matches nothing is an error."""
    peft = import_peft()
    prefix = next(name for name, module in visual.named_modules() if module is blocks)
    attentions = [f"{name}." for name, module in blocks.named_modules() if isinstance(module, nn.MultiheadAttention)]
    module_targets, parameter_targets = [], []
    for target in dict.fromkeys(targets):
        found = False
        for name, module in blocks.named_modules():
            full = f"{prefix}.{name}"
            if isinstance(module, nn.MultiheadAttention) and target in ("in_proj", "out_proj"):
                if not {"in_proj", "out_proj"} <= set(targets):
                    raise ArchitectureError(f"network.peft_targets {targets}: this encoder's attention is an "
                                            "nn.MultiheadAttention, which peft adapts as one unit: name in_proj and "
                                            "out_proj together")
                module_targets.append(full)
                found = True
            elif target == "in_proj" and isinstance(getattr(module, "in_proj_weight", None), nn.Parameter):
                parameter_targets.append(f"{full}.in_proj_weight")
                found = True
            elif name.rsplit(".", 1)[-1] == target and isinstance(module, nn.Linear):
                if not name.startswith(tuple(attentions)):  # else adapted with its nn.MultiheadAttention
                    module_targets.append(full)
                found = True
        if not found:
            raise ArchitectureError(f"network.peft_targets: {target!r} matches no module of the image encoder's "
                                    "blocks; the attention's in_proj and out_proj and the MLP's c_fc and c_proj "
                                    "can be adapted")
    if parameter_targets and dropout:
        raise ArchitectureError(f"network.peft_dropout {dropout}: peft cannot apply dropout to the fused in_proj "
                                "weight (it adapts the parameter, not a layer's input): set it to 0 or leave "
                                "in_proj out of network.peft_targets")
    # Two injections, Linear layers first: peft wraps a module that holds a targeted parameter, after which it
    # no longer finds the Linear layers inside it.
    configs = []
    if module_targets:
        configs.append(peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                                       target_modules=sorted(set(module_targets))))
    if parameter_targets:
        configs.append(peft.LoraConfig(r=rank, lora_alpha=alpha, target_parameters=parameter_targets))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")  # the second injection
        for config in configs:
            peft.inject_adapter_in_model(config, visual, adapter_name=ADAPTER)


def lora_layers(model: nn.Module) -> list:
    """(layer, live name of the parameter its update adds to) of every peft LoRA layer of `model`."""
    if not any(".lora_" in name for name, _ in model.named_parameters()):
        return []
    from peft.tuners.lora import LoraLayer, ParamWrapper
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            if isinstance(module, ParamWrapper):
                parameter = module.parameter_name
            elif isinstance(module.get_base_layer(), nn.MultiheadAttention):
                parameter = "in_proj_weight"
            else:
                parameter = "weight"
            layers.append((module, f"{name}.{parameter}"))
    return layers


def original_name(live_name: str) -> str:
    """A state-dict name without peft's `base_layer` levels: the name in the original layout."""
    return _BASE_LAYER.sub("", live_name)


def merged_state_dict(model: nn.Module) -> dict:
    """`model.state_dict()` in the original layout: each LoRA update (peft's own `get_delta_weight`) added to
    the weight it adapts, the adapters left out. A model without LoRA gives its own state dict."""
    state = model.state_dict()
    layers = lora_layers(model)
    if not layers:
        return state
    merged = {original_name(name): value for name, value in state.items() if not is_adapter_parameter(name)}
    with torch.no_grad():
        for layer, name in layers:
            key = original_name(name)
            merged[key] = merged[key] + layer.get_delta_weight(ADAPTER).to(merged[key].dtype)
    return merged


def lora_resume_state(model: nn.Module) -> dict:
    """What an exact resume of a LoRA model needs beyond `merged_state_dict`: the adapters, and the frozen
    weights they adapt as they were (base + update is rounded, so the base cannot be recovered from the merged
    weight exactly; storing it costs the adapted weights once more, and no rebuilt pretrained file can differ).

    Keys are the live (peft) names; empty for a model without LoRA."""
    layers = lora_layers(model)
    if not layers:
        return {}
    adapted = {original_name(name) for _, name in layers}
    return {name: value for name, value in model.state_dict().items()
            if ".lora_" in name or original_name(name) in adapted}


def load_lora_training_state(model: nn.Module, merged: dict, stored: dict, what: str) -> None:
    """Restores a LoRA model exactly from `merged_state_dict` and `lora_resume_state` (strict: a missing
    tensor is an error that lists it)."""
    live = {}
    for name in model.state_dict():
        source, key = (stored, name) if name in stored else (merged, original_name(name))
        if key in source:
            live[name] = source[key]
    load_weights(model, live, what=what)
