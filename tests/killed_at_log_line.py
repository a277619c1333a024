"""Runs a program and kills it with SIGKILL from inside the moment it logs a line matching a pattern (on any
logger, when the record is made: before the line reaches a handler or the log file): a kill -9 at a known place, mid-epoch, whatever the
machine's speed. Usage: python tests/killed_at_log_line.py PATTERN PROGRAM.py [program arguments].
tests/signalled_at_log_line.py sends another signal the same way."""
import logging
import os
import re
import runpy
import signal
import sys


def signal_on_match(pattern: str, signum: int = signal.SIGKILL):
    """A log record factory that makes every record as usual, and sends `signum` to the process on the first
    matching one."""
    pattern, make_record = re.compile(pattern), logging.getLogRecordFactory()
    sent = []

    def factory(*args, **kwargs):
        record = make_record(*args, **kwargs)
        if not sent and pattern.search(record.getMessage()):
            sent.append(signum)
            os.kill(os.getpid(), signum)
        return record
    return factory


def run_signalled(pattern: str, signum: int, program: str, arguments: list):
    """Runs `program` as __main__ with `arguments`, sending `signum` at its first log line matching `pattern`."""
    logging.setLogRecordFactory(signal_on_match(pattern, signum))
    sys.argv = [program, *arguments]
    runpy.run_path(program, run_name="__main__")


if __name__ == "__main__":
    run_signalled(sys.argv[1], signal.SIGKILL, sys.argv[2], sys.argv[3:])
