"""Stopping a training run on request, at the same step in every process, with a checkpoint to continue from.

SIGUSR1 (Slurm's warning before the time limit, `sbatch --signal=USR1@SECONDS`) and SIGTERM (preemption,
`kill`) only set a flag. After every optimizer step all processes agree whether any of them got one (one
all-reduce of a number); if so, every rank's random state is gathered, rank 0 writes the mid-epoch
checkpoint of the run folder (atomically), asks Slurm to requeue the job when it runs in one
(`scontrol requeue $SLURM_JOB_ID`; a failure is logged, not fatal) and every process exits with the same
status: REQUEUED (0) after a successful requeue, else 128 + the signal's number (138 for SIGUSR1, 143 for
SIGTERM), as a shell reports a process that signal ended. `resume=auto` continues the run from there.

`logging.checkpoint_steps` N also writes that checkpoint every N optimizer steps, so a process that dies
without warning (kill -9, a lost node) loses at most N steps.
"""
import logging
import math
import os
import signal
import subprocess
from typing import Callable

import torch

from utils.distributed import broadcast_from_main, gather_to_main, max_over_processes
from utils.logger import epoch_label

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
REQUEUED = 0  # exit status of a run stopped by a signal whose Slurm job was requeued


def stopped_status(signum: int) -> int:
    """The exit status of a run stopped by `signum` and not requeued (as a shell reports one it ended)."""
    return 128 + signum


class StopSignals:
    """While entered, SIGUSR1 and SIGTERM are recorded (`received`, the last one's number) instead of ending
    the process; the previous handlers come back on exit. Enter it first thing, so that a signal during
    start-up is kept too."""

    def __init__(self):
        self.received = 0
        self.previous = {}

    def __enter__(self):
        self.previous = {signum: signal.signal(signum, self._record) for signum in STOP_SIGNALS}
        return self

    def __exit__(self, *exception):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _record(self, signum, frame):
        self.received = signum


def random_state(device: torch.device) -> dict:
    """This process's global random state: torch's CPU generator and, on a GPU, that GPU's."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore_random_state(states: list, rank: int, device: torch.device):
    """Sets this process's global random state to `states[rank]` (`random_state` of every rank); a rank
    the saved run did not have keeps its seeding (the resume's log line says the world size differs)."""
    if rank >= len(states):
        return
    torch.set_rng_state(states[rank]["torch"])
    if device.type == "cuda" and states[rank]["cuda"] is not None:
        torch.cuda.set_rng_state(states[rank]["cuda"], device)


def request_requeue() -> bool:
    """`scontrol requeue $SLURM_JOB_ID` when the process runs in a Slurm job; whether it succeeded."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    try:
        subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True, text=True, timeout=120)
    except subprocess.CalledProcessError as error:
        logger.warning("scontrol requeue %s failed (status %d): %s", job, error.returncode,
                       (error.stderr or error.stdout or "").strip() or "no message")
        return False
    except (OSError, subprocess.TimeoutExpired) as error:
        logger.warning("scontrol requeue %s failed: %s", job, error)
        return False
    logger.info("Slurm job %s requeued", job)
    return True


class StopPoints:
    """What every process does after each optimizer step (`__call__`, the `after_step` of
    `workflows.training.train_one_epoch`) and after each epoch's checkpoint (`after_epoch`): agree whether a
    stop signal arrived anywhere, write the mid-epoch checkpoint when stopping or every `every_steps`
    optimizer steps, and stop.

    `save(position, rng_states)` writes the mid-epoch checkpoint; rank 0 calls it, with `position`
    {'epoch', 'batches_done'} and every rank's `random_state`.
    """

    def __init__(self, signals: StopSignals, ctx, config, save: Callable[[dict, list], None], checkpoint_name: str):
        self.signals, self.ctx, self.save, self.checkpoint_name = signals, ctx, save, checkpoint_name
        self.every_steps, self.epochs = config.logging.checkpoint_steps, config.solver.epochs
        self.accumulation = config.solver.grad_accumulation_steps

    def __call__(self, epoch: int, batches_done: int, batches: int):
        signum = max_over_processes(self.signals.received, self.ctx.device)
        steps_done = math.ceil(batches_done / self.accumulation)
        if signum or (self.every_steps and steps_done % self.every_steps == 0 and batches_done < batches):
            states = gather_to_main(random_state(self.ctx.device))
            if self.ctx.is_main:
                self.save({"epoch": epoch, "batches_done": batches_done}, states)
        if signum:
            self.stop(signum, f"in {epoch_label(epoch, self.epochs)} after batch {batches_done} of {batches}, "
                              f"{self.checkpoint_name} written")

    def after_epoch(self, epoch: int):
        """After the epoch's checkpoint: stops when a signal arrived since the last step (in validation)."""
        signum = max_over_processes(self.signals.received, self.ctx.device)
        if signum:
            self.stop(signum, f"after {epoch_label(epoch, self.epochs)} and its checkpoint")

    def stop(self, signum: int, where: str):
        """Rank 0 requests the requeue; every process ends with the status it decides."""
        status = broadcast_from_main(REQUEUED if self.ctx.is_main and request_requeue() else stopped_status(signum))
        requeued = status == REQUEUED  # rank 0's answer, so that every process logs the same advice
        logger.warning("stopped by %s %s; exit status %d: %s", signal.Signals(signum).name, where, status,
                       "the requeued job continues with resume=auto" if requeued
                       else "continue with resume=auto and the same --log_time")
        raise SystemExit(status)
