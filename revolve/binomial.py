"""Binomial checkpointing (Revolve): closed-form costs and the time-optimal schedule.

Conventions (as in revolve.c, checkpoint_schedules and pyrevolve): ``snapshots`` counts the slot that
holds x_0; an *advance* is one step evaluated without taping; every step is also recorded once, right
before its reverse, so a schedule's forward evaluations are its advances plus n.

References:
    A. Griewank, A. Walther. Algorithm 799: revolve. ACM TOMS 26(1):19-45, 2000. doi:10.1145/347837.347846
    A. Griewank. Achieving logarithmic growth of temporal and spatial complexity in reverse automatic
    differentiation. Optimization Methods and Software 1(1):35-54, 1992. doi:10.1080/10556789208805505
"""

from __future__ import annotations

from math import comb
from typing import Iterator

from ._check import check_int, check_real
from .actions import (
    Action,
    Advance,
    Record,
    Reverse,
    _advance,
    _discard,
    _new,
    _record,
    _restore,
    _reverse,
    _set_record_step,
    _set_reverse_step,
    _set_start,
    _set_stop,
    _snapshot,
)
from .schedule import Schedule

__all__ = ["binomial", "binomial_cost", "repetition_number", "min_snapshots", "beta"]


_BETA_MAX_BITS = 2**20  # beta values up to about 315,000 decimal digits (milliseconds); larger ones are refused


def beta(s: int, r: int) -> int:
    """beta(s, r) = C(s + r, s): the most steps s slots reverse with r repetitions (0 for negative s or r).

    Griewank & Walther 2000, eq. (1).

    Raises:
        TypeError: s or r not an integer (bools included).
        ValueError: a value of more than 2^20 bits (about 315,000 digits), which takes minutes to compute;
            ``math.lgamma(s + r + 1) - math.lgamma(s + 1) - math.lgamma(r + 1)`` gives its logarithm.

    Example:
        >>> beta(3, 2)
        10
    """
    if type(s) is not int or type(r) is not int:
        s = check_int("revolve.beta", "s", s)
        r = check_int("revolve.beta", "r", r)
    if s < 0 or r < 0:
        return 0
    if min(s, r) > 4096 and _log2_comb(s + r, min(s, r)) > _BETA_MAX_BITS:
        raise ValueError(
            f"revolve.beta: C(s + r, s) for s={s}, r={r} has about {int(_log2_comb(s + r, min(s, r)) * 0.30103):,} "
            f"digits; beta computes values of at most {_BETA_MAX_BITS:,} bits (about 315,000 digits); use "
            f"math.lgamma for its logarithm"
        )
    return comb(s + r, s)


def _log2_comb(n: int, k: int) -> float:
    """log2 C(n, k) from lgamma."""
    from math import lgamma, log

    return (lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)) / log(2)


def _repetitions(n: int, s: int) -> int:
    """Smallest r with beta(s, r) >= n (n >= 1, s >= 1), by doubling then bisection: O(log r) binomials."""
    if n <= 1:
        return 0
    hi = 1
    while beta(s, hi) < n:
        hi *= 2
    lo = hi // 2  # beta(s, lo) < n (or lo == 0 and n > 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if beta(s, mid) >= n:
            hi = mid
        else:
            lo = mid
    return hi


def repetition_number(n: int, *, snapshots: int) -> int:
    """The repetition number r: the smallest integer with C(snapshots + r, snapshots) >= n.

    Every step is advanced at most r times in the optimal schedule.

    Example:
        >>> repetition_number(1000, snapshots=10)
        4
    """
    where = "revolve.repetition_number"
    n = check_int(where, "n", n, minimum=1)
    s = check_int(where, "snapshots", snapshots, minimum=1)
    return _repetitions(n, s)


def _cost(n: int, s: int) -> int:
    """t(n, s) without argument checks."""
    if s >= n - 1:
        return n - 1
    r = _repetitions(n, s)
    # Griewank & Walther 2000, eq. (2): t(n, s) = r*n - beta(s + 1, r - 1) = r*n - C(s + r, r - 1)
    return r * n - beta(s + 1, r - 1)


