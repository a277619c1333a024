"""Training of the video branch: frozen towers, class texts, one epoch, checkpoints for resume."""
import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

import clip
from datasets.transforms import normalize_on_device
from modules.video_clip import VideoEncoder, class_features
from clip.weights import WeightsMismatchError
from utils.checkpoint import HEADER_KEY, MODEL_KEY, load_bike_weights, map_original_optimizer_state
from utils.config import ConfigError
from utils.distributed import all_gather_no_grad, all_gather_with_grad
from utils.logger import Progress, epoch_label
from utils.losses import symmetric_loss
from workflows.preemption import restore_random_state

logger = logging.getLogger(__name__)

def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_clip(config) -> clip.CLIP:
    network = config.network
    model, _ = clip.load(network.arch, device="cpu", pretrain=network.init, download_root=network.clip_cache,
                         pretrained=network.pretrained,
                         num_frames=config.data.num_segments * config.data.seg_length,
                         drop_path=network.drop_out, emb_dropout=network.emb_dropout,
                         joint_st=network.joint_st, grad_checkpointing=network.grad_checkpointing,
                         image_resolution=config.data.input_size)
    if model.config.image_resolution != config.data.input_size:
        raise ConfigError(f"{config.source}: data.input_size is {config.data.input_size}, but the CLIP weights of "
                          f"{network.arch} take {model.config.image_resolution}-pixel images")
    if network.compile:
        model.visual.compile()  # in place: parameter names and checkpoints stay the same
    return model


def freeze_towers(clip_model: torch.nn.Module, fix_text: bool, fix_video: bool):
    """`fix_text` freezes the text tower (the logit scale stays trainable), `fix_video` the image tower."""
    for name, parameter in clip_model.named_parameters():
        visual = name.startswith("visual.")
        if (fix_video and visual) or (fix_text and not visual and name != "logit_scale"):
            parameter.requires_grad_(False)


def log_trainable_parameters(*modules):
    """Logs `trainable parameters: N of M (P%)` over the parameters of `modules` (each counted once)."""
    parameters = list({id(p): p for module in modules for p in module.parameters()}.values())
    total = sum(p.numel() for p in parameters)
    trainable = sum(p.numel() for p in parameters if p.requires_grad)
    logger.info("trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}",
                100 * trainable / max(total, 1))


@dataclass
class ClassTexts:
    """Prompt tokens of every class, and their features when the text tower is frozen (computed once)."""

    prompts: torch.Tensor
    eot: Optional[torch.Tensor] = None
    tokens: Optional[torch.Tensor] = None

    @property
    def frozen(self) -> bool:
        return self.eot is not None

    @classmethod
    def build(cls, encoder: VideoEncoder, prompts: torch.Tensor, frozen: bool, device, autocast) -> "ClassTexts":
        prompts = prompts.to(device)
        if not frozen:
            return cls(prompts)
        was_training = encoder.training
        encoder.eval()
        with autocast():
            eot, tokens = class_features(encoder, prompts)
        encoder.train(was_training)
        return cls(prompts, eot, tokens)


def training_step_loss(encoder, header, frames, labels, texts: ClassTexts, loss_type: str) -> torch.Tensor:
    """The symmetric loss over the batch gathered from every process (gradients flow to every rank)."""
    if texts.frozen:
        video, _, _, logit_scale = encoder(frames)
        all_labels = all_gather_no_grad(labels)
        eot, tokens = texts.eot[all_labels], texts.tokens[all_labels]
    else:
        video, eot, tokens, logit_scale = encoder(frames, texts.prompts[labels])
        all_labels = all_gather_no_grad(labels)
        eot, tokens = all_gather_with_grad(eot), all_gather_with_grad(tokens)
    video = all_gather_with_grad(video)
    logits = logit_scale * header(video, tokens, eot)
    return symmetric_loss(logits.float(), all_labels, loss_type)


@contextlib.contextmanager
def out_of_memory_advice(config):
    """Re-raises running out of memory with the config keys that fix it."""
    try:
        yield
    except torch.OutOfMemoryError as error:
        if config.network.grad_checkpointing:
            advice = "lower data.batch_size and raise solver.grad_accumulation_steps to keep the effective batch"
        else:
            advice = ("set network.grad_checkpointing=True (activations are recomputed in backward: about a "
                      "tenth of the activation memory for 10-40% more time; the original implementation always "
                      "does this), or lower data.batch_size and raise solver.grad_accumulation_steps")
        raise torch.OutOfMemoryError(f"out of memory in a training step of data.batch_size "
                                     f"{config.data.batch_size}: {advice}. {error}") from error


