"""Train BIKE's video branch: `python train.py --config CFG [key.sub=value ...]`, or under torchrun for DDP."""
import argparse
import logging
import math
import shutil
import time
from pathlib import Path

import torch
import yaml
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from clip import arch_folder_name
from datasets.build import build_dataset
from datasets.seeded import SeededSampler, SeededSamples
from modules import VideoHeader, text_prompt
from modules.video_clip import VideoEncoder, class_features
from utils.checkpoint import load_bike_weights
from utils.config import ConfigError, check_files, load_config
from workflows.curves import tensorboard_writer
from utils.distributed import add_distributed_arguments, init_distributed, run_program
from workflows.evaluation import evaluation_loader, predict, score_metrics
from utils.logger import counted, epoch_label, setup_logging
from utils.solver import build_optimizer, build_scheduler
from workflows.training import (PRECISION_HELP, PRECISIONS, ClassTexts, autocast_for, build_clip, freeze_towers,
                            precision_label, resolve_precision, save_training_checkpoint, seed_everything,
                            starting_point, train_one_epoch)

logger = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("resume", "pretrain")  # files checked, when set, before anything is built


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", "-cfg", required=True, help="YAML config (see configs/)")
    parser.add_argument("--log_time", default=None,
                        help="name of the run folder under output_path/dataset/arch/ (default: the start time)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None, help=PRECISION_HELP)
    add_distributed_arguments(parser)
    parser.add_argument("--no_progress", action="store_true", help="log lines instead of progress bars")
    parser.add_argument("overrides", nargs="*", help="config overrides such as solver.epochs=5")
    return parser.parse_args(argv)


def run_name(requested, distributed: bool) -> str:
    """The run folder's name, the same in every process."""
    name = [requested or time.strftime("%Y%m%d_%H%M%S")]
    if distributed:
        dist.broadcast_object_list(name, src=0)
    return name[0]


def run_folder(config, requested, distributed: bool) -> Path:
    """output_path/dataset/<network.arch as one folder name: a weight file's stem>/<run name>."""
    return (Path(config.data.output_path) / config.data.dataset / arch_folder_name(config.network.arch)
            / run_name(requested, distributed))


def train_loader_for(dataset, config, ctx) -> DataLoader:
    """Shuffled, drop-last batches; the order and every sample's random numbers depend only on the seed,
    the epoch and the rank (see `start_epoch`), whichever worker loads them, so a resumed epoch repeats."""
    if len(dataset) < config.data.batch_size * ctx.world_size:
        raise ConfigError(f"{config.data.train_list}: {len(dataset)} training videos is fewer than one batch "
                          f"(data.batch_size {config.data.batch_size} x {ctx.world_size} processes)")
    # A DistributedSampler with explicit replicas needs no process group: one process shuffles the same way.
    sampler = SeededSampler(DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=config.seed),
                            config.seed, ctx.rank)
    # The loader's own generator: the worker seed it draws once must not move the global one (dropout).
    return DataLoader(SeededSamples(dataset), batch_size=config.data.batch_size, sampler=sampler, drop_last=True,
                      num_workers=config.data.workers,
                      pin_memory=ctx.device.type == "cuda" and config.data.decode_device == "cpu",
                      persistent_workers=config.data.workers > 0, generator=torch.Generator())


def start_epoch(loader: DataLoader, seed: int, rank: int, epoch: int):
    """Re-seeds everything random for `epoch`, so a resumed run repeats an uninterrupted one exactly."""
    seed_everything(seed + 1000 * epoch + rank)
    loader.sampler.set_epoch(epoch)


def build_models(config, device):
    """CLIP and the video header, initialised from `pretrain` when set, frozen as configured, on `device`.

    Every process builds them from `config.seed` (not a per-rank seed), so a randomly initialised tower,
    and the class text features computed from it before DDP synchronises the weights, are the same on
    every rank; only data and augmentation randomness differ between ranks (`start_epoch`).
    """
    seed_everything(config.seed)
    clip_model = build_clip(config)
    header = VideoHeader.for_clip(config.network.sim_header, config.network.interaction, clip_model)
    if config.pretrain:
        load_bike_weights(config.pretrain, clip_model, header)
        logger.info("initialised from %s", config.pretrain)
    freeze_towers(clip_model, config.network.fix_text, config.network.fix_video)
    return clip_model.to(device), header.to(device)


