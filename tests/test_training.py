"""Training: the NCE loss as the original defines it, schedules, frozen towers, and resume after a kill."""
import contextlib
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import clip
import train as train_program
from workflows import startup
from tests.resume_checks import (EpochRecorder, assert_resumed, assert_same_tensors, keeping_each_epoch,
                                 uninterrupted_and_resumed)
from tests.tiny_run import TinyConfig
from workflows import training
from utils.config import build_config, load_config
from utils.losses import label_equality, symmetric_loss
from utils.solver import lr_factor
from workflows.training import build_clip, freeze_towers

REPO = Path(__file__).resolve().parent.parent


def test_nce_loss_is_the_originals_kl_divergence():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 6) * 5, torch.tensor([0, 1, 0, 2, 1, 0])
    target = label_equality(labels)
    assert target[0].tolist() == [1, 0, 1, 0, 0, 1]

    def original(prediction, label):  # KLDivLoss(reduction='mean') times the batch size
        return torch.nn.KLDivLoss(reduction="mean")(F.log_softmax(prediction, 1), F.softmax(label * 10, 1)) * len(prediction)

    expected = (original(logits, target) + original(logits.t(), target)) / 2
    torch.testing.assert_close(symmetric_loss(logits, labels), expected)
    perfect = target * 100 - 50
    assert symmetric_loss(perfect, labels) < 0.01 < symmetric_loss(-perfect, labels)


def test_cosine_schedule_with_warmup_and_multistep():
    solver = build_config({"data": {"dataset": "x", "num_classes": 2, "label_list": "l"}, "network": {"arch": "RN-Tiny"},
                           "solver": {"epochs": 10, "lr_warmup_step": 2}}).solver
    assert [lr_factor(e, solver) for e in (0, 1, 2)] == pytest.approx([0, 0.5, 1])
    assert lr_factor(6, solver) == pytest.approx(0.5)  # half-way through the cosine
    assert lr_factor(10, solver) == pytest.approx(0)
    solver.type, solver.lr_decay_step = "multistep", 4
    assert [lr_factor(e, solver) for e in (3, 4.5, 8.5)] == pytest.approx([1, 0.1, 0.01])


def test_freezing_text_keeps_logit_scale_and_visual_trainable():
    model = clip.create_model("RN-Tiny")
    freeze_towers(model, fix_text=True, fix_video=False)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert "logit_scale" in trainable and "visual.conv1.weight" in trainable
    assert not any(name.startswith(("transformer.", "token_embedding", "text_projection")) for name in trainable)
    freeze_towers(model, fix_text=True, fix_video=True)
    assert {name for name, p in model.named_parameters() if p.requires_grad} == {"logit_scale"}


@pytest.mark.slow
def test_network_compile_compiles_the_image_encoder_with_the_same_outputs_and_weight_names():
    config = load_config(REPO / "configs/demo/demo.yaml", ["network.arch=ViT-Tiny/16", "network.compile=True",
                                                             "data.input_size=32", "data.num_segments=2"])
    torch.manual_seed(0)
    compiled = build_clip(config)
    eager = clip.create_model("ViT-Tiny/16", image_resolution=32, num_frames=2)
    eager.load_state_dict(compiled.state_dict())
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled.encode_image(images), eager.encode_image(images), atol=1e-5, rtol=1e-4)
    assert compiled.state_dict().keys() == eager.state_dict().keys()


@pytest.mark.parametrize("checkpointing", [False, True])
def test_running_out_of_memory_names_the_config_keys_that_help(checkpointing, monkeypatch):
    config = load_config(REPO / "configs/demo/demo.yaml", [f"network.grad_checkpointing={checkpointing}"])

    def out_of_memory(*_):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(training, "training_step_loss", out_of_memory)
    batch = (torch.zeros(8, 8, 3, 4, 4, dtype=torch.uint8), torch.zeros(8, dtype=torch.long))
    with pytest.raises(torch.OutOfMemoryError) as raised:
        training.train_one_epoch(torch.nn.Identity(), torch.nn.Identity(), [batch], None, None, None, None, config,
                                 0, torch.device("cpu"), contextlib.nullcontext, show_progress=False)
    message = str(raised.value)
    assert "data.batch_size 8" in message and "Tried to allocate 2.00 GiB" in message
    assert ("network.grad_checkpointing=True" in message) != checkpointing
    assert "solver.grad_accumulation_steps" in message


