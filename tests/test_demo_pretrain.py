"""The demo's two stages in miniature: a small CLIP pretrained on captioned stills (stage 1) learns
image-text correspondence, and on its frozen image tower (as configs/demo/demo.yaml keeps it) a temporal
transformer learns to tell time-reversed clips apart where an order-blind header cannot (stage 2)."""
import json

import pytest
import torch
import torch.nn.functional as F

import clip
from datasets import synthetic
from datasets.sampling import segment_val_indices
from datasets import transforms
from modules import VideoHeader
from tools import pretrain_demo_clip
from utils.losses import symmetric_loss

pytestmark = pytest.mark.slow  # the demo's CLIP pretraining and a 300-step header training on its output

SIZE, FRAMES = 32, 8  # 32-pixel stills: a stage 1 that learns in seconds


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """A shortened stage 1 through the tool's command line; (state dict path, report)."""
    out = tmp_path_factory.mktemp("stage1") / "clip.pt"
    pretrain_demo_clip.main(["--out", str(out), "--train-pairs", "4096", "--heldout-pairs", "64",
                             "--batch-size", "64", "--lr", "1e-3", "--size", str(SIZE), "--epochs", "1"])
    return out, json.loads(out.with_suffix(".json").read_text())


def test_stage1_retrieval_is_far_above_chance_on_heldout_stills(stage1):
    _, report = stage1
    metrics = report["heldout_retrieval"]
    assert metrics["image_to_text_top1"] >= 8 * metrics["chance_image_to_text_top1"]
    assert metrics["text_to_image_top1"] >= 5 * metrics["chance_image_to_text_top1"]


def test_stage1_output_is_an_openai_state_dict_with_the_requested_embedding_norm(stage1):
    path, _ = stage1
    model, _ = clip.load(str(path))
    assert model.context_length == 77 and model.visual.input_resolution == SIZE
    images, captions = pretrain_demo_clip.captioned_stills(0, "heldout", 32, SIZE)
    with torch.no_grad():
        norms = model.encode_image(transforms.normalize_on_device(images)).norm(dim=-1)
        # 77-token prompts give the end-of-text features of the 24-token context it was trained on
        short = pretrain_demo_clip.build_training_model("RN-Tiny", SIZE)
        short.load_state_dict({k: v[:24] if k == "positional_embedding" else v
                               for k, v in torch.load(path, weights_only=True).items()})
        torch.testing.assert_close(model.encode_text(clip.tokenize(captions[:4])),
                                   short.encode_text(clip.tokenize(captions[:4], context_length=24)))
    assert norms.mean().item() == pytest.approx(1.0, rel=0.15)  # rescaled on other stills


def reversed_pairs(clip_indices):
    """Clips of all eight classes (each pair: the same frames forwards and backwards), normalised at the
    demo's size, and their labels."""
    clips, labels = [], []
    for pair in range(len(synthetic.MOTION_PAIRS)):
        for clip_index in clip_indices:
            params = synthetic.clip_params_for(0, pair, clip_index)
            frames = torch.from_numpy(synthetic.render_clip(2 * pair, params)).permute(0, 3, 1, 2)
            frames = frames[torch.as_tensor(segment_val_indices(len(frames), FRAMES))]
            frames = transforms.test_transform(SIZE)(frames)[0]
            clips += [frames, frames.flip(0)]  # the second class of a pair is the first played backwards
            labels += [2 * pair, 2 * pair + 1]
    return transforms.normalize_on_device(torch.stack(clips)), torch.tensor(labels)


def direction_accuracy(state_dict_path, sim_header, clips, labels, steps=300):
    """A header trained on the stage-1 image tower's frame embeddings (frozen, as configs/demo/demo.yaml
    keeps it) against fixed random class anchors; the share of clips whose own class scores above its
    time-reversed partner's, on the training clips. (The demo keeps its stage-1 text tower fixed too, but
    one short pass gives "moving left" and "moving right" nearly the same embedding, cosine 0.97, so fixed
    random anchors stand in for the class texts.)"""
    torch.manual_seed(0)
    model, _ = clip.load(str(state_dict_path))
    with torch.no_grad():
        frames = model.encode_image(clips.flatten(0, 1)).view(len(clips), FRAMES, -1)
    header = VideoHeader.for_clip(sim_header, "VCS", model)
    anchors = F.normalize(torch.randn(len(synthetic.CLASS_NAMES), frames.shape[-1]), dim=-1)
    tokens = anchors[:, None].expand(-1, 77, -1)
    log_scale = torch.nn.Parameter(model.logit_scale.detach().clone())
    optimizer = torch.optim.AdamW([*header.parameters(), log_scale], lr=1e-3, weight_decay=0.1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = torch.randint(0, len(clips), (8,), generator=generator)
        logits = log_scale.exp() * header(frames[batch], tokens[labels[batch]], anchors[labels[batch]])
        symmetric_loss(logits, labels[batch]).backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        scores = header(frames, tokens, anchors)
    partner = labels + 1 - 2 * (labels % 2)
    return (scores.gather(1, labels[:, None]) > scores.gather(1, partner[:, None])).float().mean().item()


def test_stage2_temporal_transformer_on_the_stage1_clip_separates_reversed_clips(stage1):
    path, _ = stage1
    clips, labels = reversed_pairs(range(6))
    transf = direction_accuracy(path, "Transf", clips, labels)
    none = direction_accuracy(path, "None", clips, labels)
    assert none <= 0.5  # a clip and its reverse score alike without temporal modelling: at most one is right
    assert transf >= 0.75
