"""Programs run in child processes by the tests: torchrun jobs of CPU processes, servers on the loopback, copies
of the repository that stand for the machines of a cluster."""
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def torchrun(args, cwd=REPO, processes=2, timeout=240, check=True, env=None):
    """Runs a torchrun job of `processes` CPU processes (`env`: more environment variables); stops the whole
    job when it outlives `timeout`."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", **(env or {}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]
    return finished(started(command, cwd, env), timeout, check)


def started(command, cwd, env):
    """A job (torchrun, or a script that runs it) in its own session, its output captured."""
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finished(job, timeout, check=True):
    """The job's CompletedProcess when it ends within `timeout`; else it is stopped and the test fails."""
    try:
        stdout, stderr = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        job.terminate()  # torchrun stops its workers when it is told to stop
        try:
            stdout, stderr = job.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            stdout, stderr = "", ""
        pytest.fail(f"{job.args} still running after {timeout} s:\n{stdout[-3000:]}{stderr[-3000:]}")
    completed = subprocess.CompletedProcess(job.args, job.returncode, stdout, stderr)
    if check:
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


def free_port():
    """A TCP port of the loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def repository_copy(target: Path) -> Path:
    """A copy of this working tree's files (tracked and untracked, not the ignored: no run folders or caches) at
    `target`, as a machine of a cluster would have its own clone."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():  # not a file deleted from the working tree
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target
