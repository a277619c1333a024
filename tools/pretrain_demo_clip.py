"""Stage 1 of the demo: pretrain a small CLIP on captioned stills of the synthetic world.

    python tools/pretrain_demo_clip.py [--arch RN-Tiny] [--out .cache/demo_clip/RN-Tiny-synthetic.pt] [--force]

BIKE starts from a CLIP pretrained on image-text pairs; the demo's CLIP is pretrained here, in miniature:
single frames of the demo's world (random shapes, colours, sizes, positions and orientations on textured
backgrounds, at the demo's input size) with captions of what that one frame shows ("a photo of a small
red triangle pointing north on the left near the top"), never motion or time. The loss is CLIP's symmetric
contrastive loss (captions that are equal count as matches). The output is an OpenAI-format state dict,
loadable as `network.arch: PATH`; a JSON file beside it holds the settings and the zero-shot retrieval
accuracy on held-out pairs. Done once: a second call with the same settings only prints the stored report.

Captions are at most 20 tokens, so the text tower trains on a 24-token context (the causal text
transformer gives the same end-of-text features as with 77) and is saved with OpenAI's 77 positions.
The image embedding is rescaled to a mean norm of --embed-norm on the held-out stills (cosines do not
change): the video header adds 0.02-scale frame position embeddings to these embeddings, which an
embedding norm in the tens would drown.
"""
import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from clip import arch_folder_name, tokenize  # noqa: E402
from clip.architectures import architecture  # noqa: E402
from clip.model import CLIP  # noqa: E402
from datasets.synthetic import HEIGHT, WIDTH, describe_still, random_still, render_still  # noqa: E402
from datasets.transforms import normalize_on_device  # noqa: E402
from utils.distributed import run_program  # noqa: E402
from workflows.options import ProgramParser  # noqa: E402

logger = logging.getLogger(__name__)
DEFAULT_ARCH = "RN-Tiny"


def default_out(arch: str) -> Path:
    """Where stage 1 writes an architecture's CLIP by default: the demo configs name these files."""
    return Path(".cache/demo_clip") / f"{arch_folder_name(arch)}-synthetic.pt"


DEFAULT_OUT = default_out(DEFAULT_ARCH)  # configs/demo/demo.yaml's network.arch
TRAIN_CONTEXT = 24
SPLITS = {"train": 0, "heldout": 1}


