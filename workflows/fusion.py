"""Fusion of the video and attributes branches: a weighted sum of their class probabilities (default 0.7
video, 0.3 attributes, the paper's), with each branch's metrics and the best weight of a grid."""
from dataclasses import dataclass

import torch

from workflows.evaluation import score_metrics

DEFAULT_FUSION_WEIGHTS = (0.7, 0.3)  # video, attributes (the paper's)


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
