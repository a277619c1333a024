"""Training losses of BIKE: KL divergence between the scaled similarity matrix and the label matrix."""
import torch
import torch.nn.functional as F

# The original sharpens the 0/1 label-equality matrix by this factor before its softmax.
LABEL_SHARPNESS = 10.0
DS_TEMPERATURE = 1000.0


def label_equality(labels: torch.Tensor) -> torch.Tensor:
    """[N, N] matrix with 1 where samples i and j have the same label (multi-hot rows: the same label set)."""
    if labels.dim() == 1:
        return (labels[:, None] == labels[None, :]).float()
    return (labels[:, None, :] == labels[None, :, :]).all(-1).float()


def nce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(softmax(10 * target) || softmax(logits)) summed over each row's classes, mean over rows.

    (The original's KLDivLoss(reduction='mean') times the batch size.)
    """
    target_probs = F.softmax(target * LABEL_SHARPNESS, dim=1)
    return F.kl_div(F.log_softmax(logits, dim=1), target_probs, reduction="sum") / logits.shape[0]


def dual_softmax_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The 'DS' variant: logits re-weighted by a softmax over the other axis before the NCE loss."""
    weighted = logits * F.softmax(logits / DS_TEMPERATURE, dim=0) * logits.shape[0]
    return nce_loss(weighted, target)


LOSSES = {"NCE": nce_loss, "DS": dual_softmax_loss}


def symmetric_loss(logits: torch.Tensor, labels: torch.Tensor, loss_type: str = "NCE") -> torch.Tensor:
    """Mean of the video-to-text and text-to-video losses against the label-equality matrix."""
    loss = LOSSES[loss_type]
    target = label_equality(labels).to(logits.dtype)
    return (loss(logits, target) + loss(logits.t(), target)) / 2
