"""Reduced precision stays within bf16 rounding of fp32 on the tiny model (bf16 autocast through the project's
own precision code, and bf16 weights).

Tolerances: bf16 keeps 8 significant bits, a relative rounding step of 2**-8 = 0.0039. Cosine similarities
lie in [-1, 1], so two such steps, 0.008, bound the logits; class probabilities near 1/4 move by about a
quarter of that, 0.002 bounds them. Measured on seeds 0-4: at most 0.0035 (logits) and 0.0005 (probabilities),
against a spread of 0.06-0.16 and 0.01-0.026 across the compared values, so a real bug shows.
"""
import copy

import pytest
import torch

import clip
from modules import VideoHeader, text_prompt
from modules.video_clip import VideoEncoder, class_features, view_scores
from workflows.training import autocast_for, resolve_precision

CPU = torch.device("cpu")
LOGIT_TOLERANCE, SCORE_TOLERANCE = 2 * 2 ** -8, 2 ** -9


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    clip_model = clip.create_model("ViT-Tiny/16", image_resolution=32).eval()
    return VideoEncoder(clip_model).eval(), VideoHeader.for_clip("Transf", "VCS", clip_model).eval()


def scores(encoder, header, views, prompts, autocast):
    with torch.no_grad(), autocast():
        eot, tokens = class_features(encoder, prompts)
        return view_scores(encoder, header, views, eot, tokens).float(), header(
            encoder.encode_video(views.flatten(0, 1)), tokens, eot).float()


def test_bf16_autocast_and_bf16_weights_match_fp32_within_bf16_rounding(model):
    encoder, header = model
    views = torch.randn(3, 2, 4, 3, 32, 32)
    prompts = text_prompt(["moving left", "moving right", "growing", "shrinking"])
    reference_scores, reference_logits = scores(encoder, header, views, prompts, autocast_for("fp32", CPU))
    bf16 = autocast_for(resolve_precision("bf16", CPU), CPU)
    autocast_scores, autocast_logits = scores(encoder, header, views, prompts, bf16)
    half_encoder, half_header = copy.deepcopy(encoder).to(torch.bfloat16), copy.deepcopy(header).to(torch.bfloat16)
    half_scores, half_logits = scores(half_encoder, half_header, views.to(torch.bfloat16), prompts,
                                      autocast_for("fp32", CPU))
    # The tolerances are far below the spread of what they compare, and bf16 really ran.
    assert LOGIT_TOLERANCE < (reference_logits.max() - reference_logits.min()) / 10
    assert SCORE_TOLERANCE < (reference_scores.max() - reference_scores.min()) / 10
    for logits in (autocast_logits, half_logits):  # cosine similarities in [-1, 1]
        assert not torch.equal(logits, reference_logits)
        torch.testing.assert_close(logits, reference_logits, atol=LOGIT_TOLERANCE, rtol=0)
    for result in (autocast_scores, half_scores):
        torch.testing.assert_close(result, reference_scores, atol=SCORE_TOLERANCE, rtol=0)
