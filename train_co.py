"""Train BIKE's attributes branch: `python train_co.py --config CFG [options] [key.sub=value ...]`.

Takes train.py's options plus `--branch` and `--fusion_weights VIDEO ATTRIBUTES` (default 0.7 0.3). The
config names the generated attributes (data.attributes_train_path, data.attributes_val_path;
tools/generate_attributes.py makes them) and data.select_topk_attributes.

--branch attributes (default), the original's train_attributes.py recipe: the attributes head and CLIP's
logit scale learn from the attribute sentences against the class prompts (frozen text tower), with the
optimizer, warm-up and schedule of train.py, under the run's precision; validation reports the branch's
top-1/top-5; model_best.pt is the best top-1. Its checkpoints have the original's layout (the head is
'fusion_model_state_dict'): test.py fuses one with a video checkpoint through --attributes_weights.
scripts/run_co_train.sh runs train.py and then this, as the original's script does.

--branch joint: each epoch trains the video branch as train.py does, then a pass of the attributes head;
validation reports the video, attributes and fused top-1/top-5 and the best fusion weight on the
validation set. Checkpoints hold both heads (the attributes head under 'attributes_head_state_dict');
model_best.pt is the best fused top-1.

SIGUSR1 or SIGTERM stops either branch at the next optimizer step (--branch joint: of the video pass, else
after the epoch) with a checkpoint to continue from with `resume=auto`, as in train.py.
"""
import argparse
import logging
import math

from clip.weights import WeightsMismatchError
from datasets.attributes import DEFAULT_TOPK, AttributesDataset
from datasets.build import build_dataset
from modules import AttributesHead, text_prompt
from modules.video_clip import VideoEncoder
from utils.checkpoint import load_bike_weights
from utils.config import DATA_FILE_KEYS
from utils.distributed import run_program
from utils.logger import counted, epoch_label
from utils.precision import grad_scaler
from utils.solver import build_optimizer, build_scheduler
from workflows.attributes_branch import ATTRIBUTES_HEAD_KEY, AttributesBranch, load_attributes_head
from workflows.evaluation import evaluation_loader
from workflows.fusion import DEFAULT_FUSION_WEIGHTS, evaluate_fusion
from workflows.options import ProgramParser, add_training_arguments
from workflows.preemption import StopPoints, StopSignals
from workflows.startup import start_program
from workflows.training import ClassTexts, build_clip, freeze_towers, seed_everything, starting_point, train_one_epoch
from workflows import training_run
from workflows.training_run import (CHECKPOINT_KEYS, MID_EPOCH_CHECKPOINT, distributed, evaluates_after,
                                    save_epoch_checkpoints, save_mid_epoch_checkpoint, start_epoch, train_loader_for)

logger = logging.getLogger(__name__)

ATTRIBUTE_FILE_KEYS = ("data.attributes_train_path", "data.attributes_val_path")
BRANCHES = ("attributes", "joint")


def parse_args(argv=None):
    """train.py's arguments plus --branch and --fusion_weights."""
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fusion_weights", type=float, nargs=2, default=DEFAULT_FUSION_WEIGHTS,
                        metavar=("VIDEO", "ATTRIBUTES"),
                        help="--branch joint: weights of the fused validation scores (default 0.7 0.3)")
    parser.add_argument("--branch", choices=BRANCHES, default="attributes",
                        help="attributes: the attributes branch alone, the original's train_attributes.py recipe "
                             "(default); joint: the video and attributes branches in one run (fused validation)")
    args = add_training_arguments(parser).parse_args(argv)
    args.fusion_weights = tuple(args.fusion_weights)
    return args


def build_models(config, device):
    """train.py's CLIP and video header (the same on every rank), and the attributes head, initialised from
    `pretrain` when it holds one (--branch joint)."""
    clip_model, header = training_run.build_models(config, device)
    head = AttributesHead(clip_model.config.embed_dim)
    if config.pretrain:
        pretrained_head = load_attributes_head(config.pretrain, clip_model.config.embed_dim)
        if pretrained_head is not None:
            head.load_state_dict(pretrained_head.state_dict())
        logger.info("attributes head %s", f"from {config.pretrain}" if pretrained_head else
                    f"newly initialised ({config.pretrain} holds none)")
    return clip_model, header, head.to(device)


