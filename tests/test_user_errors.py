"""User errors end a program with one `error: ...` line and the right status; bugs keep their traceback;
BIKE_TRACEBACK=1 shows a user error's traceback."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from utils.config import load_config
from utils.errors import UsageError, report_user_errors

REPO = Path(__file__).resolve().parent.parent


def raising(error):
    def main(*args):
        raise error
    return main


def test_a_config_error_is_one_line_with_status_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BIKE_TRACEBACK", raising=False)
    (tmp_path / "c.yaml").write_text("data:\n  batch_sise: 4\n")
    with pytest.raises(SystemExit) as exit_request:
        report_user_errors(load_config, str(tmp_path / "c.yaml"))
    assert exit_request.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "batch_sise" in err and err.count("\n") == 1


@pytest.mark.parametrize("error, status, line", [
    (UsageError("--plot draws one video; 2 were given"), 2, "error: --plot draws one video; 2 were given\n"),
    (FileNotFoundError(2, "No such file or directory", "lists/val.txt"), 1,
     "error: lists/val.txt: No such file or directory\n"),
    (FileNotFoundError("weight file not found: w.pt"), 1, "error: weight file not found: w.pt\n"),
])
def test_user_errors_give_their_line_and_status(error, status, line, capsys, monkeypatch):
    monkeypatch.delenv("BIKE_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_request:
        report_user_errors(raising(error))
    assert (exit_request.value.code, capsys.readouterr().err) == (status, line)


def test_a_missing_file_opened_by_the_program_names_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BIKE_TRACEBACK", raising=False)
    with pytest.raises(SystemExit):
        report_user_errors(open, tmp_path / "absent.csv")
    assert capsys.readouterr().err == f"error: {tmp_path / 'absent.csv'}: No such file or directory\n"


def test_bugs_keep_their_traceback(capsys):
    with pytest.raises(KeyError):
        report_user_errors(raising(KeyError("bug")))
    with pytest.raises(ValueError):  # a plain ValueError may be a bug: not a user error
        report_user_errors(raising(ValueError("x")))
    assert capsys.readouterr().err == ""


@pytest.mark.slow
@pytest.mark.parametrize("variable, traceback", [("", False), ("1", True)])
def test_the_whole_program_and_the_traceback_variable(tmp_path, variable, traceback):
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent("""
        from utils.errors import report_user_errors
        from datasets.decoding import open_video
        report_user_errors(open_video, "%s")
    """ % (tmp_path / "missing.mp4")))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=REPO,
                            env={"PYTHONPATH": str(REPO), "BIKE_TRACEBACK": variable, "PATH": ""})
    assert result.returncode == 1
    assert ("Traceback (most recent call last)" in result.stderr) == traceback
    assert result.stderr.splitlines()[-1].endswith(f"video {tmp_path / 'missing.mp4'} does not exist")
    if not traceback:
        assert result.stderr == f"error: video {tmp_path / 'missing.mp4'} does not exist\n"
