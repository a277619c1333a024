"""Shared test fixtures: the independent OpenAI reference and paths to the shared annotation lists."""
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_LISTS = REPO_ROOT.parent / "shared" / "lists"


def _load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REFERENCE_PACKAGE = "openai-clip==1.0.1"


def install_reference(folder: Path):
    """pip-installs OpenAI's package into `folder` (never site-packages: its top-level name is `clip`, as
    ours). Staged and renamed, so concurrent test runs never see half a package."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    except OSError:
        return  # an unwritable place: the caller reports how to install it
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(staging),
                        REFERENCE_PACKAGE], check=True, capture_output=True, timeout=600)
        with contextlib.suppress(OSError):  # another run may have put it in place meanwhile
            os.replace(staging, folder)
    except (subprocess.SubprocessError, OSError):
        pass  # the caller reports how to install it
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@pytest.fixture(scope="session")
def openai_reference():
    """OpenAI's own `model.py` and `simple_tokenizer.py` (package openai-clip 1.0.1), loaded by file path:
    the independent reference of the equivalence tests. Installed on first use; never skipped."""
    root = Path(os.environ.get("BIKE_OPENAI_REFERENCE", REPO_ROOT / ".cache" / "openai-clip-reference"))
    if not (root / "clip" / "model.py").is_file():
        install_reference(root)
    if not (root / "clip" / "model.py").is_file():
        pytest.fail(f"OpenAI reference package missing: run `python -m pip install --no-deps --target {root} "
                    f"{REFERENCE_PACKAGE}` (or set BIKE_OPENAI_REFERENCE to a folder holding it)", pytrace=False)
    folder = root / "clip"
    return SimpleNamespace(
        model=_load_module("openai_reference_model", folder / "model.py"),
        simple_tokenizer=_load_module("openai_reference_tokenizer", folder / "simple_tokenizer.py"),
    )


OPTIONAL_EXTRAS = {"tensorboard": "the optional TensorBoard extra is not installed (pip install tensorboard)",
                   "real sample videos are NOT fetched": "the real-video tests did NOT run: the sample videos could "
                                                         "not be fetched (bash scripts/fetch_test_videos.sh)",
                   # tests/test_app.py's skip reason: the machine could not have Debian's chromium package
                   "Chromium is not installed": "the browser test did NOT run: no Chromium (apt-get install chromium)"}


def pytest_terminal_summary(terminalreporter):
    """Says which skips were the optional extras (the only allowed ones), naming the tests, and flags any other."""
    optional, other = {}, []
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        extra = next((extra for extra in OPTIONAL_EXTRAS if extra in reason), None)
        if extra:
            optional.setdefault(extra, []).append(report.nodeid)
        else:
            other.append(f"{report.nodeid}: {reason}")
    for extra, tests in optional.items():
        rest = "" if other else "; nothing else was skipped"
        terminalreporter.write_line(f"{len(tests)} skipped: {OPTIONAL_EXTRAS[extra]}: {', '.join(tests)}{rest}")
    for line in other:
        terminalreporter.write_line(f"NOT an optional extra, skipped: {line}", red=True)


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
