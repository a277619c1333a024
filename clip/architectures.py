"""Named CLIP architectures: OpenAI's released models and small random-init ones for demos and tests."""
from .model import ArchitectureError, CLIPConfig

_TEXT = dict(context_length=77, vocab_size=49408, transformer_layers=12)


def _vit(embed_dim, resolution, layers, width, patch, text_width):
    return CLIPConfig(embed_dim=embed_dim, image_resolution=resolution, vision_layers=layers, vision_width=width,
                      vision_patch_size=patch, transformer_width=text_width, transformer_heads=text_width // 64,
                      **_TEXT)


def _resnet(embed_dim, resolution, layers, width, text_width):
    return CLIPConfig(embed_dim=embed_dim, image_resolution=resolution, vision_layers=layers, vision_width=width,
                      vision_patch_size=None, transformer_width=text_width, transformer_heads=text_width // 64,
                      **_TEXT)


# The shapes of OpenAI's released weights (what their state dicts imply).
OPENAI_ARCHITECTURES = {
    "RN50": _resnet(1024, 224, (3, 4, 6, 3), 64, 512),
    "RN101": _resnet(512, 224, (3, 4, 23, 3), 64, 512),
    "RN50x4": _resnet(640, 288, (4, 6, 10, 6), 80, 640),
    "RN50x16": _resnet(768, 384, (6, 8, 18, 8), 96, 768),
    "RN50x64": _resnet(1024, 448, (3, 15, 36, 10), 128, 1024),
    "ViT-B/32": _vit(512, 224, 12, 768, 32, 512),
    "ViT-B/16": _vit(512, 224, 12, 768, 16, 512),
    "ViT-L/14": _vit(768, 224, 24, 1024, 14, 768),
    "ViT-L/14@336px": _vit(768, 336, 24, 1024, 14, 768),
}

# Small architectures with the real tokenizer's vocabulary; they only ever have random weights.
RANDOM_INIT_ARCHITECTURES = {
    "ViT-Tiny/16": CLIPConfig(embed_dim=128, image_resolution=112, vision_layers=4, vision_width=192,
                              vision_patch_size=16, context_length=77, vocab_size=49408,
                              transformer_width=128, transformer_heads=2, transformer_layers=3),
    # the demo's ViT (32 px, an 8x8 grid of patches): its stage-1 CLIP is what network.peft adapts
    "ViT-Tiny/4": CLIPConfig(embed_dim=128, image_resolution=32, vision_layers=4, vision_width=192,
                             vision_patch_size=4, context_length=77, vocab_size=49408,
                             transformer_width=128, transformer_heads=2, transformer_layers=3),
    "RN-Tiny": CLIPConfig(embed_dim=128, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=32,
                          vision_patch_size=None, context_length=77, vocab_size=49408,
                          transformer_width=128, transformer_heads=2, transformer_layers=3),
}

# Other spellings users bring: the original BIKE configs write the 336px model with a dash.
ALIASES = {"ViT-L/14-336px": "ViT-L/14@336px"}


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


def architecture(name: str) -> CLIPConfig:
    """The configuration of a named architecture (OpenAI's or random-init), by any accepted spelling."""
    name = canonical_name(name)
    if name in OPENAI_ARCHITECTURES:
        return OPENAI_ARCHITECTURES[name]
    if name in RANDOM_INIT_ARCHITECTURES:
        return RANDOM_INIT_ARCHITECTURES[name]
    known = list(OPENAI_ARCHITECTURES) + list(ALIASES) + list(RANDOM_INIT_ARCHITECTURES)
    raise ArchitectureError(f"unknown CLIP architecture {name!r}; known: {', '.join(known)}")
