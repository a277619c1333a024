"""The benchmarks' tensor-memory counter agrees with sizes worked out by hand, and sees what gradient
checkpointing saves."""
import torch

import clip
from benchmarks.tensor_memory import TensorMemory

FLOAT = 4


def test_counts_created_storages_while_alive_and_ignores_views_and_inputs():
    x = torch.randn(64, 32)
    with TensorMemory() as memory:
        y = x @ torch.ones(32, 100)  # the ones (32x100) are freed at once; y is 64x100
        assert memory.live == 64 * 100 * FLOAT
        assert memory.peak == (32 * 100 + 64 * 100) * FLOAT
        view = y.view(100, 64)
        y.mul_(2)
        x.add_(1)  # in place on a tensor from before the block
        assert memory.live == 64 * 100 * FLOAT
        del y
        assert memory.live == 64 * 100 * FLOAT  # the view keeps the storage
        del view
        assert memory.live == 0
    assert memory.peak == (32 * 100 + 64 * 100) * FLOAT


def test_activations_are_what_backward_keeps():
    weight = torch.randn(32, 100, requires_grad=True)
    x = torch.randn(64, 32)
    with TensorMemory() as memory:
        hidden = x @ weight  # matmul saves x and weight, both from before the block
        loss = hidden.relu().sum()  # relu saves its 64x100 output; `hidden` stays referenced here
        del hidden
        assert memory.live == 64 * 100 * FLOAT + FLOAT  # relu's output and the scalar loss
        loss.backward()
        del loss
        assert memory.live == 32 * 100 * FLOAT  # weight.grad
    assert weight.grad.shape == (32, 100)


def saved_activations(grad_checkpointing: bool) -> int:
    torch.manual_seed(0)
    model = clip.create_model("ViT-Tiny/16", image_resolution=32, grad_checkpointing=grad_checkpointing)
    images = torch.randn(8, 3, 32, 32)
    with TensorMemory() as memory:
        loss = model.encode_image(images).square().sum()
        kept = memory.live
        loss.backward()
    return kept


def test_gradient_checkpointing_keeps_under_half_the_activations():
    plain, checkpointed = saved_activations(False), saved_activations(True)
    assert checkpointed < plain / 2
