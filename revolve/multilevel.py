"""Multi-level checkpointing: snapshots in RAM and on disk (or GPU, host and disk), each level with its slots
and its write and read costs.

``multilevel(n, slots={"ram": 5, "disk": 10}, io_cost={"disk": (2, 2)})`` plans the schedule of least cost

    forward steps + backward steps + sum over levels of (write cost x snapshots written there
                                                        + read cost x restores from there),

(each step costing ``forward_cost`` forward and ``backward_cost`` backward) that never holds more states in
a level than its slots and keeps one tape live at a time. Levels are given fastest first; the first level's
I/O is free (it is the memory the steps run in), any later level may cost. ``simulate(schedule, slots=...,
io_cost=...)`` replays the schedule, checks each level's slots and charges the same costs.

NOTE [ Hierarchical schedules ]
  The planner searches the class of H-Revolve (Herrmann and Pallez 2020, Sec. 3) with the single-read and
  repeated-read segments of Disk-Revolve (Aupy, Herrmann, Hovland and Robert 2016, Sec. 3): a snapshot in
  level k is only taken while no snapshot of a faster level is held, so the snapshots of level k cut the
  chain into segments whose faster-level work starts from an empty faster level. Within it the planner is
  exact (every argmin over the class), slot limits included; the tests compare it with an exhaustive search
  over every schedule of the action vocabulary on small chains. Writing l for a segment's length (steps
  a..a+l-1), x_a in hand and stored in level k:

  1. D_k(l, d): d free slots of level k, every faster slot free. Either give the segment to the faster
     levels (E_k(l)), or advance j steps, write x_{a+j} to level k, solve the right part D_k(l - j, d - 1),
     restore x_a (read cost of k) and solve the left part D_k(j, d), whose slots are free again
     (Herrmann and Pallez 2020, eq. (3); with d unbounded it is Disk-Revolve's Opt_inf, Aupy et al. 2016,
     Theorem 3.15). A right part of one step is recorded at once, with no snapshot (j = l - 1).
  2. E_k(l): x_a stays in level k and only faster levels take snapshots. Either move x_a to level k - 1
     (discard it from k, write it to k - 1: Disk-Revolve's single-read segment) and solve
     D_{k-1}(l, c_{k-1} - 1), or advance j steps, write x_{a+j} to level k - 1, solve D_{k-1}(l - j,
     c_{k-1} - 1), restore x_a from level k and solve E_k(j) (Disk-Revolve's 1D-Revolve, Aupy et al.
     2016, Sec. 3.2: the segment's base is read again for each part).
  3. The fastest level's D_0(l, d) is Revolve's t(l, d + 1) advances (Griewank and Walther 2000, eq. (2)):
     its I/O is free, so the fewest advances is the least cost.
  4. The plan writes x_0 to the level k that minimises w_k + D_k(n, c_k - 1) (levels above k unused).

  Speed: level k's tables hold c_k rows of n + 1 lengths. The exact rows scan every split point
  (O(n^2) per row, numpy); the rows are not convex (E_k is the least of two convex options), so Revolve's
  monotone-split arguments do not carry over, and "fast" tables take each min over about 70 split points
  per length (every j within 12 of either end, and a geometric grid of left and of right lengths), all
  rows of one length at once: n = 10^4 with 100 disk slots in under a second. A fast value is the cost of
  a real schedule, so it bounds the exact one from above; on the issue-15 rows the two are equal. Rows stop
  once one more slot changes no length (the extra slots would not be used).

References:
    J. Herrmann, G. Pallez (Aupy). H-Revolve: a framework for adjoint computation on synchronous
    hierarchical platforms. ACM TOMS 46(2), 2020. doi:10.1145/3378672
    G. Aupy, J. Herrmann, P. Hovland, Y. Robert. Optimal multistage algorithm for adjoint computation.
    SIAM J. Sci. Comput. 38(3):C232-C255, 2016. doi:10.1137/15M1019222
    G. Aupy, J. Herrmann. Periodicity in optimal hierarchical checkpointing schemes for adjoint
    computations. Optimization Methods and Software 32(3):594-624, 2017. doi:10.1080/10556788.2016.1230612
    A. Griewank, A. Walther. Algorithm 799: revolve. ACM TOMS 26(1):19-45, 2000. doi:10.1145/347837.347846
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterator, Literal, Mapping

import numpy as np

from ._check import check_int, check_real
from .actions import Action, Advance, Discard, Record, Restore, Reverse, Snapshot
from .binomial import _revolve_actions, beta
from .errors import RevolveInternalError
from .schedule import Schedule, _shifted

__all__ = ["multilevel", "multilevel_cost", "MultilevelPlan"]

_WHERE = "revolve.multilevel"
_MAX_STEPS = 10**6
_MAX_ENTRIES = 2 * 10**7  # table entries per level (slots x lengths): 160 MB of float64 per table


@dataclass(frozen=True)
class _Level:
    """One storage level: its name, slots, and the cost of one write and one read."""

    name: str
    slots: int
    write: float
    read: float


def _parse_levels(where: str, slots, io_cost) -> list[_Level]:
    """The levels of ``slots`` (fastest first) with their costs from ``io_cost``; checks both mappings."""
    if not isinstance(slots, Mapping) or not slots:
        raise TypeError(f"{where}: slots must be a non-empty mapping of storage level -> slot count, fastest "
                        f"first, e.g. {{'ram': 5, 'disk': 10}}; got {slots!r}")
    io_cost = {} if io_cost is None else io_cost
    if not isinstance(io_cost, Mapping):
        raise TypeError(f"{where}: io_cost must be a mapping of storage level -> (write_cost, read_cost), "
                        f"e.g. {{'disk': (2, 2)}}; got {io_cost!r}")
    unknown = set(io_cost) - set(slots)
    if unknown:
        raise ValueError(f"{where}: io_cost names level(s) {sorted(unknown)} that slots does not "
                         f"(slots names {list(slots)})")
    levels = []
    for name, count in slots.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: storage level names must be non-empty strings, got {name!r}")
        count = check_int(where, f"slots[{name!r}]", count, minimum=0)
        cost = io_cost.get(name, (0, 0))
        if not isinstance(cost, (tuple, list)) or len(cost) != 2:
            raise ValueError(f"{where}: io_cost[{name!r}] must be a pair (write_cost, read_cost), got {cost!r}")
        w = check_real(where, f"io_cost[{name!r}] write cost", cost[0], minimum=0)
        r = check_real(where, f"io_cost[{name!r}] read cost", cost[1], minimum=0)
        levels.append(_Level(name, count, w, r))
    return levels


# -- Tables -----------------------------------------------------------------------------------------------
def _revolve_row(n: int, c: int, uf: float, ub: float) -> np.ndarray:
    """D_0(l, c - 1) for l = 0..n: uf * (t(l, c) + l) + ub * l, t from Griewank & Walther 2000, eq. (2)."""
    l = np.arange(n + 1, dtype=np.int64)
    if c >= n - 1:
        adv = np.maximum(l - 1, 0)
    else:
        # r(l) = the least r with beta(c, r) >= l; t = r*l - beta(c + 1, r - 1) (Griewank & Walther 2000, eq. (2))
        bounds = [1]
        while bounds[-1] < n:
            bounds.append(beta(c, len(bounds)))
        r = np.searchsorted(np.array(bounds, dtype=np.float64), l, side="left")
        sub = np.array([beta(c + 1, k - 1) for k in range(len(bounds))], dtype=np.float64)
        adv = np.where(l <= 1, 0, r * l - sub[r])
        adv = np.where(c >= l - 1, np.maximum(l - 1, 0), adv)
    return uf * (adv + l) + ub * l


def _layer_scan(n: int, uf: float, ub: float, read: float, stop: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One table row F and its argmins by the full scan over j: F(1) = uf + ub and, for l >= 2,

        F(l) = min( stop[l],  min over 1 <= j <= l-1 of  j*uf + read + F(j) + right[l - j] ),

    with right[1] = uf + ub (a last step recorded at once, no snapshot). choice[l] = 0 for the stop option.
    """
    F = np.zeros(n + 1)
    C = np.zeros(n + 1, dtype=np.int32)
    if n >= 1:
        F[1] = uf + ub
    g = right.copy()
    if n >= 1:
        g[1] = uf + ub
    jj = np.arange(n + 1) * uf + read
    for l in range(2, n + 1):
        cand = jj[1:l] + F[1:l] + g[l - 1:0:-1]
        k = int(np.argmin(cand))
        if cand[k] < stop[l]:
            F[l], C[l] = cand[k], k + 1
        else:
            F[l], C[l] = stop[l], 0
    return F, C


