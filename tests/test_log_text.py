"""What people read in logs: counts agree with their nouns, progress lines have no stray comma, and
progress written to a log file is a few lines, not one very long bar."""
import io
import logging
import sys

import pytest
import torch

import clip
import test as test_program
from modules import VideoHeader
from tests.tiny_run import original_layout
from tools import make_demo_data
from utils.logger import Progress


def test_progress_lines_without_values_have_no_stray_comma(caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # no terminal: log lines
    progress = Progress(range(4), 4, "test", print_freq=2)
    with caplog.at_level(logging.INFO):
        for _ in progress:
            progress.update()
    assert [record.getMessage().split(", eta")[0] for record in caplog.records] == ["test [2/4]", "test [4/4]"]


def test_test_py_counts_one_clip_one_crop_and_one_process_in_the_singular(tiny_config, tmp_path, capsys):
    torch.manual_seed(0)
    model = clip.create_model("ViT-Tiny/16", image_resolution=32)
    torch.save(original_layout(model, VideoHeader.for_clip("Transf", "VCS", model), ""), tmp_path / "best.pt")
    test_program.main(["--config", tiny_config.write(), "--weights", str(tmp_path / "best.pt"), "--cpu",
                       "--no_progress", "--test_clips", "1", "--test_crops", "1"])
    log = capsys.readouterr().out  # test.py logs to stdout
    assert "8 videos x 1 clip x 1 crop, 1 process; precision " in log
    assert "test [2/2], eta" in log


def test_demo_data_progress_off_a_terminal_is_a_few_log_lines(tmp_path, caplog, monkeypatch):
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)  # as in `bash scripts/demo.sh > demo.log 2>&1`
    with caplog.at_level(logging.INFO):
        make_demo_data.main(["--out", str(tmp_path / "demo"), "--num-per-class", "3", "--workers", "1"])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("demo dataset clips [")]
    assert [line.split(" [")[1].split("]")[0] for line in lines] == [f"{k}/24" for k in (2, 4, 6, 8, 10, 12, 14, 16,
                                                                                          18, 20, 22, 24)]
    assert "\r" not in stderr.getvalue() and "clip/s" not in stderr.getvalue()


@pytest.mark.parametrize("number, noun, plural, expected", [(1, "process", "processes", "1 process"),
                                                             (2, "process", "processes", "2 processes"),
                                                             (0, "crop", None, "0 crops")])
def test_counted(number, noun, plural, expected):
    from utils.logger import counted
    assert counted(number, noun, plural) == expected
