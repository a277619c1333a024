"""Shared test fixtures: the independent OpenAI reference and paths to the shared annotation lists."""
import importlib.util
import os
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


@pytest.fixture(scope="session")
def openai_reference():
    """OpenAI's own `model.py` and `simple_tokenizer.py` (package openai-clip 1.0.1), loaded by file path.

    scripts/run_tests.sh installs them into a separate folder because that package's top-level name
    (`clip`) is the same as ours.
    """
    folder = Path(os.environ.get("BIKE_OPENAI_REFERENCE", REPO_ROOT / ".cache" / "openai-clip-reference")) / "clip"
    if not (folder / "model.py").is_file():
        message = f"OpenAI reference not found in {folder}; run the tests through scripts/run_tests.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SimpleNamespace(
        model=_load_module("openai_reference_model", folder / "model.py"),
        simple_tokenizer=_load_module("openai_reference_tokenizer", folder / "simple_tokenizer.py"),
    )


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
