"""What the equivalence tests share: tiny CLIP shapes, weights moved off their init, OpenAI's model in those
shapes, and the token ids OpenAI's tokenizer gives (`openai_reference` is the conftest fixture)."""
import torch

TEXT = dict(context_length=77, vocab_size=49408)
TINY_SHAPES = {
    "vit-patch8": dict(embed_dim=64, image_resolution=32, vision_layers=2, vision_width=128, vision_patch_size=8,
                       transformer_width=64, transformer_heads=1, transformer_layers=2, **TEXT),
    "vit-patch16": dict(embed_dim=32, image_resolution=48, vision_layers=3, vision_width=192, vision_patch_size=16,
                        transformer_width=128, transformer_heads=2, transformer_layers=1, **TEXT),
    "resnet": dict(embed_dim=64, image_resolution=64, vision_layers=(1, 2, 1, 1), vision_width=32,
                   vision_patch_size=None, transformer_width=128, transformer_heads=2, transformer_layers=1, **TEXT),
}


def perturbed(state_dict, seed=0, scale=0.02):
    """Every weight moved away from its (often zero or one) init, so no block is an identity."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state_dict.items():
        if not value.is_floating_point():
            out[key] = value.clone()
        elif key.endswith("running_var"):
            out[key] = 0.5 + torch.rand(value.shape, generator=generator)
        else:
            out[key] = value + scale * torch.randn(value.shape, generator=generator)
    return out


def openai_model(openai_reference, shape, seed=0):
    torch.manual_seed(seed)
    model = openai_reference.model.CLIP(**shape).eval()
    model.load_state_dict(perturbed(model.state_dict(), seed))
    return model


def reference_tokenize(reference_tokenizer, texts, context_length=77, truncate=False):
    """[sot] + OpenAI's encode + [eot], zero padded, truncated like OpenAI's clip.tokenize."""
    sot = reference_tokenizer.encoder["<|startoftext|>"]
    eot = reference_tokenizer.encoder["<|endoftext|>"]
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [sot, *reference_tokenizer.encode(text), eot]
        if len(ids) > context_length:
            assert truncate, f"reference input too long: {text!r}"
            ids = ids[:context_length]
            ids[-1] = eot
        result[row, :len(ids)] = torch.tensor(ids)
    return result
