"""Runs train.py so that, the first time it logs a line matching a pattern, it waits there until SIGUSR1 has
reached the handler it installed: a real Slurm sends its time-limit warning at a moment of its own choosing (its
periodic check, every 30 s), and a test wants it in the middle of an epoch whatever the machine's speed. It then
holds on a few seconds more, as a large model's step would. Only the first run of a Slurm job waits
(SLURM_RESTART_COUNT unset or 0), saying so on stderr: a requeued run goes on as it is.
Usage: PAUSE_AT=PATTERN python tests/paused_until_signal.py [train.py arguments] (the pattern in the environment,
so that a launcher can run this file in train.py's place: PROGRAM=tests/paused_until_signal.py)."""
import logging
import os
import re
import runpy
import signal
import sys
import time
from pathlib import Path

WAIT_SECONDS = 120
# After the signal, the time a large model's step and checkpoint would take: what a launcher that lets the
# signal end the job's processes (torchrun's agent dies of USR1 by default) would cut short.
HOLD_SECONDS = 3


def watch_usr1_handlers(arrived: list):
    """`signal.signal` that wraps the program's SIGUSR1 handlers so that each arrival is also noted."""
    install = signal.signal

    def watching(signum, handler):
        if signum == signal.SIGUSR1 and callable(handler):
            def noted(number, frame, handler=handler):
                arrived.append(number)
                handler(number, frame)
            return install(signum, noted)
        return install(signum, handler)
    signal.signal = watching


def pause_on_match(pattern: str, arrived: list):
    """A log record factory that, on the first matching record, waits until `arrived` is not empty."""
    pattern, make_record, paused = re.compile(pattern), logging.getLogRecordFactory(), []

    def factory(*args, **kwargs):
        record = make_record(*args, **kwargs)
        if not paused and pattern.search(record.getMessage()):
            paused.append(True)
            print(f"waiting for SIGUSR1 at {record.getMessage()!r}", file=sys.stderr, flush=True)
            deadline = time.monotonic() + WAIT_SECONDS
            while not arrived:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no SIGUSR1 within {WAIT_SECONDS} s of {record.getMessage()!r}")
                time.sleep(0.1)
            time.sleep(HOLD_SECONDS)
        return record
    return factory


if __name__ == "__main__":
    if os.environ.get("SLURM_RESTART_COUNT", "0") == "0":
        arrived = []
        watch_usr1_handlers(arrived)
        logging.setLogRecordFactory(pause_on_match(os.environ["PAUSE_AT"], arrived))
    program = str(Path(__file__).resolve().parent.parent / "train.py")
    sys.argv = [program, *sys.argv[1:]]
    runpy.run_path(program, run_name="__main__")
