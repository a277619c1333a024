"""The video-to-text (attributes) branch: attribute generation, the branch's training and scores, fusion.

- Generation: every video of a list is scored against a lexicon of phrases (prompted like class names) by
  a retriever, a VideoEncoder + VideoHeader pair: zero-shot CLIP with the plain header ("None"/"DP": mean
  of the frame embeddings, normalised, cosine with each phrase) or a trained BIKE model with its own
  header. The top-k phrases and their cosine similarities are written in the original JSON layout
  (datasets/attributes.py); finished chunks of videos are logged as they come, so an interrupted run
  resumes where it stopped.
- Branch: the attribute sentence's frozen CLIP text feature is matched with the class prompts' features
  by the AttributesHead, trained with the symmetric NCE loss; its scores are a softmax over the classes
  of the head's cosine similarities (no logit scale), as the video branch's.
- Fusion: a weighted sum of the two branches' class probabilities (default 0.7 video, 0.3 attributes).
"""
import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from clip.model import build_model, load_weights
from clip.weights import strip_module_prefix
from datasets.annotations import load_class_names
from datasets.attributes import (ATTRIBUTES_KEY, DEFAULT_TOPK, SCORES_KEY, AttributesDataset, AttributesError,
                                 read_attributes, write_attributes)
from datasets.transforms import normalize_on_device
from modules import AttributesHead, text_prompt
from modules.video_clip import VideoEncoder, class_features
from utils.checkpoint import HEADER_KEY, read_attributes_checkpoint, read_checkpoint
from utils.config import ConfigError
from utils.errors import UnusableFileError
from utils.distributed import all_gather_no_grad, barrier, gather_to_main, world_size as world_size_of_group
from utils.evaluation import ShardSampler, evaluation_loader, gather_in_list_order, score_metrics
from utils.logger import Progress, epoch_label
from utils.losses import symmetric_loss

logger = logging.getLogger(__name__)

ATTRIBUTES_HEAD_KEY = "attributes_head_state_dict"  # checkpoint key of the head, beside the usual layout
DEFAULT_FUSION_WEIGHTS = (0.7, 0.3)  # video, attributes (the paper's)
CLASS_LEXICON = "classes"
SENTENCE_BATCH = 256  # sentences per text-encoder batch
PHRASE_CHUNK = 1024  # phrases scored at once (VCS memory grows with batch x phrases x 77 x frames)


# ----------------------------------------------------------------------------------------------------
# Generation

def read_lexicon(sources, class_names) -> list:
    """The phrases of several lexicons, in order, each phrase once.

    A source is 'classes' (the dataset's class names), a `.csv` labels file (`id,name`) or a text file
    with one phrase per line.
    """
    phrases = []
    for source in sources:
        if source == CLASS_LEXICON:
            phrases += list(class_names)
        elif not Path(source).is_file():
            raise FileNotFoundError(f"lexicon {source} does not exist (give '{CLASS_LEXICON}', a labels CSV "
                                    "or a text file with one phrase per line)")
        elif str(source).lower().endswith(".csv"):
            phrases += load_class_names(source)
        else:
            lines = Path(source).read_text(encoding="utf-8-sig").splitlines()
            phrases += [line.strip() for line in lines if line.strip()]
    phrases = list(dict.fromkeys(phrases))
    if not phrases:
        raise UnusableFileError(f"the lexicons {list(sources)} hold no phrases")
    return phrases


@torch.no_grad()
def phrase_similarity(encoder, header, views, phrase_eot, phrase_tokens) -> torch.Tensor:
    """Cosine similarities [B, P] of clips with several views [B, V, T, 3, H, W] and P phrases, averaged
    over the views."""
    batch, num_views = views.shape[:2]
    frames = encoder.encode_video(views.flatten(0, 1))
    parts = [header(frames, phrase_tokens[i:i + PHRASE_CHUNK], phrase_eot[i:i + PHRASE_CHUNK]).float()
             for i in range(0, len(phrase_eot), PHRASE_CHUNK)]
    return torch.cat(parts, dim=1).view(batch, num_views, -1).mean(dim=1)


