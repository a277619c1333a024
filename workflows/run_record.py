"""What a training run's folder records for a restart, and the checks of a resume against it.

- `resume=auto` (`newest_checkpoint`): the run folder's checkpoint furthest into training, `last_model.pt`
  or `mid_epoch.pt`, among those that read completely (writes are atomic, but a file copied or cut short
  elsewhere is passed over with a warning); none: the run starts fresh. Rank 0 decides for every process.
- `run_facts`: what besides the config decides the numbers of a run (the process count, which decides the
  data order; the precision; the code's git commit; torch's version). Every checkpoint holds them
  (key 'run'), and each start of the run appends them to the folder's `starts.yaml`.
- `resume_differences`: a resumed run whose config or facts differ from those of the run that wrote its
  checkpoint does not repeat the interrupted run; its log says in one line what differs.
"""
import logging
import subprocess
import time
from pathlib import Path
from typing import Optional

import torch
import yaml

from clip.weights import UnreadableWeightsError, WeightsMismatchError
from utils.checkpoint import read_checkpoint
from utils.logger import epoch_label
from workflows.training import resume_position
from workflows.training_run import LAST_CHECKPOINT, MID_EPOCH_CHECKPOINT

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
STARTS_FILE = "starts.yaml"
# Config keys that do not change what a run computes (loader workers: every sample's randomness is its own).
NEUTRAL_KEYS = ("resume", "solver.start_epoch", "data.workers", "logging.print_freq", "logging.checkpoint_steps")
FACT_NAMES = {"world_size": "processes", "precision": "precision", "git_commit": "code (git commit)",
              "torch": "torch"}


def code_version() -> Optional[str]:
    """The git commit of the code (`-dirty` when files differ from it), or None outside a git checkout."""
    try:
        described = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=40"],
                                   capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return described.stdout.strip() if described.returncode == 0 else None


def run_facts(world_size: int, precision: str) -> dict:
    return {"world_size": world_size, "precision": precision, "git_commit": code_version(),
            "torch": str(torch.__version__)}


def newest_checkpoint(folder: Path) -> Optional[Path]:
    """The checkpoint of `folder` that is furthest into training among those that read completely."""
    found = []
    for name in (LAST_CHECKPOINT, MID_EPOCH_CHECKPOINT):
        path = Path(folder) / name
        if not path.exists():
            continue
        try:
            found.append((resume_position(read_checkpoint(path, mmap=True)), path))
        except (UnreadableWeightsError, WeightsMismatchError) as error:
            logger.warning("resume=auto passes over %s: %s", path, error)
    return max(found)[1] if found else None


def record_start(folder: Path, facts: dict, resumed_from: Optional[Path]):
    """Appends this start (time, facts, the checkpoint it resumed from) to the run folder's starts.yaml."""
    entry = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **facts,
             "resumed_from": str(resumed_from) if resumed_from else None}
    with open(Path(folder) / STARTS_FILE, "a") as file:
        file.write(yaml.safe_dump([entry], sort_keys=False))


def flattened(values: dict, prefix: str = "") -> dict:
    """{'data.batch_size': 4, ...} of a nested config dict."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flattened(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def resume_differences(checkpoint: dict, config: dict, facts: dict) -> list:
    """'KEY saved -> now' for every fact and config key (but the NEUTRAL_KEYS) in which this run differs
    from the run that wrote `checkpoint`, as far as the checkpoint records them."""
    differences = []
    saved_facts = checkpoint.get("run") or {}
    for name, label in FACT_NAMES.items():
        if name in saved_facts and saved_facts[name] != facts[name]:
            differences.append(f"{label} {saved_facts[name]} -> {facts[name]}")
    if isinstance(checkpoint.get("config"), dict):
        saved, now = flattened(checkpoint["config"]), flattened(config)
        differences += [f"{key} {saved.get(key)} -> {now.get(key)}" for key in sorted(saved.keys() | now.keys())
                        if key not in NEUTRAL_KEYS and saved.get(key) != now.get(key)]
    return differences


def report_resume(path: Path, config: dict, facts: dict, epochs: int):
    """Logs in one line whether the run resumed from `path` repeats the interrupted one, and what differs."""
    checkpoint = read_checkpoint(path, mmap=True)
    differences = resume_differences(checkpoint, config, facts)
    epoch, batches_done = resume_position(checkpoint)
    where = f"{epoch_label(epoch, epochs)}" + (f" after batch {batches_done}" if batches_done else "")
    if differences:
        data_order = (" (another process count changes the data order and every sample's random numbers)"
                      if any(line.startswith(FACT_NAMES["world_size"]) for line in differences) else "")
        logger.warning("resuming %s at %s, but this run will not repeat the interrupted one: %s%s", path, where,
                       "; ".join(differences), data_order)
    else:
        logger.info("resuming %s at %s with the config, process count, precision and code of the run that "
                    "wrote it", path, where)
