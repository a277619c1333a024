"""User errors: the exceptions that mean a mistake of the user (an option, a config key, a missing or
unreadable file, a video that cannot be decoded, a checkpoint that does not fit), and the one
`error: ...` line on stderr a program ends with for them, instead of a traceback.

Every other exception is a bug and keeps its traceback. `BIKE_TRACEBACK=1` in the environment shows
the traceback of a user error too.
"""
import os
import sys

from clip.weights import UnsafeWeightsError, WeightsMismatchError, WeightsUnavailableError
from datasets.annotations import AnnotationError
from datasets.attributes import AttributesError
from datasets.decoding import SampleReadError
from utils.config import ConfigError

TRACEBACK_VARIABLE = "BIKE_TRACEBACK"


class UsageError(ValueError):
    """A wrong command-line option, or options that do not go together (e.g. --plot with several videos)."""


# Exit status 2, as argparse's for a wrong option: the command line or the config is wrong.
USAGE_ERRORS = (UsageError, ConfigError)
# Exit status 1: a file named by the user is missing, unreadable, or its content does not fit.
FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, WeightsUnavailableError,
               UnsafeWeightsError, WeightsMismatchError, AnnotationError, AttributesError, SampleReadError)
USER_ERRORS = USAGE_ERRORS + FILE_ERRORS


def exit_status(error: BaseException) -> int:
    return 2 if isinstance(error, USAGE_ERRORS) else 1


def error_line(error: BaseException) -> str:
    """'error: <message>'; an OSError raised by the system names its file and reason
    (`error: lists/x.txt: No such file or directory`), not its errno."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        message = f"{error.filename}: {error.strerror}"
    else:
        message = str(error) or type(error).__name__
    return f"error: {message}"


def show_tracebacks() -> bool:
    return os.environ.get(TRACEBACK_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def report_user_errors(main, *args, extra=()):
    """Runs `main(*args)`. A user error (`USER_ERRORS`, or one of the `extra` exception classes a tool
    adds) ends the program with `error_line` on stderr and `exit_status`; with BIKE_TRACEBACK=1 it is
    raised as it is. Anything else propagates with its traceback."""
    try:
        return main(*args)
    except USER_ERRORS + tuple(extra) as error:
        if show_tracebacks():
            raise
        print(error_line(error), file=sys.stderr, flush=True)
        raise SystemExit(exit_status(error)) from None
