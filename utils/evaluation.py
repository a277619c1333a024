"""Multi-view evaluation: class scores of every video in list order, across any number of processes."""
import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch.utils.data import DataLoader, Sampler

from datasets.transforms import normalize_on_device
from modules.video_clip import view_scores
from utils.distributed import all_gather_no_grad, world_size
from utils.logger import Progress
from utils.metrics import mean_average_precision, topk_accuracy


class ShardSampler(Sampler):
    """Rank r reads items r, r + W, r + 2W, ...: no item twice, none dropped (unlike DistributedSampler)."""

    def __init__(self, size: int, rank: int, num_replicas: int):
        self.size, self.rank, self.num_replicas = size, rank, num_replicas

    def __iter__(self):
        return iter(range(self.rank, self.size, self.num_replicas))

    def __len__(self):
        return len(range(self.rank, self.size, self.num_replicas))


def gather_in_list_order(local: torch.Tensor, total: int) -> torch.Tensor:
    """Reassembles per-rank results of a `ShardSampler` split into the dataset's order."""
    replicas = world_size()
    if replicas == 1:
        return local
    per_rank = math.ceil(total / replicas)
    padded = local.new_zeros((per_rank,) + local.shape[1:])
    padded[: len(local)] = local
    gathered = all_gather_no_grad(padded).view(replicas, per_rank, *local.shape[1:])
    return gathered.transpose(0, 1).reshape(replicas * per_rank, *local.shape[1:])[:total]


def evaluation_loader(dataset, batch_size: int, workers: int, rank: int = 0, replicas: int = 1) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), rank, replicas),
                      num_workers=workers, pin_memory=torch.cuda.is_available(), persistent_workers=False)


@dataclass
class EvaluationResult:
    scores: torch.Tensor  # [N, C] class probabilities averaged over views
    labels: torch.Tensor  # [N] class ids, or [N, C] multi-hot
    top1: Optional[float] = None
    top5: Optional[float] = None
    mean_ap: Optional[float] = None

    def summary(self) -> str:
        parts = []
        if self.top1 is not None:
            parts.append(f"Overall Prec@1 {self.top1:.03f}% Prec@5 {self.top5:.03f}%")
        if self.mean_ap is not None:
            parts.append(f"Overall mAP {self.mean_ap:.03f}%")
        return "\n".join(parts)


def score_metrics(scores: torch.Tensor, labels: torch.Tensor, with_map: bool = False) -> EvaluationResult:
    """Top-1/top-5 for single-label data, mAP for multi-label data (and on request, e.g. ActivityNet)."""
    result = EvaluationResult(scores, labels)
    if labels.dim() == 1:
        result.top1, result.top5 = topk_accuracy(scores, labels)
    if labels.dim() == 2 or with_map:
        result.mean_ap = mean_average_precision(scores, labels)
    return result


@torch.no_grad()
def predict(encoder, header, loader, class_eot, class_tokens, device, autocast, progress: bool = True):
    """Scores [N, C] and labels of the loader's dataset in list order (gathered over all processes)."""
    encoder.eval()
    header.eval()
    scores, labels = [], []
    progress_bar = Progress(loader, len(loader), "test", bars=progress)
    for views, label in progress_bar:
        views = normalize_on_device(views, device)
        with autocast():
            scores.append(view_scores(encoder, header, views, class_eot, class_tokens).float().cpu())
        labels.append(label)
        progress_bar.update()
    total = len(loader.dataset)
    if scores:
        local_scores, local_labels = torch.cat(scores), torch.cat(labels)
    else:  # more processes than videos: empty results of the shapes the others gather
        num_classes = class_eot.shape[0]
        local_scores = torch.zeros(0, num_classes)
        multi_label = getattr(loader.dataset, "multi_label", False)
        local_labels = torch.zeros(0, num_classes) if multi_label else torch.zeros(0, dtype=torch.long)
    to_device = device if world_size() > 1 and device.type == "cuda" else "cpu"
    return (gather_in_list_order(local_scores.to(to_device), total).cpu(),
            gather_in_list_order(local_labels.to(to_device), total).cpu())
