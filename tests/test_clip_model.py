"""CLIP model: OpenAI weight formats, named architectures, and equivalence with independent computations."""
import warnings

import pytest
import torch

import clip
from clip.architectures import OPENAI_ARCHITECTURES
from clip.model import CLIP, CLIPConfig, QuickGELU, SelfAttention
from tests import clip_math
from tests.equivalence import TINY_SHAPES, openai_model, perturbed

TEXTS = ["a photo of a dog", "This is a video about playing guitar", "", "rotating clockwise!"]


def save_torchscript(model, shape, path):
    """An archive like OpenAI's releases: a traced model that also carries the model's description tensors."""
    for name, key in (("input_resolution", "image_resolution"), ("context_length", "context_length"),
                      ("vocab_size", "vocab_size")):
        if hasattr(model, name):
            delattr(model, name)
        model.register_buffer(name, torch.tensor(shape[key]))
    image = torch.randn(1, 3, shape["image_resolution"], shape["image_resolution"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (image, clip.tokenize(["x"])), check_trace=False)
        torch.jit.save(traced, str(path))


def encode(model, images, text):
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(text)


@pytest.mark.parametrize("shape_name", TINY_SHAPES)
def test_state_dict_and_torchscript_load_identically_and_match_openai(shape_name, openai_reference, tmp_path):
    shape = TINY_SHAPES[shape_name]
    reference = openai_model(openai_reference, shape)
    torch.save(reference.state_dict(), tmp_path / "weights.pt")
    save_torchscript(openai_model(openai_reference, shape), shape, tmp_path / "archive.pt")

    from_state_dict, preprocess = clip.load(str(tmp_path / "weights.pt"))
    from_archive, _ = clip.load(str(tmp_path / "archive.pt"))
    assert from_state_dict.config == CLIPConfig(**shape)

    resolution = shape["image_resolution"]
    images, text = torch.randn(3, 3, resolution, resolution), clip.tokenize(TEXTS)
    ours = encode(from_state_dict, images, text)
    for a, b in zip(ours, encode(from_archive, images, text)):
        assert torch.equal(a, b)
    for a, b in zip(ours, encode(reference, images, text)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    assert preprocess.transforms[1].size == [resolution]


def test_fp16_state_dict_loads_as_fp32_with_the_rounded_weights(openai_reference, tmp_path):
    shape = TINY_SHAPES["vit-patch8"]
    reference = openai_model(openai_reference, shape)
    half = {k: v.half() for k, v in reference.state_dict().items()}
    torch.save(half, tmp_path / "fp16.pt")
    reference.load_state_dict({k: v.float() for k, v in half.items()})

    model, _ = clip.load(str(tmp_path / "fp16.pt"))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    images, text = torch.randn(2, 3, 32, 32), clip.tokenize(TEXTS[:2])
    for a, b in zip(encode(model, images, text), encode(reference, images, text)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(OPENAI_ARCHITECTURES) + ["ViT-L/14-336px"])
def test_named_architectures_have_openai_keys_and_shapes(name, openai_reference):
    config = clip.architectures.architecture(name)
    with torch.device("meta"):
        ours = CLIP(config)
        theirs = openai_reference.model.CLIP(**config.as_dict())
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


def test_vit_b32_parameter_count():
    with torch.device("meta"):
        model = CLIP(OPENAI_ARCHITECTURES["ViT-B/32"])
    assert sum(p.numel() for p in model.parameters()) == 151_277_313


def test_state_dict_inference_round_trips_every_named_architecture():
    for name, config in OPENAI_ARCHITECTURES.items():
        with torch.device("meta"):
            state_dict = CLIP(config).state_dict()
        assert CLIPConfig.from_state_dict(state_dict) == config, name


@pytest.mark.parametrize("shape_name", ["vit-patch8", "vit-patch16"])
def test_forward_matches_plain_tensor_math(shape_name):
    torch.manual_seed(1)
    model = CLIP(CLIPConfig(**TINY_SHAPES[shape_name])).eval()
    model.load_state_dict(perturbed(model.state_dict(), seed=1))
    state_dict = model.state_dict()
    resolution = TINY_SHAPES[shape_name]["image_resolution"]
    images, text = torch.randn(2, 3, resolution, resolution), clip.tokenize(TEXTS)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), clip_math.vit_image_features(state_dict, images),
                                   atol=1e-5, rtol=1e-4)
        eot, tokens = model.encode_text(text, return_token=True)
    expected_eot, expected_tokens = clip_math.text_features(state_dict, text)
    torch.testing.assert_close(eot, expected_eot, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(tokens, expected_tokens, atol=1e-5, rtol=1e-4)
    assert tokens.shape == (len(TEXTS), 77, TINY_SHAPES[shape_name]["embed_dim"])


@pytest.mark.parametrize("shape_name", ["vit-patch8", "vit-patch16"])
def test_patch_embedding_matmul_trains_as_openai_convolution(shape_name, openai_reference):
    """The patch embedding is a matmul, not `conv1`: the image features and every visual gradient
    (conv1.weight's above all) must still be those of OpenAI's convolution."""
    shape = TINY_SHAPES[shape_name]
    reference = openai_model(openai_reference, shape).train()
    model = CLIP(CLIPConfig(**shape)).train()
    model.load_state_dict(reference.state_dict())
    resolution = shape["image_resolution"]
    images, upstream = torch.randn(3, 3, resolution, resolution), torch.randn(3, shape["embed_dim"])
    features = {}
    for name, network in (("ours", model), ("openai", reference)):
        features[name] = network.encode_image(images)
        (features[name] * upstream).sum().backward()
    torch.testing.assert_close(features["ours"], features["openai"], atol=2e-5, rtol=1e-4)
    theirs = dict(reference.visual.named_parameters())
    for key, parameter in model.visual.named_parameters():
        torch.testing.assert_close(parameter.grad, theirs[key].grad, atol=2e-5, rtol=1e-4, msg=key)


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_attention_equals_explicit_softmax_attention(causal):
    torch.manual_seed(2)
    attention = SelfAttention(width=64, heads=4)
    torch.nn.init.normal_(attention.in_proj_bias)
    x = torch.randn(3, 10, 64)
    state_dict = {f"attn.{k}": v for k, v in attention.state_dict().items()}
    with torch.no_grad():
        torch.testing.assert_close(attention(x, causal=causal),
                                   clip_math.explicit_attention(x, state_dict, "attn", heads=4, causal=causal),
                                   atol=1e-5, rtol=1e-4)


def test_quick_gelu_gradient_equals_autograd_of_the_formula():
    x = torch.randn(4, 33, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(4, 33, dtype=torch.float64)
    (expected,) = torch.autograd.grad(x * torch.sigmoid(1.702 * x), x, upstream)
    (actual,) = torch.autograd.grad(QuickGELU()(x), x, upstream)
    torch.testing.assert_close(actual, expected)
    torch.testing.assert_close(QuickGELU()(x), x * torch.sigmoid(1.702 * x))


def test_drop_path_rises_linearly_over_visual_layers_only_while_training():
    model = CLIP(CLIPConfig(**TINY_SHAPES["vit-patch16"]), drop_path=0.2)
    rates = [block.drop_path.drop_prob for block in model.visual.transformer.resblocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2])
    assert all(block.drop_path.drop_prob == 0 for block in model.transformer.resblocks)
    images = torch.randn(4, 3, 48, 48)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.encode_image(images), model.encode_image(images))
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        assert not torch.equal(model.encode_image(images), model.encode_image(images))


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(3)
    model = CLIP(CLIPConfig(**TINY_SHAPES["vit-patch8"]))
    images, text = torch.randn(2, 3, 32, 32), clip.tokenize(TEXTS[:2])

    def gradients():
        model.zero_grad()
        logits, _ = model(images, text)
        logits.sum().backward()
        return {k: p.grad.clone() for k, p in model.named_parameters()}

    plain = gradients()
    model.set_grad_checkpointing(True)
    checkpointed = gradients()
    for key in plain:
        torch.testing.assert_close(plain[key], checkpointed[key], atol=1e-6, rtol=1e-5)