def binomial_cost(n: int, *, snapshots: int) -> int:
    """The least number of advances t(n, s) that reverses n steps with s snapshot slots.

    t(n, s) = r*n - C(s + r, r - 1), r the repetition number (t = n - 1 once s >= n - 1). Exact integers,
    O(log r) binomial coefficients, so n up to 10^12 and beyond is instant. The schedule's forward
    evaluations are t + n.

    Arguments:
        n: number of steps, >= 1.
        snapshots: slots for stored states, counting the one that holds x_0, >= 1.

    Raises:
        TypeError, ValueError: n or snapshots not an integer >= 1.

    Example:
        >>> binomial_cost(1000, snapshots=10)
        3636

    References:
        Griewank & Walther, ACM TOMS 26(1), 2000, eq. (2). doi:10.1145/347837.347846
    """
    where = "revolve.binomial_cost"
    n = check_int(where, "n", n, minimum=1)
    s = check_int(where, "snapshots", snapshots, minimum=1)
    return _cost(n, s)


def min_snapshots(n: int, *, max_ratio: float | None = None, repetitions: int | None = None) -> int:
    """The fewest snapshot slots that keep the recomputation ratio at most ``max_ratio`` (or r at most ``repetitions``).

    The recomputation ratio is forward evaluations over n, (t(n, s) + n) / n; 1 means no recomputation,
    which snapshots alone cannot reach: with s >= n - 1 slots it is (2n - 1) / n.

    Arguments:
        n: number of steps, >= 1.
        max_ratio: bound on (t(n, s) + n) / n; give this or ``repetitions``.
        repetitions: bound on the repetition number r.

    Raises:
        ValueError: neither or both bounds given, or a bound no number of slots meets (the message
            says the least achievable value).

    Example:
        >>> min_snapshots(10**6, repetitions=2)
        1413
    """
    where = "revolve.min_snapshots"
    n = check_int(where, "n", n, minimum=1)
    if (max_ratio is None) == (repetitions is None):
        raise ValueError(f"{where}: give exactly one of max_ratio and repetitions")
    if repetitions is not None:
        r = check_int(where, "repetitions", repetitions, minimum=0)
        if r == 0 and n > 1:
            raise ValueError(f"{where}: repetitions must be >= 1 for n = {n} > 1 (only one step needs none), got 0")
        ok = lambda s: _repetitions(n, s) <= r  # noqa: E731
    else:
        bound = check_real(where, "max_ratio", max_ratio, positive=True)
        best = (2 * n - 1) / n if n > 1 else 1.0
        if bound < best:
            raise ValueError(
                f"{where}: max_ratio must be >= {best!r} for n = {n} (the ratio with n - 1 slots), got {bound!r}"
            )
        # compare in integers: (t + n) / n <= bound  <=>  t + n <= bound * n
        ok = lambda s: _cost(n, s) + n <= bound * n  # noqa: E731
    lo, hi = 1, max(1, n - 1)  # hi slots always satisfy a feasible bound
    if ok(lo):
        return lo
    while hi - lo > 1:  # invariant: not ok(lo), ok(hi)
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _split(l: int, c: int) -> int:
    """How far to advance before the next snapshot, for l steps left and c slots including the current one.

    ADOL-C revolve.c (Griewank & Walther 2000, Alg. 799): the O(1) rule that reaches t(l, c) and, among
    time-optimal splits, writes the fewest snapshots.
    """
    r = _repetitions(l, c)
    if l <= beta(c, r - 1) + beta(c - 2, r - 1):
        j = beta(c, r - 2)
    elif l >= beta(c, r) - beta(c - 3, r):
        j = beta(c, r - 1)
    else:
        j = l - beta(c - 1, r - 1) - beta(c - 2, r - 1)
    return max(j, 1)


