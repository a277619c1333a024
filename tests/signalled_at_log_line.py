"""Runs a program and sends itself a signal (USR1, TERM, KILL, ...) the moment it first logs a line matching a
pattern, as tests/killed_at_log_line.py does with SIGKILL. Under torchrun only the first start of the job is
signalled (TORCHELASTIC_RESTART_COUNT 0), so that a restarted job runs to its end.
Usage: python tests/signalled_at_log_line.py SIGNAL PATTERN PROGRAM.py [program arguments]."""
import os
import runpy
import signal
import sys

from tests.killed_at_log_line import run_signalled

if __name__ == "__main__":
    name, pattern, program, arguments = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
        run_signalled(pattern, signal.Signals[f"SIG{name}"], program, arguments)
    else:
        sys.argv = [program, *arguments]
        runpy.run_path(program, run_name="__main__")
