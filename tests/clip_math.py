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


def vit_tokens(sd, images):
    """The tokens [N, 1+P, D] a ViT's first block gets: class token and patches, position embeddings, ln_pre."""
    width = sd["visual.conv1.weight"].shape[0]
    x = torch.nn.functional.conv2d(images, sd["visual.conv1.weight"], stride=sd["visual.conv1.weight"].shape[-1])
    x = x.flatten(2).transpose(1, 2)
    cls = sd["visual.class_embedding"].expand(x.shape[0], 1, width)
    x = torch.cat([cls, x], dim=1) + sd["visual.positional_embedding"]
    return layer_norm(x, sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"])


def vit_head(sd, x):
    return layer_norm(x[:, 0], sd["visual.ln_post.weight"], sd["visual.ln_post.bias"]) @ sd["visual.proj"]


def vit_image_features(sd, images):
    heads = sd["visual.conv1.weight"].shape[0] // 64
    return vit_head(sd, residual_blocks(vit_tokens(sd, images), sd, "visual.transformer.resblocks", heads))


def bottleneck(x, sd, prefix):
    """AIM's adapter without its skip: fc, GELU (erf form), fc."""
    h = x @ sd[f"{prefix}.fc1.weight"].t() + sd[f"{prefix}.fc1.bias"]
    h = 0.5 * h * (1 + torch.erf(h / 2 ** 0.5))
    return h @ sd[f"{prefix}.fc2.weight"].t() + sd[f"{prefix}.fc2.bias"]


def aim_vit_image_features(sd, images, num_frames):
    """An OpenAI-layout ViT with AIM adapters (Yang et al. 2023), images [B*T, 3, H, W] of B clips of T frames.

    Per block: temporal attention (the block's attention over each token position's T frames, one clip at a
    time), T-Adapter, residual; spatial attention, S-Adapter with skip, residual; MLP plus 0.5 * MLP-Adapter.
    """
    x = vit_tokens(sd, images)
    frames, length, width = x.shape
    heads = width // 64
    x = x + sd["visual.transformer.resblocks.0.aim_time_embedding"][torch.arange(frames) % num_frames, None, :]
    prefix = "visual.transformer.resblocks"
    layers = len({k[len(prefix):].split(".")[1] for k in sd if k.startswith(prefix + ".")})
    for i in range(layers):
        p = f"{prefix}.{i}"
        temporal = torch.empty_like(x)
        for start in range(0, frames, num_frames):  # one clip
            for position in range(length):
                sequence = x[start:start + num_frames, position][None]  # [1, T, D]
                h = layer_norm(sequence, sd[f"{p}.ln_1.weight"], sd[f"{p}.ln_1.bias"])
                attended = explicit_attention(h, sd, f"{p}.attn", heads)[0]
                temporal[start:start + num_frames, position] = bottleneck(attended, sd, f"{p}.aim_temporal")
        x = x + temporal
        h = layer_norm(x, sd[f"{p}.ln_1.weight"], sd[f"{p}.ln_1.bias"])
        spatial = explicit_attention(h, sd, f"{p}.attn", heads)
        x = x + spatial + bottleneck(spatial, sd, f"{p}.aim_spatial")
        h = layer_norm(x, sd[f"{p}.ln_2.weight"], sd[f"{p}.ln_2.bias"])
        mlp = h @ sd[f"{p}.mlp.c_fc.weight"].t() + sd[f"{p}.mlp.c_fc.bias"]
        mlp = mlp * torch.sigmoid(1.702 * mlp)
        mlp = mlp @ sd[f"{p}.mlp.c_proj.weight"].t() + sd[f"{p}.mlp.c_proj.bias"]
        x = x + mlp + 0.5 * bottleneck(h, sd, f"{p}.aim_mlp")
    return vit_head(sd, x)


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
