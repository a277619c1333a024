"""open_clip models as BIKE's backbone, checked against open_clip's own model on the same inputs.

Two architecture families, small and random-init (built by name, saved to a file, reloaded through
network.arch / network.pretrained): open_clip's ViT with OpenAI's tokenizer (CLIP class, a .pt state dict)
and a timm ConvNeXt image tower with open_clip's custom text tower of context length 32 (CustomTextCLIP,
a .safetensors file, reached through a pretrained tag whose preprocessing uses ImageNet's constants).
"""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import open_clip  # requirements-dev.txt installs open-clip-torch: a missing package fails these tests
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import clip
import test as test_program
import test_zeroshot as zeroshot_program
import train as train_program
from clip import open_clip_backbone
from datasets.annotations import load_class_names
from datasets.attributes import read_attributes
from datasets.build import build_dataset
from modules import PROMPT_TEMPLATE, VideoHeader, text_prompt
from modules.video_clip import VideoEncoder
from tests.tiny_run import FP32, TinyConfig
from tools import generate_attributes as generate_tool
from tools import predict
from utils.checkpoint import read_checkpoint
from utils.config import load_config
from workflows.training import ClassTexts, build_clip, training_step_loss

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}
FAMILIES = {
    "bike-test-vit": {"embed_dim": 64, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16,
                                                      "head_width": 32}, "text_cfg": TEXT},
    "bike-test-convnext": {"embed_dim": 64, "custom_text": True,
                           "vision_cfg": {"timm_model_name": "convnext_atto", "timm_model_pretrained": False,
                                          "timm_pool": "avg", "timm_proj": "linear", "image_size": 32},
                           "text_cfg": dict(TEXT, context_length=32)},
}
TAG = "bike_test_tag"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """{model name: (network.pretrained value, open_clip's own model with those weights)}."""
    folder = tmp_path_factory.mktemp("open_clip")
    for name, config in FAMILIES.items():
        (folder / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    vit = open_clip.create_model("bike-test-vit").eval()
    torch.save(vit.state_dict(), folder / "vit.pt")
    convnext = open_clip.create_model("bike-test-convnext").eval()
    save_file({k: v.contiguous() for k, v in convnext.state_dict().items()}, folder / "convnext.safetensors")
    # open_clip has no public API to add a pretrained tag; a 'file' entry is what its tags resolve to.
    open_clip.pretrained._PRETRAINED["bike-test-convnext"] = {
        TAG: dict(file=str(folder / "convnext.safetensors"), mean=IMAGENET_MEAN, std=IMAGENET_STD)}
    return {"bike-test-vit": (str(folder / "vit.pt"), vit), "bike-test-convnext": (TAG, convnext)}


def reference_tokens(model, tokens):
    """Every token's final-LayerNorm output through the text projection, captured from open_clip's own forward."""
    text = getattr(model, "text", model)
    captured = []
    handle = text.ln_final.register_forward_hook(lambda module, inputs, output: captured.append(output))
    with torch.no_grad():
        model.encode_text(tokens)
    handle.remove()
    return captured[0] @ text.text_projection if not isinstance(text.text_projection, torch.nn.Linear) \
        else text.text_projection(captured[0])


@pytest.mark.parametrize("name", FAMILIES)
def test_frame_and_text_features_are_open_clips_own(weights, name):
    pretrained, reference = weights[name]
    model, _ = clip.load(f"open_clip:{name}", pretrained=pretrained)
    encoder = VideoEncoder(model).eval()
    texts = ["This is a video about dancing", "a cat", "This is a video about riding a unicycle very slowly"]
    tokens = encoder.tokenize(texts)
    assert torch.equal(tokens, open_clip.get_tokenizer(name)(texts))
    assert tokens.shape[1] == FAMILIES[name]["text_cfg"]["context_length"]
    torch.manual_seed(1)
    frames = torch.randn(2, 3, 3, 32, 32)
    mean, std = torch.tensor(clip.CLIP_MEAN).view(3, 1, 1), torch.tensor(clip.CLIP_STD).view(3, 1, 1)
    tag_mean, tag_std = (IMAGENET_MEAN, IMAGENET_STD) if pretrained == TAG else (clip.CLIP_MEAN, clip.CLIP_STD)
    with torch.no_grad():
        video = encoder.encode_video(frames)  # the pipeline's frames are normalised with OpenAI's constants
        pixels = frames * std + mean  # ... so the model sees them normalised with its own
        own = (pixels - torch.tensor(tag_mean).view(3, 1, 1)) / torch.tensor(tag_std).view(3, 1, 1)
        expected = reference.encode_image(own.flatten(0, 1)).view(2, 3, -1)
        eot, token_features = encoder.encode_text(tokens)
        expected_eot = reference.encode_text(tokens)
    torch.testing.assert_close(video, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(eot, expected_eot)
    assert torch.equal(token_features, reference_tokens(reference, tokens))
    assert model.config.embed_dim == FAMILIES[name]["embed_dim"]
    assert (model.image_mean, model.image_std) == (tag_mean, tag_std)


def test_an_openai_model_keeps_openais_tokenizer_and_untouched_frames():
    model = clip.create_model("ViT-Tiny/16")
    encoder = VideoEncoder(model).eval()
    frames = torch.randn(1, 2, 3, 112, 112)
    assert encoder.tokenize is clip.tokenize and not encoder.renormalize
    with torch.no_grad():
        assert torch.equal(encoder.encode_video(frames)[0], model.encode_image(frames[0]))


def test_gradient_checkpointing_gives_the_same_gradients(weights):
    pretrained, _ = weights["bike-test-vit"]
    grads = []
    for checkpointing in (False, True):
        model, _ = clip.load("open_clip:bike-test-vit", pretrained=pretrained, grad_checkpointing=checkpointing)
        model.train()
        torch.manual_seed(2)
        eot, tokens = model.encode_text(model.tokenizer(["a dog"]), return_token=True)
        (model.encode_image(torch.randn(2, 3, 32, 32)).sum() + eot.sum() + tokens.sum()).backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
        assert model.visual.transformer.grad_checkpointing is checkpointing
    assert len(grads[0]) == len(grads[1]) > 0
    for plain, recomputed in zip(*grads):
        torch.testing.assert_close(plain, recomputed)


@pytest.mark.parametrize("name", FAMILIES)
def test_every_trainable_parameter_gets_a_gradient_as_ddp_needs_and_bf16_agrees(weights, name):
    pretrained, _ = weights[name]
    model, _ = clip.load(f"open_clip:{name}", pretrained=pretrained)
    torch.manual_seed(3)
    header = VideoHeader.for_clip("Transf", "VCS", model)
    encoder = VideoEncoder(model).train()
    texts = ClassTexts(text_prompt(["jumping", "running", "sitting"], tokenizer=encoder.tokenize))
    frames, labels = torch.randn(2, 2, 3, 32, 32), torch.tensor([0, 2])
    loss = training_step_loss(encoder, header, frames, labels, texts, "NCE")
    loss.backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        bf16_loss = training_step_loss(encoder, header, frames, labels, texts, "NCE")
    assert torch.isfinite(bf16_loss) and abs(bf16_loss.item() - loss.item()) < 0.05 * abs(loss.item()) + 0.02


def test_a_missing_weights_file_an_unknown_tag_and_an_unreachable_tag_are_named(weights, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors.*bike-test-vit"):
        open_clip_backbone.load("open_clip:bike-test-vit", str(tmp_path / "nowhere.safetensors"))
    with pytest.raises(FileNotFoundError, match="'laion9b'.*ViT-B-32.*laion2b_s34b_b79k"):
        open_clip_backbone.load("open_clip:ViT-B-32", "laion9b")
    with pytest.raises(ValueError, match="open_clip has no model 'ViT-B-99'"):
        open_clip_backbone.load("open_clip:ViT-B-99")

    def offline(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr(open_clip, "download_pretrained", offline)
    with pytest.raises(clip.WeightsUnavailableError,
                       match="model ViT-B-32, tag 'laion2b_s34b_b79k'.*network.pretrained"):
        open_clip_backbone.load("open_clip:ViT-B-32", "laion2b_s34b_b79k")
    with pytest.raises(ValueError, match="network.pretrained .* open_clip:<model> architectures only"):
        clip.load("ViT-Tiny/16", pretrained="laion2b_s34b_b79k")


def test_without_open_clip_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # what an uninstalled package looks like to `import`
    with pytest.raises(ImportError, match="open-clip-torch.*pip install -r requirements-open-clip.txt"):
        clip.load("open_clip:ViT-B-32")


def test_a_checkpoint_of_the_other_family_does_not_load(weights, tmp_path):
    _, convnext = weights["bike-test-convnext"]
    path = tmp_path / "other.pt"
    torch.save(convnext.state_dict(), path)
    with pytest.raises(ValueError, match=f"cannot load {path} .* open_clip model bike-test-vit"):
        open_clip_backbone.load("open_clip:bike-test-vit", str(path))


def own_pixels(name, uint8_frames):
    """uint8 frames [..., 3, H, W] normalised with the model's own constants (its tag's)."""
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if name == "bike-test-convnext" else (clip.CLIP_MEAN, clip.CLIP_STD)
    return (uint8_frames.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def plain_scores(reference, name, class_names, views, frame_scores=False):
    """Class probabilities from open_clip's own encoders by plain tensor math: per view, softmax over the
    cosines of the mean frame embedding with the class embeddings, then the mean over views; or (frame
    scores, the zero-shot protocol) per frame a softmax over 100 x embedding . normalised class embedding."""
    prompts = open_clip.get_tokenizer(name)([PROMPT_TEMPLATE.format(n) for n in class_names])
    scores = []
    with torch.no_grad():
        classes = F.normalize(reference.encode_text(prompts), dim=-1)
        for video in views:  # [V, T, 3, H, W] uint8
            frames = reference.encode_image(own_pixels(name, video).flatten(0, 1)).view(*video.shape[:2], -1)
            if frame_scores:
                logits = 100 * frames.flatten(0, 1) @ classes.t()
            else:
                logits = F.normalize(frames.mean(dim=1), dim=-1) @ classes.t()
            scores.append(logits.softmax(dim=-1).mean(dim=0))
    return torch.stack(scores)


@pytest.fixture(scope="module", params=list(FAMILIES))
def trained(request, weights, tiny_dataset, tmp_path_factory):
    """One epoch of train.py from the family's weights file/tag; the checkpoint, a config that reloads it (its
    network.pretrained points nowhere: the checkpoint alone rebuilds the model), open_clip's own model with the
    trained weights, the test views and the class names."""
    name = request.param
    folder = tmp_path_factory.mktemp(f"trained-{name}")
    tiny = TinyConfig(tiny_dataset, folder)
    network = {"arch": f"open_clip:{name}", "pretrained": weights[name][0], "init": True, "sim_header": "None",
               "interaction": "DP", "fix_text": False}
    train_program.main(["--config", tiny.write(network=network, solver={"epochs": 1}, data={"num_segments": 2}),
                        "--log_time", "oc", "--cpu", "--no_progress"])
    checkpoint_path = next((folder / "exps").rglob("last_model.pt"))
    checkpoint = read_checkpoint(checkpoint_path)
    assert checkpoint["config"]["network"]["arch"] == f"open_clip:{name}"
    reference = open_clip.create_model(name).eval()
    reference.load_state_dict(checkpoint["model_state_dict"])
    assert not torch.equal(reference.visual.state_dict()[next(iter(reference.visual.state_dict()))],
                           weights[name][1].visual.state_dict()[next(iter(reference.visual.state_dict()))])
    reload_config = tiny.write("reload.yaml", network=dict(network, pretrained=str(folder / "gone.pt")),
                               data={"num_segments": 2})
    config = load_config(reload_config)
    dataset = build_dataset(config, "test")
    return SimpleNamespace(name=name, config=reload_config, checkpoint=str(checkpoint_path), reference=reference,
                           views=[dataset[i][0] for i in range(len(dataset))], dataset=dataset,
                           class_names=load_class_names(config.data.label_list), folder=folder)


def test_test_py_scores_of_a_trained_checkpoint_are_open_clips_own_math(trained, tmp_path):
    scores_file = tmp_path / "scores.pt"
    test_program.main(["--config", trained.config, "--weights", trained.checkpoint, "--cpu", *FP32, "--no_progress",
                       "--save_scores", str(scores_file)])
    expected = plain_scores(trained.reference, trained.name, trained.class_names, trained.views)
    torch.testing.assert_close(torch.load(scores_file)["scores"], expected, atol=1e-5, rtol=1e-4)


def test_zero_shot_frame_scores_are_open_clips_own_math(trained, tmp_path):
    scores_file = tmp_path / "zeroshot.pt"
    zeroshot_program.main(["--config", trained.config, "--weights", trained.checkpoint, "--scoring", "frames",
                           "--cpu", *FP32, "--no_progress", "--save_scores", str(scores_file)])
    expected = plain_scores(trained.reference, trained.name, trained.class_names, trained.views, frame_scores=True)
    torch.testing.assert_close(torch.load(scores_file)["scores"], expected, atol=1e-5, rtol=1e-4)


def test_predict_scores_a_video_as_open_clips_own_math(trained):
    record = trained.dataset.records[0]
    video = str(Path(load_config(trained.config).data.val_root) / record.path)
    predictions = predict.main(["--config", trained.config, "--weights", trained.checkpoint, video, "--cpu", *FP32])
    expected = plain_scores(trained.reference, trained.name, trained.class_names, trained.views[:1])[0]
    torch.testing.assert_close(predictions[0].scores, expected, atol=1e-5, rtol=1e-4)


def test_generated_attributes_rank_phrases_by_open_clips_own_features(weights, tiny_config, tmp_path):
    """Zero-shot (network.pretrained, no checkpoint): cosine of the mean frame embedding with each prompt."""
    name = "bike-test-convnext"  # a context length of 32 and its own normalisation constants
    pretrained, reference = weights[name]
    config_path = tiny_config.write(network={"arch": f"open_clip:{name}", "pretrained": pretrained, "init": True},
                                    data={"num_segments": 2})
    output = tmp_path / "val.json"
    generate_tool.main(["--config", config_path, "--output", str(output), "--topk", "3", "--cpu", *FP32,
                        "--no_progress"])
    dataset = build_dataset(load_config(config_path), "test")
    generated = read_attributes(output)
    prompts = open_clip.get_tokenizer(name)([PROMPT_TEMPLATE.format(n) for n in dataset.class_names])
    with torch.no_grad():
        text = F.normalize(reference.encode_text(prompts), dim=-1)
        for index, record in enumerate(dataset.records):
            video = F.normalize(reference.encode_image(own_pixels(name, dataset[index][0][0])).mean(0), dim=-1)
            scores, best = (text @ video).topk(3)
            assert generated[record.path]["classname_topk"] == [dataset.class_names[i] for i in best]
            torch.testing.assert_close(torch.tensor(generated[record.path]["classname_topk_scores"]), scores,
                                       atol=2e-6, rtol=1e-5)


def test_build_clip_checks_the_input_size_and_refuses_options_open_clip_models_lack(weights, tiny_config):
    pretrained, _ = weights["bike-test-vit"]
    network = {"arch": "open_clip:bike-test-vit", "pretrained": pretrained}
    with pytest.raises(ValueError, match="data.input_size is 48.*32-pixel"):
        build_clip(load_config(tiny_config.write(network=network, data={"input_size": 48})))
    with pytest.raises(ValueError, match="network.joint_st"):
        build_clip(load_config(tiny_config.write(network=dict(network, joint_st=True))))
