"""Ambient state a recomputation must re-enter: autocast and the RNG streams."""

from __future__ import annotations

import contextlib

import torch


def _autocast_state(device: torch.device) -> tuple:
    """The ambient autocast state, as torch.utils.checkpoint captures it: per device kind (the input's, and
    the CPU) whether it is enabled and its dtype, then the cache flag. Hashable: plans are cached on it."""
    kinds = [device.type] if device.type != "cpu" and torch.amp.is_autocast_available(device.type) else []
    kinds.append("cpu")
    return tuple((k, torch.is_autocast_enabled(k), torch.get_autocast_dtype(k)) for k in kinds) + (
        torch.is_autocast_cache_enabled(),)


def _autocast_on(state: tuple) -> bool:
    """Whether autocast is enabled for any device kind in ``state`` (from ``_autocast_state``)."""
    return any(enabled for _, enabled, _ in state[:-1])


@contextlib.contextmanager
def _reenter_autocast(state: tuple):
    """Re-enter the autocast state the forward ran under (``_autocast_state``), as torch.utils.checkpoint does.

    The backward runs under whatever autocast state surrounds the ``backward()`` call, not the forward's: a
    recomputation outside it would compute in another precision (wrong gradients, or a dtype error).
    """
    with contextlib.ExitStack() as stack:
        for kind, enabled, dtype in state[:-1]:
            stack.enter_context(torch.autocast(kind, dtype=dtype, enabled=enabled, cache_enabled=state[-1]))
        yield


def _rng_devices(x: torch.Tensor):
    return [x.device] if x.device.type == "cuda" else []


def _get_rng(x: torch.Tensor):
    cuda = torch.cuda.get_rng_state(x.device) if x.device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _rng_drawn(before, after) -> bool:
    """Whether random numbers were drawn between two ``_get_rng`` readings."""
    return not (torch.equal(before[0], after[0]) and (before[1] is None or torch.equal(before[1], after[1])))


def _rng_bytes(x: torch.Tensor) -> int:
    """Bytes of one RNG state as ``_get_rng`` takes it (the CPU generator's, and the device's on CUDA)."""
    cpu, cuda = _get_rng(x)
    return cpu.numel() + (cuda.numel() if cuda is not None else 0)


@contextlib.contextmanager
def _replay(buffers: list, rng_state, x: torch.Tensor):
    """Run a recomputation: the first run's RNG state, the caller's stream untouched, ``buffers`` restored."""
    saved = [(b, b.detach().clone()) for b in buffers]
    with torch.random.fork_rng(devices=_rng_devices(x), enabled=rng_state is not None):
        if rng_state is not None:
            torch.set_rng_state(rng_state[0])
            if rng_state[1] is not None:
                torch.cuda.set_rng_state(rng_state[1], x.device)
        try:
            yield
        finally:
            with torch.no_grad():
                for b, v in saved:
                    b.copy_(v)