def _level_exact(n: int, rows: int, uf: float, ub: float, lv: _Level, sub: np.ndarray) -> tuple[list, list]:
    """Rows E_k, D_k(., 1), ..., D_k(., rows - 1) of a level by full scans, stopping once saturated."""
    E, CE = _layer_scan(n, uf, ub, lv.read, sub, sub)
    Fs, Cs = [E], [CE]
    for _ in range(1, rows):
        F, C = _layer_scan(n, uf, ub, lv.read, E, lv.write + Fs[-1])
        if np.array_equal(F, Fs[-1]):  # one more slot helps no length: the rows are saturated
            break
        Fs.append(F)
        Cs.append(C)
    return Fs, Cs


_ENDS = 12  # the fast tables try every split j within this distance of either end,
_GRID = 40  # and the lengths of a geometric grid of this many points from _ENDS to n, as left and as right parts


def _fast_splits(l: int, grid: np.ndarray) -> np.ndarray:
    """The split points j that ``_level_fast`` tries at length l (the same ones when the plan is generated)."""
    if l - 1 <= 2 * _ENDS:
        return np.arange(1, l)
    S = grid[: np.searchsorted(grid, l - 1)]
    return np.concatenate([S, l - S])


def _fast_grid(n: int) -> np.ndarray:
    """Every length up to _ENDS and a geometric grid of _GRID lengths from _ENDS to n."""
    return np.unique(np.concatenate([np.arange(1, _ENDS + 1),
                                     np.geomspace(_ENDS, max(n, _ENDS + 1), _GRID).astype(np.int64)]))


