"""Evaluation metrics: top-k accuracy, mean average precision, and the original BIKE scripts' mAP figures.

Average precision of a class: its videos ranked by score; the mean, over the class's positives, of the
precision at their rank. Tied scores form one threshold (as scikit-learn and torchmetrics count them).
"""
import torch
from torch.utils.data import DistributedSampler


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> list:
    """Number of samples whose label is among the k best-scored classes, for every k."""
    k_max = min(max(ks), scores.shape[1])
    top = scores.topk(k_max, dim=1).indices
    hits = top == labels[:, None]
    return [int(hits[:, : min(k, k_max)].any(dim=1).sum()) for k in ks]


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> list:
    """Top-k accuracy in percent."""
    return [100.0 * c / len(labels) for c in topk_correct(scores, labels, ks)]


def multi_hot(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Multi-hot [N, C] targets from class indices [N] (single-label data such as ActivityNet)."""
    if targets.dim() == 1:
        targets = torch.nn.functional.one_hot(targets.long(), num_classes)
    return targets.long()


def average_precisions(scores: torch.Tensor, targets: torch.Tensor, ties: str = "grouped") -> torch.Tensor:
    """AP of every class column in [0, 1]; NaN for a class without positives (its AP is undefined).

    `ties`: 'grouped' counts tied scores as one threshold (scikit-learn, torchmetrics); 'ranked' is
    torchnet's APMeter, which the original scripts use: precision at each positive's rank in a sorted
    order, tied scores in list order (it only matters for tied distinct videos, rare with float scores;
    a video counted twice gets the same AP in any order).
    """
    targets = multi_hot(targets, scores.shape[1])
    present = targets.sum(0) > 0
    ap = torch.full((scores.shape[1],), float("nan"))
    if not present.any():
        return ap
    if ties == "grouped":
        # imported here: torchmetrics imports all its domains (audio, image, text), seconds that every program
        # start would pay, mostly for no mAP
        from torchmetrics.functional.classification import multilabel_average_precision
        ap[present] = multilabel_average_precision(scores[:, present].float(), targets[:, present],
                                                   num_labels=int(present.sum()), average=None).float().reshape(-1)
    elif ties == "ranked":
        order = scores.float().argsort(dim=0, descending=True, stable=True)
        hits = targets.gather(0, order).double()
        precision = hits.cumsum(0) / torch.arange(1, len(scores) + 1, dtype=torch.float64)[:, None]
        ap[present] = ((precision * hits).sum(0) / hits.sum(0))[present].float()
    else:
        raise ValueError(f"ties must be 'grouped' or 'ranked', got {ties!r}")
    return ap


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor, without_positives: str = "skip",
                           ties: str = "grouped") -> float:
    """Mean over classes of average precision, in percent (see `average_precisions` and
    `mean_of_average_precisions`)."""
    return mean_of_average_precisions(average_precisions(scores, targets, ties), without_positives)


def mean_of_average_precisions(ap: torch.Tensor, without_positives: str = "skip") -> float:
    """The mean of `average_precisions` in percent. `without_positives`: 'skip' leaves classes without
    positives out; 'zero' counts them as AP 0, as torchnet's mAPMeter (which the original scripts use) does."""
    if without_positives == "zero":
        return 100.0 * float(ap.nan_to_num(0.0).mean())
    if without_positives != "skip":
        raise ValueError(f"without_positives must be 'skip' or 'zero', got {without_positives!r}")
    present = ~ap.isnan()
    return 100.0 * float(ap[present].mean()) if present.any() else float("nan")


def original_map_scores(view_probabilities: torch.Tensor, activitynet: bool = False) -> torch.Tensor:
    """The scores the original scripts compute mAP on, from the view-averaged class probabilities.

    Their test scripts end with one more softmax over the classes (the "double softmax"; top-k is the
    same, a class's ranking of videos may differ), and for ActivityNet's published figure the
    `mean_average_precision` of their utils/utils.py applies yet another softmax before torchnet's meter.
    """
    final = view_probabilities.float().softmax(dim=1)
    return final.softmax(dim=1) if activitynet else final


def original_charades_order(num_videos: int, batch_size: int, processes: int) -> list:
    """Video indices of each step of the original test_charades.py: a DistributedSampler (shuffled with
    seed 0, padded with repeats), `batch_size` per process, the processes' batches gathered in rank order."""
    shards = [list(DistributedSampler(range(num_videos), num_replicas=processes, rank=rank, shuffle=True, seed=0))
              for rank in range(processes)]
    steps = []
    for start in range(0, len(shards[0]), batch_size):
        steps.append([index for shard in shards for index in shard[start:start + batch_size]])
    return steps


def original_charades_running_map(view_probabilities: torch.Tensor, targets: torch.Tensor, batch_size: int,
                                  processes: int) -> float:
    """The figure the original test_charades.py prints: after every step, the mAP (AP 0 without positives)
    of all videos seen so far, averaged over the steps weighted by their size. It depends on the batch size
    and the number of processes; the mAP after the last step is the whole test set's."""
    scores = original_map_scores(view_probabilities)
    seen, weighted, total = [], 0.0, 0
    for step in original_charades_order(len(scores), batch_size, processes):
        seen.extend(step)
        ap = average_precisions(scores[seen], targets[seen], ties="ranked")
        weighted += len(step) * mean_of_average_precisions(ap, "zero")
        total += len(step)
    return weighted / total
