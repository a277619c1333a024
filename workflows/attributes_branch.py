"""The attributes branch: the attribute sentence's frozen CLIP text feature is matched with the class
prompts' features by the AttributesHead, trained with the symmetric NCE loss; its scores are a softmax over
the classes of the head's cosine similarities (no logit scale), as the video branch's. Also loads the
branch from a train_co.py checkpoint or an original train_attributes.py file, and gives test.py's fused scores.
"""
import logging
import math

import torch
import torch.nn.functional as F

from clip.model import build_model, load_weights
from clip.weights import strip_module_prefix
from datasets.attributes import DEFAULT_TOPK, AttributesDataset
from modules import AttributesHead, text_prompt
from modules.video_clip import VideoEncoder
from utils.checkpoint import HEADER_KEY, read_attributes_checkpoint, read_checkpoint
from utils.config import ConfigError
from utils.distributed import all_gather_no_grad
from utils.logger import Progress, epoch_label
from utils.losses import symmetric_loss
from workflows.evaluation import evaluation_loader, gather_in_list_order, score_metrics
from workflows.fusion import DEFAULT_FUSION_WEIGHTS, evaluate_fusion
from workflows.training import step_optimizer

logger = logging.getLogger(__name__)

ATTRIBUTES_HEAD_KEY = "attributes_head_state_dict"  # checkpoint key of the head, beside the usual layout
SENTENCE_BATCH = 256  # sentences per text-encoder batch


@torch.no_grad()
def sentence_features(encoder, dataset, batch_size, workers, device, autocast, rank=0, replicas=1):
    """Normalised CLIP text features [n, D] (float32) and labels [n] of this process's share of an
    AttributesDataset (items rank, rank + replicas, ...)."""
    features, labels = [], []
    loader = evaluation_loader(dataset, batch_size, workers, rank, replicas, device)
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
    return symmetric_loss((logit_scale * head(classes[labels], sentences)).float(), labels, loss_type)


class AttributesBranch:
    """The attributes branch while training.

    The text tower gives the features of the attribute sentences and class prompts without gradients;
    they are computed once when it is frozen (`frozen_text`), otherwise again before every use, so that
    they always match the text tower a checkpoint saves. The head (`train_head`: the head, or its
    DistributedDataParallel wrapper) learns from this process's share of the training sentences, with the
    batches of all processes gathered as the video branch does, together with CLIP's logit scale (every
    process computes the same loss of the gathered batch, so its gradient is the same on every rank).
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

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps of one pass (the last, incomplete accumulation group is stepped too)."""
        return math.ceil(self.steps / self.config.solver.grad_accumulation_steps)

    def train_epoch(self, optimizer, epoch: int, scheduler=None, scaler=None, batches_done: int = 0,
                    after_step=None) -> float:
        """One pass over this process's training sentences in an order that depends only on the seed,
        epoch and rank; returns the mean loss. The head and CLIP's logit scale learn (the latter when the
        optimizer holds it), under the run's autocast; `scheduler` is stepped after every optimizer step
        (None: the rates stay as they are), `scaler` scales the loss under amp. `batches_done` and
        `after_step` as in `workflows.training.train_one_epoch`: the pass leaves out the batches an
        interrupted run did, and calls `after_step(epoch, batches_done, batches)` after each optimizer step."""
        sentences, labels = self._features("train")
        classes = self._features("classes")
        accumulation = self.config.solver.grad_accumulation_steps
        generator = torch.Generator().manual_seed(self.config.seed + 1000 * epoch + self.ctx.rank)
        order = torch.randperm(len(sentences), generator=generator)[: self.steps * self.batch_size]
        self.train_head.train()
        total = 0.0
        label = f"{epoch_label(epoch, self.config.solver.epochs)} attributes"
        batches = order.to(sentences.device).view(self.steps, self.batch_size)[batches_done:]
        progress = Progress(batches, self.steps, label, self.config.logging.print_freq, bars=False, done=batches_done)
        for step, batch in enumerate(progress, start=batches_done):
            group_size = min(accumulation, self.steps - step // accumulation * accumulation)
            with self.autocast():
                logit_scale = self.encoder.clip.logit_scale.exp()
                loss = attributes_step_loss(self.train_head, sentences[batch], labels[batch], classes, logit_scale,
                                            self.config.solver.loss_type)
            (scaler.scale(loss / group_size) if scaler else loss / group_size).backward()
            optimizer_step = (step + 1) % accumulation == 0 or step + 1 == self.steps
            if optimizer_step:
                step_optimizer(optimizer, scaler)
                if scheduler is not None:
                    scheduler.step()
            total += loss.item()
            progress.update(loss=loss.item(), lr=optimizer.param_groups[-1]["lr"])
            if optimizer_step and after_step is not None:
                after_step(epoch, step + 1, self.steps)
        done = max(self.steps - batches_done, 1)
        logger.info("%s: attributes branch mean loss %.4f", epoch_label(epoch, self.config.solver.epochs),
                    total / done)
        return total / done

    def val_scores(self) -> torch.Tensor:
        """Class probabilities [N, C] of the validation sentences, in list order, on the CPU."""
        sentences, _ = self._features("val")
        return attribute_scores(self.head, sentences, self._features("classes")).cpu()

    def validate(self):
        """The EvaluationResult (top-1/top-5) of the branch on the validation sentences."""
        return score_metrics(self.val_scores(), self._features("val")[1].cpu())


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