def _level_fast(n: int, rows: int, uf: float, ub: float, lv: _Level, sub: np.ndarray) -> tuple[list, None]:
    """The rows of ``_level_exact`` with each min taken over the split points of ``_fast_splits`` (every j
    near both ends, a geometric grid of left and of right lengths between), all rows of one length at once:
    O(n * rows * K) with K about 70, values only (the argmins along the plan are found again as it is
    generated, ``MultilevelPlan._choice``).

    Every value is the cost of a real schedule (a min over fewer options), so the plan is valid and its
    cost an upper bound of the exact one; the tests and ``experiments/bench_planner.py`` measure the gap.
    """
    R = rows
    W = n + 1
    one = uf + ub
    # tables indexed [length, row] so that one length's values for every row are contiguous
    F = np.full((W, R), np.inf)
    F[1] = one
    A = np.full((W, R), np.inf)  # A[j, d] = j*uf + read + F[j, d]: the left part and the restore
    A[1] = uf + lv.read + one
    G = np.full((W, R), np.inf)  # G[i, d]: the right part of i steps (write included)
    G[2:, 0] = sub[2:]
    G[1] = one
    stop0 = sub.tolist()
    grid = _fast_grid(n)
    read, write = lv.read, lv.write
    for l in range(2, n + 1):
        J = _fast_splits(l, grid)
        best = (A[J] + G[l - J]).min(axis=0)
        e = stop0[l] if stop0[l] <= best[0] else best[0]  # E_k(l): move x_a down, or a faster snapshot
        col = np.minimum(best, e)  # D_k(l, d): give the segment to E_k, or a snapshot in level k
        col[0] = e
        F[l] = col
        A[l] = col + (l * uf + read)
        G[l, 1:] = col[:-1] + write
    F = F.T.copy()
    Fs = [F[0]]
    for d in range(1, R):
        if np.array_equal(F[d], Fs[-1]):
            break
        Fs.append(F[d])
    return Fs, None


