"""The start of every program (as dinov2's default_setup): the process group, the config with its command-line
overrides and the files it names, the precision and its autocast, logging, and for training the run folder
(with `resume=auto` resolved and the start recorded: workflows/run_record.py).

    run = start_program(args, file_keys=("data.val_list", "data.label_list"), given_files={"weights": args.weights})
    run.ctx, run.config, run.precision, run.autocast, run.show_progress

Every check that needs no model comes before anything is built, so a mistake ends the program at once.
"""
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
import yaml

from clip import arch_folder_name
from utils.config import AUTO_RESUME, check_files, load_config
from utils.distributed import DEFAULT_TIMEOUT_MINUTES, DistributedContext, broadcast_from_main, init_distributed
from utils.errors import check_given_files
from utils.logger import counted, setup_logging
from utils.precision import autocast_for, precision_label, resolve_precision
from workflows.options import overrides
from workflows.run_record import newest_checkpoint, record_start, report_resume, run_facts

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """What a started program works with."""
    args: object
    ctx: DistributedContext
    config: object  # a Config; a list of them where --config is repeated
    precision: str
    autocast: Callable
    work_dir: Optional[Path] = None
    facts: Optional[dict] = None  # training: what besides the config decides its numbers (run_record.run_facts)

    @property
    def show_progress(self) -> bool:
        return self.ctx.is_main and not getattr(self.args, "no_progress", False)

    @property
    def precision_label(self) -> str:
        """The precision as the first log line names it (why, when it is the default)."""
        return precision_label(self.args.precision, self.precision)

    @property
    def processes(self) -> str:
        return counted(self.ctx.world_size, "process", "processes")


def load_program_config(args, path=None, extra_overrides=()):
    """The config of `args.config` (or `path`) with every override of the command line, then `extra_overrides`
    (those an option stands for, e.g. predict's --video_backend)."""
    return load_config(path or args.config, overrides(args) + list(extra_overrides))


def start_program(args, file_keys=(), optional_keys=(), given_files=None, training=False, local=False,
                  extra_overrides=()) -> Run:
    """Joins the process group (or runs alone), checks the files named on the command line (`given_files`:
    option -> path or None), loads the config and checks the files its `file_keys` (and the set
    `optional_keys`) name, resolves the precision, and starts logging: for `training`, into a new run
    folder that receives a copy of the config and the resolved config.

    A training run's `resume=auto` becomes the run folder's newest complete checkpoint, or None (both logged).

    `local`: a program that runs in one process only (predict, the app), on `local_device`; it sets up its
    own plain console logging."""
    if local:
        ctx = DistributedContext(rank=0, world_size=1, local_rank=0, device=local_device(args.cpu))
    else:
        ctx = init_distributed(force_cpu=getattr(args, "cpu", False),
                               timeout_minutes=getattr(args, "dist_timeout", DEFAULT_TIMEOUT_MINUTES))
        if not training:
            setup_logging(None, ctx.is_main)
    check_given_files(**(given_files or {}))
    several = isinstance(args.config, list)  # --config repeated (test_zeroshot.py's splits): a list of configs
    configs = [load_program_config(args, path, extra_overrides) for path in (args.config if several else [args.config])]
    if file_keys or optional_keys:
        for config in configs:
            check_files(config, file_keys, optional=[key for key in optional_keys
                                                     if not (key == "resume" and config.resume == AUTO_RESUME)])
    config = configs if several else configs[0]
    precision = resolve_precision(args.precision, ctx.device)
    run = Run(args, ctx, config, precision, autocast_for(precision, ctx.device))
    if training:
        start_run_folder(run)
    return run


def start_run_folder(run: Run):
    """The run folder of a training run: logging into it, `resume=auto` resolved (rank 0 decides for every
    process), a copy of the config and the resolved config, the start recorded, a resume compared with the
    run it continues."""
    ctx, config, args = run.ctx, run.config, run.args
    run.work_dir = run_folder(config, args.log_time, ctx.distributed)
    setup_logging(run.work_dir, ctx.is_main)
    run.facts = run_facts(ctx.world_size, run.precision)
    if config.resume == AUTO_RESUME:
        found = broadcast_from_main(newest_checkpoint(run.work_dir) if ctx.is_main else None)
        config.resume = str(found) if found else None
        logger.info("resume=auto: %s", f"continuing from {found}" if found else
                    f"no complete checkpoint in {run.work_dir}: starting fresh")
    if ctx.is_main:
        shutil.copy(args.config, run.work_dir / Path(args.config).name)
        (run.work_dir / "config_resolved.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        record_start(run.work_dir, run.facts, config.resume)
        if config.resume:
            report_resume(config.resume, config.to_dict(), run.facts, config.solver.epochs)


def run_name(requested, distributed: bool) -> str:
    """The run folder's name, the same in every process: `requested` (--log_time), else in a Slurm job its
    id (a requeued job keeps it, so it finds its folder), else the start time."""
    name = [requested or os.environ.get("SLURM_JOB_ID") or time.strftime("%Y%m%d_%H%M%S")]
    if distributed:
        dist.broadcast_object_list(name, src=0)
    return name[0]


def run_folder(config, requested, distributed: bool) -> Path:
    """output_path/dataset/<network.arch as one folder name: a weight file's stem>/<run name>."""
    return (Path(config.data.output_path) / config.data.dataset / arch_folder_name(config.network.arch)
            / run_name(requested, distributed))


def local_device(cpu: bool = False) -> torch.device:
    """The device of a program that runs in one process (predict, export, the app): the GPU unless `cpu`."""
    return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
