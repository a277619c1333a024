"""train.py under torchrun, recording for the tests what the log does not show: each rank's sampler order per
epoch, which rank saved which checkpoint (each `last_model.pt` is also kept as `epoch<N>.pt`), and rank 0's
validation scores. Usage: torchrun ... tests/torchrun_train.py RECORDS_FOLDER [train.py arguments]."""
import json
import os
import sys
from pathlib import Path

import torch

import train
from tests.resume_checks import keeping_each_epoch

RECORDS = Path(sys.argv[1])
RANK = int(os.environ.get("RANK", 0))


def record(name, value):
    with open(RECORDS / f"{name}_rank{RANK}.jsonl", "a") as handle:
        handle.write(json.dumps(value) + "\n")


def recording_start_epoch(loader, seed, rank, epoch, batches_done=0, start_epoch=train.start_epoch):
    start_epoch(loader, seed, rank, epoch, batches_done)
    record("order", {"epoch": epoch, "indices": [index for _, index in loader.sampler]})  # (seed, index) pairs


def recording_save(work_dir, is_best, extra=None, save=keeping_each_epoch(train.save_epoch_checkpoints), **state):
    save(work_dir, is_best, extra, **state)
    for name in ("last_model.pt", "model_best.pt") if is_best else ("last_model.pt",):
        record("saved", {"epoch": state["epoch"], "file": name})


def recording_validate(*args, validate=train.validate, **kwargs):
    result = validate(*args, **kwargs)
    if RANK == 0:
        calls = len(list(RECORDS.glob("validation_*.pt")))
        torch.save(result.scores, RECORDS / f"validation_{calls}.pt")
    return result


if __name__ == "__main__":
    RECORDS.mkdir(parents=True, exist_ok=True)
    train.start_epoch, train.save_epoch_checkpoints, train.validate = (
        recording_start_epoch, recording_save, recording_validate)
    train.main(sys.argv[2:])
