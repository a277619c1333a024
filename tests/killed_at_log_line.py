"""Runs a program and kills it with SIGKILL from inside the moment it logs a line matching a pattern (on any
logger, when the record is made: before the line reaches a handler or the log file): a kill -9 at a known place, mid-epoch, whatever the
machine's speed. Usage: python tests/killed_at_log_line.py PATTERN PROGRAM.py [program arguments]."""
import logging
import os
import re
import runpy
import signal
import sys


def kill_on_match(pattern: str):
    """A log record factory that makes every record as usual, and kills the process on a matching one."""
    pattern, make_record = re.compile(pattern), logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = make_record(*args, **kwargs)
        if pattern.search(record.getMessage()):
            os.kill(os.getpid(), signal.SIGKILL)
        return record
    return factory


if __name__ == "__main__":
    pattern, program = sys.argv[1], sys.argv[2]
    logging.setLogRecordFactory(kill_on_match(pattern))
    sys.argv = [program, *sys.argv[3:]]
    runpy.run_path(program, run_name="__main__")
