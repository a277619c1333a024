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
    the requeued job (resume=auto) ends with the uninterrupted run's weights, optimizer and schedule (the
    loader workers only load what the sampler hands them: tests/test_training.py runs them)."""
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
    assert "with the config and process count, precision and code of the run that wrote it" in log
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


@pytest.mark.slow
def test_a_signal_to_one_process_of_a_torchrun_job_stops_every_process_after_the_same_step(tiny_config, tmp_path):
    """SIGUSR1 to rank 0 alone: rank 1 agrees (else it would wait in the next step's all-gather while rank 0
    writes and exits), mid_epoch.pt holds both ranks' random states, one requeue, every process exits 0."""
    config = tiny_config.write(data={"batch_size": 1}, solver={"epochs": 1}, network=RANDOM_LAYERS)
    tools = fake_scontrol(tmp_path / "bin")
    torchrun([str(REPO / "tests" / "signalled_at_log_line.py"), "USR1", r"epoch 1/1 \[2/4\]", str(REPO / "train.py"),
              "--config", config, "--cpu", "--no_progress", "--log_time", "stopped", "resume=auto"],
             timeout=300, env={"SLURM_JOB_ID": "99", "PATH": f"{tools}:{os.environ['PATH']}"})
    folder = tiny_config.run_folder("stopped")
    checkpoint = torch.load(folder / "mid_epoch.pt", weights_only=True)
    assert checkpoint[POSITION_KEY] == {"epoch": 0, "batches_done": 2} and checkpoint["epoch"] == -1
    assert len(checkpoint["rng_states"]) == 2
    assert not torch.equal(checkpoint["rng_states"][0]["torch"], checkpoint["rng_states"][1]["torch"])
    assert (tools / "scontrol.calls").read_text() == "requeue 99\n"
    assert not (folder / "last_model.pt").exists()


def write_checkpoint(path: Path, epoch: int, position=None) -> Path:
    """A small checkpoint in the layout the run folder's have: `epoch` done, and a mid-epoch `position`."""
    checkpoint = {"epoch": epoch, "model_state_dict": {"w": torch.zeros(64)}, "fusion_model_state_dict": {}}
    if position:
        checkpoint[POSITION_KEY] = dict(zip(("epoch", "batches_done"), position))
    torch.save(checkpoint, path)
    return path


