"""Training under a real Slurm (tests/slurm_cluster.py: a one-host CPU-only cluster started by the test, as
root): scripts/slurm_train.sh's job is signalled before its time limit, checkpoints, requeues itself, resumes
and finishes with the weights of an uninterrupted run. Not run (and named in the summary) where Slurm cannot
be installed or started."""
import os
import re
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.processes import finished, started
from tests.resume_checks import assert_same_tensors
from tests.slurm_cluster import ENDED, SlurmUnavailable, one_host_cluster
from tests.tiny_run import FP32

pytestmark = [pytest.mark.slow, pytest.mark.waits]  # Slurm's daemons, batch jobs, torchrun; its periodic checks

REPO = Path(__file__).resolve().parent.parent
OPTIONS = ["--cpu", *FP32, "--no_progress"]
# Dropout draws from the global generator during the epoch: the resumed run must restore its state too.
RANDOM_LAYERS = {"drop_out": 0.2, "emb_dropout": 0.2}


@pytest.fixture(scope="module")
def slurm():
    try:
        with one_host_cluster() as cluster:
            yield cluster
    except SlurmUnavailable as error:
        pytest.skip(str(error))


def test_the_cluster_runs_steps_and_batch_jobs(slurm, tmp_path):
    assert slurm.client("srun", "--time=1", "hostname").strip() == slurm.node
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\necho node $SLURM_JOB_NODELIST\n")
    job_id = slurm.client("sbatch", "--parsable", f"--output={tmp_path}/job.out", str(script)).strip()
    assert slurm.wait_for_job(job_id, timeout=60)["JobState"] == "COMPLETED"
    assert (tmp_path / "job.out").read_text() == f"node {slurm.node}\n"


def wait_until(done, job_id: str, slurm, output: Path, timeout: float, what: str):
    """Waits until `done(job fields)` (failing when the job ends first or the time is up)."""
    deadline = time.monotonic() + timeout
    while not done(job := slurm.job(job_id)):
        assert job["JobState"] not in ENDED and time.monotonic() < deadline, \
            f"job {job_id} {job['JobState']} before {what}:\n{output.read_text()[-3000:] if output.exists() else ''}"
        time.sleep(0.5)


def minutes(duration: str) -> int:
    """Whole minutes of a Slurm duration ([D-]HH:MM:SS)."""
    days, _, clock = duration.rpartition("-")
    hours, mins, _ = clock.split(":")
    return int(days or 0) * 1440 + int(hours) * 60 + int(mins)


def test_a_job_signalled_before_its_time_limit_requeues_itself_and_ends_as_an_uninterrupted_run(
        slurm, tiny_config, tmp_path):
    """2 processes (batch 2 each: 2 steps an epoch), 2 epochs, submitted with --signal=USR1@90. The first run
    waits in the middle of epoch 2 for the signal (tests/paused_until_signal.py); the test then cuts the job's
    time limit to 1-2 minutes from now, so Slurm's next periodic check (every 30 s) sends the warning, whatever
    the machine's start-up time. The run stops with a checkpoint and requeues the job; its next run (resume=auto
    in the same run folder: the job id), given back a long limit, finishes the training."""
    config = tiny_config.write(data={"batch_size": 2}, solver={"epochs": 2}, network=RANDOM_LAYERS)
    # the uninterrupted run, meanwhile (the job mostly waits for Slurm)
    uninterrupted = started([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "train.py", "--config", config, "--log_time", "whole", *OPTIONS], REPO,
                            dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES=""))

    env = {key: value for key, value in slurm.env.items() if key != "OMP_NUM_THREADS"}
    env.update(PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="", NPROC_PER_NODE="2",
               PROGRAM="tests/paused_until_signal.py", PAUSE_AT=r"epoch 2/2 \[1/2\]")
    output = tmp_path / "job.out"
    job_id = slurm.client("sbatch", "--parsable", "--time=10", "--signal=USR1@90", f"--output={output}",
                          "scripts/slurm_train.sh", config, *OPTIONS, env=env, cwd=REPO).strip()
    wait_until(lambda job: output.exists() and "waiting for SIGUSR1" in output.read_text(), job_id, slurm, output,
               timeout=240, what="the first run waited for the signal")
    elapsed = minutes(slurm.job(job_id)["RunTime"])
    slurm.client("scontrol", "update", f"JobId={job_id}", f"TimeLimit={elapsed + 2}")  # 60-120 s left
    # Requeued, the job waits 5 s (the cluster's credential lifetime) before its next run: a long limit again
    # before that run starts, so that no second warning comes.
    wait_until(lambda job: job["Restarts"] != "0", job_id, slurm, output, timeout=120, what="the requeue")
    slurm.client("scontrol", "update", f"JobId={job_id}", "TimeLimit=10")
    job = slurm.wait_for_job(job_id, timeout=240)
    assert job["JobState"] == "COMPLETED" and job["Restarts"] == "1", f"{job}\n{output.read_text()[-3000:]}"
    finished(uninterrupted, timeout=300)

    folder = tiny_config.run_folder(job_id)
    log = (folder / "log.txt").read_text()
    assert "resume=auto: no complete checkpoint" in log
    assert re.search(r"resume=auto: continuing from .*mid_epoch\.pt", log), log[-3000:]
    assert_same_tensors(torch.load(folder / "last_model.pt", weights_only=True),
                        torch.load(tiny_config.run_folder("whole") / "last_model.pt", weights_only=True),
                        ("model_state_dict", "fusion_model_state_dict", "optimizer_state_dict"))