def epoch_losses(log_file: Path) -> dict:
    """0-based epoch -> mean loss, from the 'epoch N/M: mean loss X' lines (N counts from 1)."""
    losses = {}
    for match in re.finditer(r"epoch (\d+)/\d+: mean loss ([0-9.]+)", log_file.read_text()):
        losses[int(match.group(1)) - 1] = float(match.group(2))
    return losses


@pytest.mark.slow
def test_a_run_killed_mid_epoch_and_resumed_ends_bit_identical_to_an_uninterrupted_run(tiny_config):
    """SIGKILL in the middle of the second epoch (2 loader workers); the resumed run repeats that epoch from
    the first epoch's checkpoint and ends with exactly the uninterrupted run's weights and optimizer state."""
    config = tiny_config.write(data={"workers": 2, "batch_size": 2}, solver={"epochs": 2})
    final, reference = uninterrupted_and_resumed(tiny_config, config, r"epoch 2/2 \[2/4\]")
    assert_same_tensors(final, reference, ("model_state_dict", "fusion_model_state_dict", "optimizer_state_dict"))
    assert final["scheduler_state_dict"] == reference["scheduler_state_dict"]


@pytest.fixture(scope="module")
def two_epochs(tiny_dataset, tmp_path_factory):
    """A 2-epoch train.py run on the tiny data that keeps each epoch's checkpoint (epoch0.pt, epoch1.pt)."""
    tiny = TinyConfig(tiny_dataset, tmp_path_factory.mktemp("two_epochs"))
    config = tiny.write(solver={"epochs": 2})
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(train_program, "save_epoch_checkpoints",
                            keeping_each_epoch(train_program.save_epoch_checkpoints))
        train_program.main(["--config", config, "--log_time", "whole", "--cpu", "--no_progress"])
    return tiny, config, tiny.run_folder("whole")


def resumed_run(two_epochs, monkeypatch, log_time):
    """train.py resumed from the first epoch's checkpoint; (recorder, checkpoint, log text, last checkpoint)."""
    tiny, config, whole = two_epochs
    recorder = EpochRecorder(train_program.train_one_epoch)
    monkeypatch.setattr(train_program, "train_one_epoch", recorder)
    train_program.main(["--config", config, "--log_time", log_time, "--cpu", "--no_progress",
                        f"resume={whole / 'epoch0.pt'}"])
    folder = tiny.run_folder(log_time)
    return (recorder, torch.load(whole / "epoch0.pt", weights_only=True), (folder / "log.txt").read_text(),
            torch.load(folder / "last_model.pt", weights_only=True))


@pytest.mark.slow
def test_resume_starts_at_the_saved_epoch_with_the_saved_optimizer_and_schedule(two_epochs, monkeypatch):
    recorder, checkpoint, log, last = resumed_run(two_epochs, monkeypatch, "resumed")
    assert_resumed(recorder, checkpoint, log, epochs=2)
    reference = torch.load(two_epochs[2] / "last_model.pt", weights_only=True)
    for key, value in reference["model_state_dict"].items():
        torch.testing.assert_close(last["model_state_dict"][key], value, atol=1e-5, rtol=1e-4, msg=key)


@pytest.mark.slow
def test_the_resume_checks_fail_when_resume_is_ignored(two_epochs, monkeypatch):
    """A train.py that ignored `resume=` (trained from epoch 0 with a fresh optimizer) fails them."""
    def ignore(path, clip_model, header, optimizer, scheduler, scaler):
        return training.StartingPoint(0)

    monkeypatch.setattr(training, "resume_training", ignore)
    recorder, checkpoint, log, _ = resumed_run(two_epochs, monkeypatch, "ignored")
    with pytest.raises(AssertionError, match="trained epochs"):
        assert_resumed(recorder, checkpoint, log, epochs=2)
    recorder.epochs = [1]  # even a run that skipped to the right epoch has the wrong optimizer state
    with pytest.raises(AssertionError):
        assert_resumed(recorder, checkpoint, "", epochs=2)


def validation_scores(log_text: str, epochs: int) -> dict:
    """0-based epoch -> validation top-1 from the 'epoch N/M validation: Overall Prec@1 X%' lines."""
    return {int(epoch) - 1: float(score) for epoch, score in
            re.findall(rf"epoch (\d+)/{epochs} validation: Overall Prec@1 ([0-9.]+)%", log_text)}


