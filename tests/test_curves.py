"""Training curves: the series parsed from a real run's log equal the values training computed, the PNG
is drawn, and the optional TensorBoard writer receives the same numbers."""
import io
import sys

import numpy as np
import pytest
from PIL import Image

import train as train_program
from tools import plot_curves as plot_curves_tool
from workflows.curves import parse_log, read_run, tensorboard_writer


class RecordingWriter:
    """Stands in for a SummaryWriter: keeps every scalar by tag."""

    def __init__(self):
        self.scalars, self.closed = {}, False

    def add_scalar(self, tag, value, step):
        self.scalars.setdefault(tag, []).append((step, value))

    def close(self):
        self.closed = True


@pytest.fixture
def recorded_run(tiny_config, monkeypatch):
    """A 2-epoch run logging every step (stderr is no terminal), with the mean losses and validation
    results that training returned, and what its TensorBoard writer received."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    means, validations, writer = [], [], RecordingWriter()

    def recording_epoch(*args, **kwargs):
        means.append(real_epoch(*args, **kwargs))
        return means[-1]

    def recording_validate(*args, **kwargs):
        validations.append(real_validate(*args, **kwargs))
        return validations[-1]

    real_epoch, real_validate = train_program.train_one_epoch, train_program.validate
    monkeypatch.setattr(train_program, "train_one_epoch", recording_epoch)
    monkeypatch.setattr(train_program, "validate", recording_validate)
    monkeypatch.setattr(train_program, "tensorboard_writer", lambda folder: writer)
    config = tiny_config.write(solver={"epochs": 2})
    train_program.main(["--config", config, "--log_time", "x", "--cpu"])
    return tiny_config.run_folder("x"), means, validations, writer


@pytest.mark.slow
def test_curves_of_a_real_run_equal_what_training_computed(recorded_run, tmp_path):
    run_folder, means, validations, writer = recorded_run
    curves = read_run(run_folder)
    log = (run_folder / "log.txt").read_text()
    # One epoch count for people: the last of 2 epochs is "epoch 2/2" in every line, and its curve point at 2.
    assert "epoch 1/2: mean loss" in log and "epoch 2/2 validation: Overall Prec@1" in log
    assert "epoch 2/2 [1/" in log and "epoch 0" not in log and "epoch 2 validation" not in log

    assert curves.epoch_loss.x == [1, 2]
    assert curves.epoch_loss.y == pytest.approx(means, abs=5e-5)  # logged with 4 decimals
    assert curves.top1.x == curves.top5.x == [1, 2] and not curves.mean_ap
    assert curves.top1.y == pytest.approx([v.top1 for v in validations], abs=5e-4)
    assert curves.top5.y == pytest.approx([v.top5 for v in validations], abs=5e-4)

    # Every step is logged (print_freq 1): positions e + k/n, and the epoch means are their means.
    tb_loss = [value for _, value in writer.scalars["train/loss"]]
    steps = len(tb_loss) // 2
    assert curves.step_loss.x == pytest.approx([e + k / steps for e in range(2) for k in range(1, steps + 1)])
    assert curves.step_loss.y == pytest.approx(tb_loss, rel=5e-4)  # logged with 4 significant digits
    assert curves.step_lr.y == pytest.approx([value for _, value in writer.scalars["train/lr"]], rel=5e-4)
    assert [np.mean(curves.step_loss.y[e * steps:(e + 1) * steps]) for e in range(2)] == pytest.approx(means, rel=1e-3)

    # The writer: steps counted across epochs, validation at each epoch's last step, closed at the end.
    assert [step for step, _ in writer.scalars["train/loss"]] == list(range(1, 2 * steps + 1))
    assert writer.scalars["val/top1"] == [(steps, validations[0].top1), (2 * steps, validations[1].top1)]
    assert "val/mean_ap" not in writer.scalars and writer.closed

    out = plot_curves_tool.main([str(run_folder), "--out", str(tmp_path / "curves.png")])
    image = np.asarray(Image.open(out).convert("L"))
    assert image.shape == (400, 1500)
    assert image.std() > 10  # not blank: axes, lines and text on white


@pytest.mark.parametrize("first, second", [("epoch 1/2", "epoch 2/2"),  # counted from 1, as logs are now
                                           ("epoch 0", "epoch 1")])  # logs written before: counted from 0
def test_multi_line_summaries_and_map_runs_are_parsed(first, second):
    log = (f"2026-01-01 00:00:00,000 INFO workflows.training: {first}: mean loss 2.5000, data wait 1.0% of step time\n"
           f"2026-01-01 00:00:01,000 INFO bike: {first} validation: Overall Prec@1 10.000% Prec@5 50.000%\n"
           "Overall mAP 12.500% (best 10.000)\n"
           f"2026-01-01 00:00:02,000 INFO bike: {second} [2/4] loss 2.25, lr 5e-05, data 0.01, time 0.3, eta 0:00:01\n"
           f"2026-01-01 00:00:03,000 INFO bike: {second} validation: Overall mAP 20.000% (best 20.000)\n")
    curves = parse_log(log)
    assert (curves.epoch_loss.x, curves.epoch_loss.y) == ([1], [2.5])
    assert (curves.step_loss.x, curves.step_loss.y, curves.step_lr.y) == ([1.5], [2.25], [5e-05])
    assert (curves.top1.x, curves.top1.y, curves.top5.y) == ([1], [10.0], [50.0])
    assert (curves.mean_ap.x, curves.mean_ap.y) == ([1, 2], [12.5, 20.0])


def test_a_folder_without_log_or_epochs_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "log.txt")):
        read_run(tmp_path)
    (tmp_path / "log.txt").write_text("2026-01-01 00:00:00,000 INFO bike: run folder x\n")
    with pytest.raises(ValueError, match="no training epochs"):
        read_run(tmp_path)


def test_tensorboard_writer_writes_event_files_in_the_run_folder(tmp_path):
    pytest.importorskip("tensorboard")
    writer = tensorboard_writer(tmp_path)
    writer.add_scalar("train/loss", 1.0, 1)
    writer.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))
