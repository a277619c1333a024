"""Checks that a training run really resumed from a checkpoint (shared by train.py and train_co.py tests).

Every epoch is re-seeded, so a run that ignored `resume=` and trained again from epoch 0 would repeat
the same losses: the checks look at what the resumed run started from instead.
"""
import copy
import re
import shutil

import torch


class EpochRecorder:
    """Wraps `train_one_epoch`: the epochs it ran and the optimizer and scheduler state it started from."""

    def __init__(self, train_one_epoch):
        self.train_one_epoch = train_one_epoch
        self.epochs, self.optimizer_state, self.scheduler_state = [], None, None

    def __call__(self, encoder, header, loader, optimizer, scheduler, *args, **kwargs):
        epoch = args[3]  # (scaler, texts, config, epoch, ...)
        if not self.epochs:
            self.optimizer_state = copy.deepcopy(optimizer.state_dict())
            self.scheduler_state = copy.deepcopy(scheduler.state_dict())
        self.epochs.append(epoch)
        return self.train_one_epoch(encoder, header, loader, optimizer, scheduler, *args, **kwargs)


def keeping_each_epoch(save_training_checkpoint):
    """train.py's checkpoint saving that also copies each `last_model.pt` to `epoch<N>.pt`."""
    def save(path, **state):
        save_training_checkpoint(path, **state)
        if path.name == "last_model.pt":
            shutil.copy(path, path.parent / f"epoch{state['epoch']}.pt")
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