def parse_args(argv=None):
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path,
                        help=f"state dict to write (default: .cache/demo_clip/ARCH-synthetic.pt, {DEFAULT_OUT} for RN-Tiny)")
    parser.add_argument("--arch", default=DEFAULT_ARCH,
                        help="small architecture to pretrain: RN-Tiny or ViT-Tiny/4 (default: %(default)s)")
    parser.add_argument("--size", type=int, default=32, help="image size, the demo's data.input_size (default: 32)")
    parser.add_argument("--train-pairs", type=int, default=19200, help="training stills (default: %(default)s)")
    parser.add_argument("--heldout-pairs", type=int, default=512, help="held-out stills (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128, help="(default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=2, help="passes over the training stills (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--embed-norm", type=float, default=1.0,
                        help="mean image-embedding norm of the saved model (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="pretrain again even if --out is up to date")
    args = parser.parse_args(argv)
    args.out = args.out or default_out(args.arch)
    return args


def settings_of(args) -> dict:
    return {"arch": args.arch, "size": args.size, "train_pairs": args.train_pairs,
            "heldout_pairs": args.heldout_pairs, "batch_size": args.batch_size, "epochs": args.epochs,
            "lr": args.lr, "embed_norm": args.embed_norm, "seed": args.seed, "train_context": TRAIN_CONTEXT}


def report_path(out: Path) -> Path:
    return out.with_suffix(".json")


def _still(seed, split, index, size):
    """One still at `size`x`size` (short side resized, then a random horizontal crop) and its caption."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    params, state = random_still(rng)
    scaled_width = round(WIDTH * size / HEIGHT)
    offset = int(rng.integers(scaled_width - size + 1))
    frame = torch.from_numpy(render_still(params, state)).permute(2, 0, 1)
    frame = v2.functional.resize(frame, size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    left = offset * HEIGHT / size
    return frame[:, :, offset:offset + size], describe_still(params, state, left=left, right=left + HEIGHT)


def captioned_stills(seed, split, count, size):
    """uint8 images [count, 3, size, size] and their captions; each depends only on (seed, split, index)."""
    with ThreadPoolExecutor(os.cpu_count()) as pool:  # numpy and the resize release the GIL
        pairs = list(pool.map(lambda index: _still(seed, split, index, size), range(count)))
    return torch.stack([image for image, _ in pairs]), [caption for _, caption in pairs]


def caption_groups(captions):
    """Integer id per caption; equal captions share an id (they are all correct matches)."""
    ids = {}
    return torch.tensor([ids.setdefault(caption, len(ids)) for caption in captions])


def contrastive_loss(image_features, text_features, logit_scale, groups):
    """CLIP's symmetric cross-entropy, with the target spread over the pairs whose captions are equal."""
    logits = logit_scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).t()
    targets = (groups[:, None] == groups[None, :]).float()
    targets /= targets.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2


def build_training_model(arch, size):
    """The architecture at `size` pixels with a short text context (see the module docstring)."""
    config = dataclasses.replace(architecture(arch), image_resolution=size, context_length=TRAIN_CONTEXT)
    return CLIP(config)


def train(model, images, tokens, groups, args):
    """AdamW with a linear warmup over the first tenth of the steps, then cosine decay to zero."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1)
    steps_per_epoch = len(images) // args.batch_size
    total = steps_per_epoch * args.epochs
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min((step + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * max(step + 1 - warmup, 0) / max(total - warmup, 1)))))
    generator = torch.Generator().manual_seed(args.seed)
    started = time.monotonic()
    model.train()
    for epoch in range(args.epochs):
        order = torch.randperm(len(images), generator=generator)
        for step in range(steps_per_epoch):
            batch = order[step * args.batch_size:(step + 1) * args.batch_size]
            loss = contrastive_loss(model.encode_image(normalize_on_device(images[batch])),
                                    model.encode_text(tokens[batch]), model.logit_scale.exp(), groups[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            if step % 20 == 0 or step + 1 == steps_per_epoch:
                logger.info("epoch %d step %d/%d: loss %.3f (%.0f s)", epoch, step + 1, steps_per_epoch, loss.item(),
                            time.monotonic() - started)


@torch.no_grad()
def retrieval_accuracy(model, images, captions) -> dict:
    """Zero-shot retrieval on held-out pairs: each image against every distinct held-out caption (top-1,
    top-5), and each distinct caption against every image (top-1 is right when its image has that caption)."""
    model.eval()
    distinct = sorted(set(captions))
    groups = torch.tensor([distinct.index(caption) for caption in captions])
    image_features = F.normalize(model.encode_image(normalize_on_device(images)), dim=-1)
    text_features = F.normalize(model.encode_text(tokenize(distinct, context_length=model.context_length)), dim=-1)
    similarity = image_features @ text_features.t()
    top5 = similarity.topk(min(5, len(distinct)), dim=1).indices
    return {
        "distinct_captions": len(distinct),
        "image_to_text_top1": (top5[:, 0] == groups).float().mean().item(),
        "image_to_text_top5": (top5 == groups[:, None]).any(dim=1).float().mean().item(),
        "text_to_image_top1": (groups[similarity.argmax(dim=0)] == torch.arange(len(distinct))).float().mean().item(),
        "chance_image_to_text_top1": 1 / len(distinct),
    }


@torch.no_grad()
def rescale_image_embedding(model, images, target_norm) -> float:
    """Scales the image tower's last projection so the mean embedding norm is `target_norm`; returns the
    norm before. Only lengths change, so every cosine similarity stays the same."""
    model.eval()
    norm = model.encode_image(normalize_on_device(images)).norm(dim=-1).mean().item()
    projection = model.visual.proj if hasattr(model.visual, "proj") else model.visual.attnpool.c_proj
    for tensor in ([projection] if isinstance(projection, torch.Tensor) else projection.parameters()):
        tensor.mul_(target_norm / norm)
    return norm


def openai_state_dict(model, seed) -> dict:
    """The weights with OpenAI's 77 text positions: rows past the training context get CLIP's initial
    N(0, 0.01) values (they only ever reach padding after the end-of-text token)."""
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    trained = state["positional_embedding"]
    extra = torch.randn(77 - len(trained), trained.shape[1], generator=torch.Generator().manual_seed(seed)) * 0.01
    state["positional_embedding"] = torch.cat([trained, extra])
    return state


def pretrain(args) -> dict:
    torch.manual_seed(args.seed)
    started = time.monotonic()
    images, captions = captioned_stills(args.seed, "train", args.train_pairs, args.size)
    heldout_images, heldout_captions = captioned_stills(args.seed, "heldout", args.heldout_pairs, args.size)
    logger.info("%d training stills (%d distinct captions) rendered in %.1f s", len(images), len(set(captions)),
                time.monotonic() - started)
    model = build_training_model(args.arch, args.size)
    train(model, images, tokenize(captions, context_length=TRAIN_CONTEXT), caption_groups(captions), args)
    metrics = retrieval_accuracy(model, heldout_images, heldout_captions)
    metrics["image_embedding_norm_before_rescaling"] = rescale_image_embedding(model, heldout_images,
                                                                               args.embed_norm)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".part")
    torch.save(openai_state_dict(model, args.seed), partial)
    os.replace(partial, args.out)
    report = {"settings": settings_of(args), "heldout_retrieval": metrics,
              "seconds": round(time.monotonic() - started, 1)}
    report_path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return report


def up_to_date(args) -> dict:
    """The stored report when --out exists and was made with these settings, else None."""
    path = report_path(args.out)
    if not (args.out.is_file() and path.is_file()):
        return None
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return report if report.get("settings") == settings_of(args) else None


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = None if args.force else up_to_date(args)
    if report:
        logger.info("stage 1: %s is up to date (delete it or pass --force to pretrain again)", args.out)
    else:
        report = pretrain(args)
    metrics = report["heldout_retrieval"]
    logger.info("stage-1 CLIP %s: held-out retrieval over %d distinct captions: image->text top-1 %.1f%% "
                "top-5 %.1f%%, text->image top-1 %.1f%% (chance %.1f%%)", args.out, metrics["distinct_captions"],
                100 * metrics["image_to_text_top1"], 100 * metrics["image_to_text_top5"],
                100 * metrics["text_to_image_top1"], 100 * metrics["chance_image_to_text_top1"])


if __name__ == "__main__":
    run_program(main)
