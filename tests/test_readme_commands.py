"""The documentation stays true: every command of README.md and of the pages in docs/ that runs on the demo's
outputs is run here, with its arguments as written, on a small stand-in for the demo's outputs; every other
command is a template whose program and named configs exist.

The commands are read from the pages themselves, so the documentation cannot drift from the code. The
stand-in is a temporary working folder laid out like the repository after `bash scripts/demo.sh`: the demo
dataset with 2 clips a class, the demo configs shortened to one epoch, and the demo run made by the demo
script's train.py and test.py commands. Each program's `main` runs in this process (the programs' own
start-up as scripts is tested elsewhere), which saves an interpreter start per command.
"""
import contextlib
import importlib
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import clip
from clip import arch_folder_name, available_models, random_init_models
from datasets.synthetic import ensure_demo_dataset

REPO = Path(__file__).resolve().parent.parent
DEMO_PATHS = ("configs/demo/", "exps/demo/", ".cache/demo_data")
# The options whose value is a file a command writes.
OUTPUT_OPTIONS = ("--out", "--plot", "--table", "--save_scores", "--output")
# A value that stands for the user's own: CONFIG, CKPT, WEIGHTS, VIDEO.pt, exps/.../model_best.pt ...
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]+(\.\w+)?$|\.\.\.")


