"""User errors: the exceptions that mean a mistake of the user (an option, a config key, a missing or
unreadable file, a video that cannot be decoded, a checkpoint that does not fit), and the one
`error: ...` line on stderr a program ends with for them, instead of a traceback.

Every other exception is a bug and keeps its traceback. `BIKE_TRACEBACK=1` in the environment shows
the traceback of a user error too.
"""
import os
import sys
from pathlib import Path

import torch.distributed as dist

from clip.model import ArchitectureError
from clip.weights import UnreadableWeightsError, UnsafeWeightsError, WeightsMismatchError, WeightsUnavailableError
from datasets.annotations import AnnotationError
from datasets.attributes import AttributesError
from datasets.decoding import SampleReadError, VideoBackendError
from utils.config import ConfigError

TRACEBACK_VARIABLE = "BIKE_TRACEBACK"


class UsageError(ValueError):
    """A wrong command-line option, or options that do not go together (e.g. --plot with several videos)."""


class UnusableFileError(ValueError):
    """A file the user named whose content the program cannot use (e.g. not a test.py scores file)."""


# Exit status 2, as argparse's for a wrong option: the command line or the config is wrong.
USAGE_ERRORS = (UsageError, ConfigError, ArchitectureError, VideoBackendError)
# Exit status 1: a file named by the user is missing, unreadable, or its content does not fit.
FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, WeightsUnavailableError,
               UnreadableWeightsError, UnsafeWeightsError, WeightsMismatchError, AnnotationError, AttributesError,
               SampleReadError, UnusableFileError)
USER_ERRORS = USAGE_ERRORS + FILE_ERRORS


def exit_status(error: BaseException) -> int:
    return 2 if isinstance(error, USAGE_ERRORS) else 1


def error_line(error: BaseException) -> str:
    """'error: <message>'; an OSError raised by the system names its file and reason
    (`error: lists/x.txt: No such file or directory`), not its errno. In a job of several processes the
    line starts with the process's rank (`[rank 1] error: ...`), as each process reports its own."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        message = f"{error.filename}: {error.strerror}"
    else:
        message = _without_worker_traceback(str(error), type(error)) or type(error).__name__
    several_processes = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    return f"{f'[rank {dist.get_rank()}] ' if several_processes else ''}error: {message}"


def _without_worker_traceback(message: str, kind: type) -> str:
    """The original message of an error a DataLoader worker raised: the loader raises it again in the main
    process with the worker's traceback in its message ('Caught X in DataLoader worker ... Original
    Traceback ... X: <message>')."""
    marker = f"{kind.__qualname__}: "
    if "Original Traceback" not in message or marker not in message:
        return message
    return message.rsplit(marker, 1)[1].strip()


def check_given_files(**options):
    """Fails with FileNotFoundError naming the option when a file given on the command line is missing,
    before any model or dataset is built. Keyword: the option without its dashes; None: not given."""
    missing = [f"--{name} {path}" for name, path in options.items() if path is not None and not Path(path).exists()]
    if missing:
        raise FileNotFoundError(f"no such file: {'; '.join(missing)}")


def check_output_folders(**options):
    """Fails with FileNotFoundError naming the option when the folder of a file the program is to write does
    not exist, before any model is built (not after the work). Keyword: the option without its dashes."""
    missing = [f"--{name} {path} (no folder {Path(path).parent})" for name, path in options.items()
               if path is not None and not Path(path).parent.is_dir()]
    if missing:
        raise FileNotFoundError(f"cannot write {'; '.join(missing)}")


def show_tracebacks() -> bool:
    return os.environ.get(TRACEBACK_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def report_user_errors(main, *args):
    """Runs `main(*args)`. A user error (`USER_ERRORS`) ends the program with `error_line` on stderr and
    `exit_status`; with BIKE_TRACEBACK=1 it is raised as it is. Anything else propagates with its traceback."""
    try:
        return main(*args)
    except USER_ERRORS as error:
        if show_tracebacks():
            raise
        print(error_line(error), file=sys.stderr, flush=True)
        raise SystemExit(exit_status(error)) from None
