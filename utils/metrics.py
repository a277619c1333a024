"""Evaluation metrics: top-k accuracy and mean average precision."""
import torch
from torchmetrics.functional.classification import multilabel_average_precision


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> list:
    """Number of samples whose label is among the k best-scored classes, for every k."""
    k_max = min(max(ks), scores.shape[1])
    top = scores.topk(k_max, dim=1).indices
    hits = top == labels[:, None]
    return [int(hits[:, : min(k, k_max)].any(dim=1).sum()) for k in ks]


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> list:
    """Top-k accuracy in percent."""
    return [100.0 * c / len(labels) for c in topk_correct(scores, labels, ks)]


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean over classes of average precision, in percent; classes without positives are left out.

    `targets` is multi-hot [N, C], or class indices [N] (single-label data such as ActivityNet).
    """
    if targets.dim() == 1:
        targets = torch.nn.functional.one_hot(targets, scores.shape[1])
    targets = targets.long()
    present = targets.sum(0) > 0
    ap = multilabel_average_precision(scores[:, present].float(), targets[:, present],
                                      num_labels=int(present.sum()), average="macro")
    return 100.0 * float(ap)