def documentation_pages():
    """README.md and every page of docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def page_commands(text):
    """The commands of one page, as argument lists: every line of its ```bash blocks (continuations joined,
    comments dropped), and its inline `python ...` and `bash scripts/...` spans that run a file of this
    repository (not `python -c` or `python -m pytest`)."""
    commands = []
    for block in re.findall(r"^[ \t]*```bash\n(.*?)^[ \t]*```", text, re.S | re.M):
        for line in re.sub(r"\\\n", " ", block).splitlines():
            if shlex.split(line, comments=True):
                commands.append(shlex.split(line, comments=True))
    prose = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", text, flags=re.S | re.M)  # the text outside fenced blocks
    for span in re.findall(r"`((?:python |bash scripts/)[^`]+)`", prose):
        words = shlex.split(span)
        if words[0] == "bash" or words[1] == "-m" and (REPO / words[2].split(".")[0]).is_dir() or words[1].endswith(".py"):
            commands.append(words)
    return commands


def usage_commands():
    """The commands of README.md and docs/*.md, each once, in page order."""
    commands = []
    for page in documentation_pages():
        for command in page_commands(page.read_text()):
            if command not in commands:
                commands.append(command)
    return commands


def is_demo(command):
    return any(path in word for word in command for path in DEMO_PATHS)


def program(command):
    """The file a command runs (after environment assignments and `python`/`bash`/`torchrun` with their
    options; `python -m package.module` runs package/module.py)."""
    words = [word for word in command if not re.match(r"^[A-Z_]+=", word)]
    if words[0] == "python" and words[1] == "-m":
        return words[2].replace(".", "/") + ".py"
    if words[0] in ("python", "bash", "torchrun"):
        return next(word for word in words[1:] if not word.startswith("-"))
    return words[0]


def only_options(command):
    """Whether a command gives its program nothing but options (`bash scripts/run_tests.sh --fast`)."""
    name = program(command)
    return name in command and all(word.startswith("-") for word in command[command.index(name) + 1:])


def test_every_documented_command_runs_on_the_demo_or_is_a_template_of_existing_files():
    commands = usage_commands()
    assert {program(command) for command in commands if is_demo(command)} == {
        "tools/plot_curves.py", "tools/predict.py", "tools/analyze_scores.py", "train.py",  # and the attributes example:
        "tools/generate_attributes.py", "train_co.py", "test.py", "tools/make_demo_data.py", "tools/extract_features.py",
        "tools/export.py", "tools/app.py",
        "tools/make_shards.py"}
    for command in commands:
        if command[:3] == ["pip", "install", "-r"]:  # an optional extra: its requirements file exists
            assert (REPO / command[3]).is_file(), f"missing requirements file in {shlex.join(command)}"
            continue
        assert (REPO / program(command)).is_file(), f"the docs name a missing program: {shlex.join(command)}"
        configs = [word.split("=")[-1] for word in command if re.match(r"^([\w.]+=)?configs/", word)]
        assert all((REPO / config).is_file() for config in configs), f"missing config in {shlex.join(command)}"
        if not is_demo(command) and not only_options(command) and \
                command[-1] != program(command)[:-3].replace("/", "."):
            # the user's data: placeholders, or a public dataset's shipped config (a program given options
            # only, like the demo and test scripts, runs as it is)
            assert configs or any(PLACEHOLDER.search(word) for word in command), shlex.join(command)


def test_every_page_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text()
    for page in documentation_pages()[1:]:
        assert f"(docs/{page.name})" in readme, f"README.md has no link to docs/{page.name}"


def shortened_config(source: Path, target: Path):
    """A demo config for a quick run: one epoch, no loader workers, the same paths and model."""
    values = yaml.safe_load(source.read_text())
    values["solver"].update(epochs=1)
    values["data"].update(workers=0)
    values["logging"].update(print_freq=1, eval_freq=1)
    target.write_text(yaml.safe_dump(values))
    return values


@contextlib.contextmanager
def working_folder(path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def run(command, root):
    """Runs `python PROGRAM ARGS...` through the program's `main(ARGS)` in the folder `root`; the app (a
    server that runs until stopped) only builds its page and model (tests/test_app.py drives a served one)."""
    assert command[0] == "python", shlex.join(command)
    module = importlib.import_module(command[1].removesuffix(".py").replace("/", "."))
    with working_folder(root):
        if command[1] == "tools/app.py":
            module.create_page(module.parse_args(command[2:]))
        else:
            module.main(command[2:])


@pytest.fixture(scope="module")
def demo_outputs(tmp_path_factory):
    """A working folder laid out like the repository after `bash scripts/demo.sh`, small."""
    root = tmp_path_factory.mktemp("readme")
    demo = ensure_demo_dataset(root / ".cache" / "demo_data", num_per_class=2, workers=1)
    (root / "configs" / "demo").mkdir(parents=True)
    configs = {path.name: shortened_config(path, root / "configs" / "demo" / path.name)
               for path in (REPO / "configs" / "demo").glob("*.yaml")}
    for path in (REPO / "configs" / "demo").iterdir():  # the demo's other files (its attributes lexicon)
        if path.suffix != ".yaml":
            shutil.copy(path, root / "configs" / "demo" / path.name)
    config = configs["demo.yaml"]
    arch = config["network"]["arch"]
    if arch not in available_models() + random_init_models():  # a weight file made by the demo script
        (root / arch).parent.mkdir(parents=True, exist_ok=True)
        model = clip.create_model("RN-Tiny", image_resolution=config["data"]["input_size"])
        torch.save(model.state_dict(), root / arch)

    # The demo script's training and test (scripts/demo.sh), as short runs.
    run(["python", "train.py", "--config", "configs/demo/demo.yaml", "--log_time", "demo", "--no_progress"], root)
    run_folder = Path(config["data"]["output_path"], config["data"]["dataset"], arch_folder_name(arch), "demo")
    if not (root / run_folder / "model_best.pt").exists():  # train.py keeps a best model only above 0% top-1
        shutil.copy(root / run_folder / "last_model.pt", root / run_folder / "model_best.pt")
    run(["python", "test.py", "--config", "configs/demo/demo.yaml", "--weights", str(run_folder / "model_best.pt"),
         "--test_clips", "2", "--test_crops", "3", "--no_progress", "--save_scores", str(run_folder / "test_scores.pt")],
        root)
    return root, demo


def test_the_documented_commands_run_as_written_on_the_demo_outputs(demo_outputs):
    root, demo = demo_outputs
    for command in filter(is_demo, usage_commands()):
        for word in command:  # a clip the full demo has and the small one lacks: a clip of its class
            if word.startswith(".cache/demo_data/videos/") and not (root / word).exists():
                shutil.copy(sorted((root / word).parent.glob("*.mp4"))[0], root / word)
        for option, word in zip(command, command[1:]):  # a run of one short epoch may keep no best model
            if option == "--weights" and not (root / word).exists() and (root / word).with_name("last_model.pt").exists():
                shutil.copy((root / word).with_name("last_model.pt"), root / word)
        run(command, root)
        outputs = [command[i + 1] for i, word in enumerate(command) if word in OUTPUT_OPTIONS]
        if program(command) == "tools/plot_curves.py":
            outputs.append(f"{command[2]}/curves.png")
        for output in outputs:  # written into the run folders, never over a file of the repository
            assert Path(output).parts[0] == "exps", f"{shlex.join(command)} writes {output} outside exps/"
            written = root / output  # a file, or a folder of files (extract_features.py --out)
            assert written.is_file() and written.stat().st_size > 0 or written.is_dir() and any(written.iterdir()), \
                f"{shlex.join(command)}: {output}"
