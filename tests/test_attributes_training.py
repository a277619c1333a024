"""train_co.py's default, the attributes branch with the original's train_attributes.py recipe: trainable
parameters, learning rates per group and step, and the loss against formulas written out here; its checkpoint
fused by test.py; a run killed after an epoch's steps and resumed ends bit-identical."""
import copy
import logging
import math
import signal

import pytest
import torch
import torch.nn.functional as F

import clip
import test as test_program
import train_co
from datasets.annotations import load_class_names
from modules import VideoHeader
from tests.killed_at_log_line import signal_on_match
from tests.resume_checks import assert_same_tensors, killed_mid_run
from tests.tiny_run import FP32, TinyConfig, write_attribute_files
from workflows import attributes_branch

pytestmark = pytest.mark.slow  # a 2-epoch attributes-branch training run, and one killed and resumed as a subprocess

BATCH, EPOCHS, LR, CLIP_RATIO = 2, 2, 1e-3, 0.1


def original_kl_loss(logits, labels):
    """The original's NCE loss: KL divergence to the softmax of 10 x label equality, both directions."""
    target = (labels[:, None] == labels[None, :]).float()

    def one_way(prediction):
        return F.kl_div(F.log_softmax(prediction, 1), F.softmax(target * 10, 1), reduction="sum") / prediction.shape[1]

    return (one_way(logits) + one_way(logits.t())) / 2


def written_out_head(state, classes, sentences):
    """The original's sentence_text_logit: two-layer MLPs on both sides, cosine similarities."""
    def mlp(x, name):
        hidden = torch.relu(x @ state[f"{name}.0.weight"].t() + state[f"{name}.0.bias"])
        return F.normalize(hidden @ state[f"{name}.2.weight"].t() + state[f"{name}.2.bias"], dim=-1)
    return mlp(sentences, "sentence_fc") @ mlp(classes, "query_fc").t()


@pytest.fixture(scope="module")
def attributes_run(tiny_dataset, tmp_path_factory):
    """A 2-epoch attributes-branch run, recording each step's inputs, loss, head state and rates."""
    folder = tmp_path_factory.mktemp("attributes")
    tiny = TinyConfig(tiny_dataset, folder)
    paths = write_attribute_files(tiny_dataset, folder)
    config = tiny.write("attributes.yaml", data={"attributes_train_path": str(paths["train"]),
                                                 "attributes_val_path": str(paths["val"]),
                                                 "select_topk_attributes": 2, "batch_size": BATCH},
                        solver={"epochs": EPOCHS, "lr": LR, "clip_ratio": CLIP_RATIO, "lr_warmup_step": 1})
    steps, optimizers = [], []

    def recording_loss(head, sentences, labels, classes, logit_scale, loss_type):
        loss = attributes_step_loss(head, sentences, labels, classes, logit_scale, loss_type)
        steps.append(dict(sentences=sentences.clone(), labels=labels.clone(), classes=classes.clone(),
                          logit_scale=float(logit_scale.detach()), head=copy.deepcopy(head.state_dict()), loss=float(loss)))
        return loss

    def recording_optimizer(*args, **kwargs):
        optimizer = build_optimizer(*args, **kwargs)
        optimizer.register_step_pre_hook(lambda o, *_: steps[-1].update(rates=[g["lr"] for g in o.param_groups]))
        optimizers.append(optimizer)
        return optimizer

    attributes_step_loss, build_optimizer = attributes_branch.attributes_step_loss, train_co.build_optimizer
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(attributes_branch, "attributes_step_loss", recording_loss)
        monkeypatch.setattr(train_co, "build_optimizer", recording_optimizer)
        result = train_co.main(["--config", config, "--log_time", "whole", "--cpu", *FP32, "--no_progress"])
    return dict(tiny=tiny, config=config, folder=tiny.run_folder("whole"), steps=steps, optimizer=optimizers[0],
                result=result)


def test_only_the_head_and_the_logit_scale_learn_at_their_groups_rates(attributes_run):
    optimizer, folder = attributes_run["optimizer"], attributes_run["folder"]
    checkpoint = torch.load(folder / "last_model.pt", weights_only=True)
    model = clip.build_model(checkpoint["model_state_dict"])
    logit_scale = [p for p in optimizer.param_groups[0]["params"]]
    assert len(logit_scale) == 1 and logit_scale[0].shape == model.logit_scale.shape == ()
    head_names = sorted(checkpoint["fusion_model_state_dict"])  # the original's layout: the head is the "header"
    assert head_names == sorted(f"{side}.{layer}.{kind}" for side in ("query_fc", "sentence_fc") for layer in (0, 2)
                                for kind in ("weight", "bias"))
    assert len(optimizer.param_groups[1]["params"]) == len(head_names)
    first = attributes_run["steps"][0]
    assert not math.isclose(float(checkpoint["model_state_dict"]["logit_scale"].exp()), first["logit_scale"]), \
        "the logit scale did not learn"

    steps_per_epoch = 8 // BATCH  # 8 training sentences
    rates = [step["rates"] for step in attributes_run["steps"]]
    assert len(rates) == EPOCHS * steps_per_epoch
    for index, (clip_rate, head_rate) in enumerate(rates):
        epoch = index / steps_per_epoch  # warm-up over epoch 1, then cosine to 0 at the end
        factor = epoch if epoch < 1 else (math.cos(math.pi * (epoch - 1) / (EPOCHS - 1)) + 1) / 2
        assert math.isclose(head_rate, LR * factor, rel_tol=1e-12, abs_tol=1e-18), index
        assert math.isclose(clip_rate, LR * CLIP_RATIO * factor, rel_tol=1e-12, abs_tol=1e-18), index


