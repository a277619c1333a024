"""The fast tier stays fast (a pytest plugin, loaded by tests/conftest.py).

A test that starts a Python program (a script, `python -m ...`, torchrun) must carry the `slow` marker, which
`bash scripts/run_tests.sh --fast` leaves out (with those starting a browser or training for several epochs,
which this check cannot see). An unmarked test that starts one fails, saying so.
"""
import os
import subprocess
import sys

import pytest

_execute_child = subprocess.Popen._execute_child
PYTHONS = {os.path.realpath(sys.executable), "python", "python3"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item):
    if item.get_closest_marker("slow"):
        yield
        return

    def refuse_programs(self, args, *rest, **kwargs):
        program = args if isinstance(args, (str, bytes, os.PathLike)) else args[0]
        if os.path.realpath(program) in PYTHONS or program in PYTHONS:
            raise AssertionError(f"{item.nodeid} starts a Python program ({str(args)[:200]}): mark it "
                                 "@pytest.mark.slow (the fast tier starts no subprocess)")
        return _execute_child(self, args, *rest, **kwargs)

    subprocess.Popen._execute_child = refuse_programs
    try:
        yield
    finally:
        subprocess.Popen._execute_child = _execute_child
