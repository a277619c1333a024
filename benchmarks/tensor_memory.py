"""Bytes of tensors that operators create, counted through PyTorch's dispatcher while they are alive.

On a CPU torch keeps no allocator statistics and the process's resident size mixes weights, freed-but-cached
memory and activations; counting storages as operators create and free them tells activations apart
exactly, on any device.
"""
import functools
import weakref

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode


class TensorMemory(TorchDispatchMode):
    """Inside `with TensorMemory() as memory:`, `memory.live` is the size of the storages created in the block
    that are still alive and `memory.peak` the most that were alive at once. Views and in-place results share
    an input's storage and add nothing; storages created before the block are not counted."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._alive = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(t.untyped_storage()) for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._count(tensor.untyped_storage(), inputs)
        return out

    def _count(self, storage, inputs):
        key = id(storage)
        if key in self._alive or key in inputs:
            return
        size = storage.nbytes()
        self._alive[key] = weakref.ref(storage, functools.partial(self._freed, key, size))
        self.live += size
        self.peak = max(self.peak, self.live)

    def _freed(self, key, size, _ref):
        self._alive.pop(key, None)
        self.live -= size
