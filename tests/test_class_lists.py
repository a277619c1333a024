"""--classes of tools/predict.py, tools/export.py and tools/app.py: one reading for all three
(workflows.prediction.parse_class_names). A class list that looks like a file (a path separator, or a
suffix such as .txt/.csv) but is none, or a file that is not text, ends the program with one `error:`
line naming it and status 1, before any model is built; a single class runs, with a warning (its
softmax is always 1).

Each program's `main` runs as its `__main__` block runs it (through `run_program`), which gives the
stderr and exit status of a separate process.
"""
import logging
import socket

import pytest
import yaml

from tests.tiny_run import one_video_config, write_tiny_checkpoint
from tools import app, export, predict
from utils.distributed import run_program
from workflows.prediction import looks_like_a_path, parse_class_names

PROGRAMS = {"tools/predict.py": predict, "tools/export.py": export, "tools/app.py": app}
BINARY = bytes(range(256)) * 4  # no UTF-8 text: 0x80 cannot start a character


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A config whose labels file exists, and a video file (the refusals come before it is opened)."""
    folder = tmp_path_factory.mktemp("class_lists")
    (folder / "labels.csv").write_text("id,name\n0,archery\n1,biking\n")
    (folder / "clip.mp4").write_bytes(b"\0" * 100)
    data = dict(dataset="tiny", modality="video", num_segments=2, batch_size=2, workers=0, num_classes=2,
                input_size=32, val_root=str(folder), label_list=str(folder / "labels.csv"))
    config = {"seed": 1, "data": data, "network": {"arch": "ViT-Tiny/16", "init": False}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("class_lists_ckpt") / "model_best.pt", seed=0)


@pytest.fixture(scope="module")
def busy_port():
    """A local port in use, so that an app that got past its checks could not serve (nor wait for a request)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def arguments(program, files, classes, port=None):
    common = ["--config", str(files / "config.yaml"), "--classes", str(classes)]
    if program == "tools/predict.py":
        return [*common, str(files / "clip.mp4"), "--cpu"]
    if program == "tools/export.py":
        return [*common, "--out", str(files / "out" / "model.onnx"), "--frame_size", "32x32"]
    # the app: refused before it builds the page; were it not, its port is taken and it could not serve
    return [*common, "--port", str(port), "--cpu"]


def run_here(program, args, capsys, monkeypatch):
    """(exit status, stderr) of `program`'s main run as its `__main__` block runs it."""
    monkeypatch.delenv("BIKE_TRACEBACK", raising=False)
    monkeypatch.setenv("GRADIO_TEMP_DIR", "unused")  # the app sets it; restored after the test
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_request:
        run_program(lambda: PROGRAMS[program].main(args))
    return exit_request.value.code, capsys.readouterr().err


def assert_one_error_line(result, *fragments):
    code, stderr = result
    assert code == 1, stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert all(fragment in stderr for fragment in fragments), stderr


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("classes", ["nonexistent.txt", "my_clases.csv", "lists/ucf101/labels", "classes.yaml"])
def test_a_mistyped_class_file_is_one_error_line(program, classes, files, busy_port, capsys, monkeypatch):
    monkeypatch.chdir(files)
    result = run_here(program, arguments(program, files, classes, busy_port), capsys, monkeypatch)
    assert_one_error_line(result, f"class file {classes} does not exist")
    assert not (files / "out").exists()


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("name", ["classes.txt", "labels.csv", "classes"])
def test_a_binary_class_file_is_one_error_line(program, name, files, busy_port, tmp_path, capsys, monkeypatch):
    (tmp_path / name).write_bytes(BINARY)
    result = run_here(program, arguments(program, files, tmp_path / name, busy_port), capsys, monkeypatch)
    assert_one_error_line(result, f"{tmp_path / name} is not a text file")


def test_a_text_file_with_nul_bytes_is_not_a_class_list(files, tmp_path, capsys, monkeypatch):
    (tmp_path / "classes.txt").write_bytes(b"\0\0\0\0\narchery\n")
    result = run_here("tools/predict.py", arguments("tools/predict.py", files, tmp_path / "classes.txt"), capsys,
                      monkeypatch)
    assert_one_error_line(result, f"{tmp_path / 'classes.txt'} is not a text file")


def test_a_folder_is_not_a_class_list(files, capsys, monkeypatch):
    result = run_here("tools/export.py", arguments("tools/export.py", files, files), capsys, monkeypatch)
    assert_one_error_line(result, f"class file {files} is a folder")


def test_a_single_class_runs_with_a_warning(tiny_config, checkpoint, tmp_path, caplog):
    config, video = one_video_config(tiny_config, tmp_path, "video")
    with caplog.at_level(logging.WARNING):
        predictions = run_program(lambda: predict.main(["--config", config, "--weights", str(checkpoint), video,
                                                        "--cpu", "--classes", "archery"]))
    assert len(predictions) == 1 and predictions[0].scores.tolist() == [pytest.approx(1.0)]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("single class ('archery')" in message and "always 1" in message for message in warnings), warnings


def test_what_reads_as_names_and_what_as_a_file(tmp_path, caplog):
    assert parse_class_names("archery, biking") == ["archery", "biking"]
    assert parse_class_names("jump.high, run") == ["jump.high", "run"]  # a comma makes it a list
    assert parse_class_names("Mr. Smith waves") == ["Mr. Smith waves"]  # a dot is not a file suffix
    many = [f"class name {i}" for i in range(100)]  # longer than a file name can be
    assert parse_class_names(", ".join(many)) == many
    assert [looks_like_a_path(spec) for spec in ("a.txt", "x/y", "A.CSV", "a,b.txt", "st. patrick", "v1.5")] == \
        [True, True, True, False, False, False]
    (tmp_path / "classes.txt").write_text("\ufeffarchery\n\nbiking\n")  # a byte-order mark and a blank line
    assert parse_class_names(str(tmp_path / "classes.txt")) == ["archery", "biking"]
    (tmp_path / "labels.csv").write_text("id,name\n1,biking\n0,archery\n")
    assert parse_class_names(str(tmp_path / "labels.csv")) == ["archery", "biking"]
