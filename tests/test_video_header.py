"""The BIKE video header and attributes head against the original's semantics, computed independently."""
import pytest
import torch

from modules import AttributesHead, VideoHeader, text_prompt
from tests import clip_math

EMBED, HEADS, FRAMES, CLASSES, BATCH, WORDS = 64, 2, 8, 5, 3, 77


def perturbed_header(sim_header, interaction, seed=0):
    torch.manual_seed(seed)
    header = VideoHeader(sim_header, interaction, embed_dim=EMBED, heads=HEADS).eval()
    with torch.no_grad():
        for parameter in header.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return header


@pytest.mark.parametrize("sim_header", ["Transf", "None"])
@pytest.mark.parametrize("interaction", ["DP", "VCS"])
def test_logits_match_plain_tensor_math(sim_header, interaction):
    header = perturbed_header(sim_header, interaction)
    frames, tokens, classes = torch.randn(BATCH, FRAMES, EMBED), torch.randn(CLASSES, WORDS, EMBED), torch.randn(CLASSES, EMBED)
    with torch.no_grad():
        logits = header(frames, tokens, classes)
    expected = clip_math.video_header_logits(header.state_dict(), frames, tokens, classes, sim_header, interaction, HEADS)
    assert logits.shape == (BATCH, CLASSES)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-4)


def test_temporal_transformer_depends_on_frame_order_and_none_does_not():
    frames = torch.randn(2, FRAMES, EMBED)
    tokens, classes = torch.randn(CLASSES, WORDS, EMBED), torch.randn(CLASSES, EMBED)
    reversed_frames = frames.flip(1)
    with torch.no_grad():
        transf = perturbed_header("Transf", "DP")
        assert not torch.allclose(transf(frames, tokens, classes), transf(reversed_frames, tokens, classes))
        plain = VideoHeader("None", "VCS", embed_dim=EMBED)
        torch.testing.assert_close(plain(frames, tokens, classes), plain(reversed_frames, tokens, classes))


def test_vcs_weights_are_a_distribution_over_frames_that_spots_the_matching_frame():
    frames = torch.eye(FRAMES, EMBED).expand(2, FRAMES, EMBED).clone()
    tokens = torch.zeros(CLASSES, WORDS, EMBED)
    tokens[:, :, 0] = 1.0
    tokens[0, :, 0], tokens[0, :, 5] = 0.0, 1.0  # class 0's tokens all look like frame 5
    weights = VideoHeader.concept_weights(frames, tokens)
    assert weights.shape == (CLASSES, 2, FRAMES)
    torch.testing.assert_close(weights.sum(-1), torch.ones(CLASSES, 2))
    assert weights[0, :, 5].min() > 0.99 and weights[1, :, 0].min() > 0.99


def test_original_parameter_names():
    header = VideoHeader("Transf", "VCS", embed_dim=EMBED, max_frames=77, heads=HEADS)
    names = set(header.state_dict())
    assert "frame_position_embeddings.weight" in names
    for i in range(6):
        for suffix in ("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
                       "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
                       "mlp.c_proj.bias", "ln_2.weight", "ln_2.bias"):
            names.remove(f"transformer.resblocks.{i}.{suffix}")
    assert names == {"frame_position_embeddings.weight"}
    assert header.state_dict()["frame_position_embeddings.weight"].shape == (77, EMBED)
    assert VideoHeader("None", "DP", embed_dim=EMBED).state_dict() == {}


def test_unknown_header_or_interaction_names_the_config_key():
    with pytest.raises(ValueError, match="network.sim_header"):
        VideoHeader("LSTM", "DP", embed_dim=EMBED)
    with pytest.raises(ValueError, match="network.interaction"):
        VideoHeader("Transf", "dot", embed_dim=EMBED)


def test_attributes_head_cosine_logits():
    torch.manual_seed(0)
    head = AttributesHead(EMBED)
    assert set(head.state_dict()) == {f"{branch}.{i}.{p}" for branch in ("query_fc", "sentence_fc")
                                      for i in (0, 2) for p in ("weight", "bias")}
    queries, sentences = torch.randn(CLASSES, EMBED), torch.randn(4, EMBED)
    logits = head(queries, sentences)
    sd = head.state_dict()

    def mlp(x, name):
        hidden = torch.relu(x @ sd[f"{name}.0.weight"].t() + sd[f"{name}.0.bias"])
        return clip_math.normalize(hidden @ sd[f"{name}.2.weight"].t() + sd[f"{name}.2.bias"])

    torch.testing.assert_close(logits, mlp(sentences, "sentence_fc") @ mlp(queries, "query_fc").t())


def test_text_prompt_uses_the_paper_template():
    import clip
    prompts = text_prompt(["playing guitar", "riding a bike"])
    assert torch.equal(prompts, clip.tokenize(["This is a video about playing guitar", "This is a video about riding a bike"]))
    with pytest.raises(ValueError, match="empty"):
        text_prompt([])
