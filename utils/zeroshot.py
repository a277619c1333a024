"""Zero-shot protocols: full-class and half-class top-k from per-view logits, and their aggregation.

The half-class protocol (as the original BIKE `test_zeroshot.py`): for each seed 0..9, numpy's legacy
generator seeded with it permutes the class ids and the first `C // 2` form the subset; only videos whose
label is in the subset count, and their scores are recomputed over the subset alone, i.e. per view a
softmax over the subset's logits, averaged over views. Ten halves give a mean and a population
standard deviation (numpy's `np.std`, as the original).

Logits are kept per "unit" ([N, K, C]: K softmaxes averaged per video) so that restricting the softmax to
any class subset is exact. Two scorings produce them:
- "video" (default): the video header's cosine logits of every view, K = views; with all classes this is
  exactly test.py's score (softmax per view, mean over views).
- "frames": the original script's own computation, which ignores the video header: per frame, 100 x the
  CLIP image embedding (not normalised) . the normalised class embedding, K = views x frames. Use it to
  reproduce the published half-class numbers; the original prints its full-class line from it too.
One difference from the original remains: its subset drops selected classes that have no video in the list
(they cannot be predicted then); here the subset is always the selected half, which changes nothing when
every class has a video, as in the shipped zero-shot lists.
"""
import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from utils.distributed import world_size
from utils.evaluation import gather_in_list_order, predict
from utils.metrics import topk_accuracy

SCORINGS = ("video", "frames")
HALF_CLASS_SEEDS = tuple(range(10))
ORIGINAL_FRAME_LOGIT_SCALE = 100.0


def averaged_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities [N, C] from logits [N, K, C]: a softmax per unit, averaged over the K units."""
    return logits.float().softmax(dim=-1).mean(dim=1)


def original_frame_logits(frames: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The original half-class scoring's logits [B, T, C] of frame embeddings [B, T, D] (in fp32)."""
    with torch.autocast(frames.device.type, enabled=False):
        return ORIGINAL_FRAME_LOGIT_SCALE * frames.float() @ F.normalize(classes.float(), dim=-1).t()


class LogitRecorder(nn.Module):
    """Stands in for the video header inside `utils.evaluation.predict` and keeps each batch's logits.

    `predict` still gets the header's logits (and turns them into test.py's scores); the recorder keeps,
    per video, the logits of `scoring` as [B, K, C] on the CPU, in this process's loader order.
    """

    def __init__(self, header: nn.Module, views: int, scoring: str):
        super().__init__()
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
        self.header, self.views, self.scoring = header, views, scoring
        self.batches = []

    def forward(self, frames: torch.Tensor, tokens: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        logits = self.header(frames, tokens, classes)
        kept = logits if self.scoring == "video" else original_frame_logits(frames, classes)
        self.batches.append(kept.float().reshape(kept.shape[0] // self.views, -1, kept.shape[-1]).cpu())
        return logits


def units_per_video(config, views: int, scoring: str) -> int:
    """K: how many softmaxes a video's score averages (the image encoder embeds a joint space-time clip
    as one frame)."""
    if scoring == "video":
        return views
    return views * (1 if config.network.joint_st else config.data.num_segments * config.data.seg_length)


def predict_logits(encoder, header, loader, class_eot, class_tokens, device, autocast, *, views: int,
                   units: int, scoring: str = "video", progress: bool = True):
    """Logits [N, K, C] (K = `units`) and labels of the loader's dataset in list order, over all processes.

    `views` is the number of views per video the loader yields (test clips x crops).
    """
    recorder = LogitRecorder(header, views, scoring)
    _, labels = predict(encoder, recorder, loader, class_eot, class_tokens, device, autocast, progress)
    if recorder.batches:
        local = torch.cat(recorder.batches)
    else:  # more processes than videos
        local = torch.zeros(0, units, class_eot.shape[0])
    gather_device = device if world_size() > 1 and device.type == "cuda" else "cpu"
    return gather_in_list_order(local.to(gather_device), len(loader.dataset)).cpu(), labels


def half_class_subset(num_classes: int, seed: int) -> torch.Tensor:
    """The sorted class ids of the half-class split `seed` (`num_classes // 2` of them)."""
    if num_classes < 2:
        raise ValueError(f"the half-class protocol needs at least 2 classes, got {num_classes}")
    chosen = np.random.RandomState(seed).permutation(num_classes)[: num_classes // 2]
    return torch.from_numpy(np.sort(chosen))


def subset_topk(logits: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor, ks=(1, 5)) -> list:
    """Top-k accuracies (%) over the videos labelled with one of `classes` (sorted ids), scored over those
    classes only: the softmax of every unit is taken over the subset's logits."""
    keep = torch.isin(labels, classes)
    if not keep.any():
        raise ValueError(f"none of the {len(labels)} videos belongs to the class subset {classes.tolist()}")
    scores = averaged_softmax(logits[keep][:, :, classes])
    return topk_accuracy(scores, torch.searchsorted(classes, labels[keep]), ks)


@dataclass(frozen=True)
class MeanStd:
    mean: float
    std: float  # population standard deviation (numpy's default), as the original reports it

    @classmethod
    def of(cls, values: Sequence[float]) -> "MeanStd":
        return cls(statistics.fmean(values), statistics.pstdev(values))


@dataclass(frozen=True)
class ZeroShotResult:
    top1: float
    top5: float
    half_top1: MeanStd
    half_top5: MeanStd

    def summary(self) -> str:
        return (f"Full-classes: Top1 {self.top1:.3f}% Top5 {self.top5:.3f}%\n"
                f"Half-classes: Top1 mean {self.half_top1.mean:.3f}% std {self.half_top1.std:.3f}%, "
                f"Top5 mean {self.half_top5.mean:.3f}% std {self.half_top5.std:.3f}%")


def zero_shot_result(logits: torch.Tensor, labels: torch.Tensor, seeds=HALF_CLASS_SEEDS) -> ZeroShotResult:
    """Full-class top-1/top-5 and the half-class protocol's mean and std over `seeds`."""
    if labels.dim() != 1:
        raise ValueError("zero-shot protocols need single-label data (one class id per video), "
                         f"got labels of shape {tuple(labels.shape)}")
    num_classes = logits.shape[-1]
    top1, top5 = subset_topk(logits, labels, torch.arange(num_classes))
    halves = [subset_topk(logits, labels, half_class_subset(num_classes, seed)) for seed in seeds]
    return ZeroShotResult(top1, top5, MeanStd.of([h[0] for h in halves]), MeanStd.of([h[1] for h in halves]))


def splits_summary(results: Sequence[ZeroShotResult]) -> str:
    """Full-class mean and std over several label/list splits (Kinetics-600's three 160-class splits)."""
    top1, top5 = MeanStd.of([r.top1 for r in results]), MeanStd.of([r.top5 for r in results])
    return (f"Splits ({len(results)}): Full-classes: Top1 mean {top1.mean:.3f}% std {top1.std:.3f}%, "
            f"Top5 mean {top5.mean:.3f}% std {top5.std:.3f}%")
