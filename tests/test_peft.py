"""network.peft: LoRA (through peft) and AIM adapters on the image tower: exact at step 0, only adapters train,
a LoRA checkpoint holds the merged weights (pretrained + a rank-r update, computed here by plain tensor math)
that test.py, export and the app load as any checkpoint, an AIM checkpoint is loaded with its adapters, and a
killed run resumes bit-identically."""
import contextlib
import copy
import json

import open_clip
import pytest
import torch

import clip
import test as test_program
import train as train_program
from clip.weights import WeightsMismatchError
from modules import text_prompt
from modules.peft import apply_peft, is_adapter_parameter
from modules.video_clip import VideoEncoder
from tests.resume_checks import assert_same_tensors, uninterrupted_and_resumed
from tests.tiny_run import FP32, one_video_config
from tools import export as export_tool
from utils.checkpoint import LORA_KEY, load_bike_weights
from utils.config import load_config
from utils.errors import report_user_errors
from workflows import training_run
from workflows.prediction import Predictor
from workflows.training import ClassTexts, training_checkpoint, training_step_loss

LORA = {"peft": "lora", "peft_rank": 2, "peft_alpha": 3.0, "peft_targets": ["in_proj", "out_proj", "c_fc"]}
AIM = {"peft": "aim", "aim_bottleneck_ratio": 0.125}
MODES = {"lora": LORA, "aim": AIM}
ADAPTED = ("attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight")


def open_clip_tiny_vit(tmp_path):
    """open_clip's own tiny ViT (nn.MultiheadAttention), randomly initialised."""
    text = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}
    (tmp_path / "peft-test-vit.json").write_text(json.dumps({
        "embed_dim": 64, "text_cfg": text,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32}}))
    open_clip.add_model_config(tmp_path)
    return open_clip.create_model("peft-test-vit").eval()