def test_joint_space_time_attention_sees_all_frames_of_a_clip():
    torch.manual_seed(4)
    frames = 4
    model = CLIP(CLIPConfig(**TINY_SHAPES["vit-patch8"]), joint_st=True, num_frames=frames).eval()
    clips = torch.randn(2 * frames, 3, 32, 32)
    with torch.no_grad():
        out = model.encode_image(clips)
        changed = clips.clone()
        changed[frames - 1] += 1.0  # last frame of the first clip
        out_changed = model.encode_image(changed)
    assert out.shape == (2, 64)  # one embedding per clip
    assert not torch.allclose(out[0], out_changed[0])
    assert torch.equal(out[1], out_changed[1])
    with pytest.raises(ValueError, match="multiple of 4 frames"):
        model.encode_image(torch.randn(3, 3, 32, 32))


def test_joint_st_loads_openai_weights_without_time_embedding(openai_reference, tmp_path):
    shape = TINY_SHAPES["vit-patch8"]
    torch.save(openai_model(openai_reference, shape).state_dict(), tmp_path / "weights.pt")
    model, _ = clip.load(str(tmp_path / "weights.pt"), joint_st=True, num_frames=2)
    assert model.visual.time_embedding.shape == (2, 128)


def test_init_false_keeps_only_the_visual_weights(openai_reference, tmp_path):
    reference = openai_model(openai_reference, TINY_SHAPES["vit-patch8"])
    torch.save(reference.state_dict(), tmp_path / "weights.pt")
    model, _ = clip.load(str(tmp_path / "weights.pt"), pretrain=False)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours if k.startswith("visual."))
    assert not torch.equal(ours["text_projection"], theirs["text_projection"])


def test_random_init_architectures_say_they_are_not_pretrained(caplog):
    model, _ = clip.load("ViT-Tiny/16")
    assert "NOT a pretrained model" in caplog.text
    assert model.encode_image(torch.randn(1, 3, 112, 112)).shape == (1, 128)
    assert set(clip.random_init_models()) == {"ViT-Tiny/16", "ViT-Tiny/4", "RN-Tiny"}


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="ViT-B/32"):
        clip.load("ViT-H/99")
