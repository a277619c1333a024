"""Mistakes on the command line are one `error:` line each, found before any model is built; what the
programs report is what happened (a video shorter than a window: tests/test_timeline.py)."""
from pathlib import Path

import pytest

from datasets.synthetic import DemoDataset
from tests.data_factory import truncate_file, write_video
from tools import export, extract_features, predict
from utils.config import load_config
from utils.distributed import run_program


def one_error_line(capsys, monkeypatch, main, args):
    """(exit status, stderr) of `main(args)` run as a program's `__main__` block runs it."""
    monkeypatch.delenv("BIKE_TRACEBACK", raising=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_request:
        run_program(lambda: main(args))
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    return exit_request.value.code, stderr


@pytest.fixture
def video(tmp_path):
    return write_video(str(tmp_path / "clip.mp4"), 25)


@pytest.mark.parametrize("options, fragment", [
    (["--test_clips", "-2"], "--test_clips"), (["--test_clips", "0"], "--test_clips"), (["--topk", "0"], "--topk"),
    (["--timeline", "0"], "--timeline"), (["--timeline", "2", "--stride", "0"], "--stride"),
    (["--test_crops", "2"], "--test_crops")])
def test_a_bad_predict_option_is_one_line(tiny_config, video, capsys, monkeypatch, options, fragment):
    code, stderr = one_error_line(capsys, monkeypatch, predict.main,
                                  ["--config", tiny_config.write(), video, "--cpu", *options])
    assert code == 2 and fragment in stderr


@pytest.mark.parametrize("size", ["0x0", "240x0", "big"])
def test_a_bad_export_frame_size_is_one_line(tiny_config, tmp_path, capsys, monkeypatch, size):
    code, stderr = one_error_line(capsys, monkeypatch, export.main, ["--config", tiny_config.write(), "--out",
                                                                     str(tmp_path / "m.onnx"), "--frame_size", size])
    assert code == 2 and "--frame_size" in stderr and "HEIGHTxWIDTH" in stderr


@pytest.mark.parametrize("option", ["--output", "--plot"])
def test_a_missing_output_folder_is_named_before_the_model_is_built(tiny_config, video, tmp_path, capsys,
                                                                    monkeypatch, option):
    monkeypatch.setattr(predict, "Predictor", lambda *a, **k: pytest.fail("the model was built"))
    target = tmp_path / "no_such_folder" / ("out.json" if option == "--output" else "out.png")
    code, stderr = one_error_line(capsys, monkeypatch, predict.main,
                                  ["--config", tiny_config.write(), video, "--cpu", option, str(target)])
    assert code == 1 and f"{option} {target}" in stderr and "no_such_folder" in stderr


def test_extract_features_inputs_errors_name_the_inputs_and_the_count_leaves_out_unreadable_videos(
        tiny_config, tmp_path, capsys, monkeypatch):
    demo = DemoDataset.at(Path(load_config(tiny_config.write()).data.val_list).parent)
    videos = [str(path) for path in sorted(demo.videos_root.rglob("*.mp4"))[:3]]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(open(videos[1], "rb").read())
    truncate_file(str(broken), 0.3)
    arguments = ["--config", tiny_config.write(), "--cpu", "--no_progress", "--inputs", videos[0], str(broken),
                 videos[2], "--out"]
    code, stderr = one_error_line(capsys, monkeypatch, extract_features.main, arguments + [str(tmp_path / "stop")])
    assert stderr.startswith("error: --inputs: ") and "broken.mp4" in stderr and "inputs.txt" not in stderr
    count = extract_features.main(arguments + [str(tmp_path / "skip"), "--skip_unreadable"])
    log = capsys.readouterr().out  # the programs' console log
    assert count == 2 and "1 of 3 videos were unreadable" in log and "features of 2 videos" in log, log
    assert not [line for line in log.splitlines() if "WARNING" in line and "inputs.txt" in line], log
