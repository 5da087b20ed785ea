"""Meters of the torch adapter: storages autograd saves, the peak of live storages, a device-aware timer."""

from __future__ import annotations

import bisect
import contextlib
import time
import warnings
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


class _AllocatorPhases:
    """Bytes the allocator holds over named phases of a block, relative to the moment the block was entered.

    What the allocator sees, not what dispatch sees: workspace a kernel allocates inside itself (a
    convolution's backward), RNG state copies and everything else count. On CUDA, per phase,
    ``torch.cuda.max_memory_allocated`` after a reset of the peak; on the CPU, which keeps no statistics,
    torch.profiler's memory events (one event per allocation and free), each phase a ``record_function``
    range. ``peaks[name]`` is a phase's peak above the bytes allocated when the block was entered.
    Falls back to ``PeakStorages`` (storages created, kernel workspace unseen) when the profiler is
    unavailable or already running; ``exact`` says which was used.
    """

    _PREFIX = "revolve.phase."

    def __init__(self, device: torch.device):
        self.device = device
        self.peaks: dict = {}
        self.cuda = device.type == "cuda"
        self.exact = self.cuda or (torch.autograd.kineto_available()
                                   and not torch.autograd.profiler._is_profiler_enabled)
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif self.exact:
            from torch.profiler import ProfilerActivity, profile

            self.prof = self._stack.enter_context(profile(activities=[ProfilerActivity.CPU], profile_memory=True))
        else:
            warnings.warn("revolve.integrations.torch: torch.profiler is running (or unavailable), so layers are "
                          "measured by the storages they create, not by the allocator: workspace allocated inside "
                          "kernels is not counted and a step can exceed its budget by it; profile outside the "
                          "profiler for allocator-exact plans", RuntimeWarning, stacklevel=2)
            self.fallback = self._stack.enter_context(PeakStorages())
        return self

    @contextlib.contextmanager
    def phase(self, name: str):
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            yield
            torch.cuda.synchronize(self.device)
            self.peaks[name] = max(0, torch.cuda.max_memory_allocated(self.device) - self.base)
        elif self.exact:
            with torch.profiler.record_function(self._PREFIX + name):
                yield
        else:
            m = self.fallback
            m.peak = m.cur
            yield
            self.peaks[name] = max(0, m.peak)

    def __exit__(self, *exc):
        self._stack.close()
        if exc[0] is None and self.exact and not self.cuda:
            self._read(self.prof.profiler.kineto_results.events())
        return False

    def _read(self, events):
        """Each phase's peak from the profiler's events: the running sum of allocations and frees."""
        memory, ranges = [], []
        for e in events:
            if e.name() == "[memory]":
                memory.append((e.start_ns(), e.nbytes()))
            elif e.name().startswith(self._PREFIX):
                ranges.append((e.start_ns(), e.end_ns(), e.name()[len(self._PREFIX):]))
        memory.sort()
        times, live, total = [], [], 0
        for t, nbytes in memory:
            total += nbytes
            times.append(t)
            live.append(total)
        for start, end, name in ranges:
            i = bisect.bisect_left(times, start)
            j = bisect.bisect_right(times, end)
            before = live[i - 1] if i > 0 else 0
            self.peaks[name] = max(0, max([before] + live[i:j]))


def allocator_peak(fn, device: torch.device | str = "cpu") -> int:
    """Peak bytes the allocator holds while ``fn()`` runs, above what it held before (see ``_AllocatorPhases``).

    The meter the adapter plans with: use it to size ``outside=`` (what the rest of a training step, a
    head and a loss, holds beside the checkpointed stack).

    Example:
        >>> allocator_peak(lambda: torch.ones(1000).exp()) >= 8000
        True
    """
    with _AllocatorPhases(torch.device(device)) as m:
        with m.phase("all"):
            fn()
    return m.peaks["all"]


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