def test_each_steps_loss_is_the_originals_formula(attributes_run):
    model = clip.build_model(torch.load(attributes_run["folder"] / "last_model.pt", weights_only=True)
                             ["model_state_dict"]).eval()
    names = attributes_run["result"].scores.shape[1]
    for step in attributes_run["steps"]:
        logits = step["logit_scale"] * written_out_head(step["head"], step["classes"][step["labels"]],
                                                        step["sentences"])
        assert step["loss"] == pytest.approx(float(original_kl_loss(logits, step["labels"])), rel=1e-5)
    # The class features are the normalised text features of the prompts (frozen text tower).
    class_names = load_class_names(attributes_run["tiny"].values["data"]["label_list"])
    assert len(class_names) == names
    with torch.no_grad():
        prompts = F.normalize(model.encode_text(clip.tokenize([f"This is a video about {n}" for n in class_names])), dim=-1)
    torch.testing.assert_close(attributes_run["steps"][0]["classes"], prompts, atol=1e-5, rtol=1e-4)


def test_the_attributes_checkpoint_is_fused_by_test_py(attributes_run, tiny_dataset, tmp_path):
    """model_best.pt is an original-layout attributes checkpoint: test.py --attributes_weights reads it."""
    folder = attributes_run["folder"]
    video = attributes_run["tiny"].folder / "video.pt"
    checkpoint = torch.load(folder / "last_model.pt", weights_only=True)
    # A video checkpoint of the same CLIP with an untrained header: only its role matters here.
    header = VideoHeader.for_clip("Transf", "VCS", clip.build_model(checkpoint["model_state_dict"]))
    torch.save({"epoch": 0, "model_state_dict": checkpoint["model_state_dict"],
                "fusion_model_state_dict": header.state_dict()}, video)
    scores = tmp_path / "scores.pt"
    test_program.main(["--config", attributes_run["config"], "--weights", str(video), "--attributes_weights",
                       str(folder / "model_best.pt"), "--cpu", "--no_progress", "--save_scores", str(scores)])
    saved = torch.load(scores, weights_only=True)
    best = torch.load(folder / "model_best.pt", weights_only=True)
    assert best["epoch"] in range(EPOCHS)
    torch.testing.assert_close(saved["fused_scores"], 0.7 * saved["scores"] + 0.3 * saved["attributes_scores"])


def test_an_attributes_run_killed_mid_epoch_and_resumed_ends_bit_identical(attributes_run):
    tiny, config = attributes_run["tiny"], attributes_run["config"]
    arguments = ["--config", config, "--log_time", "killed", "--cpu", *FP32, "--no_progress"]
    killed = tiny.run_folder("killed")
    killed_mid_run("train_co.py", arguments, rf"epoch {EPOCHS}/{EPOCHS} attributes \[2/4\]")
    assert torch.load(killed / "last_model.pt", weights_only=True)["epoch"] == EPOCHS - 2
    train_co.main(arguments + [f"resume={killed / 'last_model.pt'}"])
    final = torch.load(killed / "last_model.pt", weights_only=True)
    reference = torch.load(attributes_run["folder"] / "last_model.pt", weights_only=True)
    assert final["epoch"] == reference["epoch"] == EPOCHS - 1
    assert_same_tensors(final, reference, ("model_state_dict", "fusion_model_state_dict", "optimizer_state_dict"))


def test_an_attributes_run_sent_sigusr1_stops_after_that_step_and_resume_auto_ends_bit_identical(attributes_run):
    """Outside Slurm: mid_epoch.pt after the step logged when the signal came, exit status 128 + SIGUSR1."""
    tiny, config = attributes_run["tiny"], attributes_run["config"]
    arguments = ["--config", config, "--log_time", "signalled", "--cpu", *FP32, "--no_progress", "resume=auto"]
    folder = tiny.run_folder("signalled")
    make_record = logging.getLogRecordFactory()
    logging.setLogRecordFactory(signal_on_match(rf"epoch {EPOCHS}/{EPOCHS} attributes \[2/4\]", signal.SIGUSR1))
    try:
        with pytest.raises(SystemExit) as stopped:
            train_co.main(arguments)
    finally:
        logging.setLogRecordFactory(make_record)
    assert stopped.value.code == 128 + signal.SIGUSR1
    checkpoint = torch.load(folder / "mid_epoch.pt", weights_only=True)
    assert checkpoint["resume_position"] == {"epoch": EPOCHS - 1, "batches_done": 2}
    train_co.main(arguments)
    final = torch.load(folder / "last_model.pt", weights_only=True)
    reference = torch.load(attributes_run["folder"] / "last_model.pt", weights_only=True)
    assert final["epoch"] == reference["epoch"] == EPOCHS - 1
    assert_same_tensors(final, reference, ("model_state_dict", "fusion_model_state_dict", "optimizer_state_dict"))
    assert f"resume=auto: continuing from {folder / 'mid_epoch.pt'}" in (folder / "log.txt").read_text()
