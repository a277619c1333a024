"""The paper's temporal claim in miniature, on the synthetic motion clips.

Moving left and moving right hold the same frames in opposite order. Without temporal modelling
("None") the header is blind to frame order, so it cannot tell such a pair apart; the temporal
transformer ("Transf") can.
"""
import pytest
import torch
import torch.nn.functional as F

from datasets.sampling import segment_val_indices
from datasets.synthetic import clip_params_for, render_clip
from modules import VideoHeader
from utils.losses import symmetric_loss

FRAMES, EMBED, SEED = 8, 128, 0
MOVING_LEFT, MOVING_RIGHT = 0, 1


def pair_clips(clip_indices):
    """uint8-range float clips [N, T, 3, 64, 64] of moving left / right (one of each per index), labels."""
    clips, labels = [], []
    for clip_index in clip_indices:
        params = clip_params_for(SEED, 0, clip_index)
        for label in (MOVING_LEFT, MOVING_RIGHT):
            frames = torch.from_numpy(render_clip(label, params)).permute(0, 3, 1, 2).float() / 255
            indices = torch.as_tensor(segment_val_indices(len(frames), FRAMES))
            clips.append(F.interpolate(frames[indices], size=(64, 64), mode="area"))
            labels.append(label)
    return torch.stack(clips), torch.tensor(labels)


def random_linear_encoder(clips):
    """A fixed random projection of 16x16 thumbnails: a frame encoder that keeps object positions."""
    projection = torch.randn(3 * 16 * 16, EMBED, generator=torch.Generator().manual_seed(1)) / 16
    thumbnails = F.adaptive_avg_pool2d(clips.flatten(0, 1), 16).flatten(1)
    return ((thumbnails - thumbnails.mean(1, keepdim=True)) @ projection).view(len(clips), FRAMES, EMBED)


@pytest.fixture(scope="module")
def features():
    train_clips, train_labels = pair_clips(range(12))
    val_clips, val_labels = pair_clips(range(12, 16))
    return random_linear_encoder(train_clips), train_labels, random_linear_encoder(val_clips), val_labels


def class_texts():
    torch.manual_seed(0)
    anchors = F.normalize(torch.randn(2, EMBED), dim=-1)
    return anchors, anchors[:, None].expand(2, 77, EMBED)


@pytest.mark.parametrize("interaction", ["DP", "VCS"])
def test_without_temporal_modelling_reversed_clips_score_the_same(features, interaction):
    train, _, _, _ = features
    anchors, tokens = class_texts()
    with torch.no_grad():
        plain = VideoHeader("None", interaction, EMBED)
        torch.testing.assert_close(plain(train, tokens, anchors), plain(train.flip(1), tokens, anchors))
        temporal = VideoHeader("Transf", interaction, EMBED, heads=2)
        assert not torch.allclose(temporal(train, tokens, anchors), temporal(train.flip(1), tokens, anchors))


def train_header(sim_header, train, labels, steps=500):
    torch.manual_seed(0)
    anchors, tokens = class_texts()
    header = VideoHeader(sim_header, "VCS", EMBED, heads=2)
    log_scale = torch.nn.Parameter(torch.tensor(14.0).log())
    optimizer = torch.optim.AdamW(list(header.parameters()) + [log_scale], lr=1e-3)
    for _ in range(steps):
        batch = torch.randint(0, len(train), (8,))
        logits = log_scale.exp() * header(train[batch], tokens[labels[batch]], anchors[labels[batch]])
        symmetric_loss(logits, labels[batch]).backward()
        optimizer.step()
        optimizer.zero_grad()

    def accuracy(videos, targets):
        with torch.no_grad():
            return (header(videos, tokens, anchors).argmax(1) == targets).float().mean().item()
    return accuracy


@pytest.mark.slow
def test_temporal_transformer_learns_direction_that_mean_pooling_cannot(features):
    train, train_labels, val, val_labels = features
    transf = train_header("Transf", train, train_labels)
    none = train_header("None", train, train_labels)
    assert transf(train, train_labels) >= 0.95
    assert none(train, train_labels) <= 0.65
    assert transf(val, val_labels) > none(val, val_labels)
    assert transf(val, val_labels) >= 0.7