def randomised_updates(model):
    """Non-zero LoRA B matrices and AIM adapters (they start at zero), as after some training."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_B." in name or ".aim_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


@pytest.mark.parametrize("backbone", ["openai", "open_clip"])
@pytest.mark.parametrize("mode", ["lora", "aim"])
def test_at_step_zero_the_adapted_tower_gives_the_frozen_clips_outputs_exactly(mode, backbone, tmp_path):
    torch.manual_seed(0)
    model = clip.create_model("ViT-Tiny/16", image_resolution=32) if backbone == "openai" \
        else open_clip_tiny_vit(tmp_path)
    images = torch.randn(4, 3, 32, 32)  # two clips of two frames
    expected = model.encode_image(images)
    apply_peft(model, dict(MODES[mode], peft_targets=["in_proj", "out_proj", "c_fc", "c_proj"]), num_frames=2)
    assert torch.equal(model.encode_image(images), expected)
    adapters = [name for name, p in model.named_parameters() if p.requires_grad and name.startswith("visual.")]
    assert adapters and all((".lora_" if mode == "lora" else ".aim_") in name for name in adapters)
    if mode == "lora":  # an A and a B for q/k/v, out_proj and both MLP layers of every block
        assert len(adapters) == 2 * 4 * len(model.visual.transformer.resblocks)
    randomised_updates(model)
    assert not torch.allclose(model.encode_image(images), expected)  # the adapters are on the forward path


def tiny_training_config(tiny_config, **network):
    return load_config(tiny_config.write(network={"fix_text": True, **LORA, **network}))


@pytest.mark.parametrize("mode", ["lora", "aim"])
def test_a_step_changes_only_the_adapters_the_header_and_the_logit_scale(mode, tiny_config):
    config = load_config(tiny_config.write(network={"fix_text": True, "grad_checkpointing": True, **MODES[mode]}))
    clip_model, header = training_run.build_models(config, "cpu")
    before = {name: t.clone() for module in (clip_model, header) for name, t in module.state_dict().items()}
    optimizer = torch.optim.SGD([p for m in (clip_model, header) for p in m.parameters() if p.requires_grad], lr=0.1)
    encoder = VideoEncoder(clip_model)
    prompts = text_prompt([f"class {i}" for i in range(4)])
    texts = ClassTexts.build(encoder, prompts, True, "cpu", contextlib.nullcontext)
    frames = torch.randn(4, 4, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = training_step_loss(encoder, header, frames, torch.tensor([0, 1, 2, 3]), texts, "NCE")
    loss.backward()
    optimizer.step()
    after = {name: t for module in (clip_model, header) for name, t in module.state_dict().items()}
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert "logit_scale" in changed
    visual = {name for name in changed if name.startswith("visual.")}
    assert visual and all(is_adapter_parameter(name) for name in visual)  # only adapters in the image tower
    assert any(".lora_B." in name or ".fc2." in name for name in visual)  # the zero-initialised layers moved
    assert changed - visual - {"logit_scale"} <= set(header.state_dict())


# merged name's ending -> where peft keeps the update's A and B (live names)
LIVE_ADAPTERS = {"attn.in_proj_weight": "attn.", "attn.out_proj.weight": "attn.base_layer.out_proj.",
                 "mlp.c_fc.weight": "mlp.c_fc."}


def test_the_checkpoint_holds_pretrained_plus_a_rank_r_update_and_restores_the_adapters(tiny_config, tmp_path):
    config = tiny_training_config(tiny_config)
    clip_model, header = training_run.build_models(config, "cpu")
    resumed, resumed_header = copy.deepcopy(clip_model), copy.deepcopy(header)  # as a resumed run builds them
    torch.manual_seed(config.seed)
    pretrained = training_run.build_clip(config).state_dict()
    randomised_updates(clip_model)
    optimizer = torch.optim.SGD(header.parameters(), 0.1)
    checkpoint = training_checkpoint(0, clip_model, header, optimizer,
                                     torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1), None, 0.0, config)
    merged = checkpoint["model_state_dict"]
    assert merged.keys() == pretrained.keys()  # the original layout
    live = clip_model.state_dict()
    scale = LORA["peft_alpha"] / LORA["peft_rank"]
    adapted = 0
    for name, weight in merged.items():
        ending = next((e for e in LIVE_ADAPTERS if name.endswith(e) and name.startswith("visual.")), None)
        if ending is None:
            assert torch.equal(weight, pretrained[name]), name
            continue
        prefix = name[: -len(ending)] + LIVE_ADAPTERS[ending]
        a, b = live[prefix + "lora_A.default.weight"], live[prefix + "lora_B.default.weight"]
        torch.testing.assert_close(weight, pretrained[name] + scale * b @ a, rtol=0, atol=1e-6)
        assert 0 < torch.linalg.matrix_rank(weight - pretrained[name]) <= LORA["peft_rank"]
        adapted += 1
    assert adapted == 3 * 4  # three weights in each of the four blocks
    torch.save(checkpoint, tmp_path / "lora.pt")
    load_bike_weights(tmp_path / "lora.pt", resumed, resumed_header)
    restored = resumed.state_dict()
    assert restored.keys() == live.keys() and all(torch.equal(restored[k], live[k]) for k in live)
    del checkpoint[LORA_KEY]
    torch.save(checkpoint, tmp_path / "merged_only.pt")
    with pytest.raises(WeightsMismatchError, match="holds no LoRA adapters"):
        load_bike_weights(tmp_path / "merged_only.pt", resumed, resumed_header)


@pytest.mark.parametrize("network, message", [
    ({"arch": "RN-Tiny"}, "the image encoder is a ModifiedResNet, and lora and aim adapt ViT encoders only"),
    ({"peft_targets": ["in_proj", "q_proj"]}, "'q_proj' matches no module of the image encoder's blocks"),
    ({"peft_rank": 0}, "network.peft_rank must be at least 1"),
    ({"peft_dropout": 0.1}, "network.peft_dropout 0.1: peft cannot apply dropout to the fused in_proj"),
    ({"fix_video": True}, "which network.fix_video freezes whole"),
])
def test_what_lora_cannot_do_is_one_error_line(network, message, tiny_config, capsys, monkeypatch):
    monkeypatch.delenv("BIKE_TRACEBACK", raising=False)
    path = tiny_config.write(network={"peft": "lora", **network},
                             data={"input_size": 64} if network.get("arch") == "RN-Tiny" else {})
    with pytest.raises(SystemExit):
        report_user_errors(lambda: training_run.build_models(load_config(path), "cpu"))
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and message in error, error


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["lora", "aim"])
def test_a_run_killed_mid_epoch_and_resumed_ends_bit_identical(mode, tiny_config):
    config = tiny_config.write(network={"fix_text": True, **MODES[mode]}, solver={"epochs": 2})
    final, reference = uninterrupted_and_resumed(tiny_config, config, r"epoch 2/2 \[1/2\]")
    assert (LORA_KEY in reference) == (mode == "lora")
    assert any(is_adapter_parameter(name) for name in reference.get(LORA_KEY, reference["model_state_dict"]))
    assert_same_tensors(final, reference, ("model_state_dict", "fusion_model_state_dict", "optimizer_state_dict")
                        + ((LORA_KEY,) if mode == "lora" else ()))


@pytest.fixture(scope="module")
def peft_runs(tiny_dataset, tmp_path_factory):
    """mode -> a one-epoch run of that mode (trained once, when first asked for) and a one-video config. LoRA's
    peft_alpha is high, so that its updates move the tiny model's near-uniform scores measurably."""
    from tests.tiny_run import TinyConfig
    runs = {}

    def run(mode):
        if mode not in runs:
            folder = tmp_path_factory.mktemp(f"{mode}_run")
            tiny = TinyConfig(tiny_dataset, folder)
            tiny.values["network"].update(fix_text=True, **(dict(LORA, peft_alpha=64.0) if mode == "lora" else AIM))
            config = tiny.write("train.yaml", solver={"epochs": 1, "lr": 1e-2})
            train_program.main(["--config", config, "--log_time", "run", "--cpu", "--no_progress"])
            one_video, video = one_video_config(tiny, folder, "video")  # the network section as trained
            runs[mode] = {"config": config, "weights": str(tiny.run_folder("run") / "last_model.pt"),
                          "folder": folder, "one_video": one_video, "video": video}
        return runs[mode]
    return run