def _revolve_actions(n: int, s: int) -> Iterator[Action]:
    """The binomial schedule's actions, generated iteratively (memory O(s), no recursion).

    A sub-problem (start, end, c) reverses steps start..end-1 with x_start stored and c slots counting
    the one that holds x_start. The hot loops build actions with the fast constructors of
    ``revolve.actions`` inlined, and reuse one ``Restore`` object per sub-problem (actions are immutable).
    """
    new = _new
    set_start, set_stop, set_rec, set_rev = _set_start, _set_stop, _set_record_step, _set_reverse_step
    if n == 1:  # x_0 is never needed again after its one step is recorded: a snapshot would go unread
        yield _record(0)
        yield _reverse(0)
        return
    yield _snapshot(0)
    cur = 0  # the working state's index; -1 when it must be restored
    # pending left parts: (start, end, c); x_end is stored and is discarded once the right part is done
    stack: list[tuple[int, int, int]] = []
    start, end, c = 0, n, s
    while True:
        # descend: advance and snapshot until the remaining part is a base case
        while True:
            l = end - start
            if l == 1 or c == 1 or c >= l - 1:
                break
            j = _split(l, c)
            if cur != start:
                yield _restore(start)
            yield _advance(start, start + j)
            yield _snapshot(start + j)
            stack.append((start, start + j, c))
            start, c = start + j, c - 1
            cur = start
        # base cases: reverse steps end-1 .. start
        if c == 1 or l == 1:
            # one slot: each step is reached again from x_start (l(l-1)/2 advances)
            back = _restore(start)
            for i in range(end - 1, start - 1, -1):
                if cur != start:
                    yield back
                if i > start:
                    a = new(Advance)
                    set_start(a, start)
                    set_stop(a, i)
                    yield a
                a = new(Record)
                set_rec(a, i)
                yield a
                a = new(Reverse)
                set_rev(a, i)
                yield a
                cur = -1
        else:
            # c >= l - 1 (r = 1): snapshot every state, each step advanced once
            if cur != start:
                yield _restore(start)
            for i in range(start, end - 2):
                yield _advance(i, i + 1)
                yield _snapshot(i + 1)
            if end - 1 > start:
                yield _advance(end - 2, end - 1)
            yield _record(end - 1)
            yield _reverse(end - 1)
            for i in range(end - 2, start - 1, -1):
                yield _restore(i)
                yield _record(i)
                yield _reverse(i)
                if i > start:
                    yield _discard(i)
            cur = -1
        if not stack:
            break
        start, end, c = stack.pop()
        yield _discard(end)
        cur = -1
    yield _discard(0)


def binomial(n: int, *, snapshots: int) -> Schedule:
    """Griewank and Walther's Revolve: the schedule with the fewest advances for ``snapshots`` slots.

    Reaches exactly t(n, s) = ``binomial_cost(n, snapshots=s)`` advances, holds at most s snapshots
    (x_0 included) and one tape at a time, and among the time-optimal schedules writes the fewest
    snapshots (Alg. 799's secondary criterion). The schedule is generated lazily in O(s) memory.

    Arguments:
        n: number of steps, >= 1.
        snapshots: slots for stored states, counting the one that holds x_0, >= 1.

    Returns:
        A ``Schedule`` (kind "binomial").

    Raises:
        TypeError, ValueError: n or snapshots not an integer >= 1.

    Example:
        >>> from revolve import binomial, simulate
        >>> simulate(binomial(1000, snapshots=10)).advances
        3636

    References:
        Griewank & Walther, Algorithm 799: revolve, ACM TOMS 26(1):19-45, 2000. doi:10.1145/347837.347846
    """
    where = "revolve.binomial"
    n = check_int(where, "n", n, minimum=1)
    s = check_int(where, "snapshots", snapshots, minimum=1)
    return Schedule(lambda: _revolve_actions(n, s), n_steps=n, kind="binomial", params={"snapshots": s})