def build_attributes_models(config, device):
    """CLIP and the attributes head (--branch attributes), from `pretrain` when set: an attributes checkpoint,
    whose 'fusion_model_state_dict' is the head, as the original's train_attributes.py saves it.

    Only the head and CLIP's logit scale learn: the original freezes the text tower, and the image tower
    gets no gradient from sentences.
    """
    seed_everything(config.seed)
    clip_model = build_clip(config)
    head = AttributesHead(clip_model.config.embed_dim)
    if config.pretrain:
        load_bike_weights(config.pretrain, clip_model, head)
        logger.info("initialised from %s", config.pretrain)
    freeze_towers(clip_model, fix_text=True, fix_video=True)
    return clip_model.to(device), head.to(device)


def main(argv=None):
    with StopSignals() as signals:
        args = parse_args(argv)
        run = start_program(args, DATA_FILE_KEYS + ATTRIBUTE_FILE_KEYS, optional_keys=CHECKPOINT_KEYS, training=True)
        logger.info("%s branch training in %s; %s on %s; precision %s; fusion weights %s", args.branch, run.work_dir,
                    run.processes, run.ctx.device, run.precision_label, args.fusion_weights)
        if args.branch == "attributes":
            return train_attributes(run, signals)
        return train_jointly(args, run, signals)


def stop_points(run, signals, state) -> StopPoints:
    """The StopPoints of a run whose checkpoints hold `state()` (the arguments of `training_checkpoint` but
    the epoch, and `extra`)."""
    return StopPoints(signals, run.ctx, run.config, lambda position, rng_states: save_mid_epoch_checkpoint(
        run.work_dir, position, rng_states, **state()), MID_EPOCH_CHECKPOINT)


def sentence_sets(config, train_set, val_set, tokenizer):
    """The AttributesDatasets of the training and validation lists."""
    topk = config.data.select_topk_attributes or DEFAULT_TOPK
    return (AttributesDataset(train_set, config.data.attributes_train_path, topk, tokenizer),
            AttributesDataset(val_set, config.data.attributes_val_path, topk, tokenizer))


def train_attributes(run, signals):
    """--branch attributes: returns the last validation result (None when no epoch ran)."""
    config, ctx, autocast, work_dir = run.config, run.ctx, run.autocast, run.work_dir
    clip_model, head = build_attributes_models(config, ctx.device)
    train_sentences, val_sentences = sentence_sets(config, build_dataset(config, "train"),
                                                   build_dataset(config, "val"), getattr(clip_model, "tokenizer", None))
    encoder = VideoEncoder(clip_model)
    branch = AttributesBranch(encoder, head, distributed(head, ctx), train_sentences, val_sentences, True, config,
                              ctx, autocast)
    optimizer = build_optimizer(config.solver, clip_model, [head])
    scheduler = build_scheduler(optimizer, config.solver, branch.optimizer_steps)
    scaler = grad_scaler(run.precision)
    start = starting_point(config, clip_model, head, optimizer, scheduler, scaler)
    best_score = start.best_score
    logger.info("attributes branch: the head and the logit scale learn, %s of batch %d per epoch",
                counted(branch.optimizer_steps, "optimizer step", "optimizer steps"), config.data.batch_size)
    if config.solver.evaluate:
        result = branch.validate()
        logger.info("attributes branch: %s", result.summary())
        return result
    def state():
        return dict(clip_model=clip_model, header=head, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                    best_score=best_score, config=config, run=run.facts)

    stops = stop_points(run, signals, state)
    result = None
    for epoch in range(start.epoch, config.solver.epochs):
        start.restore_random_state(epoch, ctx.rank, ctx.device)
        branch.train_epoch(optimizer, epoch, scheduler, scaler, batches_done=start.batches_done_in(epoch),
                           after_step=stops)
        is_best = False
        if evaluates_after(epoch, config):
            result = branch.validate()
            is_best = result.top1 > best_score
            best_score = max(result.top1, best_score)
            logger.info("%s attributes validation: %s (best %.3f)", epoch_label(epoch, config.solver.epochs),
                        result.summary(), best_score)
        if ctx.is_main:
            save_epoch_checkpoints(work_dir, is_best, epoch=epoch, **state())
        stops.after_epoch(epoch)
    logger.info("finished: best attributes validation Prec@1 %.3f; checkpoints in %s", best_score, work_dir)
    return result


