"""A one-host, CPU-only Slurm cluster for the tests: Debian's slurm-wlm and MUNGE (scripts/install_slurm.sh),
started as root with everything in a temporary folder -- a generated MUNGE key and socket, slurm.conf, spool,
state and logs; nothing under /etc or /run -- and stopped when the test ends, also when it fails.

Slurm's clients find the cluster through SLURM_CONF (`cluster.env`). The configuration is the smallest that
runs batch jobs with signals and requeues quickly: no cgroups (proctrack/linuxproc, task/none), one node with
this machine's CPUs, a scheduler pass every second, and a credential lifetime of 5 s, which is also how long
Slurm holds a requeued job before starting it again (120 s by default)."""
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.processes import free_port

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "squeue", "scancel")
# The skip reason when the cluster cannot run here (tests/conftest.py's OPTIONAL_EXTRAS names it).
UNAVAILABLE = "Slurm cannot be used here"
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE")  # a job's final states (a requeued one goes through COMPLETING, REQUEUED and PENDING)


def unavailable_reason():
    """Why the test cluster cannot start on this machine, or None."""
    missing = [name for name in PROGRAMS if not shutil.which(name)]
    if missing:
        return f"{UNAVAILABLE}: {', '.join(missing)} not installed (bash scripts/install_slurm.sh)"
    if os.geteuid() != 0:
        return f"{UNAVAILABLE}: the test starts slurmctld, slurmd and munged as root, and runs as another user"
    return None


class SlurmCluster:
    """A running one-host cluster: its folder, the environment of its clients and a few client calls."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.node = socket.gethostname().split(".")[0]
        self.env = dict(os.environ, SLURM_CONF=str(folder / "slurm.conf"))
        self.daemons = []

    def client(self, *command, check=True, timeout=30, env=None, cwd=None) -> str:
        """Runs a Slurm client command against this cluster (in `env`, by default `self.env`); its output."""
        done = subprocess.run(command, env=env or self.env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode:
            raise AssertionError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr}{self.logs()}")
        return done.stdout

    def job(self, job_id: str) -> dict:
        """`scontrol show job` as a dict of its fields (JobState, Restarts, ExitCode, ...)."""
        fields = self.client("scontrol", "show", "job", "--oneliner", job_id).split()
        return dict(field.split("=", 1) for field in fields if "=" in field)

    def wait_for_job(self, job_id: str, timeout: float) -> dict:
        """Waits until the job has ended (any final state); its fields."""
        deadline = time.monotonic() + timeout
        while True:
            fields = self.job(job_id)
            if fields["JobState"] in ENDED:
                return fields
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {fields['JobState']} after {timeout} s{self.logs()}")
            time.sleep(0.5)

    def logs(self) -> str:
        """The last lines of the daemons' logs (for failure messages)."""
        return "".join(f"\n--- {path.name}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:])
                       for path in sorted((self.folder / "log").glob("*.log")))

    def start(self):
        folder = self.folder
        for name in ("munge", "spool", "state", "log"):
            (folder / name).mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)  # munged wants its socket's folders searchable by everyone
        key = folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.spawn("munged", "--foreground", "--force", f"--key-file={key}", f"--socket={folder}/munge/socket",
                   f"--pid-file={folder}/munge/munged.pid", f"--seed-file={folder}/munge/seed",
                   f"--log-file={folder}/log/munged.log")
        deadline = time.monotonic() + 10
        while not (folder / "munge" / "socket").exists():
            if time.monotonic() > deadline or self.daemons[-1].poll() is not None:
                raise RuntimeError(f"munged did not start{self.logs()}")
            time.sleep(0.1)
        (folder / "slurm.conf").write_text(self.configuration())
        self.spawn("slurmctld", "-D", "-f", str(folder / "slurm.conf"))
        self.spawn("slurmd", "-D", "-f", str(folder / "slurm.conf"), "-N", self.node)
        deadline = time.monotonic() + 30
        while self.client("sinfo", "--noheader", "--format=%t", check=False).strip() != "idle":
            dead = [daemon.args[0] for daemon in self.daemons if daemon.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not become idle ({', '.join(dead) or 'timeout'}){self.logs()}")
            time.sleep(0.3)

    def spawn(self, *command):
        self.daemons.append(subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL))

    def configuration(self) -> str:
        folder = self.folder
        return "\n".join([
            "ClusterName=bike-test",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            f"AuthInfo=socket={folder}/munge/socket,cred_expire=5",
            "CredType=cred/munge",
            f"StateSaveLocation={folder}/state",
            f"SlurmdSpoolDir={folder}/spool",
            f"SlurmctldPidFile={folder}/slurmctld.pid",
            f"SlurmdPidFile={folder}/slurmd.pid",
            f"SlurmctldLogFile={folder}/log/slurmctld.log",
            f"SlurmdLogFile={folder}/log/slurmd.log",
            "ProctrackType=proctrack/pgid",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "SlurmctldTimeout=10",
            "SlurmdTimeout=10",
            "KillWait=5",
            "MinJobAge=600",
            "SchedulerParameters=sched_interval=1,bf_interval=1",
            "SlurmdParameters=config_overrides",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN",
            f"PartitionName=test Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n"

    def stop(self):
        """Cancels the jobs left, then stops the daemons (slurmd, slurmctld, munged)."""
        if any(daemon.poll() is None for daemon in self.daemons[1:]):
            self.client("scancel", "--partition=test", check=False)
            deadline = time.monotonic() + 20
            while self.client("squeue", "--noheader", check=False).strip() and time.monotonic() < deadline:
                time.sleep(0.3)
        for daemon in reversed(self.daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


class SlurmUnavailable(Exception):
    """The cluster cannot run on this machine (the message says why, starting with UNAVAILABLE)."""


@contextlib.contextmanager
def one_host_cluster():
    """A started cluster (a SlurmCluster) in a new folder of /tmp (MUNGE's socket path must stay short),
    stopped and removed on exit; SlurmUnavailable when the programs are missing or do not start."""
    reason = unavailable_reason()
    if reason:
        raise SlurmUnavailable(reason)
    with tempfile.TemporaryDirectory(prefix="bike-slurm-") as folder:
        cluster = SlurmCluster(Path(folder))
        try:
            try:
                cluster.start()
            except RuntimeError as error:
                raise SlurmUnavailable(f"{UNAVAILABLE}: {error}") from error
            yield cluster
        finally:
            cluster.stop()
