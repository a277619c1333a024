"""Runs that survive preemption: SIGUSR1/SIGTERM stop every process at the next optimizer step with a mid-epoch
checkpoint and a requeue request, `resume=auto` continues from the run folder's newest complete checkpoint
bit-identically, and a torchrun job whose rank is killed restarts from the last checkpoint (--max-restarts)."""
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import train as train_program
from datasets.seeded import SeededSampler
from tests.processes import torchrun
from tests.resume_checks import assert_same_tensors
from tests.tiny_run import FP32
from utils.config import load_config
from utils.distributed import DistributedContext
from workflows import run_record
from workflows.preemption import StopPoints, StopSignals
from workflows.startup import run_name
from workflows.training import POSITION_KEY

REPO = Path(__file__).resolve().parent.parent
COMPARED = ("model_state_dict", "fusion_model_state_dict", "optimizer_state_dict")
# Dropout and drop path draw from the global generator during the epoch: a resume must restore its state too.
RANDOM_LAYERS = {"drop_out": 0.2, "emb_dropout": 0.2}


def demo_config(*overrides):
    return load_config(REPO / "configs/demo/demo.yaml", list(overrides))


def fake_scontrol(folder: Path, status: int = 0) -> Path:
    """A folder holding an executable `scontrol` that appends its arguments to folder/scontrol.calls and exits
    with `status` (after a message on stderr when it fails)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{folder}/scontrol.calls"\n'
                      + (f'echo "scontrol: error: Job is not requeueable" >&2\nexit {status}\n' if status else ""))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def signalled_run(name: str, pattern: str, arguments: list, env: dict, timeout: float = 300):
    """train.py in a subprocess that sends itself SIG`name` when it first logs a line matching `pattern`."""
    env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="", **env)
    return subprocess.run([sys.executable, str(REPO / "tests" / "signalled_at_log_line.py"), name, pattern,
                           str(REPO / "train.py"), *arguments], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_sigusr1_stops_at_the_next_step_with_a_checkpoint_and_a_requeue_and_the_resumed_run_is_bit_identical(
        tiny_config, tmp_path, monkeypatch):
    """A Slurm job (SLURM_JOB_ID set, no --log_time: the run folder is named after the job) sent SIGUSR1 in the
    middle of its second epoch writes mid_epoch.pt after that step, calls `scontrol requeue <job>` and exits 0;
    the requeued job (resume=auto) ends with the uninterrupted run's weights, optimizer and schedule."""
    config = tiny_config.write(data={"batch_size": 2}, solver={"epochs": 2}, network=RANDOM_LAYERS)
    train_program.main(["--config", config, "--log_time", "whole", "--cpu", "--no_progress"])
    folder, tools = tiny_config.run_folder("4242"), fake_scontrol(tmp_path / "bin")
    arguments = ["--config", config, "--cpu", "--no_progress", "resume=auto"]
    stopped = signalled_run("USR1", r"epoch 2/2 \[2/4\]", arguments,
                            {"SLURM_JOB_ID": "4242", "PATH": f"{tools}:{os.environ['PATH']}"})

    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert (tools / "scontrol.calls").read_text() == "requeue 4242\n"
    log = (folder / "log.txt").read_text()
    assert "resume=auto: no complete checkpoint" in log
    assert "stopped by SIGUSR1 in epoch 2/2 after batch 2 of 4, mid_epoch.pt written; exit status 0" in log
    assert not re.search(r"epoch 2/2 \[3/4\]", log), "a step ran after the signal"
    checkpoint = torch.load(folder / "mid_epoch.pt", weights_only=True)
    assert checkpoint["epoch"] == 0 and checkpoint[POSITION_KEY] == {"epoch": 1, "batches_done": 2}

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    train_program.main(arguments)
    log = (folder / "log.txt").read_text()
    assert f"resume=auto: continuing from {folder / 'mid_epoch.pt'}" in log
    assert "with the config, process count, precision and code of the run that wrote it" in log
    assert re.search(r"epoch 2/2 \[3/4\]", log) and len(re.findall(r"epoch 1/2 \[1/4\]", log)) == 1
    final = torch.load(folder / "last_model.pt", weights_only=True)
    reference = torch.load(tiny_config.run_folder("whole") / "last_model.pt", weights_only=True)
    assert final["epoch"] == reference["epoch"] == 1
    assert_same_tensors(final, reference, COMPARED)
    assert final["scheduler_state_dict"] == reference["scheduler_state_dict"]
    assert not (folder / "mid_epoch.pt").exists(), "the epoch's checkpoint supersedes the mid-epoch one"
    starts = yaml.safe_load((folder / "starts.yaml").read_text())
    assert [start["resumed_from"] for start in starts] == [None, str(folder / "mid_epoch.pt")]
    assert all(start["world_size"] == 1 and start["precision"] == final["run"]["precision"] for start in starts)


@pytest.mark.slow
def test_a_failed_requeue_is_logged_and_the_run_ends_with_128_plus_the_signal(tmp_path, monkeypatch, caplog):
    """SIGTERM in a Slurm job whose requeue fails: logged, not fatal; exit status 143."""
    tools = fake_scontrol(tmp_path / "bin", status=1)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    ctx = DistributedContext(0, 1, 0, torch.device("cpu"))
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.received == signal.SIGTERM
        points = StopPoints(signals, ctx, demo_config(), lambda position, states: None, "mid_epoch.pt")
        with pytest.raises(SystemExit) as stopped:
            points.after_epoch(0)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert (tools / "scontrol.calls").read_text() == "requeue 77\n"
    assert "scontrol requeue 77 failed (status 1): scontrol: error: Job is not requeueable" in caplog.text
    assert signal.getsignal(signal.SIGTERM) is not signals._record, "the previous handler is back"