def gradient_sync(modules, sync: bool):
    """The context of one micro-step: DDP modules all-reduce their gradients only when `sync` is set.

    Within a gradient-accumulation group only the last micro-step's backward needs the all-reduce (the
    others accumulate locally, `no_sync`); the result is the same, with 1/accumulation of the traffic.
    """
    stack = contextlib.ExitStack()
    if not sync:
        for module in modules:
            if isinstance(module, DistributedDataParallel):
                stack.enter_context(module.no_sync())
    return stack


def step_optimizer(optimizer, scaler):
    """One optimizer step (through the gradient scaler under amp); the gradients are cleared."""
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def train_one_epoch(encoder, header, loader, optimizer, scheduler, scaler, texts: ClassTexts, config,
                    epoch: int, device, autocast, show_progress: bool = True, writer=None, batches_done: int = 0,
                    after_step=None) -> float:
    """One pass over `loader`; returns the mean loss. Steps the schedule after every optimizer step.
    `writer` (a TensorBoard SummaryWriter, optional) receives each step's loss and learning rate.

    `batches_done`: the batches of the epoch consumed before an interruption (the loader starts after
    them, `training_run.start_epoch`); `after_step(epoch, batches_done, batches)`, when given, is called
    in every process after every optimizer step (`workflows.preemption.StopPoints`: stop and checkpoint)."""
    encoder.train()
    header.train()
    accumulation = config.solver.grad_accumulation_steps
    batches = batches_done + len(loader)  # the whole epoch's
    label = epoch_label(epoch, config.solver.epochs)
    progress = Progress(loader, batches, label, config.logging.print_freq, show_progress, done=batches_done)
    total_loss, data_time, step_time = 0.0, 0.0, 0.0
    end = time.monotonic()
    for step, (frames, labels) in enumerate(progress, start=batches_done):
        frames, labels = normalize_on_device(frames, device), labels.to(device, non_blocking=True)
        waited = time.monotonic() - end
        optimizer_step = (step + 1) % accumulation == 0 or step + 1 == batches
        # Micro-batches of this optimizer step (fewer in an epoch's last, incomplete group): the step uses
        # their mean gradient, as one batch of them all would.
        group_size = min(accumulation, batches - step // accumulation * accumulation)
        with out_of_memory_advice(config), gradient_sync((encoder, header), optimizer_step):
            with autocast():
                loss = training_step_loss(encoder, header, frames, labels, texts, config.solver.loss_type)
            loss_value = loss.item()  # the step's one wait for the device; used below for every report
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss is {loss_value} at {label}, step {step + 1}: stopping before "
                                         "the weights are corrupted (lower solver.lr or use fp32)")
            (scaler.scale(loss / group_size) if scaler else loss / group_size).backward()
        if optimizer_step:
            step_optimizer(optimizer, scaler)
            scheduler.step()
        elapsed = time.monotonic() - end
        total_loss += loss_value
        data_time += waited
        step_time += elapsed
        progress.update(loss=loss_value, lr=optimizer.param_groups[0]["lr"], data=waited, time=elapsed)
        if writer is not None:
            global_step = epoch * batches + step + 1
            writer.add_scalar("train/loss", loss_value, global_step)
            writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], global_step)
        if optimizer_step and after_step is not None:
            after_step(epoch, step + 1, batches)
        end = time.monotonic()
    if len(loader):
        logger.info("%s: mean loss %.4f, data wait %.1f%% of step time", label, total_loss / len(loader),
                    100 * data_time / max(step_time, 1e-9))
    return total_loss / max(len(loader), 1)


def training_checkpoint(epoch, clip_model, header, optimizer, scheduler, scaler, best_score, config,
                        run=None) -> dict:
    """The original layout plus what resuming needs (schedule, scaler, best score, config) and `run`, the
    facts of the run that wrote it (`workflows.run_record.run_facts`)."""
    return {
        "epoch": epoch,
        MODEL_KEY: clip_model.state_dict(),
        HEADER_KEY: header.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "scheduler_state_dict": scheduler.state_dict(),
        "scaler_state_dict": scaler.state_dict() if scaler else None,
        "best_score": best_score,
        "config": config.to_dict(),
        "run": run,
    }


