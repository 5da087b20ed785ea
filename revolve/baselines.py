"""Baseline schedules that every comparison includes: store-all and periodic checkpointing."""

from __future__ import annotations

from typing import Iterator

from ._check import check_int
from .actions import Action, Discard, Snapshot, _advance, _record, _restore, _reverse
from .schedule import Schedule

__all__ = ["store_all", "periodic"]


def _store_all_actions(n: int) -> Iterator[Action]:
    """Record every step in one sweep, then reverse them all."""
    for i in range(n):
        yield _record(i)
    for i in range(n - 1, -1, -1):
        yield _reverse(i)


def store_all(n: int) -> Schedule:
    """Record all n steps, then reverse them: no recomputation, n tapes live at the peak.

    Example:
        >>> from revolve import simulate
        >>> simulate(store_all(10)).forward_evaluations
        10
    """
    n = check_int("revolve.store_all", "n", n, minimum=1)
    return Schedule(lambda: _store_all_actions(n), n_steps=n, kind="store_all")


def _periodic_actions(n: int, k: int) -> Iterator[Action]:
    """Segments [0, k), [k, 2k), ...: snapshot each segment's input, record the last segment directly."""
    last = ((n - 1) // k) * k  # start of the last segment
    for a in range(0, last, k):
        yield Snapshot(a)
        yield _advance(a, a + k)
    # like torch.utils.checkpoint.checkpoint_sequential, the last segment is recorded directly
    for i in range(last, n):
        yield _record(i)
    for i in range(n - 1, last - 1, -1):
        yield _reverse(i)
    for a in range(last - k, -1, -k):
        yield _restore(a)
        for i in range(a, a + k):
            yield _record(i)
        for i in range(a + k - 1, a - 1, -1):
            yield _reverse(i)
        yield Discard(a)


def periodic(n: int, *, every: int) -> Schedule:
    """Snapshot every ``every``-th state and recompute each segment once, taping it whole.

    This is what ``torch.utils.checkpoint.checkpoint_sequential`` does with ceil(n / every) segments:
    the inputs of all segments but the last are stored, the last segment is recorded directly, and each
    other segment is recomputed once, with all its tapes live, before it is reversed. Forward
    evaluations: 2n - (length of the last segment).

    Arguments:
        n: number of steps, >= 1.
        every: segment length, >= 1 (every >= n is store-all).

    Example:
        >>> from revolve import simulate
        >>> simulate(periodic(10, every=3)).forward_evaluations
        19
    """
    where = "revolve.periodic"
    n = check_int(where, "n", n, minimum=1)
    k = check_int(where, "every", every, minimum=1)
    return Schedule(lambda: _periodic_actions(n, k), n_steps=n, kind="periodic", params={"every": k})
