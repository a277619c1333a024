"""test.py on a checkpoint in the original layout gives the original implementation's scores.

The reference here is built independently: PIL decoding and bicubic resizing as the original's
GroupScale/GroupCenterCrop, the original's test-time frame indices, OpenAI's own CLIP image tower, the
header and text tower in plain tensor math, and per-view softmax over cosine similarities.
"""
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import clip
import test as test_program
from modules import text_prompt
from tests import clip_math
from tests.test_clip_model import TINY_SHAPES, openai_model, perturbed

MEAN, STD = torch.tensor(clip.CLIP_MEAN).view(3, 1, 1), torch.tensor(clip.CLIP_STD).view(3, 1, 1)


def original_test_indices(num_frames, num_segments, index_bias=1):
    """The original `_get_test_indices` for one uniform clip."""
    tick = num_frames / float(num_segments)
    return [int(tick * x) % num_frames + index_bias for x in range(num_segments)]


def original_frames(folder: Path, indices, size):
    """GroupScale(size) (PIL bicubic, short side) + GroupCenterCrop(size) + ToTensor + Normalize."""
    views = []
    for index in indices:
        image = Image.open(folder / f"img_{index:05d}.jpg").convert("RGB")
        width, height = image.size
        scaled = (size, int(size * height / width)) if width < height else (int(size * width / height), size)
        image = image.resize(scaled, Image.BICUBIC)
        left, top = int(round((scaled[0] - size) / 2.0)), int(round((scaled[1] - size) / 2.0))
        image = image.crop((left, top, left + size, top + size))
        array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        views.append((array - MEAN) / STD)
    return torch.stack(views)


def test_test_py_reproduces_the_original_scores(tiny_config, tiny_dataset, openai_reference, tmp_path):
    shape = dict(TINY_SHAPES["vit-patch8"])  # 32-pixel input, like the tiny config
    reference = openai_model(openai_reference, shape, seed=3)
    reference.load_state_dict(perturbed(reference.state_dict(), seed=6, scale=0.2))  # well-spread scores
    torch.manual_seed(4)
    from modules import VideoHeader
    header = VideoHeader("Transf", "VCS", embed_dim=shape["embed_dim"], max_frames=77, heads=1)
    header_state = perturbed(header.state_dict(), seed=5, scale=0.2)
    checkpoint = {
        "epoch": 11,
        "model_state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()},
        "fusion_model_state_dict": {f"module.{k}": v for k, v in header_state.items()},
        "optimizer_state_dict": {},
    }
    torch.save(checkpoint, tmp_path / "model_best.pt")
    config = tiny_config.write()
    test_program.main(["--config", config, "--weights", str(tmp_path / "model_best.pt"), "--cpu", "--no_progress",
                       "--save_scores", str(tmp_path / "scores.pt")])
    ours = torch.load(tmp_path / "scores.pt", weights_only=True)

    state = reference.state_dict()
    class_names = [line.split(",", 1)[1] for line in Path(tiny_dataset.labels).read_text().splitlines()[1:]]
    class_eot, class_tokens = clip_math.text_features(state, text_prompt(class_names))
    def original_scores(index_bias=1):
        scores, labels = [], []
        for line in Path(tiny_dataset.val_frames).read_text().splitlines():
            folder, num_frames, label = line.split()
            indices = original_test_indices(int(num_frames), 4, index_bias)
            frames = original_frames(Path(tiny_dataset.frames_root) / folder, indices, 32)
            with torch.no_grad():
                features = reference.encode_image(frames)[None]
            logits = clip_math.video_header_logits(header_state, features, class_tokens, class_eot, "Transf", "VCS",
                                                   heads=1)
            scores.append(logits.softmax(dim=-1)[0])
            labels.append(int(label))
        return torch.stack(scores), torch.tensor(labels)

    expected, labels = original_scores()
    assert torch.equal(ours["labels"], labels)
    # Only the resize may differ (torchvision's antialiased bicubic on tensors vs PIL's).
    tolerance = 2e-4
    torch.testing.assert_close(ours["scores"], expected, atol=tolerance, rtol=0)
    # The comparison can tell pipelines apart: frames one step later change the scores far more.
    shifted, _ = original_scores(index_bias=2)
    assert (shifted - expected).abs().max() > 10 * tolerance
