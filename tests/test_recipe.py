"""The training recipe against independent computations: the optimizer update (the original's betas, two
learning rates), gradient accumulation and the schedule's step count, the DS loss, the gradient scaler
and the non-finite-loss guard."""
import contextlib
import math

import pytest
import torch
from torch import nn

from workflows import training
from utils.config import build_config
from utils.losses import symmetric_loss
from utils.solver import build_optimizer, build_scheduler

LR, CLIP_RATIO, WEIGHT_DECAY, EPS = 0.01, 0.1, 0.2, 1e-8


def config_with(**solver):
    return build_config({"data": {"dataset": "x", "num_classes": 2, "label_list": "l", "batch_size": 2},
                         "network": {"arch": "RN-Tiny"}, "logging": {"print_freq": 100},
                         "solver": {"lr": LR, "clip_ratio": CLIP_RATIO, "weight_decay": WEIGHT_DECAY, **solver}})


def two_steps(optim):
    """Two optimizer steps with fixed gradients on a 'CLIP' and a 'head' parameter; their values before/after."""
    torch.manual_seed(0)
    clip_model, head = nn.Linear(3, 2, bias=False), nn.Linear(2, 1, bias=False)
    optimizer = build_optimizer(config_with(optim=optim).solver, clip_model, [head])
    start = [clip_model.weight.detach().clone(), head.weight.detach().clone()]
    gradients = [(torch.full((2, 3), 1.0), torch.full((1, 2), -2.0)), (torch.full((2, 3), 10.0), torch.full((1, 2), 0.5))]
    for clip_gradient, head_gradient in gradients:
        clip_model.weight.grad, head.weight.grad = clip_gradient.clone(), head_gradient.clone()
        optimizer.step()
    return start, [clip_model.weight.detach(), head.weight.detach()], gradients


def adam_reference(p, gradients, lr, betas, decoupled_decay=0.0, l2_decay=0.0):
    """Adam(W) written out: bias-corrected moments; AdamW shrinks the weights, Adam adds decay to the gradient."""
    m = v = torch.zeros_like(p)
    for t, g in enumerate(gradients, start=1):
        g = g + l2_decay * p
        p = p * (1 - lr * decoupled_decay)
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        p = p - lr * (m / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + EPS)
    return p


@pytest.mark.parametrize("optim", ["adamw", "adam"])
def test_adam_updates_use_the_original_betas_and_lr_times_clip_ratio_for_clip(optim):
    start, end, gradients = two_steps(optim)
    decay = {"decoupled_decay": WEIGHT_DECAY} if optim == "adamw" else {"l2_decay": 0.2}  # original: Adam at 0.2
    for index, lr in ((0, LR * CLIP_RATIO), (1, LR)):
        grads = [pair[index] for pair in gradients]
        expected = adam_reference(start[index], grads, lr, (0.9, 0.999), **decay)
        torch.testing.assert_close(end[index], expected, atol=1e-7, rtol=1e-6)
        # The check can see the betas: (0.9, 0.98) moves the weights measurably differently.
        assert (adam_reference(start[index], grads, lr, (0.9, 0.98), **decay) - expected).abs().max() > 2e-6


def test_sgd_uses_the_two_learning_rates_with_momentum_and_weight_decay():
    start, end, gradients = two_steps("sgd")
    for index, lr in ((0, LR * CLIP_RATIO), (1, LR)):
        p, buffer = start[index], None
        for pair in gradients:
            g = pair[index] + WEIGHT_DECAY * p
            buffer = g if buffer is None else 0.9 * buffer + g
            p = p - lr * buffer
        torch.testing.assert_close(end[index], p, atol=1e-7, rtol=1e-6)


def regression_batches(sizes, seed=0):
    """uint8 'frames' [b, 1, 3, 2, 2] and float targets: a per-sample loss, so batches can be merged."""
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 256, (size, 1, 3, 2, 2), dtype=torch.uint8, generator=generator),
             torch.randn(size, generator=generator)) for size in sizes]


def squared_error(encoder, header, frames, labels, texts, loss_type):
    return ((encoder(frames.flatten(1)).squeeze(1) - labels) ** 2).mean()


def run_epoch(batches, accumulation, monkeypatch, scaler=None, loss=squared_error):
    """train_one_epoch over `batches` with plain SGD (no momentum, no decay) on a linear model."""
    monkeypatch.setattr(training, "training_step_loss", loss)
    config = config_with(optim="sgd", momentum=0.0, weight_decay=0.0, grad_accumulation_steps=accumulation,
                         lr_warmup_step=0, type="multistep", lr_decay_step=[100])
    torch.manual_seed(1)
    model = nn.Linear(12, 1)
    optimizer = build_optimizer(config.solver, model, [])
    scheduler = build_scheduler(optimizer, config.solver, math.ceil(len(batches) / accumulation))
    training.train_one_epoch(model, nn.Identity(), batches, optimizer, scheduler, scaler, None, config, 0,
                             torch.device("cpu"), contextlib.nullcontext, show_progress=False)
    return model, scheduler


