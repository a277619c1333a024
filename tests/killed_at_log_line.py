"""Runs a program and kills it with SIGKILL from inside the moment it logs a line matching a pattern (on the
'bike' logger, before the line reaches the log file): a kill -9 at a known place, mid-epoch, whatever the
machine's speed. Usage: python tests/killed_at_log_line.py PATTERN PROGRAM.py [program arguments]."""
import logging
import os
import re
import runpy
import signal
import sys


class KillOnMatch(logging.Handler):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def emit(self, record):
        if self.pattern.search(record.getMessage()):
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    pattern, program = sys.argv[1], sys.argv[2]
    logging.getLogger("bike").addHandler(KillOnMatch(pattern))
    sys.argv = [program, *sys.argv[3:]]
    runpy.run_path(program, run_name="__main__")
