"""The README's Usage section stays true: every command in it that runs on the demo's outputs is run here,
with its arguments as written, on a small stand-in for the demo's outputs; every other command is a
template whose program and named configs exist.

The commands are read from README.md itself, so the README cannot drift from the code. The stand-in is a
temporary working folder laid out like the repository after `bash scripts/demo.sh`: the demo dataset
with 2 clips a class, the demo configs shortened to one epoch, and the demo run made by the demo
script's train.py and test.py commands. Each program's `main` runs in this process (the programs'
own start-up as scripts is tested elsewhere), which saves an interpreter start per command.
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


def usage_commands():
    """The commands of README.md's Usage section, as argument lists: every line of its ```bash blocks
    (continuations joined, comments dropped), and the inline `python ...` spans that name demo paths."""
    text = (REPO / "README.md").read_text()
    usage = text[text.index("\n## Usage"):text.index("\n## Reference")]
    commands = []
    for block in re.findall(r"^[ \t]*```bash\n(.*?)^[ \t]*```", usage, re.S | re.M):
        for line in re.sub(r"\\\n", " ", block).splitlines():
            if shlex.split(line, comments=True):
                commands.append(shlex.split(line, comments=True))
    for span in re.findall(r"`(python [^`]+)`", usage):
        if any(path in span for path in DEMO_PATHS):
            commands.append(shlex.split(span))
    return commands


def is_demo(command):
    return any(path in word for word in command for path in DEMO_PATHS)


def program(command):
    """The script a command runs (after environment assignments and `python`/`bash`)."""
    words = [word for word in command if not re.match(r"^[A-Z_]+=", word)]
    return words[1] if words[0] in ("python", "bash") else words[0]


def test_every_usage_command_runs_on_the_demo_or_is_a_template_of_existing_files():
    commands = usage_commands()
    assert {program(command) for command in commands if is_demo(command)} == {
        "tools/plot_curves.py", "tools/predict.py", "tools/analyze_scores.py",  # and the attributes example:
        "tools/generate_attributes.py", "train_co.py", "test.py", "tools/make_demo_data.py", "tools/extract_features.py",
        "tools/export.py", "tools/app.py"}
    for command in commands:
        assert (REPO / program(command)).is_file(), f"README names a missing program: {shlex.join(command)}"
        configs = [word for word in command if word.startswith("configs/")]
        assert all((REPO / config).is_file() for config in configs), f"missing config in {shlex.join(command)}"
        if not is_demo(command):  # the user's data: placeholders, or a public dataset's shipped config
            assert configs or any(PLACEHOLDER.search(word) for word in command), shlex.join(command)


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


def test_the_usage_commands_run_as_written_on_the_demo_outputs(demo_outputs):
    root, demo = demo_outputs
    for command in filter(is_demo, usage_commands()):
        for word in command:  # a clip the full demo has and the small one lacks: a clip of its class
            if word.startswith(".cache/demo_data/videos/") and not (root / word).exists():
                shutil.copy(sorted((root / word).parent.glob("*.mp4"))[0], root / word)
        run(command, root)
        outputs = [command[i + 1] for i, word in enumerate(command) if word in OUTPUT_OPTIONS]
        if program(command) == "tools/plot_curves.py":
            outputs.append(f"{command[2]}/curves.png")
        for output in outputs:  # written into the run folders, never over a file of the repository
            assert Path(output).parts[0] == "exps", f"{shlex.join(command)} writes {output} outside exps/"
            written = root / output  # a file, or a folder of files (extract_features.py --out)
            assert written.is_file() and written.stat().st_size > 0 or written.is_dir() and any(written.iterdir()), \
                f"{shlex.join(command)}: {output}"