def unmerged_model(config, weights):
    """The run's model as it trained (the adapters beside the frozen weights), for test.py."""
    clip_model, header = training_run.build_models(config, "cpu")
    load_bike_weights(weights, clip_model, header)
    return VideoEncoder(clip_model).eval(), header.eval()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["lora", "aim"])
def test_test_py_scores_the_checkpoint_as_the_model_that_trained(mode, peft_runs, monkeypatch):
    """test.py builds the model from the checkpoint alone: LoRA's merged weights, AIM's adapters from the
    recorded config; the reference is the training model restored as a resumed run restores it."""
    run = peft_runs(mode)

    def scores(name, weights=run["weights"]):
        path = run["folder"] / f"{name}.pt"
        test_program.main(["--config", run["config"], "--weights", weights, "--cpu", *FP32,
                           "--no_progress", "--save_scores", str(path)])
        return torch.load(path, weights_only=True)["scores"]
    from_checkpoint = scores("from_checkpoint")
    if mode == "lora":
        checkpoint = torch.load(run["weights"], weights_only=True)  # the same without the LoRA updates
        base = {name.replace(".base_layer", ""): value for name, value in checkpoint[LORA_KEY].items()
                if ".lora_" not in name}
        checkpoint["model_state_dict"].update(base)
        torch.save(checkpoint, run["folder"] / "without_updates.pt")
        without_updates = scores("without_updates", str(run["folder"] / "without_updates.pt"))
        # the updates move the (near-uniform) probabilities far more than fp32 rounding does, and are merged
        assert (from_checkpoint - without_updates).abs().max() > 1e-4
    monkeypatch.setattr(test_program, "load_video_model", lambda config, weights, *_: unmerged_model(config, weights))
    torch.testing.assert_close(from_checkpoint, scores("trained_model"), rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["lora", "aim"])
def test_export_and_the_app_load_the_checkpoint(mode, peft_runs):
    run = peft_runs(mode)
    out = run["folder"] / "model.pt2"
    export_tool.main(["--config", run["one_video"], "--weights", run["weights"], "--frame_size", "32x32",
                      "--out", str(out)])
    assert out.stat().st_size > 0
    predictor = Predictor(load_config(run["one_video"]), ["moving left", "growing"], run["weights"])
    assert predictor.predict(run["video"]).probabilities.shape == (2,)
