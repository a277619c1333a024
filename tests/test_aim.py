"""AIM adapters (modules/aim.py) in tiny ViT towers of both layouts: the frozen tower's numbers exactly at step 0,
the tower's state-dict names kept, temporal attention within each clip (against plain tensor math), gradients,
parameter count, refusals."""
import copy

import open_clip  # requirements-dev.txt installs open-clip-torch: a missing package fails these tests
import pytest
import torch

import clip
from clip.model import ArchitectureError
from modules.aim import add_aim_adapters, is_aim_parameter
from tests import clip_math

FRAMES = 4


def openai_tower():
    return clip.create_model("ViT-Tiny/16", image_resolution=32).visual


def open_clip_tower():
    """The image tower open_clip builds for a ViT (what clip.open_clip_backbone wraps), tiny."""
    return open_clip.transformer.VisionTransformer(image_size=32, patch_size=16, width=64, layers=2, heads=2,
                                                   mlp_ratio=4.0, output_dim=32)


def open_clip_custom_tower():
    """open_clip's other block: its own attention module, qk-norm, a LayerNorm after attention, layer scale."""
    return open_clip.transformer.VisionTransformer(image_size=32, patch_size=16, width=64, layers=2, heads=2,
                                                   mlp_ratio=4.0, output_dim=32, qk_norm=True, scale_attn=True,
                                                   ls_init_value=0.5)


TOWERS = {"openai": openai_tower, "open_clip": open_clip_tower, "open_clip_custom": open_clip_custom_tower}


def tower_pair(name, seed=0):
    """(the tower without adapters, a copy of it with AIM adapters)."""
    torch.manual_seed(seed)
    frozen = TOWERS[name]()
    adapted = copy.deepcopy(frozen)
    add_aim_adapters(adapted, FRAMES)
    return frozen, adapted


def set_checkpointing(tower):
    if hasattr(tower, "set_grad_checkpointing"):
        tower.set_grad_checkpointing(True)
    else:
        tower.transformer.grad_checkpointing = True


