"""Host-to-device work per batch: normalisation constants made once per device; pinned memory only for a GPU."""
import pytest
import torch

from workflows import training_run
from clip.clip import CLIP_MEAN, CLIP_STD
from datasets import transforms
from datasets.build import build_dataset
from utils.config import load_config
from utils.distributed import DistributedContext
from workflows import inference


def test_normalisation_constants_are_made_once_per_device_and_normalise_as_clip_does(monkeypatch):
    made = []
    make_tensor = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *args, **kwargs: made.append(args) or make_tensor(*args, **kwargs))
    transforms._clip_mean_std.cache_clear()
    frames = torch.randint(0, 256, (2, 4, 3, 5, 5), dtype=torch.uint8)
    for _ in range(3):
        normalized = transforms.normalize_on_device(frames, "cpu")
    assert len(made) == 2  # the mean and the std, once
    mean, std = make_tensor(CLIP_MEAN).view(3, 1, 1), make_tensor(CLIP_STD).view(3, 1, 1)
    torch.testing.assert_close(normalized, (frames.float() / 255 - mean) / std)


@pytest.mark.parametrize("device, pinned", [("cpu", False), ("cuda", True)])
def test_loaders_pin_memory_only_for_batches_that_go_to_a_gpu(device, pinned, tiny_config, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU exists, but --cpu may be in use
    config = load_config(tiny_config.write())
    context = DistributedContext(0, 1, 0, torch.device(device))
    assert inference.test_loader(config, context, 1, 1, False).pin_memory == pinned
    assert training_run.train_loader_for(build_dataset(config, "train"), config, context).pin_memory == pinned
