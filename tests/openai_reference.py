"""OpenAI's own CLIP package (openai-clip 1.0.1), the equivalence tests' independent reference: where it lives,
how it is installed, and its `model.py` / `simple_tokenizer.py` loaded by file path.

It goes into .cache/openai-clip-reference (or $BIKE_OPENAI_REFERENCE), never site-packages: its top-level
package is also called `clip`. scripts/run_tests.sh installs it before pytest starts:
    python -m tests.openai_reference      installs it where the tests look for it, unless it is there
"""
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_PACKAGE = "openai-clip==1.0.1"


def reference_folder() -> Path:
    return Path(os.environ.get("BIKE_OPENAI_REFERENCE", REPO_ROOT / ".cache" / "openai-clip-reference"))


def is_installed(folder: Path) -> bool:
    return (folder / "clip" / "model.py").is_file()


def install_command(folder: Path) -> str:
    return f"python -m pip install --no-deps --target {folder} {REFERENCE_PACKAGE}"


def install(folder: Path):
    """pip-installs the package into `folder`, staged and renamed, so concurrent runs never see half a package."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(staging),
                        REFERENCE_PACKAGE], check=True, timeout=600)
        with contextlib.suppress(OSError):  # another run may have put it in place meanwhile
            os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(folder: Path) -> SimpleNamespace:
    """The package's `model` and `simple_tokenizer` modules, loaded by file path (not importable as `clip`)."""
    return SimpleNamespace(
        model=_load_module("openai_reference_model", folder / "clip" / "model.py"),
        simple_tokenizer=_load_module("openai_reference_tokenizer", folder / "clip" / "simple_tokenizer.py"),
    )


def main():
    folder = reference_folder()
    if is_installed(folder):
        return
    print(f"installing OpenAI's reference package {REFERENCE_PACKAGE} into {folder}", flush=True)
    try:
        install(folder)
    except (subprocess.SubprocessError, OSError) as error:
        sys.exit(f"error: could not install {REFERENCE_PACKAGE} ({error}); install it with `{install_command(folder)}` "
                 f"(or set BIKE_OPENAI_REFERENCE to a folder holding it)")
    if not is_installed(folder):
        sys.exit(f"error: {folder} has no clip/model.py after installing {REFERENCE_PACKAGE}")


if __name__ == "__main__":
    main()
