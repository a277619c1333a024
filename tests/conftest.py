"""Shared test fixtures (the independent OpenAI reference, paths to the shared annotation lists, tiny data), the
plugins of the time limits and of the test tiers, the parallel workers' threads and test order, and the summary
of skips."""
import logging
import os
import sys
from pathlib import Path

import pytest

from tests import openai_reference as openai_reference_package

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_LISTS = REPO_ROOT.parent / "shared" / "lists"

# tests.time_limits: the end of hangs that a test's time limit alone cannot end; tests.tiers: an unmarked test
# that starts a Python program fails (`slow` marker)
pytest_plugins = ["tests.time_limits", "tests.tiers"]


def pytest_configure(config):
    """Under pytest-xdist (scripts/run_tests.sh: one worker per core) each worker, and every program its tests
    start, computes on one thread: more would take the cores of the other workers."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)


def pytest_collection_modifyitems(items):
    """The tests that mostly wait (`waits` marker) first, so that the workers' other tests fill the wait
    instead of the run ending on it."""
    items.sort(key=lambda item: item.get_closest_marker("waits") is None)


@pytest.fixture(scope="session")
def openai_reference():
    """OpenAI's own `model.py` and `simple_tokenizer.py` (package openai-clip 1.0.1), loaded by file path:
    the independent reference of the equivalence tests. scripts/run_tests.sh installs it; never skipped."""
    folder = openai_reference_package.reference_folder()
    if not openai_reference_package.is_installed(folder):
        pytest.fail(f"OpenAI reference package missing from {folder}: run `python -m tests.openai_reference` "
                    f"(scripts/run_tests.sh does) or `{openai_reference_package.install_command(folder)}` "
                    f"(or set BIKE_OPENAI_REFERENCE to a folder holding it)", pytrace=False)
    return openai_reference_package.load(folder)


OPTIONAL_EXTRAS = {"tensorboard": "the optional TensorBoard extra is not installed (pip install tensorboard)",
                   "real sample videos are NOT fetched": "the real-video tests did NOT run: the sample videos could "
                                                         "not be fetched (bash scripts/fetch_test_videos.sh)",
                   # tests/test_app.py's skip reason: the machine could not have Debian's chromium package
                   "Chromium is not installed": "the browser test did NOT run: no Chromium (apt-get install chromium)",
                   # the readers' skip reasons: a machine without FFmpeg's shared libraries, decord off x86-64
                   "torchcodec cannot be used here": "the TorchCodec reader's tests did NOT run: FFmpeg's shared "
                                                     "libraries are missing (bash scripts/install_ffmpeg_libs.sh)",
                   "reader decord cannot be used here": "the decord reader's tests did NOT run: decord is not "
                                                        "installed (x86-64 only; requirements-decord.txt)",
                   "decord is not installed": "the decord reader's tests did NOT run: decord is not installed "
                                              "(x86-64 only; requirements-decord.txt)",
                   # tests/slurm_cluster.py's skip reason: no Slurm packages, not root, or its daemons did not start
                   "Slurm cannot be used here": "the real-Slurm test did NOT run: Slurm's one-host test cluster "
                                                "could not start (bash scripts/install_slurm.sh, as root)"}


def pytest_terminal_summary(terminalreporter):
    """Says which skips were the optional extras (the only allowed ones), naming the tests, and flags any other."""
    optional, other = {}, []
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        extra = next((extra for extra in OPTIONAL_EXTRAS if extra.lower() in reason.lower()), None)
        if extra:
            optional.setdefault(extra, []).append(report.nodeid)
        else:
            other.append(f"{report.nodeid}: {reason}")
    for extra, tests in optional.items():
        rest = "" if other else "; nothing else was skipped"
        terminalreporter.write_line(f"{len(tests)} skipped: {OPTIONAL_EXTRAS[extra]}: {', '.join(tests)}{rest}")
    for line in other:
        terminalreporter.write_line(f"NOT an optional extra, skipped: {line}", red=True)


@pytest.fixture(autouse=True)
def root_logging_restored():
    """The programs a test runs in this process replace the root logger's handlers (utils.logger.setup_logging),
    with streams that pytest closes after the test: the next test starts with the handlers it had."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def shared_lists():
    """The public datasets' annotation lists (read-only, never committed)."""
    if not SHARED_LISTS.is_dir():
        pytest.skip(f"shared annotation lists not found at {SHARED_LISTS}")
    return SHARED_LISTS


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A small synthetic dataset (2 clips per class: 8 train, 8 val) made by the project's own generator."""
    from datasets.synthetic import ensure_demo_dataset
    return ensure_demo_dataset(tmp_path_factory.mktemp("tiny_data"), num_per_class=2, workers=0, progress=False)


@pytest.fixture
def tiny_config(tiny_dataset, tmp_path):
    """Writes a config for a fast run on `tiny_dataset` and returns its path; extra keys via `.write(**updates)`."""
    from tests.tiny_run import TinyConfig
    return TinyConfig(tiny_dataset, tmp_path)
