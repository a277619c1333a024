"""Train BIKE's video branch: `python train.py --config CFG [key.sub=value ...]`, or under torchrun for DDP.

SIGUSR1 or SIGTERM stops the run at the next optimizer step with a checkpoint to continue from with
`resume=auto` (workflows/preemption.py)."""
import logging
import math

import torch

from datasets.build import build_dataset
from modules import text_prompt
from modules.video_clip import VideoEncoder
from utils.config import DATA_FILE_KEYS
from utils.distributed import run_program
from utils.logger import epoch_label
from utils.precision import grad_scaler
from utils.solver import build_optimizer, build_scheduler
from workflows.curves import tensorboard_writer
from workflows.evaluation import evaluation_loader
from workflows.options import ProgramParser, add_training_arguments
from workflows.preemption import StopPoints, StopSignals
from workflows.startup import start_program
from workflows.training import ClassTexts, log_trainable_parameters, starting_point, train_one_epoch
from workflows.training_run import (CHECKPOINT_KEYS, MID_EPOCH_CHECKPOINT, build_models, distributed, evaluates_after,
                                    save_epoch_checkpoints, save_mid_epoch_checkpoint, start_epoch, train_loader_for,
                                    validate)

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    return add_training_arguments(ProgramParser(description=__doc__)).parse_args(argv)


def main(argv=None):
    with StopSignals() as signals:
        return train(parse_args(argv), signals)


def train(args, signals: StopSignals):
    run = start_program(args, DATA_FILE_KEYS, optional_keys=CHECKPOINT_KEYS, training=True)
    ctx, config, autocast, work_dir, show_progress = run.ctx, run.config, run.autocast, run.work_dir, run.show_progress
    logger.info("run folder %s; %s on %s; precision %s; torch %s", work_dir, run.processes, ctx.device,
                run.precision_label, torch.__version__)

    clip_model, header = build_models(config, ctx.device)
    log_trainable_parameters(clip_model, header)

    train_set = build_dataset(config, "train")
    val_set = build_dataset(config, "val")
    train_loader = train_loader_for(train_set, config, ctx)
    val_loader = evaluation_loader(val_set, config.data.batch_size, config.data.workers, ctx.rank, ctx.world_size,
                                   device=ctx.device)

    optimizer = build_optimizer(config.solver, clip_model, [header])
    batches_per_epoch = len(train_loader)
    steps_per_epoch = math.ceil(batches_per_epoch / config.solver.grad_accumulation_steps)
    scheduler = build_scheduler(optimizer, config.solver, steps_per_epoch)
    scaler = grad_scaler(run.precision)
    start = starting_point(config, clip_model, header, optimizer, scheduler, scaler)
    best_score = start.best_score

    encoder = VideoEncoder(clip_model)
    texts = ClassTexts.build(encoder, text_prompt(train_set.class_names, tokenizer=encoder.tokenize),
                             config.network.fix_text, ctx.device, autocast)
    train_encoder, train_header = distributed(encoder, ctx), distributed(header, ctx)

    if config.solver.evaluate:
        logger.info(validate(encoder, header, val_loader, texts, ctx, autocast, show_progress).summary())
        return

    def state():  # what every checkpoint of the run holds besides its position
        return dict(clip_model=clip_model, header=header, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                    best_score=best_score, config=config, run=run.facts)

    stop_points = StopPoints(signals, ctx, config, lambda position, rng_states: save_mid_epoch_checkpoint(
        work_dir, position, rng_states, **state()), MID_EPOCH_CHECKPOINT)
    writer = tensorboard_writer(work_dir) if ctx.is_main else None
    for epoch in range(start.epoch, config.solver.epochs):
        start_epoch(train_loader, config.seed, ctx.rank, epoch, start.batches_done_in(epoch))
        start.restore_random_state(epoch, ctx.rank, ctx.device)
        train_one_epoch(train_encoder, train_header, train_loader, optimizer, scheduler, scaler, texts, config,
                        epoch, ctx.device, autocast, show_progress, writer, batches_done=start.batches_done_in(epoch),
                        after_step=stop_points)
        if train_set.num_skipped:
            logger.warning("%d unreadable training samples skipped so far", train_set.num_skipped)
        is_best = False
        if evaluates_after(epoch, config):
            result = validate(encoder, header, val_loader, texts, ctx, autocast, show_progress)
            score = result.top1 if result.top1 is not None else result.mean_ap
            is_best = score > best_score
            best_score = max(score, best_score)
            logger.info("%s validation: %s (best %.3f)", epoch_label(epoch, config.solver.epochs), result.summary(),
                        best_score)
            if writer is not None:
                for name in ("top1", "top5", "mean_ap"):
                    if getattr(result, name) is not None:
                        writer.add_scalar(f"val/{name}", getattr(result, name), (epoch + 1) * batches_per_epoch)
        if ctx.is_main:
            save_epoch_checkpoints(work_dir, is_best, epoch=epoch, **state())
        stop_points.after_epoch(epoch)
    if writer is not None:
        writer.close()
    logger.info("finished: best validation score %.3f; checkpoints in %s", best_score, work_dir)


if __name__ == "__main__":
    run_program(main)
