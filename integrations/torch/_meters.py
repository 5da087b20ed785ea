"""Meters of the torch adapter: storages autograd saves, the peak of live storages, a device-aware timer."""

from __future__ import annotations

import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def _storage_key(t: torch.Tensor):
    s = t.untyped_storage()
    return (t.device, s.data_ptr()), s.nbytes()


def _owned_keys(tensors) -> set:
    """Storages of parameters and buffers: they live anyway and are never counted as activations."""
    return {_storage_key(t)[0] for t in tensors}


class _SavedStorages:
    """Collects the storages autograd saves while recording a layer (each storage once, views skipped)."""

    def __init__(self, owned: set):
        self.owned = owned
        self.sizes: dict = {}

    def pack(self, t):
        if isinstance(t, torch.Tensor):
            key, size = _storage_key(t)
            if key not in self.owned:
                self.sizes[key] = size
        return t

    @staticmethod
    def unpack(t):
        return t

    def add(self, t: torch.Tensor):
        key, size = _storage_key(t)
        if key not in self.owned:
            self.sizes[key] = size


class PeakStorages(TorchDispatchMode):
    """Peak bytes of the tensor storages created inside the block and still alive (each storage once).

    Used by ``profile`` to measure a layer's working memory and by the benchmark to measure a training
    step the same way on every device; ``peak`` is relative to the moment the block was entered.

    Example:
        >>> with PeakStorages() as m:
        ...     y = torch.ones(1000).exp()
        >>> m.peak
        8000
    """

    def __init__(self):
        super().__init__()
        self.live: dict = {}
        self.cur = self.peak = 0

    def _free(self, key):
        self.cur -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # an output sharing an argument's storage is a view or an in-place result: not new memory
        given = {(t.device, t.untyped_storage().data_ptr()) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                s = t.untyped_storage()
                key = (t.device, s.data_ptr())
                if s.data_ptr() and key not in self.live and key not in given and s.nbytes():
                    self.live[key] = s.nbytes()
                    self.cur += s.nbytes()
                    self.peak = max(self.peak, self.cur)
                    weakref.finalize(s, self._free, key)
        return out


class _Timer:
    """Seconds spent in a block: CUDA events on a GPU (device time), perf_counter on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.seconds = 0.0

    def __enter__(self):
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1000.0
        else:
            self.seconds = time.perf_counter() - self.t
        return False


# ---- side inputs -------------------------------------------------------------------------------------