def validate(encoder, header, loader, texts: ClassTexts, ctx, autocast, show_progress):
    if texts.frozen:
        eot, tokens = texts.eot, texts.tokens
    else:
        encoder.eval()
        with autocast():
            eot, tokens = class_features(encoder, texts.prompts)
    scores, labels = predict(encoder, header, loader, eot, tokens, ctx.device, autocast, show_progress)
    return score_metrics(scores, labels)


def main(argv=None):
    args = parse_args(argv)
    ctx = init_distributed(force_cpu=args.cpu, timeout_minutes=args.dist_timeout)
    config = load_config(args.config, args.overrides)
    check_files(config, optional=CHECKPOINT_KEYS)
    precision = resolve_precision(args.precision, ctx.device)
    autocast = autocast_for(precision, ctx.device)
    work_dir = run_folder(config, args.log_time, ctx.distributed)
    setup_logging(work_dir, ctx.is_main)
    if ctx.is_main:
        shutil.copy(args.config, work_dir / Path(args.config).name)
        (work_dir / "config_resolved.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    logger.info("run folder %s; %s on %s; precision %s; torch %s", work_dir,
                counted(ctx.world_size, "process", "processes"), ctx.device, precision_label(args.precision, precision),
                torch.__version__)
    show_progress = ctx.is_main and not args.no_progress

    clip_model, header = build_models(config, ctx.device)

    train_set = build_dataset(config, "train")
    val_set = build_dataset(config, "val")
    train_loader = train_loader_for(train_set, config, ctx)
    val_loader = evaluation_loader(val_set, config.data.batch_size, config.data.workers, ctx.rank, ctx.world_size,
                                   device=ctx.device)

    optimizer = build_optimizer(config.solver, clip_model, [header])
    steps_per_epoch = math.ceil(len(train_loader) / config.solver.grad_accumulation_steps)
    scheduler = build_scheduler(optimizer, config.solver, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda") if precision == "amp" else None
    first_epoch, best_score = starting_point(config, clip_model, header, optimizer, scheduler, scaler)

    encoder = VideoEncoder(clip_model)
    texts = ClassTexts.build(encoder, text_prompt(train_set.class_names, tokenizer=encoder.tokenize),
                             config.network.fix_text, ctx.device, autocast)
    train_encoder, train_header = encoder, header
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        train_encoder = DistributedDataParallel(encoder, device_ids=device_ids)
        if any(p.requires_grad for p in header.parameters()):
            train_header = DistributedDataParallel(header, device_ids=device_ids)

    if config.solver.evaluate:
        logger.info(validate(encoder, header, val_loader, texts, ctx, autocast, show_progress).summary())
        return

    writer = tensorboard_writer(work_dir) if ctx.is_main else None
    for epoch in range(first_epoch, config.solver.epochs):
        start_epoch(train_loader, config.seed, ctx.rank, epoch)
        train_one_epoch(train_encoder, train_header, train_loader, optimizer, scheduler, scaler, texts, config,
                        epoch, ctx.device, autocast, show_progress, writer)
        if train_set.num_skipped:
            logger.warning("%d unreadable training samples skipped so far", train_set.num_skipped)
        is_best = False
        if (epoch + 1) % config.logging.eval_freq == 0 or epoch + 1 == config.solver.epochs:
            result = validate(encoder, header, val_loader, texts, ctx, autocast, show_progress)
            score = result.top1 if result.top1 is not None else result.mean_ap
            is_best = score > best_score
            best_score = max(score, best_score)
            logger.info("%s validation: %s (best %.3f)", epoch_label(epoch, config.solver.epochs), result.summary(),
                        best_score)
            if writer is not None:
                for name in ("top1", "top5", "mean_ap"):
                    if getattr(result, name) is not None:
                        writer.add_scalar(f"val/{name}", getattr(result, name), (epoch + 1) * len(train_loader))
        if ctx.is_main:
            state = dict(epoch=epoch, clip_model=clip_model, header=header, optimizer=optimizer,
                         scheduler=scheduler, scaler=scaler, best_score=best_score, config=config)
            save_training_checkpoint(work_dir / "last_model.pt", **state)
            if is_best:
                save_training_checkpoint(work_dir / "model_best.pt", **state)
    if writer is not None:
        writer.close()
    logger.info("finished: best validation score %.3f; checkpoints in %s", best_score, work_dir)


if __name__ == "__main__":
    run_program(main)
