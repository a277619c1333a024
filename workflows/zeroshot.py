"""Zero-shot protocols: full-class and half-class top-k from per-unit logits, and their aggregation.

The published protocol is the original BIKE `test_zeroshot.py`'s. Half classes: for each seed 0..9,
numpy's legacy generator seeded with it permutes the class ids and the first `C // 2` are selected; the
videos whose label is selected count, and the subset is the selected classes that have such a video (the
original's `np.unique` of their labels). Scores are recomputed over the subset alone, i.e. per unit a
softmax over the subset's logits, averaged over the units. Ten halves give a mean and a population
standard deviation (numpy's `np.std`, as the original).

Logits are kept per "unit" ([N, K, C]: K softmaxes averaged per video) so that restricting the softmax to
any class subset is exact. Two scorings produce them:
- "frames" (default, the published protocol): the original script's computation, which ignores the video
  header: per frame, 100 x the CLIP image embedding (not normalised) . the normalised class embedding,
  K = views x frames. The original prints both its full- and half-class figures from it.
- "video": the video header's cosine logits of every view, K = views; with all classes this is exactly
  test.py's score (softmax per view, mean over views). Not what the paper reports, so its lines carry
  other labels (`VIDEO_LABELS`).
"""
import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from utils.distributed import world_size
from utils.errors import UsageError
from workflows.evaluation import gather_in_list_order, predict
from utils.metrics import topk_accuracy

SCORINGS = ("frames", "video")  # the first is the default, the published protocol
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
    """Stands in for the video header inside `workflows.evaluation.predict` and keeps each batch's logits.

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
                   units: int, scoring: str = SCORINGS[0], progress: bool = True):
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
    """The sorted class ids selected by the half-class split `seed` (`num_classes // 2` of them)."""
    if num_classes < 2:
        raise UsageError(f"the half-class protocol needs at least 2 classes, got {num_classes}")
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


PUBLISHED_LABELS = ("Full-classes", "Half-classes")  # the original script's protocol (scoring "frames")
VIDEO_LABELS = ("Video-level scores, all classes", "Video-level scores, half classes")  # not the paper's


def line_labels(scoring: str) -> tuple:
    """The (full, half) line labels of a scoring: only the published protocol prints Full-/Half-classes."""
    return PUBLISHED_LABELS if scoring == SCORINGS[0] else VIDEO_LABELS


@dataclass(frozen=True)
class ZeroShotResult:
    top1: float
    top5: float
    half_top1: MeanStd
    half_top5: MeanStd

    def summary(self, scoring: str = SCORINGS[0]) -> str:
        full, half = line_labels(scoring)
        return (f"{full}: Top1 {self.top1:.3f}% Top5 {self.top5:.3f}%\n"
                f"{half}: Top1 mean {self.half_top1.mean:.3f}% std {self.half_top1.std:.3f}%, "
                f"Top5 mean {self.half_top5.mean:.3f}% std {self.half_top5.std:.3f}%")


def zero_shot_result(logits: torch.Tensor, labels: torch.Tensor, seeds=HALF_CLASS_SEEDS) -> ZeroShotResult:
    """Full-class top-1/top-5 and the half-class protocol's mean and std over `seeds`; a half's subset is
    its selected classes that label at least one video, as in the original."""
    if labels.dim() != 1:
        raise UsageError("zero-shot protocols need single-label data (one class id per video), "
                         f"got labels of shape {tuple(labels.shape)}")
    num_classes = logits.shape[-1]
    top1, top5 = subset_topk(logits, labels, torch.arange(num_classes))
    subsets = [half_class_subset(num_classes, seed) for seed in seeds]
    halves = [subset_topk(logits, labels, subset[torch.isin(subset, labels)]) for subset in subsets]
    return ZeroShotResult(top1, top5, MeanStd.of([h[0] for h in halves]), MeanStd.of([h[1] for h in halves]))


def splits_summary(results: Sequence[ZeroShotResult], scoring: str = SCORINGS[0]) -> str:
    """Full-class mean and std over several label/list splits (Kinetics-600's three 160-class splits)."""
    top1, top5 = MeanStd.of([r.top1 for r in results]), MeanStd.of([r.top5 for r in results])
    return (f"Splits ({len(results)}): {line_labels(scoring)[0]}: Top1 mean {top1.mean:.3f}% std {top1.std:.3f}%, "
            f"Top5 mean {top5.mean:.3f}% std {top5.std:.3f}%")