def perturb_adapters(tower, seed=1):
    """Every AIM parameter random (the last layers non-zero), as after some training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in tower.named_parameters():
            if is_aim_parameter(name):
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))


def clips(count, seed=2):
    return torch.randn(count * FRAMES, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", TOWERS)
@pytest.mark.parametrize("mode, precision", [("eval", "fp32"), ("eval", "bf16"), ("train with checkpointing", "bf16")])
def test_at_step_zero_the_adapted_tower_computes_the_frozen_towers_numbers_exactly(name, mode, precision):
    frozen, adapted = tower_pair(name)
    training = mode != "eval"
    frozen.train(training)
    adapted.train(training)
    if training:
        set_checkpointing(adapted)
    images = clips(2)
    with torch.set_grad_enabled(training), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
        expected, actual = frozen(images), adapted(images)
    assert actual.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    assert torch.equal(actual, expected)


@pytest.mark.parametrize("name", TOWERS)
def test_the_towers_state_dict_names_and_tensors_stay_and_only_aim_names_are_added(name):
    frozen, adapted = tower_pair(name)
    before, after = frozen.state_dict(), adapted.state_dict()
    for key, tensor in before.items():
        assert torch.equal(after[key], tensor), key
    added = set(after) - set(before)
    assert added and all(is_aim_parameter(key) for key in added)
    assert not any(is_aim_parameter(key) for key in before)
    assert {key for key, _ in adapted.named_parameters() if is_aim_parameter(key)} == added
    assert "transformer.resblocks.0.attn.in_proj_weight" in after
    assert is_aim_parameter("module.clip.visual.transformer.resblocks.3.aim_mlp.fc2.weight")
    assert not is_aim_parameter("visual.transformer.resblocks.3.attn.in_proj_weight")


def test_with_trained_adapters_the_openai_tower_matches_plain_tensor_math():
    _, adapted = tower_pair("openai")
    adapted.eval()
    perturb_adapters(adapted)
    state = {f"visual.{k}": v for k, v in adapted.state_dict().items()}
    images = clips(2)
    with torch.no_grad():
        torch.testing.assert_close(adapted(images), clip_math.aim_vit_image_features(state, images, FRAMES),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", TOWERS)
def test_temporal_attention_mixes_the_frames_of_a_clip_and_never_of_another_clip(name):
    frozen, adapted = tower_pair(name)
    adapted.eval()
    perturb_adapters(adapted)
    images = clips(2)
    changed = images.clone()
    changed[2] += 1.0  # frame 2 of the first clip
    with torch.no_grad():
        before, after = adapted(images), adapted(changed)
        frozen_before, frozen_after = frozen(images), frozen(changed)
    assert torch.equal(frozen_after[0], frozen_before[0])  # the image tower alone embeds each frame by itself
    assert not torch.allclose(after[0], before[0], atol=1e-4)  # the adapted one: frame 0 sees frame 2
    assert torch.equal(after[FRAMES:], before[FRAMES:])  # the second clip does not see the first


@pytest.mark.parametrize("name", ["openai", "open_clip"])
def test_gradients_reach_the_adapters_and_checkpointing_gives_the_same_ones(name):
    _, adapted = tower_pair(name)
    adapted.train()
    images = clips(1)
    with torch.autocast("cpu", torch.bfloat16):
        adapted(images).float().square().sum().backward()
    grads = {k: p.grad for k, p in adapted.named_parameters() if is_aim_parameter(k)}
    # At step 0 the zero last layers block the gradient to the first ones; the last layers and the time
    # embedding get theirs.
    assert all(grads[k].abs().sum() > 0 for k in grads if ".fc2." in k or "time_embedding" in k)
    perturb_adapters(adapted)
    results = []
    for checkpointing in (False, True):
        if checkpointing:
            set_checkpointing(adapted)
        adapted.zero_grad()
        adapted(images).square().sum().backward()
        results.append({k: p.grad.clone() for k, p in adapted.named_parameters() if is_aim_parameter(k)})
    assert all(grad.abs().sum() > 0 for grad in results[0].values())
    for key, grad in results[0].items():
        assert torch.equal(results[1][key], grad), key


@pytest.mark.parametrize("ratio", [0.25, 0.3])
def test_the_adapter_parameter_count_follows_the_bottleneck_ratio(ratio):
    tower = openai_tower()
    add_aim_adapters(tower, FRAMES, bottleneck_ratio=ratio)
    width, layers = 192, 4  # ViT-Tiny/16
    hidden = int(width * ratio)
    adapter = width * hidden + hidden + hidden * width + width
    expected = layers * 3 * adapter + FRAMES * width  # three adapters per block, one time embedding
    assert sum(p.numel() for k, p in tower.named_parameters() if is_aim_parameter(k)) == expected


@pytest.mark.parametrize("tower, message", [
    (lambda: clip.create_model("RN-Tiny").visual, "ModifiedResNet"),
    (lambda: clip.create_model("ViT-Tiny/16", joint_st=True, num_frames=FRAMES).visual, "joint_st"),
    (lambda: open_clip.transformer.VisionTransformer(image_size=32, patch_size=16, width=64, layers=1, heads=2,
                                                     mlp_ratio=4.0, patch_dropout=0.5), "patch_dropout"),
])
def test_towers_aim_cannot_adapt_are_refused_naming_what_it_supports(tower, message):
    with pytest.raises(ArchitectureError, match=message) as error:
        add_aim_adapters(tower(), FRAMES)
    assert "network.peft=aim" in str(error.value)
    if message == "ModifiedResNet":
        assert "OpenAI CLIP ViTs and open_clip VisionTransformers" in str(error.value)


def test_a_tower_is_adapted_once_and_a_ratio_without_width_is_refused():
    tower = openai_tower()
    with pytest.raises(ArchitectureError, match="network.aim_bottleneck_ratio 0.001"):
        add_aim_adapters(tower, FRAMES, bottleneck_ratio=0.001)
    add_aim_adapters(tower, FRAMES)
    with pytest.raises(ArchitectureError, match="already has AIM adapters"):
        add_aim_adapters(tower, FRAMES)
    with pytest.raises(ValueError, match="clips of 4 frames"):
        tower(torch.randn(FRAMES + 1, 3, 32, 32))
