"""The parts of a training run that train.py and train_co.py share: the models, the training loader and the
seeding of each epoch, DDP wrapping, validation, when to validate, and the checkpoints of each epoch."""
import logging
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

from datasets.seeded import SeededSampler, SeededSamples
from modules import VideoHeader
from modules.video_clip import class_features
from utils.checkpoint import load_bike_weights, save_atomically
from utils.config import ConfigError
from workflows.evaluation import predict, score_metrics
from workflows.training import ClassTexts, build_clip, freeze_towers, seed_everything, training_checkpoint

logger = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("resume", "pretrain")  # files checked, when set, before anything is built


def train_loader_for(dataset, config, ctx) -> DataLoader:
    """Shuffled, drop-last batches; the order and every sample's random numbers depend only on the seed,
    the epoch and the rank (see `start_epoch`), whichever worker loads them, so a resumed epoch repeats."""
    if len(dataset) < config.data.batch_size * ctx.world_size:
        raise ConfigError(f"{config.data.train_list}: {len(dataset)} training videos is fewer than one batch "
                          f"(data.batch_size {config.data.batch_size} x {ctx.world_size} processes)")
    pin_memory = ctx.device.type == "cuda" and config.data.decode_device == "cpu"
    if isinstance(dataset, IterableDataset):  # shards: the dataset splits, orders and seeds itself
        dataset.split(ctx.rank, ctx.world_size, config.data.batch_size)
        return DataLoader(dataset, batch_size=config.data.batch_size, drop_last=True, num_workers=config.data.workers,
                          pin_memory=pin_memory, persistent_workers=config.data.workers > 0)
    # A DistributedSampler with explicit replicas needs no process group: one process shuffles the same way.
    sampler = SeededSampler(DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=config.seed),
                            config.seed, ctx.rank)
    # The loader's own generator: the worker seed it draws once must not move the global one (dropout).
    return DataLoader(SeededSamples(dataset), batch_size=config.data.batch_size, sampler=sampler, drop_last=True,
                      num_workers=config.data.workers,
                      pin_memory=pin_memory,
                      persistent_workers=config.data.workers > 0, generator=torch.Generator())


def start_epoch(loader: DataLoader, seed: int, rank: int, epoch: int, batches_done: int = 0):
    """Re-seeds everything random for `epoch`, so a resumed run repeats an uninterrupted one exactly; a shard
    dataset starts the epoch at batch `batches_done` (a resumed epoch)."""
    seed_everything(seed + 1000 * epoch + rank)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch, batches_done)
    else:
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


def distributed(module, ctx):
    """`module` wrapped for DDP when there are several processes and it has something to train."""
    if not ctx.distributed or not any(p.requires_grad for p in module.parameters()):
        return module
    return DistributedDataParallel(module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def validate(encoder, header, loader, texts: ClassTexts, ctx, autocast, show_progress):
    """The video branch's scores and metrics on `loader`."""
    if texts.frozen:
        eot, tokens = texts.eot, texts.tokens
    else:
        encoder.eval()
        with autocast():
            eot, tokens = class_features(encoder, texts.prompts)
    scores, labels = predict(encoder, header, loader, eot, tokens, ctx.device, autocast, show_progress)
    return score_metrics(scores, labels)


def evaluates_after(epoch: int, config) -> bool:
    """Whether the run validates after the 0-based `epoch`: every logging.eval_freq epochs, and after the last."""
    return (epoch + 1) % config.logging.eval_freq == 0 or epoch + 1 == config.solver.epochs


def save_epoch_checkpoints(work_dir: Path, is_best: bool, extra=None, **state):
    """`work_dir/last_model.pt` after every epoch, and `model_best.pt` when the epoch is the best so far:
    `training_checkpoint(**state)` plus the entries of `extra` (e.g. a second head)."""
    checkpoint = training_checkpoint(**state)
    checkpoint.update(extra or {})
    save_atomically(checkpoint, Path(work_dir) / "last_model.pt")
    if is_best:
        save_atomically(checkpoint, Path(work_dir) / "model_best.pt")