def train_jointly(args, run, signals):
    """--branch joint: returns the last FusionReport (None when no epoch ran)."""
    config, ctx, autocast, work_dir, show_progress = run.config, run.ctx, run.autocast, run.work_dir, run.show_progress
    clip_model, header, head = build_models(config, ctx.device)
    train_set, val_set = build_dataset(config, "train"), build_dataset(config, "val")
    train_sentences, val_sentences = sentence_sets(config, train_set, val_set, getattr(clip_model, "tokenizer", None))
    train_loader = train_loader_for(train_set, config, ctx)
    val_loader = evaluation_loader(val_set, config.data.batch_size, config.data.workers, ctx.rank, ctx.world_size,
                                   device=ctx.device)

    optimizer = build_optimizer(config.solver, clip_model, [header, head])
    scheduler = build_scheduler(optimizer, config.solver,
                                math.ceil(len(train_loader) / config.solver.grad_accumulation_steps))
    scaler = grad_scaler(run.precision)
    start = starting_point(config, clip_model, header, optimizer, scheduler, scaler)
    best_score = start.best_score
    if config.resume:
        resumed_head = load_attributes_head(config.resume, clip_model.config.embed_dim)
        if resumed_head is None:
            raise WeightsMismatchError(f"resume={config.resume} holds no '{ATTRIBUTES_HEAD_KEY}': "
                                       "not a train_co.py --branch joint checkpoint")
        head.load_state_dict(resumed_head.state_dict())

    encoder = VideoEncoder(clip_model)
    texts = ClassTexts.build(encoder, text_prompt(train_set.class_names, tokenizer=encoder.tokenize),
                             config.network.fix_text, ctx.device, autocast)
    train_encoder, train_header = distributed(encoder, ctx), distributed(header, ctx)
    attributes = AttributesBranch(encoder, head, distributed(head, ctx), train_sentences, val_sentences,
                                  config.network.fix_text, config, ctx, autocast)

    def validate():
        video = training_run.validate(encoder, header, val_loader, texts, ctx, autocast, show_progress)
        return evaluate_fusion(video.scores, attributes.val_scores(), video.labels, args.fusion_weights)

    if config.solver.evaluate:
        report = validate()
        logger.info(report.summary())
        return report

    def state():
        return dict(clip_model=clip_model, header=header, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                    best_score=best_score, config=config, run=run.facts, extra={ATTRIBUTES_HEAD_KEY: head.state_dict()})

    stops = stop_points(run, signals, state)
    report = None
    for epoch in range(start.epoch, config.solver.epochs):
        start_epoch(train_loader, config.seed, ctx.rank, epoch, start.batches_done_in(epoch))
        start.restore_random_state(epoch, ctx.rank, ctx.device)
        train_one_epoch(train_encoder, train_header, train_loader, optimizer, scheduler, scaler, texts, config,
                        epoch, ctx.device, autocast, show_progress, batches_done=start.batches_done_in(epoch),
                        after_step=stops)
        attributes.train_epoch(optimizer, epoch)
        is_best = False
        if evaluates_after(epoch, config):
            report = validate()
            is_best = report.fused.top1 > best_score
            best_score = max(report.fused.top1, best_score)
            logger.info("%s validation (best fused Prec@1 %.3f):\n%s", epoch_label(epoch, config.solver.epochs),
                        best_score, report.summary())
        if ctx.is_main:
            save_epoch_checkpoints(work_dir, is_best, epoch=epoch, **state())
        stops.after_epoch(epoch)
    logger.info("finished: best fused validation Prec@1 %.3f; checkpoints in %s", best_score, work_dir)
    return report


if __name__ == "__main__":
    run_program(main)
