"""What a model gets wrong: per-class accuracy, the confusion matrix and its largest confusions,
from the scores test.py saves (`--save_scores`)."""
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class ScoreAnalysis:
    class_names: list
    confusion: torch.Tensor  # [C, C]: row = true class, column = predicted class

    @property
    def per_class_accuracy(self) -> torch.Tensor:
        """Percent of each class's videos predicted as that class (NaN for classes without videos)."""
        totals = self.confusion.sum(1).double()
        return 100 * self.confusion.diag().double() / totals.where(totals > 0, torch.tensor(float("nan")))

    def top_confusions(self, count: int = 10) -> list:
        """(true class, predicted class, videos) of the largest off-diagonal cells, largest first."""
        off_diagonal = self.confusion.clone()
        off_diagonal.fill_diagonal_(0)
        values, indices = off_diagonal.flatten().sort(descending=True)
        size = len(self.class_names)
        return [(self.class_names[i // size], self.class_names[i % size], int(v))
                for v, i in zip(values.tolist(), indices.tolist()) if v > 0][:count]


def load_scores(path) -> tuple:
    """(scores [N, C], labels [N]) from a `--save_scores` file; multi-label files are refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scores file not found: {path}")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or not {"scores", "labels"} <= set(saved):
        raise ValueError(f"{path} is not a test.py --save_scores file (expected the keys 'scores' and 'labels')")
    if saved["labels"].dim() != 1:
        raise ValueError(f"{path} holds multi-label targets: a confusion matrix needs one label per video")
    return saved["scores"], saved["labels"]


def analyse(scores: torch.Tensor, labels: torch.Tensor, class_names: list) -> ScoreAnalysis:
    if scores.shape[1] != len(class_names):
        raise ValueError(f"the scores have {scores.shape[1]} classes but {len(class_names)} class names were given")
    size = len(class_names)
    cells = labels.long() * size + scores.argmax(1)
    return ScoreAnalysis(list(class_names), torch.bincount(cells, minlength=size * size).view(size, size))


def plot_confusion(analysis: ScoreAnalysis, path) -> None:
    """The row-normalised confusion matrix as a PNG (classes named on the axes when there are few)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = len(analysis.class_names)
    rows = analysis.confusion.double()
    normalised = (rows / rows.sum(1, keepdim=True).clamp(min=1)).numpy()
    side = min(4 + 0.3 * size, 30)
    figure, axes = plt.subplots(figsize=(side, side), dpi=100)
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true class's videos")
    if size <= 60:
        axes.set_xticks(range(size), analysis.class_names, rotation=90, fontsize=7)
        axes.set_yticks(range(size), analysis.class_names, fontsize=7)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