def _exact_affordable(n: int, rows: int) -> bool:
    """True when the full scans take about half a second or less (measured: 10 us per length and row, 2 ns
    per scanned entry)."""
    return rows * n * 1e-5 + rows * n * n * 1e-9 <= 0.5


class MultilevelPlan:
    """The tables of ``multilevel``: least costs and argmins for every segment length and free slot count.

    Attributes:
        n_steps: steps of the chain.
        levels: the levels' names, fastest first.
        cost: the least cost of the whole chain (forward, backward and I/O).
        top: index of the level that holds x_0.
        method: "exact" (every table row by the full scan) or "fast" (some by ``_level_fast``).
    """

    def __init__(self, n: int, levels: list[_Level], uf: float, ub: float, method: str = "auto"):
        self.n_steps = n
        self._levels = levels
        self.levels = tuple(lv.name for lv in levels)
        self.uf, self.ub = uf, ub
        # per level k >= 1: E rows and D rows (D[0] is E); level 0: the Revolve row
        self._D: list[list[np.ndarray]] = []
        self._C: list[list[np.ndarray]] = []
        base = levels[0]
        c0 = min(base.slots, n)
        self._D.append([_revolve_row(n, c0, uf, ub)] if c0 >= 1 else [])
        self._C.append([])
        self.method = "exact"
        self._sub: dict[int, np.ndarray] = {}
        for k in range(1, len(levels)):
            lv, below = levels[k], levels[k - 1]
            sub = below.write + self._last(k - 1)  # a faster snapshot, solved with all the faster slots
            self._sub[k] = sub
            rows = min(lv.slots, n)
            if rows * (n + 1) > _MAX_ENTRIES:
                cap = max(1, _MAX_ENTRIES // (n + 1))
                warnings.warn(f"revolve.multilevel: {lv.slots} slots of {lv.name!r} for n={n} would need tables of "
                              f"{rows * (n + 1):,} entries; planning with {cap} of them (at most "
                              f"{_MAX_ENTRIES:,} entries per level)", stacklevel=4)
                rows = cap
            exact = method == "exact" or (method == "auto" and _exact_affordable(n, rows))
            if not exact:
                self.method = "fast"
            Fs, Cs = (_level_exact if exact else _level_fast)(n, rows, uf, ub, lv, sub)
            if not exact:
                self._grid = _fast_grid(n)
            self._D.append(Fs)
            self._C.append(Cs)
        best, top = np.inf, -1
        for k, lv in enumerate(levels):
            row = self._last(k)
            if row is not None and lv.write + row[n] < best:
                best, top = lv.write + row[n], k
        if n == 1:
            best, top = uf + ub, -1  # one step: recorded at once, nothing stored
        if not np.isfinite(best):
            raise RevolveInternalError(f"multilevel: no finite plan for n={n} and levels {levels}")
        self.cost = float(best)
        self.top = top

    def _last(self, k: int):
        """The row D_k(., c_k - 1) (the last one computed), or None if level k holds nothing."""
        rows = self._D[k]
        return rows[-1] if rows else None

    def _choice(self, k: int, l: int, d: int) -> int:
        """The argmin of D_k(l, d) (0: the stop option, else the split j), from the stored choices or, for
        tables built by ``_level_fast``, found again over the same split points."""
        C = self._C[k]
        if C is not None:
            return int(C[d][l])
        lv = self._levels[k]
        uf, rows = self.uf, self._D[k]
        J = _fast_splits(l, self._grid)
        left = J * uf + lv.read + rows[d][J]
        if d == 0:
            sub = self._sub[k]
            right = np.where(l - J == 1, uf + self.ub, sub[l - J])
        else:
            right = np.where(l - J == 1, uf + self.ub, lv.write + rows[d - 1][l - J])
        vals = left + right
        i = int(np.argmin(vals))
        if d == 0:
            return 0 if self._sub[k][l] <= vals[i] else int(J[i])
        stop = rows[0][l]
        return int(J[i]) if vals[i] < stop else 0

    # -- Actions ------------------------------------------------------------------------------------------
    def actions(self) -> Iterator[Action]:
        """The schedule's actions, generated with an explicit stack (no recursion)."""
        n, levels = self.n_steps, self._levels
        if self.top < 0:
            yield Record(0)
            yield Reverse(0)
            return
        top = self.top
        yield Snapshot(0, levels[top].name)
        # tasks: ("D", k, a, l, d) with x_a in hand and stored in level k; or a ready action
        stack: list = [Discard(0), ("D", top, 0, n, len(self._D[top]) - 1)]
        while stack:
            task = stack.pop()
            if task.__class__ is not tuple:
                yield task
                continue
            _, k, a, l, d = task
            if l == 1:
                yield Record(a)
                yield Reverse(a)
                continue
            if k == 0:
                yield from _shifted_revolve(a, l, min(levels[0].slots, n), levels[0].name)
                continue
            d = min(d, len(self._D[k]) - 1)
            j = self._choice(k, l, d)
            name = levels[k].name
            if j == 0:
                if d > 0:  # give the segment to the faster levels: E_k
                    stack.append(("D", k, a, l, 0))
                    continue
                # E_k's stop option: move x_a down to level k - 1
                yield Discard(a)
                yield Snapshot(a, levels[k - 1].name)
                stack.append(("D", k - 1, a, l, len(self._D[k - 1]) - 1))
                continue
            yield Advance(a, a + j)
            # the left part (after the right one): restore x_a, then the same table row
            stack.append(("D", k, a, j, d))
            stack.append(Restore(a))
            if j == l - 1:  # the right part is one step: recorded at once
                yield Record(a + j)
                yield Reverse(a + j)
                continue
            stack.append(Discard(a + j))
            if d > 0:  # a snapshot in level k, one slot fewer for the right part
                yield Snapshot(a + j, name)
                stack.append(("D", k, a + j, l - j, d - 1))
            else:  # E_k: a snapshot in the faster level, which solves the right part with all its slots
                yield Snapshot(a + j, levels[k - 1].name)
                stack.append(("D", k - 1, a + j, l - j, len(self._D[k - 1]) - 1))


def _shifted_revolve(a: int, l: int, c: int, name: str) -> Iterator[Action]:
    """Revolve's schedule of l steps and c slots moved to start at x_a, x_a already stored by the caller."""
    # its own Snapshot(0) and Discard(0) are the caller's (x_a is stored and discarded there)
    inner = (act for act in _revolve_actions(l, c)
             if not (act.__class__ in (Snapshot, Discard) and act.index == 0))
    return _shifted(inner, a, name)


def _plan(where: str, n, slots, io_cost, forward_cost, backward_cost, method="auto") -> MultilevelPlan:
    """The checked arguments' tables."""
    n = check_int(where, "n", n, minimum=1, maximum=_MAX_STEPS)
    if method not in ("auto", "exact", "fast"):
        raise ValueError(f"{where}: method must be 'auto', 'exact' or 'fast', got {method!r}")
    levels = _parse_levels(where, slots, io_cost)
    uf = check_real(where, "forward_cost", forward_cost, positive=True)
    ub = check_real(where, "backward_cost", backward_cost, minimum=0)
    first = levels[0]
    if first.write or first.read:
        raise ValueError(f"{where}: the first (fastest) level {first.name!r} must have free I/O, got io_cost "
                         f"{(first.write, first.read)}; put a free level first (e.g. slots={{'ram': 4, "
                         f"{first.name!r}: {first.slots}}})")
    if n >= 2 and first.slots < 1:
        raise ValueError(f"{where}: slots[{first.name!r}] (the fastest level) must be >= 1 for n >= 2, got "
                         f"{first.slots}")
    # a level of no slots takes no part (the next faster level serves the slower ones)
    return MultilevelPlan(n, [lv for lv in levels if lv.slots > 0] or levels[:1], uf, ub, method)


def multilevel(n: int, *, slots: Mapping[str, int], io_cost: Mapping[str, tuple[float, float]] | None = None,
               forward_cost: float = 1.0, backward_cost: float = 1.0,
               method: Literal["auto", "exact", "fast"] = "auto") -> Schedule:
    """The least-cost schedule for storage levels with their own slots and write/read costs (RAM and disk).

    Minimises forward steps x forward_cost + n x backward_cost + the I/O costs (a ``Snapshot`` into a level
    costs its write cost, a ``Restore`` from it its read cost) over the hierarchical schedules of
    NOTE [ Hierarchical schedules ], never holding more states in a level than its slots, one tape live at a
    time. Levels are named as ``Snapshot(i, storage=...)`` names them; the executor writes a level other
    than "ram" to the backend ``revolve.gradient(storage={...})`` gives it.

    Arguments:
        n: number of steps, 1 <= n <= 10^6.
        slots: storage level -> the most states it may hold at once, fastest level first (the first level's
            I/O must be free; it holds x_0 unless a slower level is cheaper).
        io_cost: storage level -> (write_cost, read_cost), in units of one forward step's cost; levels not
            named cost nothing.
        forward_cost, backward_cost: cost of one step forward and of one step backward.
        method: "exact" takes every min of NOTE [ Hierarchical schedules ] over all split points (O(n^2)
            per slot of a slower level); "fast" over about 70 of them per length (O(n) per slot; a valid
            plan whose cost is an upper bound of the exact one, the gap measured in
            ``experiments/bench_planner.py``); "auto" (default) is exact where that takes about 0.5 s or less.

    Returns:
        A ``Schedule`` (kind "multilevel"); ``multilevel_cost`` gives its cost without generating it.

    Raises:
        TypeError, ValueError: a bad argument (named in the message).

    Warns:
        UserWarning: a level's tables would pass 2 * 10^7 entries (slots x (n + 1)); fewer of its slots are
            planned for (the plan stays valid, within the slots given).

    Example:
        >>> from revolve import multilevel, simulate
        >>> s = multilevel(1000, slots={"ram": 5, "disk": 10}, io_cost={"disk": (2, 2)})
        >>> st = simulate(s, slots={"ram": 5, "disk": 10}, io_cost={"disk": (2, 2)})
        >>> st.cost, st.peak_snapshots_by_storage["disk"] <= 10
        (5491.0, True)

    References:
        Herrmann & Pallez, ACM TOMS 46(2), 2020, doi:10.1145/3378672; Aupy, Herrmann, Hovland & Robert,
        SIAM J. Sci. Comput. 38(3), 2016, doi:10.1137/15M1019222.
    """
    plan = _plan(_WHERE, n, slots, io_cost, forward_cost, backward_cost, method)
    params = {"slots": dict(slots), "io_cost": {k: tuple(v) for k, v in (io_cost or {}).items()}}
    if forward_cost != 1.0 or backward_cost != 1.0:
        params.update(forward_cost=forward_cost, backward_cost=backward_cost)
    params["method"] = plan.method
    return Schedule(plan.actions, n_steps=plan.n_steps, kind="multilevel", params=params)


def multilevel_cost(n: int, *, slots: Mapping[str, int], io_cost: Mapping[str, tuple[float, float]] | None = None,
                    forward_cost: float = 1.0, backward_cost: float = 1.0,
                    method: Literal["auto", "exact", "fast"] = "auto") -> float:
    """The cost of ``multilevel``'s schedule (forward, backward and I/O), from its tables.

    Example:
        >>> multilevel_cost(1000, slots={"ram": 5, "disk": 10}, io_cost={"disk": (2, 2)})
        5491.0
    """
    return _plan("revolve.multilevel_cost", n, slots, io_cost, forward_cost, backward_cost, method).cost
