"""Checks that a training run really resumed from a checkpoint (shared by train.py and train_co.py tests).

Every epoch is re-seeded, so a run that ignored `resume=` and trained again from epoch 0 would repeat
the same losses: the checks look at what the resumed run started from instead.
"""
import copy
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import torch

import train as train_program

REPO = Path(__file__).resolve().parent.parent


class EpochRecorder:
    """Wraps `train_one_epoch`: the epochs it ran and the optimizer and scheduler state it started from."""

    def __init__(self, train_one_epoch):
        self.train_one_epoch = train_one_epoch
        self.epochs, self.optimizer_state, self.scheduler_state = [], None, None
        self.rates = {}  # epoch -> the learning rates of each group at each optimizer step

    def __call__(self, encoder, header, loader, optimizer, scheduler, *args, **kwargs):
        epoch = args[3]  # (scaler, texts, config, epoch, ...)
        if not self.epochs:
            self.optimizer_state = copy.deepcopy(optimizer.state_dict())
            self.scheduler_state = copy.deepcopy(scheduler.state_dict())
        self.epochs.append(epoch)
        rates = self.rates.setdefault(epoch, [])
        hook = optimizer.register_step_pre_hook(lambda o, *_: rates.append([g["lr"] for g in o.param_groups]))
        try:
            return self.train_one_epoch(encoder, header, loader, optimizer, scheduler, *args, **kwargs)
        finally:
            hook.remove()


def keeping_each_epoch(save_epoch_checkpoints):
    """The checkpoint saving of train.py and train_co.py (`save_epoch_checkpoints`) that also copies each
    `last_model.pt` to `epoch<N>.pt`."""
    def save(work_dir, is_best, extra=None, **state):
        save_epoch_checkpoints(work_dir, is_best, extra, **state)
        shutil.copy(work_dir / "last_model.pt", work_dir / f"epoch{state['epoch']}.pt")
    return save


def assert_resumed(recorder: EpochRecorder, checkpoint: dict, log_text: str, epochs: int):
    """The run started at the epoch after the checkpoint's, logged no earlier epoch, and its optimizer and
    scheduler started from the checkpoint's state."""
    first = checkpoint["epoch"] + 1
    assert recorder.epochs == list(range(first, epochs)), f"trained epochs {recorder.epochs}, expected from {first}"
    for epoch in range(first):  # the logs count epochs from 1
        assert not re.search(rf"\bepoch {epoch + 1}/{epochs}\b", log_text), f"epoch {epoch + 1} trained again"
    saved_optimizer = checkpoint["optimizer_state_dict"]
    assert recorder.optimizer_state["state"].keys() == saved_optimizer["state"].keys(), "optimizer state not restored"
    for key, state in saved_optimizer["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(recorder.optimizer_state["state"][key][name], value, msg=f"{key} {name}")
    assert [g["lr"] for g in recorder.optimizer_state["param_groups"]] == [g["lr"] for g in saved_optimizer["param_groups"]]
    assert recorder.scheduler_state["last_epoch"] == checkpoint["scheduler_state_dict"]["last_epoch"] > 0


def killed_mid_run(program: str, arguments: list, pattern: str, timeout: float = 600):
    """Runs `program` (a path in the repository) in a subprocess that kills itself with SIGKILL when it logs
    a line matching `pattern` (tests/killed_at_log_line.py); fails if it ends otherwise."""
    env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    finished = subprocess.run([sys.executable, str(REPO / "tests" / "killed_at_log_line.py"), pattern,
                               str(REPO / program), *arguments], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout)
    assert finished.returncode == -signal.SIGKILL, (f"{program} ended ({finished.returncode}) without logging "
                                                    f"{pattern!r}: {finished.stderr.decode()[-2000:]}")


def assert_same_tensors(final: dict, reference: dict, keys):
    """Every tensor under `keys` (state dicts, the optimizer's per-parameter state) is bit-identical."""
    for key in keys:
        if key == "optimizer_state_dict":
            first, second = final[key]["state"], reference[key]["state"]
            pairs = {f"{index}.{name}": (first[index][name], value)
                     for index, state in second.items() for name, value in state.items()}
            assert first.keys() == second.keys(), key
        else:
            pairs = {name: (final[key][name], value) for name, value in reference[key].items()}
            assert final[key].keys() == reference[key].keys(), key
        differing = [name for name, (ours, theirs) in pairs.items() if not torch.equal(ours, theirs)]
        assert not differing, f"{len(differing)} of {len(pairs)} tensors of {key} differ: {differing[:5]}"


def uninterrupted_and_resumed(tiny_config, config: str, pattern: str) -> tuple:
    """(final, reference) last_model.pt contents of two train.py runs of `config`: 'killed', SIGKILLed when it
    logs `pattern` during its second epoch and resumed from its first epoch's checkpoint, and 'whole', never
    interrupted. Asserts that the kill came after epoch 1's checkpoint and that both ended after epoch 2."""
    train_program.main(["--config", config, "--log_time", "whole", "--cpu", "--no_progress"])
    interrupted = tiny_config.run_folder("killed")
    arguments = ["--config", config, "--log_time", "killed", "--cpu", "--no_progress"]
    killed_mid_run("train.py", arguments, pattern)
    assert torch.load(interrupted / "last_model.pt", weights_only=True)["epoch"] == 0
    train_program.main(arguments + [f"resume={interrupted / 'last_model.pt'}"])
    final = torch.load(interrupted / "last_model.pt", weights_only=True)
    reference = torch.load(tiny_config.run_folder("whole") / "last_model.pt", weights_only=True)
    assert final["epoch"] == reference["epoch"] == 1
    return final, reference
