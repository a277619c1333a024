"""Writing files so that a process killed mid-write never leaves a truncated one: annotation lists,
attribute JSON files and checkpoints all go through `atomic_file`."""
import contextlib
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_file(path, mode="wb", **open_kwargs):
    """A temporary file in `path`'s folder, renamed over `path` when the block ends without error.

    A process killed while writing leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's files are private (0600); give the usual mode
        with os.fdopen(handle, mode, **open_kwargs) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
