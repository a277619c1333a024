"""Nothing that decoded or converted frames and then forks leaves its children waiting for FFmpeg threads.

Each site runs in its own interpreter (tests/fork_after_decode.py), so a hang is a timeout of that process
group, reported here with what it printed, and no threaded FFmpeg state leaks into the test process.
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from datasets.decoding import VIDEO_BACKENDS, available_video_backends

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 120  # each site takes ~6 s on 2 idle cores


def run_site(tmp_path, *arguments):
    process = subprocess.Popen([sys.executable, "-m", "tests.fork_after_decode", str(tmp_path), *arguments],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the site's forked workers too
        output, _ = process.communicate()
        pytest.fail(f"{' '.join(arguments)}: workers forked after decoding hung (killed after {LIMIT_S} s)\n{output}")
    assert process.returncode == 0 and output.rstrip().endswith("finished"), output


@pytest.mark.parametrize("tool", ["extract_frames", "prepare_videos"])
def test_a_tools_worker_pool_after_decoding_in_the_parent_finishes(tmp_path, tool):
    run_site(tmp_path, tool)


@pytest.mark.parametrize("backend", [
    pytest.param(name, marks=pytest.mark.skipif(name not in available_video_backends(),
                                                reason=f"video reader {name} cannot be used here: NOT tested"))
    for name in VIDEO_BACKENDS])
def test_loader_workers_forked_after_the_parent_decoded_a_sample_finish(tmp_path, backend):
    run_site(tmp_path, "loader", backend)


def test_a_timeline_stream_in_a_forked_child_after_streaming_in_the_parent_finishes(tmp_path):
    run_site(tmp_path, "timeline")