# A mid-epoch checkpoint (workflows.training_run.save_mid_epoch_checkpoint) adds these keys to the usual ones,
# whose `epoch` stays the last completed epoch (so the original code restarts the interrupted epoch).
POSITION_KEY = "resume_position"  # {'epoch': the epoch in progress, 'batches_done': batches per process}
RNG_KEY = "rng_states"  # per rank: {'torch': CPU generator state, 'cuda': the GPU's or None} after those batches


@dataclass
class StartingPoint:
    """Where a run starts: the epoch, the best score so far, and in a run resumed mid-epoch the batches of
    that epoch already done (per process) and every rank's random state after them."""
    epoch: int
    best_score: float = 0.0
    batches_done: int = 0
    rng_states: Optional[list] = None

    def batches_done_in(self, epoch: int) -> int:
        return self.batches_done if epoch == self.epoch else 0

    def restore_random_state(self, epoch: int, rank: int, device):
        """In the epoch resumed mid-way, after `training_run.start_epoch` re-seeded it: this rank's random
        state after its batches done (dropout and drop path go on as in the uninterrupted run)."""
        if self.batches_done_in(epoch) and self.rng_states:
            restore_random_state(self.rng_states, rank, device)


def resume_position(checkpoint: dict) -> tuple:
    """(the epoch to continue in, the batches of it done) of a checkpoint of this code or the original's."""
    position = checkpoint.get(POSITION_KEY)
    return (position["epoch"], position["batches_done"]) if position else (checkpoint["epoch"] + 1, 0)


def resume_training(path, clip_model, header, optimizer, scheduler, scaler) -> StartingPoint:
    """Restores everything `training_checkpoint` stored; returns where to continue.

    A checkpoint of the original implementation (no scheduler state; its optimizer over all CLIP
    parameters and the header) resumes as the original does: weights, the epoch and the schedule of
    that epoch; its optimizer state where it maps onto the trainable parameters, else fresh (logged).
    A mid-epoch checkpoint continues in the epoch it was written in, after the batches it had done.
    """
    checkpoint = load_bike_weights(path, clip_model, header)
    saved_optimizer = checkpoint.get("optimizer_state_dict")
    if "scheduler_state_dict" not in checkpoint:
        first_epoch = checkpoint["epoch"] + 1
        scheduler.start_at(first_epoch)
        state, how = (map_original_optimizer_state(saved_optimizer, clip_model, [header], optimizer)
                      if saved_optimizer else (None, "it holds no optimizer state: fresh optimizer state"))
        if state is not None:
            optimizer.load_state_dict(state)
        logger.info("%s has the original layout: schedule restarted at epoch %d; %s", path, first_epoch, how)
        return StartingPoint(first_epoch)
    if saved_optimizer:
        try:
            optimizer.load_state_dict(saved_optimizer)
        except ValueError as error:  # another set of trainable parameters (fix_text, fix_video, sim_header)
            raise WeightsMismatchError(f"optimizer_state_dict of {path} does not fit this run's trainable "
                                       f"parameters ({error}); use pretrain= to load the weights only") from error
    scheduler.load_state_dict(checkpoint["scheduler_state_dict"])
    if scaler and checkpoint.get("scaler_state_dict"):
        scaler.load_state_dict(checkpoint["scaler_state_dict"])
    epoch, batches_done = resume_position(checkpoint)
    return StartingPoint(epoch, checkpoint.get("best_score") or 0.0, batches_done, checkpoint.get(RNG_KEY))


def starting_point(config, clip_model, header, optimizer, scheduler, scaler) -> StartingPoint:
    """Where a run starts: `solver.start_epoch`, or where the `resume` checkpoint left off (restored by
    `resume_training`, logged)."""
    if not config.resume:
        return StartingPoint(config.solver.start_epoch)
    start = resume_training(config.resume, clip_model, header, optimizer, scheduler, scaler)
    within = (f" and {start.batches_done} batches of {epoch_label(start.epoch, config.solver.epochs)}"
              if start.batches_done else "")
    logger.info("resumed from %s: %d of %d epochs done%s (best so far %.3f)", config.resume, start.epoch,
                config.solver.epochs, within, start.best_score)
    return start
