"""The end of hangs that a test's time limit alone cannot end (a pytest plugin, loaded by tests/conftest.py).

pytest.ini gives every test a time limit (pytest-timeout, signal method): past it the test fails with every
thread's stack, and the run goes on. The failure is an exception in the test's main thread, which a hang can
outlive: a process pool's shutdown waiting for workers that hang after a fork, a C call that never returns to
Python. So HANG_GRACE_S after the limit, a test still running gets its name and every thread's stack written to
stderr and the processes it started killed (a pool then ends with a broken-pool error, the test fails and the
run goes on); HANG_GRACE_S after that, faulthandler's own timer, which needs no GIL, ends the run (status 1).
"""
import contextlib
import faulthandler
import os
import signal
import threading
from pathlib import Path

import pytest

HANG_GRACE_S = 60
_stderr_fd = None
_backstop = None


def pytest_configure(config):
    global _stderr_fd
    _stderr_fd = os.dup(2)  # stderr itself, not the capture of a test's output


def child_processes() -> set:
    """This process's children (Linux: read from /proc; elsewhere none)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                children.add(int(stat.parent.name))
    return children


def _end_the_hang(item, limit, children_before):
    started = sorted(child_processes() - children_before)
    os.write(_stderr_fd, f"\n{item.nodeid} is still running {HANG_GRACE_S} s after failing its time limit of "
                         f"{limit} s: every thread's stack; killing the processes it started {started}\n".encode())
    faulthandler.dump_traceback(file=_stderr_fd, all_threads=True)
    for pid in started:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.hookimpl(hookwrapper=True)
def pytest_timeout_set_timer(item, settings):
    global _backstop
    _backstop = threading.Timer(settings.timeout + HANG_GRACE_S, _end_the_hang,
                                (item, settings.timeout, child_processes()))
    _backstop.daemon = True
    _backstop.start()
    faulthandler.dump_traceback_later(settings.timeout + 2 * HANG_GRACE_S, exit=True, file=_stderr_fd)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_timeout_cancel_timer(item):
    faulthandler.cancel_dump_traceback_later()
    if _backstop is not None:
        _backstop.cancel()
    yield
