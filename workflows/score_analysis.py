"""What a model gets wrong: per-class accuracy, the confusion matrix and its largest confusions,
from the scores test.py saves (`--save_scores`)."""
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from clip.weights import safe_load
from utils.errors import UnusableFileError, UsageError

# A picture of more classes than this shows the sub-matrix of the classes most often confused.
MAX_CLASSES_DRAWN = 30


@dataclass
class ScoreAnalysis:
    class_names: list
    confusion: torch.Tensor  # [C, C]: row = true class, column = predicted class

    @property
    def top1(self) -> float:
        """Percent of all videos whose best-scored class is their class."""
        return 100 * self.confusion.diag().sum().item() / max(self.confusion.sum().item(), 1)

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

    def most_confused_classes(self, count: int) -> list:
        """Up to `count` class indices: those of the largest off-diagonal cells first, so that a confused
        pair sits side by side; then, if room is left, the classes with the most videos."""
        off_diagonal = self.confusion.clone()
        off_diagonal.fill_diagonal_(0)
        size = len(self.class_names)
        chosen = []
        for cell in off_diagonal.flatten().argsort(descending=True, stable=True).tolist():
            if len(chosen) >= count or off_diagonal.flatten()[cell] == 0:
                break
            chosen += [index for index in divmod(cell, size) if index not in chosen]
        by_videos = self.confusion.sum(1).argsort(descending=True, stable=True).tolist()
        chosen += [index for index in by_videos if index not in chosen]
        return chosen[:count]


def load_scores(path) -> dict:
    """A `--save_scores` file: 'scores' [N, C], 'labels' [N] (and, from newer test.py runs, 'weights' and
    'video_list', the files they came from); multi-label files are refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scores file not found: {path}")
    saved = safe_load(path)
    if not isinstance(saved, dict) or not {"scores", "labels"} <= set(saved):
        raise UnusableFileError(f"{path} is not a test.py --save_scores file (expected the keys 'scores' and 'labels')")
    if saved["labels"].dim() != 1:
        raise UnusableFileError(f"{path} holds multi-label targets: a confusion matrix needs one label per video")
    return saved


def describe(saved: dict, scores_path, analysis: "ScoreAnalysis") -> str:
    """'<weights> on <video list>: top-1 X% of N videos', naming the scores file where test.py did not
    record its inputs."""
    model = saved.get("weights") or f"scores {scores_path}"
    data = f" on {os.path.basename(saved['video_list'])}" if saved.get("video_list") else ""
    return f"{model}{data}: top-1 {analysis.top1:.1f}% of {int(analysis.confusion.sum())} videos"


def analyse(scores: torch.Tensor, labels: torch.Tensor, class_names: list) -> ScoreAnalysis:
    if scores.shape[1] != len(class_names):
        raise UsageError(f"the scores have {scores.shape[1]} classes but {len(class_names)} class names were given")
    size = len(class_names)
    cells = labels.long() * size + scores.argmax(1)
    return ScoreAnalysis(list(class_names), torch.bincount(cells, minlength=size * size).view(size, size))


def confusion_figure(analysis: ScoreAnalysis, title: str = ""):
    """The row-normalised confusion matrix with the class names and, in every non-empty cell, its count;
    for more than `MAX_CLASSES_DRAWN` classes the sub-matrix of the most confused ones (said in the title)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = len(analysis.class_names)
    shown = list(range(size)) if size <= MAX_CLASSES_DRAWN else analysis.most_confused_classes(MAX_CLASSES_DRAWN)
    rows = analysis.confusion.double()
    shares = (rows / rows.sum(1, keepdim=True).clamp(min=1))[shown][:, shown].numpy()
    counts = analysis.confusion[shown][:, shown].tolist()
    names = [analysis.class_names[index] for index in shown]
    side = 3.5 + 0.32 * len(shown)
    figure, axes = plt.subplots(figsize=(side + 1.5, side + 1.0), dpi=100)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true class's videos")
    axes.set_xticks(range(len(shown)), names, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    axes.set_yticks(range(len(shown)), names, fontsize=8)
    for row, cells in enumerate(counts):
        for column, count in enumerate(cells):
            if count:
                axes.text(column, row, str(count), ha="center", va="center", fontsize=7,
                          color="white" if shares[row, column] > 0.5 else "black")
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    scope = (f"all {size} classes" if len(shown) == size else
             f"the {len(shown)} of {size} classes most often confused (rows: shares of all the class's videos)")
    axes.set_title(f"{title}\n{scope}; cells: videos" if title else f"{scope}; cells: videos", fontsize=9)
    figure.tight_layout()
    return figure


def plot_confusion(analysis: ScoreAnalysis, path, title: str = "") -> None:
    """`confusion_figure` as a PNG."""
    import matplotlib.pyplot as plt

    figure = confusion_figure(analysis, title)
    figure.savefig(path)
    plt.close(figure)
