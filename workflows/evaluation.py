"""Multi-view evaluation: class scores of every video in list order, across any number of processes."""
import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler

from datasets.transforms import normalize_on_device
from modules.video_clip import view_scores
from utils.distributed import all_gather_no_grad, world_size
from utils.logger import Progress
from utils.metrics import (average_precisions, mean_of_average_precisions, original_charades_running_map,
                           original_map_scores, topk_accuracy)


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


def gather_by_index(local: torch.Tensor, indices: torch.Tensor, total: int) -> torch.Tensor:
    """Per-rank results of the list positions `indices` (a shard dataset's split) put into list order."""
    replicas = world_size()
    if replicas > 1:
        per_rank = math.ceil(total / replicas)  # no rank holds more (datasets.shards splits evenly)
        padded = local.new_zeros((per_rank,) + local.shape[1:])
        padded[: len(local)] = local
        positions = torch.full((per_rank,), -1, dtype=torch.long, device=local.device)
        positions[: len(indices)] = indices
        local = all_gather_no_grad(padded).reshape(replicas * per_rank, *local.shape[1:])
        indices = all_gather_no_grad(positions).reshape(-1)
    ordered = local.new_zeros((total,) + local.shape[1:])
    ordered[indices[indices >= 0]] = local[indices >= 0]
    return ordered


def evaluation_loader(dataset, batch_size: int, workers: int, rank: int = 0, replicas: int = 1,
                      device="cpu") -> DataLoader:
    """This rank's share of `dataset` in list order (a shard dataset: its range of the manifest's order, items
    with their list index); batches in pinned memory when they go to a GPU (`device`) from the CPU (not when
    the dataset decodes on the GPU)."""
    pin = torch.device(device).type == "cuda" and getattr(dataset, "decode_device", "cpu") == "cpu"
    if isinstance(dataset, IterableDataset):
        dataset.split(rank, replicas, batch_size)
        return DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=pin)
    return DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), rank, replicas),
                      num_workers=workers, pin_memory=pin, persistent_workers=False)


@dataclass
class EvaluationResult:
    scores: torch.Tensor  # [N, C] class probabilities averaged over views
    labels: torch.Tensor  # [N] class ids, or [N, C] multi-hot
    top1: Optional[float] = None
    top5: Optional[float] = None
    mean_ap: Optional[float] = None  # the main mAP figure (see `score_metrics`)
    map_protocol: str = ""
    classes_without_positives: int = 0
    map_without_empty_classes: Optional[float] = None
    original_running_map: Optional[float] = None  # the original test_charades.py's printed figure
    running_map_batches: tuple = ()

    def summary(self) -> str:
        parts = []
        if self.top1 is not None:
            parts.append(f"Overall Prec@1 {self.top1:.03f}% Prec@5 {self.top5:.03f}%")
        if self.mean_ap is not None:
            parts.append(f"Overall mAP {self.mean_ap:.03f}%")
            if self.classes_without_positives:
                parts.append(f"({self.map_protocol}; {self.classes_without_positives} of {self.scores.shape[1]} "
                             f"classes have no positive video and count as AP 0, as in the original; "
                             f"over the other classes: {self.map_without_empty_classes:.03f}%)")
        if self.original_running_map is not None:
            batch, processes = self.running_map_batches
            parts.append(f"Original test_charades.py figure (running average over batches of {batch} x {processes} "
                         f"processes of the cumulative mAP, not the test set's mAP): {self.original_running_map:.03f}%")
        return "\n".join(parts)


def score_metrics(scores: torch.Tensor, labels: torch.Tensor, with_map: bool = False,
                  original_batches: Optional[tuple] = None) -> EvaluationResult:
    """Top-1/top-5 for single-label data; mAP for multi-label data and on request (ActivityNet).

    mAP is computed on the original scripts' final scores (softmax of the view-averaged probabilities)
    over the whole set, classes without positives counting as AP 0 as in the original. Single-label data
    (ActivityNet) gets the published protocol, one more softmax (`original_map_scores`).
    `original_batches` (batch size, processes) adds, for multi-label data, the running-average figure
    the original test_charades.py prints.
    """
    result = EvaluationResult(scores, labels)
    if labels.dim() == 1:
        result.top1, result.top5 = topk_accuracy(scores, labels)
    if labels.dim() == 2 or with_map:
        activitynet = labels.dim() == 1
        # ActivityNet's figure as published, torchnet's tie rule included; elsewhere ties form one threshold.
        ap = average_precisions(original_map_scores(scores, activitynet), labels,
                                ties="ranked" if activitynet else "grouped")
        result.map_protocol = ("ActivityNet protocol of the original: its scores, softmaxed once more" if activitynet
                               else "whole set, on the original's scores")
        result.mean_ap = mean_of_average_precisions(ap, "zero")
        result.classes_without_positives = int(ap.isnan().sum())
        result.map_without_empty_classes = mean_of_average_precisions(ap, "skip")
        if labels.dim() == 2 and original_batches:
            result.original_running_map = original_charades_running_map(scores, labels, *original_batches)
            result.running_map_batches = tuple(original_batches)
    return result


@torch.no_grad()
def predict(encoder, header, loader, class_eot, class_tokens, device, autocast, progress: bool = True):
    """Scores [N, C] and labels of the loader's dataset in list order (gathered over all processes)."""
    encoder.eval()
    header.eval()
    scores, labels, indices = [], [], []
    progress_bar = Progress(loader, len(loader), "test", bars=progress)
    for views, label, *index in progress_bar:  # a shard dataset's items carry their list index
        views = normalize_on_device(views, device)
        with autocast():
            scores.append(view_scores(encoder, header, views, class_eot, class_tokens).float().cpu())
        labels.append(label)
        indices += index
        progress_bar.update()
    total = loader.dataset.list_size
    if scores:
        local_scores, local_labels = torch.cat(scores), torch.cat(labels)
    else:  # more processes than videos: empty results of the shapes the others gather
        num_classes = class_eot.shape[0]
        local_scores = torch.zeros(0, num_classes)
        multi_label = getattr(loader.dataset, "multi_label", False)
        local_labels = torch.zeros(0, num_classes) if multi_label else torch.zeros(0, dtype=torch.long)
    to_device = device if world_size() > 1 and device.type == "cuda" else "cpu"
    if isinstance(loader.dataset, IterableDataset):
        positions = torch.cat(indices).to(to_device) if indices else torch.zeros(0, dtype=torch.long, device=to_device)
        return (gather_by_index(local_scores.to(to_device), positions, total).cpu(),
                gather_by_index(local_labels.to(to_device), positions, total).cpu())
    return (gather_in_list_order(local_scores.to(to_device), total).cpu(),
            gather_in_list_order(local_labels.to(to_device), total).cpu())