def sgd_reference(groups):
    """One plain gradient step per group of batches, on the mean loss over all of the group's samples."""
    torch.manual_seed(1)
    model = nn.Linear(12, 1)
    for group in groups:
        frames = torch.cat([f for f, _ in group]).flatten(1).float().div(255)
        mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).repeat_interleave(4)
        std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).repeat_interleave(4)
        targets = torch.cat([t for _, t in group])
        loss = ((model((frames - mean) / std).squeeze(1) - targets) ** 2).mean()
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads):
                p -= LR * CLIP_RATIO * g
    return model


def test_k_micro_batches_make_one_step_of_their_union_and_the_schedule_counts_steps(monkeypatch):
    batches = regression_batches([2, 2, 2, 2, 2])  # k = 2: steps over batches {0, 1}, {2, 3} and {4}
    model, scheduler = run_epoch(batches, 2, monkeypatch)
    reference = sgd_reference([batches[0:2], batches[2:4], batches[4:5]])
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    assert scheduler.last_epoch == 3  # optimizer steps, not the 5 micro-batches
    # The comparison sees accumulation: stepping after every micro-batch lands elsewhere.
    per_batch = sgd_reference([[batch] for batch in batches])
    assert (per_batch.weight - model.weight).abs().max() > 1e-4


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step:UserWarning")
def test_the_gradient_scaler_path_gives_the_unscaled_step_and_skips_overflowing_steps(monkeypatch):
    batches = regression_batches([2, 2])
    scaled, _ = run_epoch(batches, 2, monkeypatch, scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 12))
    reference = sgd_reference([batches])
    for ours, theirs in zip(scaled.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    # A scale at which the scaled gradients overflow: the step is skipped, the scale halves.
    scaler = torch.amp.GradScaler("cpu", init_scale=3e38)
    overflowed, _ = run_epoch(batches, 2, monkeypatch, scaler=scaler)
    torch.manual_seed(1)
    untouched = nn.Linear(12, 1)
    assert torch.equal(overflowed.weight, untouched.weight) and scaler.get_scale() == pytest.approx(1.5e38)


def test_a_non_finite_loss_stops_before_any_weight_changes(monkeypatch):
    def nan_at_second_batch(encoder, header, frames, labels, texts, loss_type):
        loss = squared_error(encoder, header, frames, labels, texts, loss_type)
        return loss * float("nan") if labels[0] == nan_batch[1][0] else loss

    batches = regression_batches([2, 2, 2])
    nan_batch = batches[1]
    with pytest.raises(FloatingPointError, match=r"loss is nan at epoch 1/\d+, step 2"):
        run_epoch(batches, 1, monkeypatch, loss=nan_at_second_batch)
    # The guard raised before the NaN reached backward: with k = 3 nothing was stepped yet either.
    with pytest.raises(FloatingPointError):
        run_epoch(batches, 3, monkeypatch, loss=nan_at_second_batch)


def original_dual_softmax_loss(prediction, label, temperature=1000.0):
    """The original DualLoss written element by element: each logit times its column's softmax weight
    (over the rows, at temperature 1000) times the batch size, then the KL divergence to softmax(10 * label)
    as KLDivLoss(reduction='mean') times the batch size."""
    n = len(prediction)
    weighted = [[prediction[i][j] * math.exp(prediction[i][j] / temperature)
                 / sum(math.exp(prediction[k][j] / temperature) for k in range(n)) * n for j in range(n)]
                for i in range(n)]
    total = 0.0
    for i in range(n):
        log_z = math.log(sum(math.exp(x) for x in weighted[i]))
        target_z = sum(math.exp(10 * y) for y in label[i])
        for j in range(n):
            q = math.exp(10 * label[i][j]) / target_z
            total += q * (math.log(q) - (weighted[i][j] - log_z))
    return total / (n * n) * n


def test_ds_loss_is_the_originals_dual_softmax_kl_divergence():
    torch.manual_seed(3)
    logits = torch.randn(5, 5, dtype=torch.float64) * 30  # logit-scale sized, so the temperature matters
    labels = torch.tensor([0, 1, 0, 2, 1])
    target = (labels[:, None] == labels[None, :]).double().tolist()
    expected = (original_dual_softmax_loss(logits.tolist(), target)
                + original_dual_softmax_loss(logits.t().tolist(), target)) / 2
    assert float(symmetric_loss(logits, labels, "DS")) == pytest.approx(expected, rel=1e-9)
    assert float(symmetric_loss(logits, labels, "NCE")) != pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("start_epoch", [0, 2])
def test_the_schedule_is_linear_warmup_then_cosine_from_the_start_epoch(start_epoch):
    config = config_with(optim="sgd", epochs=10, lr_warmup_step=4, start_epoch=start_epoch)
    optimizer = build_optimizer(config.solver, nn.Linear(2, 2), [nn.Linear(2, 1)])
    scheduler = build_scheduler(optimizer, config.solver, steps_per_epoch=3)
    rates = []
    for _ in range(3 * (10 - start_epoch)):
        rates.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    for step, (clip_lr, head_lr) in enumerate(rates):
        epoch = start_epoch + step / 3
        factor = epoch / 4 if epoch < 4 else (1 + math.cos(math.pi * (epoch - 4) / 6)) / 2
        assert (clip_lr, head_lr) == pytest.approx((LR * CLIP_RATIO * factor, LR * factor)), step
