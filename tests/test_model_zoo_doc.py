"""docs/model_zoo.md stays true: every command in it names an existing script and config, and its
program accepts the options as written."""
import re
import shlex
from pathlib import Path

import pytest

import test as test_program
import test_zeroshot
from utils.config import load_config

REPO = Path(__file__).resolve().parent.parent
PAGE = (REPO / "docs" / "model_zoo.md").read_text()
PROGRAMS = {"run_test.sh": test_program, "run_test_charades.sh": test_program,
            "run_test_zeroshot.sh": test_zeroshot, "test.py": test_program, "test_zeroshot.py": test_zeroshot}


def commands():
    """Every evaluation command of the page: inline code and the lines of bash blocks (continuations joined)."""
    found = re.findall(r"`((?:bash scripts/|python test)[^`]+)`", PAGE)
    for block in re.findall(r"```bash\n(.*?)```", PAGE, re.S):
        found += [line.split("#")[0].strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return [command for command in found if "configs/" in command]  # not the generic CONFIG examples


def test_the_page_has_a_command_for_every_released_model():
    assert len(commands()) >= 24  # 11 Kinetics-400, V+A, 7 fine-tuned, 5 zero-shot
    assert "(docs/model_zoo.md)" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("command", commands())
def test_command_names_existing_files_and_valid_options(command):
    words = shlex.split(command)
    if words[0] == "bash":  # scripts/run_*.sh CONFIG WEIGHTS [program options]
        script = REPO / words[1]
        assert script.is_file()
        argv = ["--config", words[2], "--weights", words[3], *words[4:]]
        program = PROGRAMS[script.name]
    else:  # python test.py --config CONFIG --weights ...
        program, argv = PROGRAMS[words[1]], words[2:]
    args = program.parse_args(argv)
    for config in args.config if isinstance(args.config, list) else [args.config]:
        assert load_config(REPO / config).data.label_list
