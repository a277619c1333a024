"""Training curves of a run: parsed back from its `log.txt` (loss, learning rate, validation scores per
epoch) and drawn as one PNG; plus the optional TensorBoard writer that `train.py` feeds while it runs."""
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from utils.errors import UnusableFileError

logger = logging.getLogger(__name__)

NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)"
# An epoch as logs name it: "epoch 12/12" (counted from 1), or "epoch 11" in logs written before that
# convention (counted from 0, as checkpoints still store it).
EPOCH = r"epoch (\d+)(/\d+)?"
# "bike: epoch 1/12 [10/36] loss 1.52, lr 0.0001, data 0.01, time 0.3, eta 0:00:12" (logged when not on a terminal)
STEP_LINE = re.compile(rf"{EPOCH} \[(\d+)/(\d+)\] (.*), eta ")
VALUE = re.compile(rf"(\w+) ({NUMBER})")
# "workflows.training: epoch 1/12: mean loss 1.5010, data wait 3.5% of step time"
EPOCH_LINE = re.compile(rf"{EPOCH}: mean loss ({NUMBER})")
# "bike: epoch 2/12 validation: Overall Prec@1 27.083% Prec@5 94.792% (best 27.083)"; the summary may span lines
VALIDATION_LINE = re.compile(rf"{EPOCH} validation: (.*?) \(best ", re.S)
TOP1 = re.compile(rf"Prec@1 ({NUMBER})%")
TOP5 = re.compile(rf"Prec@5 ({NUMBER})%")
MEAN_AP = re.compile(rf"mAP ({NUMBER})%")


@dataclass
class Series:
    """Points (x in epochs, y) of one curve."""

    x: List[float] = field(default_factory=list)
    y: List[float] = field(default_factory=list)

    def add(self, x: float, y: float):
        self.x.append(x)
        self.y.append(y)

    def __bool__(self) -> bool:
        return bool(self.x)


@dataclass
class TrainingCurves:
    """A run's curves on one time axis in epochs: step k of n in epoch e sits at e + k/n, and an epoch's
    mean loss and its validation at the epoch's end (e + 1)."""

    step_loss: Series = field(default_factory=Series)
    step_lr: Series = field(default_factory=Series)
    epoch_loss: Series = field(default_factory=Series)
    top1: Series = field(default_factory=Series)
    top5: Series = field(default_factory=Series)
    mean_ap: Series = field(default_factory=Series)


def _search_number(pattern: re.Pattern, text: str) -> Optional[float]:
    match = pattern.search(text)
    return float(match.group(1)) if match else None


def _epoch_end(match: re.Match) -> int:
    """Where the end of the matched epoch sits on the time axis: its number as people count it."""
    number, of_total = match.group(1, 2)
    return int(number) if of_total else int(number) + 1


def parse_log(text: str) -> TrainingCurves:
    """The curves logged by `train.py`; a resumed run that logs an epoch again keeps both entries in order."""
    curves = TrainingCurves()
    for line in text.splitlines():
        step = STEP_LINE.search(line)
        if step:
            index, total = int(step.group(3)), int(step.group(4))
            values = {key: float(value) for key, value in VALUE.findall(step.group(5))}
            x = _epoch_end(step) - 1 + index / total
            if "loss" in values:
                curves.step_loss.add(x, values["loss"])
            if "lr" in values:
                curves.step_lr.add(x, values["lr"])
            continue
        summary = EPOCH_LINE.search(line)
        if summary:
            curves.epoch_loss.add(_epoch_end(summary), float(summary.group(3)))
    for validation in VALIDATION_LINE.finditer(text):
        x, scores = _epoch_end(validation), validation.group(3)
        for series, pattern in ((curves.top1, TOP1), (curves.top5, TOP5), (curves.mean_ap, MEAN_AP)):
            value = _search_number(pattern, scores)
            if value is not None:
                series.add(x, value)
    return curves


def read_run(run_folder) -> TrainingCurves:
    """The curves of the run in `run_folder` (its log.txt)."""
    log_path = Path(run_folder) / "log.txt"
    if not log_path.is_file():
        raise FileNotFoundError(f"{log_path}: no training log (is {run_folder} a run folder of train.py?)")
    curves = parse_log(log_path.read_text(encoding="utf-8", errors="replace"))
    if not (curves.step_loss or curves.epoch_loss or curves.top1 or curves.mean_ap):
        raise UnusableFileError(f"{log_path}: no training epochs or validations logged")
    return curves


def plot_curves(curves: TrainingCurves, path, title: str = ""):
    """Three panels: loss (per logged step and per-epoch mean), learning rate, validation scores."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (loss_axis, lr_axis, score_axis) = pyplot.subplots(1, 3, figsize=(15, 4))
    if curves.step_loss:
        loss_axis.plot(curves.step_loss.x, curves.step_loss.y, lw=0.8, alpha=0.6, label="step")
    if curves.epoch_loss:
        loss_axis.plot(curves.epoch_loss.x, curves.epoch_loss.y, "o-", label="epoch mean")
    loss_axis.set(title="training loss", xlabel="epoch", ylabel="loss")
    if curves.step_lr:
        lr_axis.plot(curves.step_lr.x, curves.step_lr.y)
    else:
        lr_axis.text(0.5, 0.5, "no per-step lines in the log\n(logged off a terminal without --no_progress)",
                     ha="center", va="center", transform=lr_axis.transAxes)
    lr_axis.set(title="learning rate", xlabel="epoch", ylabel="lr")
    for series, label in ((curves.top1, "top-1"), (curves.top5, "top-5"), (curves.mean_ap, "mAP")):
        if series:
            score_axis.plot(series.x, series.y, "o-", label=label)
    score_axis.set(title="validation", xlabel="epoch", ylabel="%")
    for axis in (loss_axis, score_axis):
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def tensorboard_writer(run_folder):
    """A SummaryWriter logging into `run_folder`, or None (logged once) when TensorBoard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.info("TensorBoard is not installed: no event files (training curves: tools/plot_curves.py)")
        return None
    return SummaryWriter(log_dir=str(run_folder))
