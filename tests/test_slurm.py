"""Training under a real Slurm (tests/slurm_cluster.py: a one-host CPU-only cluster started by the test, as
root): scripts/slurm_train.sh's job is signalled before its time limit, checkpoints, requeues itself, resumes
and finishes with the weights of an uninterrupted run. Not run (and named in the summary) where Slurm cannot
be installed or started."""
import pytest

from tests.slurm_cluster import SlurmUnavailable, one_host_cluster

pytestmark = pytest.mark.slow  # Slurm's daemons, batch jobs, torchrun


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
