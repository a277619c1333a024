"""Reduced precision stays within tolerance of fp32 on the tiny model (bf16 autocast and bf16 weights)."""
import copy

import pytest
import torch

import clip
from modules import VideoHeader, text_prompt
from modules.video_clip import VideoEncoder, class_features, view_scores


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    clip_model = clip.create_model("ViT-Tiny/16", image_resolution=32).eval()
    return VideoEncoder(clip_model).eval(), VideoHeader.for_clip("Transf", "VCS", clip_model).eval()


def scores(encoder, header, views, prompts, autocast):
    with torch.no_grad(), autocast:
        eot, tokens = class_features(encoder, prompts)
        return view_scores(encoder, header, views, eot, tokens).float(), header(
            encoder.encode_video(views.flatten(0, 1)), tokens, eot).float()


def test_bf16_autocast_and_bf16_weights_match_fp32(model):
    encoder, header = model
    views = torch.randn(3, 2, 4, 3, 32, 32)
    prompts = text_prompt(["moving left", "moving right", "growing", "shrinking"])
    reference_scores, reference_logits = scores(encoder, header, views, prompts, torch.autocast("cpu", enabled=False))
    autocast_scores, autocast_logits = scores(encoder, header, views, prompts, torch.autocast("cpu", dtype=torch.bfloat16))
    half_encoder, half_header = copy.deepcopy(encoder).to(torch.bfloat16), copy.deepcopy(header).to(torch.bfloat16)
    half_scores, half_logits = scores(half_encoder, half_header, views.to(torch.bfloat16), prompts,
                                      torch.autocast("cpu", enabled=False))
    for logits in (autocast_logits, half_logits):  # cosine similarities in [-1, 1]
        torch.testing.assert_close(logits, reference_logits, atol=3e-2, rtol=0)
    for result in (autocast_scores, half_scores):
        torch.testing.assert_close(result, reference_scores, atol=1e-2, rtol=0)
