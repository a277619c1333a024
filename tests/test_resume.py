"""Resume from checkpoints of the original layout and with another number of steps per epoch: the learning
rates against the original's epoch-indexed schedule written out, and the optimizer state carried over."""
import math

import pytest
import torch

import train as train_program
from workflows import training_run
from tests.resume_checks import EpochRecorder
from tests.tiny_run import TinyConfig
from utils.config import build_config, load_config
from utils.solver import build_optimizer, build_scheduler


def original_cosine_factor(epoch: float, epochs: int, warmup: int) -> float:
    """The original's WarmupCosineAnnealingLR factor at a fractional epoch (final factor 0)."""
    if epoch < warmup:
        return epoch / warmup
    return (math.cos(math.pi * min((epoch - warmup) / (epochs - warmup), 1.0)) + 1) / 2


def resumed_rates(config, log_time, resume, monkeypatch, overrides=()):
    """train.py resumed from `resume`: (the EpochRecorder of its epochs, its log text)."""
    recorder = EpochRecorder(train_program.train_one_epoch)
    monkeypatch.setattr(train_program, "train_one_epoch", recorder)
    train_program.main(["--config", config, "--log_time", log_time, "--cpu", "--no_progress", f"resume={resume}",
                        *overrides])
    return recorder


@pytest.mark.slow
def test_an_original_layout_checkpoint_resumes_at_its_epochs_rate_with_its_optimizer_state(tiny_dataset, tmp_path,
                                                                                          monkeypatch):
    """The original saves AdamW over every CLIP parameter (the frozen text tower too) as group 0 and the header
    as group 1, and no scheduler state; the resumed epoch runs at the original's rate of that epoch."""
    tiny = TinyConfig(tiny_dataset, tmp_path)
    config = tiny.write(network={"fix_text": True}, solver={"epochs": 3, "clip_ratio": 0.1})
    clip_model, header = training_run.build_models(load_config(config), torch.device("cpu"))
    everything = list(clip_model.parameters())
    original = torch.optim.AdamW([{"params": everything, "lr": 1e-4}, {"params": header.parameters(), "lr": 1e-3}],
                                 weight_decay=0.1)
    for parameter in everything + list(header.parameters()):
        parameter.grad = torch.randn_like(parameter) if parameter.requires_grad else None
    original.step()  # the frozen text tower has no gradient, so no state, as in the original
    checkpoint = tmp_path / "original.pt"
    torch.save({"epoch": 1, "model_state_dict": clip_model.state_dict(),
                "fusion_model_state_dict": header.state_dict(), "optimizer_state_dict": original.state_dict()},
               checkpoint)

    recorder = resumed_rates(config, "original", checkpoint, monkeypatch)
    assert recorder.epochs == [2]
    steps = len(recorder.rates[2])
    assert steps == 2  # 8 videos, batch 4
    expected = [[base * original_cosine_factor(2 + i / steps, epochs=3, warmup=1) for base in (1e-4, 1e-3)]
                for i in range(steps)]
    for ours, theirs in zip(recorder.rates[2], expected):
        assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(ours, theirs)), (ours, theirs)
    # The first step's rate is the original's for the epoch (it steps its schedule at the epoch's first batch).
    assert math.isclose(recorder.rates[2][0][1], 1e-3 * original_cosine_factor(2, 3, 1), rel_tol=1e-12)

    saved = original.state_dict()["state"]
    trainable = [index for index, parameter in enumerate(everything) if parameter.requires_grad]
    trainable += [len(everything) + index for index, _ in enumerate(header.parameters())]
    restored = recorder.optimizer_state["state"]
    assert sorted(restored) == list(range(len(trainable)))
    for position, index in enumerate(trainable):
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(restored[position][name], saved[index][name]), (position, name)
        assert float(restored[position]["step"]) == 1.0
    log = (tiny.run_folder("original") / "log.txt").read_text()
    assert "has the original layout: schedule restarted at epoch 2" in log
    assert f"optimizer state of {len(trainable)} trainable parameters mapped" in log


@pytest.mark.slow
def test_an_original_checkpoint_whose_optimizer_does_not_map_resumes_with_fresh_state(tiny_dataset, tmp_path,
                                                                                    monkeypatch):
    tiny = TinyConfig(tiny_dataset, tmp_path)
    config = tiny.write(solver={"epochs": 2})
    clip_model, header = training_run.build_models(load_config(config), torch.device("cpu"))
    unrelated = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))])
    checkpoint = tmp_path / "original.pt"
    torch.save({"epoch": 0, "model_state_dict": clip_model.state_dict(),
                "fusion_model_state_dict": header.state_dict(), "optimizer_state_dict": unrelated.state_dict()},
               checkpoint)
    recorder = resumed_rates(config, "fresh", checkpoint, monkeypatch)
    assert recorder.epochs == [1] and recorder.optimizer_state["state"] == {}
    assert "not the original layout's" in (tiny.run_folder("fresh") / "log.txt").read_text()


@pytest.mark.slow
def test_resuming_with_half_the_batch_size_continues_at_the_epochs_rate(tiny_dataset, tmp_path, monkeypatch):
    """2 steps per epoch before the checkpoint, 4 after it: the schedule goes on from epoch 1, not from step 2 of 4."""
    tiny = TinyConfig(tiny_dataset, tmp_path)
    config = tiny.write(solver={"epochs": 2})
    train_program.main(["--config", config, "--log_time", "first", "--cpu", "--no_progress", "solver.epochs=1"])
    checkpoint = torch.load(tiny.run_folder("first") / "last_model.pt", weights_only=True)
    assert checkpoint["scheduler_state_dict"]["last_epoch"] == 2  # steps of batch 4

    recorder = resumed_rates(config, "halved", tiny.run_folder("first") / "last_model.pt", monkeypatch,
                             ["data.batch_size=2"])
    assert recorder.epochs == [1] and len(recorder.rates[1]) == 4
    for i, rates in enumerate(recorder.rates[1]):
        assert math.isclose(rates[0], 1e-3 * original_cosine_factor(1 + i / 4, epochs=2, warmup=1), rel_tol=1e-12), i


def test_the_schedule_state_keeps_its_epoch_across_steps_per_epoch():
    """After 10 epochs of 100 steps, a schedule of 200 steps per epoch continues at epoch 10 and ends at 0."""
    solver = solver_config(epochs=30, warmup=5)
    model = torch.nn.Linear(2, 2)
    before = build_scheduler(build_optimizer(solver, model, []), solver, steps_per_epoch=100)
    for _ in range(1000):
        before.optimizer.step()
        before.step()
    after = build_scheduler(build_optimizer(solver, model, []), solver, steps_per_epoch=200)
    after.optimizer.load_state_dict(before.optimizer.state_dict())
    after.load_state_dict(before.state_dict())
    rates = []
    for _ in range(20 * 200):
        rates.append(after.optimizer.param_groups[0]["lr"])
        after.optimizer.step()
        after.step()
    assert math.isclose(rates[0], 0.1 * original_cosine_factor(10, 30, 5), rel_tol=1e-12)
    assert math.isclose(rates[1000], 0.1 * original_cosine_factor(15, 30, 5), rel_tol=1e-12)
    assert after.optimizer.param_groups[0]["lr"] == 0.0


def solver_config(epochs, warmup):
    return build_config({"data": {"dataset": "x", "num_classes": 2, "label_list": "l"}, "network": {"arch": "RN-Tiny"},
                         "solver": {"epochs": epochs, "lr_warmup_step": warmup, "lr": 1.0, "clip_ratio": 0.1}}).solver
