"""CLIP and BIKE-header forward passes written with plain tensor math, straight from a state dict.

These are the independent computations the equivalence tests compare the modules against: explicit
softmax attention with an additive -inf mask, LayerNorm from mean and variance, no nn.Module at all.
"""
import torch


def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def explicit_attention(x, sd, prefix, heads, causal=False):
    """x [B, L, D]; weights under `prefix` with nn.MultiheadAttention's names."""
    batch, length, width = x.shape
    qkv = x @ sd[f"{prefix}.in_proj_weight"].t() + sd[f"{prefix}.in_proj_bias"]
    q, k, v = (t.reshape(batch, length, heads, width // heads).transpose(1, 2) for t in qkv.split(width, dim=-1))
    scores = q @ k.transpose(-1, -2) / (width // heads) ** 0.5
    if causal:
        scores = scores + torch.full((length, length), float("-inf")).triu(1)
    out = torch.softmax(scores, dim=-1) @ v
    out = out.transpose(1, 2).reshape(batch, length, width)
    return out @ sd[f"{prefix}.out_proj.weight"].t() + sd[f"{prefix}.out_proj.bias"]


def residual_blocks(x, sd, prefix, heads, causal=False, eps=1e-5):
    layers = len({k[len(prefix):].split(".")[1] for k in sd if k.startswith(prefix + ".")})
    for i in range(layers):
        p = f"{prefix}.{i}"
        h = layer_norm(x, sd[f"{p}.ln_1.weight"], sd[f"{p}.ln_1.bias"], eps)
        x = x + explicit_attention(h, sd, f"{p}.attn", heads, causal)
        h = layer_norm(x, sd[f"{p}.ln_2.weight"], sd[f"{p}.ln_2.bias"], eps)
        h = h @ sd[f"{p}.mlp.c_fc.weight"].t() + sd[f"{p}.mlp.c_fc.bias"]
        h = h * torch.sigmoid(1.702 * h)
        x = x + h @ sd[f"{p}.mlp.c_proj.weight"].t() + sd[f"{p}.mlp.c_proj.bias"]
    return x


def vit_image_features(sd, images):
    width = sd["visual.conv1.weight"].shape[0]
    x = torch.nn.functional.conv2d(images, sd["visual.conv1.weight"], stride=sd["visual.conv1.weight"].shape[-1])
    x = x.flatten(2).transpose(1, 2)
    cls = sd["visual.class_embedding"].expand(x.shape[0], 1, width)
    x = torch.cat([cls, x], dim=1) + sd["visual.positional_embedding"]
    x = layer_norm(x, sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"])
    x = residual_blocks(x, sd, "visual.transformer.resblocks", width // 64)
    return layer_norm(x[:, 0], sd["visual.ln_post.weight"], sd["visual.ln_post.bias"]) @ sd["visual.proj"]


def text_features(sd, text):
    """(EOT embeddings [N, D], per-token projected features [N, L, D])."""
    width = sd["ln_final.weight"].shape[0]
    x = sd["token_embedding.weight"][text] + sd["positional_embedding"]
    x = residual_blocks(x, sd, "transformer.resblocks", width // 64, causal=True)
    x = layer_norm(x, sd["ln_final.weight"], sd["ln_final.bias"])
    tokens = x @ sd["text_projection"]
    return tokens[torch.arange(len(text)), text.argmax(-1)], tokens


def normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


def video_header_logits(sd, frames, tokens, classes, sim_header, interaction, heads):
    """The original video_header's logits [B, A]; its temporal LayerNorm uses eps 1e-12."""
    if sim_header == "Transf":
        x = frames + sd["frame_position_embeddings.weight"][: frames.shape[1]]
        frames = residual_blocks(x, sd, "transformer.resblocks", heads, eps=1e-12) + frames
    classes = normalize(classes)
    if interaction == "DP":
        return normalize(frames.mean(1)) @ classes.t()
    frames, tokens = normalize(frames), normalize(tokens)
    logits = torch.empty(frames.shape[0], classes.shape[0])
    for a in range(classes.shape[0]):
        for b in range(frames.shape[0]):
            sims = tokens[a] @ frames[b].t()  # [W, T]
            weights = torch.softmax(sims / 0.01, dim=-1).mean(0)  # [T]
            logits[b, a] = (weights @ frames[b]) @ classes[a]
    return logits
