"""test.py on a checkpoint in the original layout gives the original implementation's scores.

The reference here is built independently: PIL decoding and bicubic resizing as the original's
GroupScale/GroupCenterCrop, the original's test-time frame indices, OpenAI's own CLIP image tower, the
header and text tower in plain tensor math, and per-view softmax over cosine similarities.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import clip
import test as test_program
from modules import VideoHeader, text_prompt
from tests import clip_math
from tests.equivalence import TINY_SHAPES, openai_model, perturbed
from utils.metrics import original_map_scores
from tests.tiny_run import FP32

MEAN, STD = torch.tensor(clip.CLIP_MEAN).view(3, 1, 1), torch.tensor(clip.CLIP_STD).view(3, 1, 1)


def original_test_indices(num_frames, num_segments, clips=1, index_bias=1):
    """The original `_get_test_indices` (uniform sampling): `clips` clips, each `num_segments` frames."""
    tick = num_frames / float(num_segments)
    starts = np.linspace(0, tick - 1, num=clips, dtype=int).tolist()
    return [[int(start + tick * x) % num_frames + index_bias for x in range(num_segments)] for start in starts]


def original_views(folder: Path, indices, size, crops):
    """GroupScale(size) (PIL bicubic, short side), then GroupCenterCrop(size) (1 crop) or GroupFullResSample
    without flips (3 crops: left, right, center at mid height), ToTensor, Normalize: [crops x frames, 3, size,
    size] in the original's order (crop-major, then the frames of every clip)."""
    frames = []
    for index in indices:
        image = Image.open(folder / f"img_{index:05d}.jpg").convert("RGB")
        width, height = image.size
        scaled = (size, int(size * height / width)) if width < height else (int(size * width / height), size)
        frames.append(image.resize(scaled, Image.BICUBIC))
    width, height = frames[0].size
    if crops == 1:
        offsets = [(int(round((width - size) / 2.0)), int(round((height - size) / 2.0)))]
    else:
        w_step, h_step = (width - size) // 4, (height - size) // 4
        offsets = [(0, 2 * h_step), (4 * w_step, 2 * h_step), (2 * w_step, 2 * h_step)]
    views = []
    for left, top in offsets:
        for image in frames:
            array = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
            views.append((torch.from_numpy(array).permute(2, 0, 1) - MEAN) / STD)
    return torch.stack(views)


@pytest.fixture(scope="module")
def original_checkpoint(openai_reference, tmp_path_factory):
    """A checkpoint in the original layout (with `module.` prefixes): OpenAI's CLIP and a video header with
    well-spread weights; (path, OpenAI model, header weights)."""
    shape = dict(TINY_SHAPES["vit-patch8"])  # 32-pixel input, like the tiny config
    reference = openai_model(openai_reference, shape, seed=3)
    reference.load_state_dict(perturbed(reference.state_dict(), seed=6, scale=0.2))
    torch.manual_seed(4)
    header = VideoHeader("Transf", "VCS", embed_dim=shape["embed_dim"], max_frames=77, heads=1)
    header_state = perturbed(header.state_dict(), seed=5, scale=0.2)
    path = tmp_path_factory.mktemp("original") / "model_best.pt"
    torch.save({
        "epoch": 11,
        "model_state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()},
        "fusion_model_state_dict": {f"module.{k}": v for k, v in header_state.items()},
        "optimizer_state_dict": {},
    }, path)
    return path, reference, header_state


def original_scores(reference, header_state, tiny_dataset, clips=1, crops=1, index_bias=1):
    """Per view, softmax over the header's cosine similarities; averaged over the views (the original's
    scores before its final softmax)."""
    state = reference.state_dict()
    class_names = [line.split(",", 1)[1] for line in Path(tiny_dataset.labels).read_text().splitlines()[1:]]
    class_eot, class_tokens = clip_math.text_features(state, text_prompt(class_names))
    scores, labels = [], []
    for line in Path(tiny_dataset.val_frames).read_text().splitlines():
        folder, num_frames, label = line.split()
        clip_indices = original_test_indices(int(num_frames), 4, clips, index_bias)
        views = original_views(Path(tiny_dataset.frames_root) / folder, sum(clip_indices, []), 32, crops)
        views = views.reshape(-1, 4, 3, 32, 32)  # the original's image.view(-1, num_segments, 3, h, w)
        with torch.no_grad():
            features = reference.encode_image(views.flatten(0, 1)).view(len(views), 4, -1)
        logits = clip_math.video_header_logits(header_state, features, class_tokens, class_eot, "Transf", "VCS",
                                               heads=1)
        scores.append(logits.softmax(dim=-1).mean(dim=0))
        labels.append(int(label))
    return torch.stack(scores), torch.tensor(labels)


def saved_scores(checkpoint, config, folder, *options):
    test_program.main(["--config", config, "--weights", str(checkpoint), "--cpu", *FP32, "--no_progress",
                       "--save_scores", str(folder / "scores.pt"), *options])
    return torch.load(folder / "scores.pt", weights_only=True)


# Only the resize may differ (torchvision's antialiased bicubic on tensors vs PIL's).
TOLERANCE = 2e-4


def test_test_py_reproduces_the_original_scores(original_checkpoint, tiny_config, tiny_dataset, tmp_path):
    path, reference, header_state = original_checkpoint
    ours = saved_scores(path, tiny_config.write(), tmp_path)
    expected, labels = original_scores(reference, header_state, tiny_dataset)
    assert torch.equal(ours["labels"], labels)
    torch.testing.assert_close(ours["scores"], expected, atol=TOLERANCE, rtol=0)
    # The comparison can tell pipelines apart: frames one step later change the scores far more.
    shifted, _ = original_scores(reference, header_state, tiny_dataset, index_bias=2)
    assert (shifted - expected).abs().max() > 10 * TOLERANCE


def test_two_clips_by_three_crops_are_the_original_views_averaged(original_checkpoint, tiny_config, tiny_dataset,
                                                                  tmp_path):
    """--save_scores holds the view-averaged probabilities; the original's final scores (and what its mAP
    is computed on) are their softmax over the classes."""
    path, reference, header_state = original_checkpoint
    ours = saved_scores(path, tiny_config.write(), tmp_path, "--test_clips", "2", "--test_crops", "3")
    expected, labels = original_scores(reference, header_state, tiny_dataset, clips=2, crops=3)
    assert torch.equal(ours["labels"], labels)
    torch.testing.assert_close(ours["scores"], expected, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(original_map_scores(ours["scores"]), expected.softmax(dim=1), atol=TOLERANCE, rtol=0)
    # Each view matters: one clip, or the center crop only, give other scores.
    for clips, crops in ((1, 3), (2, 1)):
        fewer, _ = original_scores(reference, header_state, tiny_dataset, clips=clips, crops=crops)
        assert (fewer - expected).abs().max() > 5 * TOLERANCE, (clips, crops)