def test_resume_auto_takes_the_checkpoint_furthest_into_training_and_passes_over_a_truncated_one(tmp_path, caplog):
    assert run_record.newest_checkpoint(tmp_path) is None
    last = write_checkpoint(tmp_path / "last_model.pt", epoch=0)
    mid = write_checkpoint(tmp_path / "mid_epoch.pt", epoch=0, position=(1, 2))
    assert run_record.newest_checkpoint(tmp_path) == mid
    mid.write_bytes(mid.read_bytes()[:-100])  # cut short: its end (the zip directory) is missing
    assert run_record.newest_checkpoint(tmp_path) == last
    assert f"resume=auto passes over {mid}" in caplog.text
    write_checkpoint(mid, epoch=0, position=(1, 2))
    write_checkpoint(last, epoch=1)  # the epoch ended after the mid-epoch checkpoint
    assert run_record.newest_checkpoint(tmp_path) == last
    last.write_bytes(b"")
    mid.write_bytes(mid.read_bytes()[: len(mid.read_bytes()) // 2])
    assert run_record.newest_checkpoint(tmp_path) is None


def test_a_resumed_epoch_leaves_out_the_batches_done_and_keeps_every_samples_seed():
    sampler = SeededSampler(torch.utils.data.DistributedSampler(range(20), 2, 1, shuffle=True, seed=3), seed=3,
                            rank=1)
    sampler.set_epoch(4)
    whole = list(sampler)
    sampler.set_epoch(4, skip=6)
    assert len(sampler) == 4 and list(sampler) == whole[6:]
    sampler.set_epoch(5)
    assert len(sampler) == 10 and list(sampler) != whole


def test_a_resume_says_in_one_line_what_differs_from_the_interrupted_run(tmp_path, caplog):
    config = demo_config()
    facts = {"world_size": 2, "precision": "fp32", "git_commit": "abc", "torch": "2.14"}
    checkpoint = {"epoch": 0, "model_state_dict": {}, "config": config.to_dict(), "run": dict(facts),
                  POSITION_KEY: {"epoch": 1, "batches_done": 3}}
    path = tmp_path / "mid_epoch.pt"
    torch.save(checkpoint, path)
    now = demo_config("data.batch_size=4", "data.workers=0", "resume=" + str(path)).to_dict()
    with caplog.at_level("INFO"):
        run_record.report_resume(path, now, dict(facts, world_size=1, git_commit="def"), epochs=5)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [f"resuming {path} at epoch 2/5 after batch 3, but this run will not repeat the interrupted "
                     "one: processes 2 -> 1; code (git commit) abc -> def; data.batch_size "
                     f"{config.data.batch_size} -> 4 (another process count changes the data order and every "
                     "sample's random numbers)"]
    caplog.clear()
    with caplog.at_level("INFO"):
        run_record.report_resume(path, config.to_dict(), facts, epochs=5)
    assert "with the config and process count, precision and code of the run that wrote it" in caplog.text
    assert "will not repeat" not in caplog.text
    caplog.clear()
    del checkpoint["config"], checkpoint["run"]
    torch.save(checkpoint, path)
    with caplog.at_level("INFO"):
        run_record.report_resume(path, config.to_dict(), facts, epochs=5)
    assert "whether this run repeats that one is unknown" in caplog.text


def test_in_a_slurm_job_the_run_folder_is_named_after_the_job(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    assert run_name(None, distributed=False) == "123"
    assert run_name("mine", distributed=False) == "mine"
    monkeypatch.delenv("SLURM_JOB_ID")
    assert re.fullmatch(r"\d{8}_\d{6}", run_name(None, distributed=False))


@pytest.mark.slow
def test_an_elastic_job_whose_rank_is_killed_restarts_from_the_last_checkpoint_and_ends_as_if_uninterrupted(
        tiny_config):
    """torchrun --max-restarts 1 with logging.checkpoint_steps 1 and resume=auto: rank 0 killed with SIGKILL
    at the third of four steps (after the mid-epoch checkpoint of the second); the restarted job continues from
    that checkpoint and ends with the weights, optimizer and schedule of an uninterrupted 2-process run.
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 as the docs say (pytorch/pytorch#135712: with the store torchrun
    shares by default, the restarted workers read the killed ones' addresses and never connect)."""
    config = tiny_config.write(data={"batch_size": 1}, solver={"epochs": 1}, network=RANDOM_LAYERS,
                               logging={"checkpoint_steps": 1})
    common = ["--config", config, "--cpu", *FP32, "--no_progress"]
    torchrun([str(REPO / "train.py"), *common, "--log_time", "whole"], timeout=420)
    job = torchrun(["--max-restarts=1", str(REPO / "tests" / "signalled_at_log_line.py"), "KILL",
                    r"epoch 1/1 \[3/4\]", str(REPO / "train.py"), *common, "--log_time", "elastic", "resume=auto"],
                   timeout=420, env={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"})
    folder = tiny_config.run_folder("elastic")
    log = (folder / "log.txt").read_text()
    assert "resume=auto: no complete checkpoint" in log, "the first start should start fresh"
    assert f"resume=auto: continuing from {folder / 'mid_epoch.pt'}" in log, job.stderr[-3000:]
    # The killed process logged no [3/4] (the kill comes as the record is made); the restart went on after [2/4].
    assert [len(re.findall(rf"epoch 1/1 \[{step}/4\]", log)) for step in (1, 2, 3, 4)] == [1, 1, 1, 1]
    final = torch.load(folder / "last_model.pt", weights_only=True)
    reference = torch.load(tiny_config.run_folder("whole") / "last_model.pt", weights_only=True)
    assert final["epoch"] == reference["epoch"] == 0
    assert_same_tensors(final, reference, COMPARED)
    assert final["scheduler_state_dict"] == reference["scheduler_state_dict"]
    assert [start["world_size"] for start in yaml.safe_load((folder / "starts.yaml").read_text())] == [2, 2]
