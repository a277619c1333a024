"""Every program turns a user error into one `error: ...` line on stderr and its exit status, without a
traceback: a misspelt config key (status 2), a missing weights file (status 2 when the config names it,
1 on the command line) and a file that is not a video (1). The first two, and a non-video given to
tools/predict.py, are refused before any model or dataset is built. A non-video inside a list is found
when the loader reaches it, after the model is built.

Each program's `main` runs here as its `__main__` block runs it (through `run_program`), which gives the
same stderr and exit status as a separate process and lets the test see what was built; a few cases run
as real processes to show that.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import clip
from datasets.attributes import AttributesDataset
from datasets.video import VideoDataset
import test as test_program
import test_zeroshot
import train
import train_co
from modules import VideoHeader
from tests.tiny_run import original_layout
from tests.processes import torchrun
from tools import analyze_scores, convert_annotations, extract_frames, generate_attributes, plot_curves, predict
from utils.distributed import run_program

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = {"train.py": train, "train_co.py": train_co, "test.py": test_program, "test_zeroshot.py": test_zeroshot,
            "tools/predict.py": predict, "tools/generate_attributes.py": generate_attributes}
MISSPELT = "data.batch_sise=4"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A config over a list of two files that are not videos, and a checkpoint that fits it."""
    folder = tmp_path_factory.mktemp("program_errors")
    (folder / "labels.csv").write_text("id,name\n0,archery\n1,biking\n")
    (folder / "clip.mp4").write_bytes(b"this is not a video\n" * 50)
    (folder / "list.txt").write_text("clip.mp4 0\nclip.mp4 1\n")
    (folder / "attributes.json").write_text("{}")
    data = dict(dataset="tiny", modality="video", num_segments=2, batch_size=2, workers=0, num_classes=2,
                input_size=32, train_root=str(folder), train_list=str(folder / "list.txt"), val_root=str(folder),
                val_list=str(folder / "list.txt"), label_list=str(folder / "labels.csv"),
                output_path=str(folder / "exps"), attributes_train_path=str(folder / "attributes.json"),
                attributes_val_path=str(folder / "attributes.json"))
    config = {"seed": 1, "data": data, "network": {"arch": "ViT-Tiny/16", "init": False}, "solver": {"epochs": 1}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    model = clip.create_model("ViT-Tiny/16", image_resolution=32)
    torch.save(original_layout(model, VideoHeader.for_clip("Transf", "VCS", model), ""), folder / "model.pt")
    return folder


def run(program, *args, **env):
    """`python PROGRAM ARGS` in a process of its own."""
    return subprocess.run([sys.executable, program, *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          timeout=240, env={**os.environ, "PYTHONPATH": str(REPO), "BIKE_TRACEBACK": "", **env})


def run_here(program, args, capsys, monkeypatch):
    """(exit status, stderr, classes built) of `program`'s main run as its `__main__` block runs it; the
    classes are those of every model part (torch.nn.Module) and dataset made."""
    monkeypatch.delenv("BIKE_TRACEBACK", raising=False)
    capsys.readouterr()
    built = []

    def recording(init):
        def recording_init(self, *args, **kwargs):
            built.append(type(self).__name__)
            init(self, *args, **kwargs)
        return recording_init

    with monkeypatch.context() as patch, pytest.raises(SystemExit) as exit_request:
        for kind in (torch.nn.Module, VideoDataset, AttributesDataset):
            patch.setattr(kind, "__init__", recording(kind.__init__))
        run_program(lambda: PROGRAMS[program].main([str(arg) for arg in args]))
    return exit_request.value.code, capsys.readouterr().err, built


def arguments(program, files, override=None, weights=None):
    """The command line of `program` on the fixture's config, with a config override and a weights file."""
    config = ["--config", files / "config.yaml"]
    if program == "tools/predict.py":
        return [*config, *(["--weights", weights] if weights else []), files / "labels.csv",
                *(["--set", override] if override else [])]
    if program in ("train.py", "train_co.py"):
        key = "pretrain" if program == "train.py" else "resume"
        return [*config, *([override] if override else []), *([f"{key}={weights}"] if weights else [])]
    weights = weights or (files / "model.pt" if program in ("test.py", "test_zeroshot.py") else None)
    return [*config, *(["--weights", weights] if weights else []), *([override] if override else [])]


def assert_refused_before_building(result, status, *fragments):
    """The exit status is `status`, stderr exactly one `error:` line holding `fragments`, nothing was built."""
    code, stderr, built = result
    assert (code, built) == (status, []), stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert all(fragment in stderr for fragment in fragments), stderr


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_misspelt_config_key(program, files, capsys, monkeypatch):
    result = run_here(program, arguments(program, files, override=MISSPELT), capsys, monkeypatch)
    assert_refused_before_building(result, 2, "unknown key data.batch_sise", "did you mean data.batch_size?")


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_missing_weights_file(program, files, capsys, monkeypatch):
    missing = files / "no_such_model.pt"
    result = run_here(program, arguments(program, files, weights=missing), capsys, monkeypatch)
    if program in ("train.py", "train_co.py"):  # named by the config (pretrain=, resume=): the config is wrong
        key = "pretrain" if program == "train.py" else "resume"
        assert_refused_before_building(result, 2, f"{key}: no such file or folder: {missing}")
    else:
        assert_refused_before_building(result, 1, f"no such file: --weights {missing}")


def test_predict_refuses_a_non_video_before_building_the_model(files, capsys, monkeypatch):
    result = run_here("tools/predict.py", ["--config", files / "config.yaml", files / "clip.mp4"], capsys, monkeypatch)
    assert_refused_before_building(result, 1, f"cannot open video {files / 'clip.mp4'}")


@pytest.mark.parametrize("tool, args, status, line", [
    (analyze_scores, ["config.yaml", "--classes", "labels.csv"], 1,
     "error: (cannot read|refused to load) {}/config.yaml"),
    (plot_curves, ["."], 1, r"error: {}/log.txt: no training log"),
    (convert_annotations, ["ucf101", ".", "--out", "converted"], 1,
     r"error: UCF-101 class index {}/classInd.txt does not"),
    (extract_frames, ["labels.csv", "--out", "frames", "--video-root", "."], 1,
     r"error: {}/labels.csv:1: expected `<file> <label>`, got 'id,name'"),
])
def test_the_data_tools_end_a_user_error_with_one_line(tool, args, status, line, files, capsys, monkeypatch):
    monkeypatch.delenv("BIKE_TRACEBACK", raising=False)
    monkeypatch.chdir(files)
    with pytest.raises(SystemExit) as exit_request:
        run_program(lambda: tool.main([arg if arg[0] == "-" or arg == "ucf101" else str(files / arg) for arg in args]))
    stderr = capsys.readouterr().err
    assert exit_request.value.code == status and stderr.count("\n") == 1, stderr
    assert re.match(line.format(re.escape(str(files))), stderr), stderr


@pytest.mark.slow
@pytest.mark.parametrize("program, extra", [
    ("train.py", []),
    ("test.py", ["--weights", "model.pt", "data.workers=1"]),  # the error comes back through a loader worker
])
def test_a_non_video_in_a_list_is_one_line_when_the_loader_reaches_it(program, extra, files):
    extra = [files / value if value == "model.pt" else value for value in extra]
    result = run(program, "--config", files / "config.yaml", *extra)
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "DataLoader worker" not in result.stderr, result.stderr
    assert len(errors) == 1, result.stderr
    # Both lines name the same file; training reaches them in its shuffled order, so either line may be first.
    assert re.match(rf"error: {re.escape(str(files / 'list.txt'))}:[12]: cannot open video "
                    rf"{re.escape(str(files / 'clip.mp4'))}: ", errors[0]), errors


@pytest.mark.slow
def test_the_program_itself_prints_only_the_error_line(files):
    result = run("train.py", "--config", files / "config.yaml", MISSPELT)
    assert result.returncode == 2
    assert result.stderr.startswith("error: override 'data.batch_sise=4': unknown key data.batch_sise")
    assert result.stderr.count("\n") == 1


@pytest.mark.slow
def test_bike_traceback_shows_the_traceback(files):
    result = run("test.py", "--config", files / "config.yaml", "--weights", files / "nothing.pt", BIKE_TRACEBACK="1")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.splitlines()[-1] == f"FileNotFoundError: no such file: --weights {files / 'nothing.pt'}"


@pytest.mark.slow
def test_under_torchrun_each_process_prints_its_tagged_line_and_status(files):
    job = torchrun(["train.py", "--config", str(files / "config.yaml"), "--cpu", MISSPELT], check=False, timeout=120)
    tagged = [line for line in job.stderr.splitlines() if line.startswith("[rank")]
    assert job.returncode != 0
    # The first process to fail ends the job: torchrun may stop the other before it gets to print its line.
    assert tagged and len(tagged) == len(set(tagged)) <= 2, job.stderr
    assert all(re.fullmatch(r"\[rank [01]\] error: override 'data.batch_sise=4': unknown key data.batch_sise .*", line)
               for line in tagged), job.stderr
    assert re.search(r"exitcode\s*:\s*2\b", job.stderr), job.stderr  # torchrun's report of the processes' status