@pytest.mark.slow
def test_model_best_is_the_first_epoch_with_the_highest_validation_score(two_epochs):
    folder = two_epochs[2]
    scores = validation_scores((folder / "log.txt").read_text(), 2)
    assert sorted(scores) == [0, 1]
    best_epoch = max(scores, key=lambda epoch: (scores[epoch], -epoch))  # a tie keeps the earlier model
    best = torch.load(folder / "model_best.pt", weights_only=True)
    assert best["epoch"] == best_epoch and best["best_score"] == pytest.approx(scores[best_epoch], abs=1e-3)
    same_epoch = torch.load(folder / f"epoch{best_epoch}.pt", weights_only=True)
    for key, value in same_epoch["model_state_dict"].items():
        assert torch.equal(best["model_state_dict"][key], value), key


@pytest.mark.slow
def test_solver_evaluate_validates_the_loaded_weights_without_training(two_epochs):
    tiny, config, whole = two_epochs
    train_program.main(["--config", config, "--log_time", "evaluate", "--cpu", "--no_progress", "solver.evaluate=True",
                        f"pretrain={whole / 'last_model.pt'}"])
    folder = tiny.run_folder("evaluate")
    log = (folder / "log.txt").read_text()
    final = re.search(r"epoch 2/2 validation: (Overall Prec@1 \S+ Prec@5 \S+)", (whole / "log.txt").read_text())
    assert final.group(1) in log
    assert "mean loss" not in log and not (folder / "last_model.pt").exists()


class FirstStep(Exception):
    """Ends a run after its first training step."""


def first_step(config, precision, monkeypatch):
    """(autocast enabled, autocast dtype, loss) of train.py's first training step under `--precision`."""
    seen = {}

    def recording(*args):
        seen["autocast"] = (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))
        seen["loss"] = training_step_loss(*args).item()
        raise FirstStep

    training_step_loss = training.training_step_loss
    monkeypatch.setattr(training, "training_step_loss", recording)
    with pytest.raises(FirstStep):
        train_program.main(["--config", config, "--log_time", f"first_{precision}", "--cpu", "--no_progress",
                            "--precision", precision])
    monkeypatch.setattr(training, "training_step_loss", training_step_loss)
    return seen


def assert_bf16_step(bf16, fp32):
    """The bf16 step ran under bf16 autocast and its loss differs from fp32's by bf16 rounding only."""
    assert bf16["autocast"] == (True, torch.bfloat16), "--precision bf16 did not reach the training step"
    assert fp32["autocast"][0] is False
    assert bf16["loss"] != fp32["loss"]
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.02)


@pytest.mark.slow
def test_precision_bf16_reaches_the_training_step(two_epochs, monkeypatch):
    config = two_epochs[1]
    assert_bf16_step(first_step(config, "bf16", monkeypatch), first_step(config, "fp32", monkeypatch))
    # A train.py that ignored the flag fails the check.
    monkeypatch.setattr(startup, "resolve_precision", lambda requested, device: "fp32")
    ignored = first_step(config, "bf16", monkeypatch)
    with pytest.raises(AssertionError, match="did not reach"):
        assert_bf16_step(ignored, first_step(config, "fp32", monkeypatch))


def test_the_log_states_the_trainable_parameters_the_optimizer_holds(tiny_config):
    """A run with the text tower frozen. N: the elements of AdamW's first moments (one per trained
    parameter); M: the saved model's tensors."""
    config = tiny_config.write(network={"fix_text": True}, solver={"epochs": 1})
    train_program.main(["--config", config, "--log_time", "frozen_text", "--cpu", "--no_progress"])
    folder = tiny_config.run_folder("frozen_text")
    checkpoint = torch.load(folder / "last_model.pt", weights_only=True)
    trained = sum(state["exp_avg"].numel() for state in checkpoint["optimizer_state_dict"]["state"].values())
    total = sum(t.numel() for key in ("model_state_dict", "fusion_model_state_dict") for t in checkpoint[key].values())
    line = re.search(r"trainable parameters: ([\d,]+) of ([\d,]+) \(([\d.]+)%\)", (folder / "log.txt").read_text())
    assert line, "no trainable-parameters line in the log"
    assert trained < total and (int(line[1].replace(",", "")), int(line[2].replace(",", ""))) == (trained, total)
    assert float(line[3]) == pytest.approx(100 * trained / total, abs=0.01)