def _part_files(output: Path) -> list:
    return sorted(output.parent.glob(f"{output.name}.part*"))


class ChunkLog:
    """A process's finished chunks, appended to `<output>.part<rank>of<world>` as one JSON line each.

    Appending costs only the new chunk (rewriting the whole file every chunk would be quadratic), and a
    chunk is either complete or, when a kill interrupted its line, ignored when read back.
    """

    def __init__(self, output: Path, rank: int, world_size: int):
        self.path = output.with_name(f"{output.name}.part{rank}of{world_size}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.needs_newline = self.path.exists() and not self.path.read_bytes().endswith(b"\n")

    def append(self, entries: dict):
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(("\n" if self.needs_newline else "") + json.dumps(entries, ensure_ascii=False) + "\n")
            file.flush()
            os.fsync(file.fileno())
        self.needs_newline = False

    @staticmethod
    def read(path: Path) -> dict:
        entries = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                entries.update(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("%s:%d: ignoring a chunk whose saving was interrupted", path, number)
        return entries


def _done_entries(output: Path, videos: dict) -> dict:
    """Entries already made: the output file and the chunk logs of interrupted runs."""
    done = read_attributes(output) if output.exists() else {}
    for part in _part_files(output):
        done.update(ChunkLog.read(part))
    unknown = [video for video in done if video not in videos]
    if unknown:
        raise AttributesError(f"{output} holds attributes of {len(unknown)} videos that are not in the list "
                              f"(e.g. {unknown[0]!r}); write to another --output")
    return done


def _batches(chunks: list, videos: dict, batch_size: int):
    """Dataset-index batches that never cross a chunk, and whether each one ends its chunk."""
    batches, ends = [], []
    for chunk in chunks:
        for start in range(0, len(chunk), batch_size):
            batches.append([videos[video] for video in chunk[start:start + batch_size]])
            ends.append(start + batch_size >= len(chunk))
    return batches, ends


@torch.no_grad()
def generate_attributes(encoder, header, dataset, phrases, output, *, topk=5, batch_size=8, workers=0, device="cpu",
                        autocast=contextlib.nullcontext, save_every=256, rank=0, world_size=1, progress=True):
    """Writes the top-`topk` phrases of every video of `dataset` (an evaluation-mode VideoDataset) to `output`.

    Videos are split, in list order, into chunks of `save_every`; chunk c goes to process c mod
    `world_size`, and each finished chunk is saved to the process's ChunkLog. The processes' entries
    reach rank 0 through the process group (nodes need not share a file system), which writes `output`
    (atomically, keys in list order, repeated paths once); then the logs are removed. Videos already in
    `output` or in logs are skipped, and since batches never cross chunks, a resumed run computes
    exactly the batches an uninterrupted one would: the file comes out the same. Returns the entries
    (on rank 0; None elsewhere). Without a process group, `rank` and `world_size` only pick the share,
    and rank 0 reads the others' shares from their logs.
    """
    output = Path(output)
    videos = {}  # path -> index of its first occurrence in the dataset, in list order
    for index, record in enumerate(dataset.records):
        videos.setdefault(record.path, index)
    done = _done_entries(output, videos)
    log, chunk_entries = ChunkLog(output, rank, world_size), {}
    keys = list(videos)
    chunks = [keys[start:start + save_every] for start in range(0, len(keys), save_every)]
    my_chunks = [chunks[c] for c in ShardSampler(len(chunks), rank, world_size)]
    mine = [[video for video in chunk if video not in done] for chunk in my_chunks]
    batches, ends = _batches([chunk for chunk in mine if chunk], videos, batch_size)
    logger.info("%s: %d of %d videos done; this process scores %d against %d phrases", output, len(done),
                len(keys), sum(map(len, batches)), len(phrases))

    with autocast():
        prompts = text_prompt(phrases, tokenizer=encoder.tokenize).to(device)
        phrase_eot, phrase_tokens = class_features(encoder, prompts)
    topk = min(topk, len(phrases))
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                        pin_memory=torch.device(device).type == "cuda")
    bar = Progress(loader, len(batches), "attributes", bars=progress)
    for batch, ((views, _), ends_chunk) in enumerate(zip(bar, ends)):
        with autocast():
            similarity = phrase_similarity(encoder, header, normalize_on_device(views, device), phrase_eot,
                                           phrase_tokens)
        scores, indices = similarity.cpu().topk(topk, dim=1)
        for index, row_scores, row_indices in zip(batches[batch], scores.tolist(), indices.tolist()):
            chunk_entries[dataset.records[index].path] = {ATTRIBUTES_KEY: [phrases[i] for i in row_indices],
                                                          SCORES_KEY: [round(s, 6) for s in row_scores]}
        if ends_chunk:
            log.append(chunk_entries)
            done.update(chunk_entries)
            chunk_entries = {}
        bar.update()
    shares = gather_to_main({video: done[video] for chunk in my_chunks for video in chunk if video in done})
    if rank != 0:
        barrier()  # until rank 0 has written `output`: only then is this process's log no longer needed
        if world_size_of_group() > 1:
            log.path.unlink(missing_ok=True)
        return None
    entries = _done_entries(output, videos)
    for share in shares:
        entries.update(share)
    missing = [video for video in keys if video not in entries]
    if missing:
        raise AttributesError(f"{output}: {len(missing)} videos have no attributes after generation "
                              f"(e.g. {missing[0]!r}); the other processes' logs {output.name}.part*of{world_size} "
                              f"were not found in {output.parent}")
    entries = {video: entries[video] for video in keys}
    write_attributes(entries, output)
    for part in _part_files(output):
        part.unlink()
    barrier()
    return entries


# ----------------------------------------------------------------------------------------------------
# The branch: frozen text features, the head's training pass, its scores

@torch.no_grad()
def sentence_features(encoder, dataset, batch_size, workers, device, autocast, rank=0, replicas=1):
    """Normalised CLIP text features [n, D] (float32) and labels [n] of this process's share of an
    AttributesDataset (items rank, rank + replicas, ...)."""
    features, labels = [], []
    loader = evaluation_loader(dataset, batch_size, workers, rank, replicas,
                               pin_memory=torch.device(device).type == "cuda")
    for tokens, label in loader:
        with autocast():
            features.append(F.normalize(encoder.clip.encode_text(tokens.to(device)).float(), dim=-1))
        labels.append(label.to(device))
    if not features:  # more processes than sentences
        return (torch.zeros(0, encoder.clip.config.embed_dim, device=device),
                torch.zeros(0, dtype=torch.long, device=device))
    return torch.cat(features), torch.cat(labels)


def all_sentence_features(encoder, dataset, workers, ctx, autocast):
    """`sentence_features` of a whole AttributesDataset in list order, on every process (each encodes its share)."""
    features, labels = sentence_features(encoder, dataset, SENTENCE_BATCH, workers, ctx.device, autocast, ctx.rank,
                                         ctx.world_size)
    return gather_in_list_order(features, len(dataset)), gather_in_list_order(labels, len(dataset))


@torch.no_grad()
def prompt_features(encoder, class_names, device, autocast) -> torch.Tensor:
    """Normalised CLIP text features [C, D] (float32) of the class prompts."""
    with autocast():
        prompts = text_prompt(class_names, tokenizer=encoder.tokenize).to(device)
        return F.normalize(encoder.clip.encode_text(prompts).float(), dim=-1)


@torch.no_grad()
def attribute_scores(head, sentences: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Class probabilities [N, C]: softmax over the head's cosine similarities (no logit scale)."""
    head.eval()
    return head(classes, sentences).float().softmax(dim=-1)


def attributes_step_loss(head, sentences, labels, classes, logit_scale, loss_type) -> torch.Tensor:
    """The symmetric loss of the batch gathered from every process: each sentence against the class
    prompts of the batch's labels (the original's formulation)."""
    sentences, labels = all_gather_no_grad(sentences), all_gather_no_grad(labels)
    return symmetric_loss(logit_scale * head(classes[labels], sentences), labels, loss_type)


class AttributesBranch:
    """The attributes branch while training.

    The text tower gives the features of the attribute sentences and class prompts without gradients;
    they are computed once when it is frozen (`frozen_text`), otherwise again before every use, so that
    they always match the text tower a checkpoint saves. The head (`train_head`: the head, or its
    DistributedDataParallel wrapper) learns from this process's share of the training sentences in a
    pass after each video epoch, with the batches of all processes gathered as the video branch does.
    The logit scale is the CLIP model's, without gradient from this branch.
    """

    def __init__(self, encoder, head, train_head, train_sentences, val_sentences, frozen_text: bool, config,
                 ctx, autocast):
        self.encoder, self.head, self.train_head = encoder, head, train_head
        self.train_sentences, self.val_sentences = train_sentences, val_sentences
        self.frozen_text, self.config, self.ctx, self.autocast = frozen_text, config, ctx, autocast
        self.batch_size = config.data.batch_size
        self.steps = len(train_sentences) // ctx.world_size // self.batch_size
        if self.steps == 0:
            raise ConfigError(f"{config.data.attributes_train_path}: {len(train_sentences)} attribute sentences is "
                              f"fewer than one batch (data.batch_size {self.batch_size} x {ctx.world_size} processes)")
        self._cache = {}

    def _features(self, name):
        if name not in self._cache or not self.frozen_text:
            self.encoder.eval()
            ctx, workers = self.ctx, self.config.data.workers
            if name == "classes":
                value = prompt_features(self.encoder, self.train_sentences.class_names, ctx.device, self.autocast)
            elif name == "train":
                value = sentence_features(self.encoder, self.train_sentences, SENTENCE_BATCH, workers, ctx.device,
                                          self.autocast, ctx.rank, ctx.world_size)
            else:
                value = all_sentence_features(self.encoder, self.val_sentences, workers, ctx, self.autocast)
            self._cache[name] = value
        return self._cache[name]

    def train_epoch(self, optimizer, epoch: int) -> float:
        """One pass over this process's training sentences in an order that depends only on the seed,
        epoch and rank; returns the mean loss."""
        sentences, labels = self._features("train")
        classes = self._features("classes")
        logit_scale = self.encoder.clip.logit_scale.exp().detach().float()
        generator = torch.Generator().manual_seed(self.config.seed + 1000 * epoch + self.ctx.rank)
        order = torch.randperm(len(sentences), generator=generator)[: self.steps * self.batch_size]
        self.train_head.train()
        total = 0.0
        for batch in order.to(sentences.device).view(self.steps, self.batch_size):
            loss = attributes_step_loss(self.train_head, sentences[batch], labels[batch], classes, logit_scale,
                                        self.config.solver.loss_type)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            total += loss.item()
        logger.info("%s: attributes branch mean loss %.4f", epoch_label(epoch, self.config.solver.epochs),
                    total / self.steps)
        return total / self.steps

    def val_scores(self) -> torch.Tensor:
        """Class probabilities [N, C] of the validation sentences, in list order, on the CPU."""
        sentences, _ = self._features("val")
        return attribute_scores(self.head, sentences, self._features("classes")).cpu()


def load_attributes_head(path, embed_dim: int):
    """The AttributesHead that checkpoint `path` holds under ATTRIBUTES_HEAD_KEY, or None when it holds none.

    The file is memory-mapped, so that only the head's tensors are read (the model was loaded already).
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a file in the legacy (non-zip) format cannot be mapped: read it whole
        checkpoint = read_checkpoint(path)
    state = checkpoint.get(ATTRIBUTES_HEAD_KEY)
    if state is None:
        return None
    head = AttributesHead(embed_dim)
    load_weights(head, strip_module_prefix(state), what=f"'{ATTRIBUTES_HEAD_KEY}' of {path}")
    return head


def load_attributes_branch(path, device="cpu"):
    """(VideoEncoder, AttributesHead) of an original `train_attributes.py` checkpoint: the branch encodes
    sentences and class prompts with that file's own CLIP text tower."""
    clip_state, head_state = read_attributes_checkpoint(path)
    time_embedding = clip_state.get("visual.time_embedding")  # present when trained with joint_st
    clip_model = build_model(clip_state, joint_st=time_embedding is not None,
                             num_frames=time_embedding.shape[0] if time_embedding is not None else 8)
    head = AttributesHead(clip_model.config.embed_dim)
    load_weights(head, head_state, what=f"'{HEADER_KEY}' (attributes head) of {path}")
    logger.info("attributes branch from %s", path)
    return VideoEncoder(clip_model).to(device).eval(), head


def fused_evaluation(encoder, weights, config, dataset, video_scores, labels, ctx, autocast,
                     fusion_weights=DEFAULT_FUSION_WEIGHTS, attributes_branch=None):
    """test.py's fused scores: a FusionReport when the config names the attributes of `dataset`'s list
    (data.attributes_val_path) and there is an attributes branch, else None.

    The branch is `attributes_branch` (the (text encoder, head) pair of `load_attributes_branch`: the
    original's separately trained V+A pair) when given, else the head that checkpoint `weights` holds
    beside `encoder` (train_co.py).
    """
    if attributes_branch is not None:
        encoder, head = attributes_branch
    else:
        head = load_attributes_head(weights, encoder.clip.config.embed_dim)
    if head is None:
        return None
    if not config.data.attributes_val_path:
        logger.warning("%s holds an attributes head: set data.attributes_val_path to evaluate fused scores", weights)
        return None
    sentences = AttributesDataset(dataset, config.data.attributes_val_path,
                                  config.data.select_topk_attributes or DEFAULT_TOPK,
                                  getattr(encoder.clip, "tokenizer", None))
    features, _ = all_sentence_features(encoder, sentences, config.data.workers, ctx, autocast)
    classes = prompt_features(encoder, dataset.class_names, ctx.device, autocast)
    scores = attribute_scores(head.to(ctx.device), features, classes).cpu()
    return evaluate_fusion(video_scores, scores, labels, fusion_weights)


# ----------------------------------------------------------------------------------------------------
# Fusion

def fuse_scores(video: torch.Tensor, attributes: torch.Tensor, weights=DEFAULT_FUSION_WEIGHTS) -> torch.Tensor:
    return weights[0] * video + weights[1] * attributes


@dataclass
class FusionReport:
    """Top-1/top-5 of each branch, of the fusion with the chosen weights, and of the best video weight
    (attributes weight 1 - w) of a grid on this set."""

    video: object
    attributes: object
    fused: object
    weights: tuple
    best_weight: float
    best: object

    def summary(self) -> str:
        w_video, w_attributes = self.weights
        return "\n".join([
            f"video branch: {self.video.summary()}",
            f"attributes branch: {self.attributes.summary()}",
            f"fused ({w_video:g} video + {w_attributes:g} attributes): {self.fused.summary()}",
            f"best weights on this set ({self.best_weight:g} video + {1 - self.best_weight:g} attributes): "
            f"{self.best.summary()}",
        ])


def evaluate_fusion(video_scores, attributes_scores, labels, weights=DEFAULT_FUSION_WEIGHTS,
                    grid_steps: int = 10) -> FusionReport:
    """Metrics of both branches and their fusion; the grid tries video weights 0, 1/grid_steps, ..., 1
    and keeps the best top-1 (ties: the better top-5, then the first)."""
    if video_scores.shape != attributes_scores.shape:
        raise ValueError(f"video scores {tuple(video_scores.shape)} and attribute scores "
                         f"{tuple(attributes_scores.shape)} do not match")
    grid = []
    for step in range(grid_steps + 1):
        weight = step / grid_steps
        result = score_metrics(fuse_scores(video_scores, attributes_scores, (weight, 1 - weight)), labels)
        grid.append((result.top1, result.top5, -step, weight, result))
    *_, best_weight, best = max(grid, key=lambda item: item[:3])
    return FusionReport(score_metrics(video_scores, labels), score_metrics(attributes_scores, labels),
                        score_metrics(fuse_scores(video_scores, attributes_scores, weights), labels),
                        tuple(weights), best_weight, best)
