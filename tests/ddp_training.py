"""Model building and gradient accumulation of train.py / train_co.py; run alone, or under torchrun as a script.

Under torchrun each rank builds the models as the training programs do and trains one epoch of four
micro-batches (its contiguous share of each combined batch) with the config's accumulation steps,
counting DDP's gradient all-reduces per micro-step. Rank 0 saves every rank's class features and
attributes head, the counts and the trained weights to argv[2], for comparison with one process that
trains on the combined batches.
"""
import contextlib
import sys

import torch
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel

from workflows import training_run
import train_co
from modules import text_prompt
from modules.video_clip import VideoEncoder
from utils.config import load_config
from utils.distributed import all_gather_no_grad, gather_to_main, init_distributed
from workflows.training import ClassTexts, train_one_epoch

MICRO_BATCHES, COMBINED_BATCH = 4, 4
CLASS_NAMES = [f"class number {i}" for i in range(6)]


def combined_batches(config):
    generator = torch.Generator().manual_seed(3)
    size, frames = config.data.input_size, config.data.num_segments
    return [(torch.randint(0, 256, (COMBINED_BATCH, frames, 3, size, size), dtype=torch.uint8, generator=generator),
             torch.randint(0, len(CLASS_NAMES), (COMBINED_BATCH,), generator=generator)) for _ in range(MICRO_BATCHES)]


class CountingLoader:
    """The micro-batches, noting how many all-reduces DDP has made before each one is handed out."""

    def __init__(self, batches, counter):
        self.batches, self.counter, self.before = batches, counter, []

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            self.before.append(self.counter[0])
            yield batch
        self.before.append(self.counter[0])

    def per_step(self):
        return [after - before for before, after in zip(self.before, self.before[1:])]


def counting_allreduce(counter, bucket):
    """DDP's own all-reduce of a gradient bucket (default process group), counted."""
    counter[0] += 1
    return allreduce_hook(None, bucket)


def train_accumulated(config, rank: int, world_size: int, distributed: bool):
    """One epoch of MICRO_BATCHES micro-batches: (trained weights, all-reduces per micro-step or None)."""
    clip_model, header = training_run.build_models(config, torch.device("cpu"))
    encoder = VideoEncoder(clip_model)
    texts = ClassTexts.build(encoder, text_prompt(CLASS_NAMES), config.network.fix_text, "cpu", contextlib.nullcontext)
    share = COMBINED_BATCH // world_size
    batches = [(frames[rank * share:(rank + 1) * share], labels[rank * share:(rank + 1) * share])
               for frames, labels in combined_batches(config)]
    counter = [0]
    loader = CountingLoader(batches, counter)
    train_encoder, train_header = encoder, header
    if distributed:
        train_encoder, train_header = DistributedDataParallel(encoder), DistributedDataParallel(header)
        for module in (train_encoder, train_header):
            module.register_comm_hook(counter, counting_allreduce)
    parameters = [p for p in list(clip_model.parameters()) + list(header.parameters()) if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    train_one_epoch(train_encoder, train_header, loader, optimizer, scheduler, None, texts, config, 0,
                    torch.device("cpu"), contextlib.nullcontext, show_progress=False)
    weights = {f"clip.{k}": v.clone() for k, v in clip_model.state_dict().items()}
    weights.update({f"header.{k}": v.clone() for k, v in header.state_dict().items()})
    return weights, loader.per_step() if distributed else None


def built_models(config):
    """What each rank builds before DDP synchronises anything: frozen class features and the attributes head."""
    clip_model, header = training_run.build_models(config, torch.device("cpu"))
    texts = ClassTexts.build(VideoEncoder(clip_model), text_prompt(CLASS_NAMES), True, "cpu", contextlib.nullcontext)
    _, _, head = train_co.build_models(config, torch.device("cpu"))
    return texts.eot, {k: v.clone() for k, v in head.state_dict().items()}


if __name__ == "__main__":
    context = init_distributed(force_cpu=True)
    config = load_config(sys.argv[1])
    class_features, head = built_models(config)
    every_rank_features = all_gather_no_grad(class_features[None])
    every_rank_head = gather_to_main(head)
    weights, all_reduces = train_accumulated(config, context.rank, context.world_size, distributed=True)
    if context.is_main:
        torch.save({"class_features": every_rank_features, "heads": every_rank_head, "weights": weights,
                    "all_reduces": all_reduces}, sys.argv[2])
