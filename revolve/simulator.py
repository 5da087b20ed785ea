"""The simulator: replays any schedule, rejects an invalid one, and reports its cost.

It is the oracle of every planner test: whatever a planner claims, the simulator measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import accumulate
from typing import Iterable, Mapping

from ._check import check_int, check_real
from .actions import Advance, Discard, Record, Restore, Reverse, Snapshot
from .chain import Chain
from .errors import ScheduleError
from .schedule import Schedule

__all__ = ["simulate", "SimulationStats", "closed_form_stats"]


@dataclass(frozen=True)
class SimulationStats:
    """What a schedule costs.

    Attributes:
        n_steps: steps in the schedule.
        actions: number of actions (None in ``closed_form_stats`` where no closed form is known).
        advances: steps evaluated without taping (``Advance(a, b)`` counts b - a).
        records: steps evaluated with taping (n for a valid schedule).
        forward_evaluations: advances + records.
        recomputation_ratio: forward_evaluations / n_steps (1.0 means no step is evaluated twice).
        snapshot_writes: number of ``Snapshot`` actions (None where ``closed_form_stats`` knows no closed form).
        restores: number of ``Restore`` actions (likewise).
        peak_snapshots: most states stored at once.
        peak_tapes: most tapes live at once.
        peak_snapshots_by_storage: storage level -> most states stored there at once.
        time: total time under the chain's costs (forward costs of advances and records plus backward
            costs), or None without a chain.
        peak_memory: most bytes held at once (stored states + live tapes, a state shared by a snapshot and
            a tape counted once; with a chain that models working memory, plus the adjoint held and, while
            a step runs, its overhead and its input unless that is held), or None without a chain.
        peak_bytes_by_storage: storage level -> most bytes of states stored there at once ("tape" for
            tapes), or None without a chain.
        writes_by_storage: storage level -> ``Snapshot`` actions into it (None in ``closed_form_stats``).
        restores_by_storage: storage level -> ``Restore`` actions of a state stored there (likewise).
        io_time: the I/O cost, sum over levels of write cost x writes + read cost x restores under
            ``simulate``'s ``io_cost`` (None without io_cost).
        cost: the I/O-inclusive cost: ``time`` (or, without a chain, forward_evaluations + n_steps: one unit
            per step forward and backward) plus ``io_time`` (None without io_cost).
    """

    n_steps: int
    actions: int | None
    advances: int
    records: int
    forward_evaluations: int
    recomputation_ratio: float
    snapshot_writes: int | None
    restores: int | None
    peak_snapshots: int
    peak_tapes: int
    peak_snapshots_by_storage: dict = field(default_factory=dict)
    time: float | None = None
    peak_memory: float | None = None
    peak_bytes_by_storage: dict | None = None
    writes_by_storage: dict | None = None
    restores_by_storage: dict | None = None
    io_time: float | None = None
    cost: float | None = None

    def __str__(self) -> str:
        counts = [
            ("steps", self.n_steps),
            ("actions", self.actions),
            ("advances (recomputed steps)", self.advances),
            ("forward evaluations", self.forward_evaluations),
            ("recomputation ratio", None),
            ("snapshot writes", self.snapshot_writes),
            ("peak snapshots", self.peak_snapshots),
            ("peak live tapes", self.peak_tapes),
        ]
        # a count closed_form_stats does not know (None) is left out
        rows = [(k, f"{self.recomputation_ratio:.4f}" if v is None else f"{v:,}") for k, v in counts
                if v is not None or k == "recomputation ratio"]
        if len(self.peak_snapshots_by_storage) > 1:
            for level, k in sorted(self.peak_snapshots_by_storage.items()):
                rows.append((f"peak snapshots in {level}", f"{k:,}"))
        if self.time is not None:
            rows.append(("time (chain units)", f"{self.time:,.6g}"))
        if self.peak_memory is not None:
            from .units import format_bytes

            rows.append(("peak memory", format_bytes(self.peak_memory)))
        if self.io_time:
            rows.append(("I/O cost", f"{self.io_time:,.6g}"))
            rows.append(("cost with I/O", f"{self.cost:,.6g}"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _stored_list(stored: dict) -> str:
    keys = sorted(stored)
    shown = ", ".join(map(str, keys[:8])) + (", ..." if len(keys) > 8 else "")
    return f"[{shown}]"


def closed_form_stats(schedule: Schedule) -> SimulationStats | None:
    """A planner schedule's stats from closed forms, without replaying it; None for other kinds.

    Known for ``binomial`` (advances t(n, s) of Griewank & Walther 2000, eq. (2); peak snapshots
    min(s, n - 1) (n = 1 writes none); one live tape; actions, snapshot writes and restores are None), ``store_all``
    and ``periodic`` (every count). O(log n) time and O(1) memory, so n = 10^12 answers at once; the
    tests check every field against ``simulate`` on a sweep of small n.

    Example:
        >>> from revolve import binomial
        >>> closed_form_stats(binomial(10**12, snapshots=20)).forward_evaluations
        22987383599920
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"revolve.closed_form_stats: schedule must be a revolve.Schedule, got {type(schedule).__name__}")
    n, kind, params = schedule.n_steps, schedule.kind, schedule.params
    if kind == "binomial" and set(params) == {"snapshots"}:
        from .binomial import binomial_cost

        s = params["snapshots"]
        adv = binomial_cost(n, snapshots=s)
        counts = dict(actions=None, advances=adv, snapshot_writes=None, restores=None,
                      peak_snapshots=min(s, n - 1), peak_tapes=1, levels={"ram": min(s, n - 1)} if n > 1 else {})
    elif kind == "store_all" and not params:
        counts = dict(actions=2 * n, advances=0, snapshot_writes=0, restores=0, peak_snapshots=0, peak_tapes=n, levels={})
    elif kind == "periodic" and set(params) == {"every"}:
        k = params["every"]
        m = (n - 1) // k  # stored segment inputs
        last = n - m * k  # length of the last segment, recorded directly
        counts = dict(actions=2 * m + 2 * last + m * (2 * k + 2), advances=m * k, snapshot_writes=m, restores=m,
                      peak_snapshots=m, peak_tapes=max(last, k if m else 0), levels={"ram": m} if m else {})
    else:
        return None
    evals = counts["advances"] + n
    return SimulationStats(
        n_steps=n, actions=counts["actions"], advances=counts["advances"], records=n, forward_evaluations=evals,
        recomputation_ratio=evals / n, snapshot_writes=counts["snapshot_writes"], restores=counts["restores"],
        peak_snapshots=counts["peak_snapshots"], peak_tapes=counts["peak_tapes"],
        peak_snapshots_by_storage=counts["levels"],
    )


def simulate(schedule: Schedule | Iterable, chain: Chain | None = None, *, n_steps: int | None = None,
             slots: Mapping[str, int] | None = None,
             io_cost: Mapping[str, tuple[float, float]] | None = None) -> SimulationStats:
    """Replay ``schedule``, check every rule of NOTE [ Schedule invariants ], and return its cost.

    Arguments:
        schedule: a ``Schedule`` (or any iterable of actions together with ``n_steps``).
        chain: costs and sizes; without it ``time`` and the memory fields are None.
        n_steps: the number of steps, for a plain iterable of actions.
        slots: storage level -> the most states it may hold at once; a ``Snapshot`` past a level's slots is
            a ``ScheduleError`` naming it. Levels not named are not limited.
        io_cost: storage level -> (write_cost, read_cost): each ``Snapshot`` into the level adds the write
            cost and each ``Restore`` of a state stored there the read cost to ``io_time`` and ``cost``.

    Returns:
        ``SimulationStats``.

    Raises:
        ScheduleError: the first action that breaks a rule, with its index, the action and the rule.
        ValueError: the chain's n_steps differs from the schedule's.

    Example:
        >>> from revolve import binomial, simulate
        >>> simulate(binomial(10, snapshots=3)).advances
        15
        >>> simulate(binomial(10, snapshots=3), io_cost={"ram": (1, 1)}).cost  # 25 forward, 10 backward, 6 writes, 9 restores
        50.0
    """
    where = "revolve.simulate"
    limit, wcost, rcost = _levels_checked(where, slots, io_cost)
    if isinstance(schedule, Schedule):
        n = schedule.n_steps
    elif n_steps is None:
        raise TypeError(f"{where}: schedule must be a revolve.Schedule, or pass n_steps= with a plain iterable of actions")
    else:
        n = check_int(where, "n_steps", n_steps, minimum=1)
    if chain is not None:
        if not isinstance(chain, Chain):
            raise TypeError(f"{where}: chain must be a revolve.Chain, got {type(chain).__name__}")
        if chain.n_steps != n:
            raise ValueError(f"{where}: the chain has n_steps={chain.n_steps} but the schedule has n_steps={n}")
        if n > _LISTS_MAX_STEPS and _all_uniform(chain) and not chain.has_shared_states:
            # O(1) memory for a long uniform chain: constant sequences instead of n-element lists
            F, B, exact, den = _uniform_sequences(chain)
        else:
            F = [0.0, *accumulate(chain.values("forward_cost").tolist())]  # prefix sums: cost of steps a..b-1
            B = chain.values("backward_cost").tolist()
            # sizes as exact integers over one denominator (NOTE [ Exact sizes ] in revolve.chain): no float drift
            exact, den = chain.exact_sizes()
        S = exact["state_bytes"]
        T = exact["tape_bytes"]
    # states shared with tapes (NOTE [ Schedule invariants ] 8): count holders per state, bytes once
    shared = chain is not None and chain.has_shared_states
    if shared:
        hin = chain.holds("tape_holds_input").tolist()
        hout = chain.holds("tape_holds_output").tolist()
        holders = [0] * (n + 1)
    # working memory (Chain.forward_overhead / backward_overhead / adjoint_bytes): a moment's peaks
    working = chain is not None and chain.has_overheads
    if working:
        FO = exact["forward_overhead"]
        RO = exact["record_overhead"]
        BO = exact["backward_overhead"]
        A = exact["adjoint_bytes"]
    cur = 0  # working state index; -1 when unknown
    adj = n  # the adjoint of x_adj is known; the next reverse must be step adj - 1
    stored: dict[int, str] = {}
    tapes: set[int] = set()
    per_level: dict[str, int] = {}
    writes_level: dict[str, int] = {}
    reads_level: dict[str, int] = {}
    peak_level: dict[str, int] = {}
    bytes_level: dict[str, int] = {}
    peak_bytes_level: dict[str, int] = {}
    advances = records = writes = restores = 0
    peak_snap = peak_tape = 0
    time = 0.0
    mem = peak_mem = tape_mem = peak_tape_mem = 0
    has_chain = chain is not None
    if working:
        mem = peak_mem = A[n]  # the output's adjoint is held throughout (the output during the first sweep)
    k = -1
    for k, act in enumerate(schedule):
        cls = act.__class__
        if cls is Advance:
            a, b = act.start, act.stop
            if a != cur:
                raise ScheduleError(k, act, f"the working state is {_state(cur)}, not x_{a}")
            if not (a < b <= n):
                raise ScheduleError(k, act, f"stop must satisfy start < stop <= n_steps = {n}")
            advances += b - a
            if has_chain:
                time += F[b] - F[a]
                if working:
                    # each step runs with its input alive: counted unless it is held (stored or kept by a tape)
                    extra = max((0 if (l in stored or (shared and holders[l])) else S[l]) + FO[l] for l in range(a, b))
                    if mem + extra > peak_mem:
                        peak_mem = mem + extra
            cur = b
        elif cls is Record:
            i = act.step
            if i != cur:
                raise ScheduleError(k, act, f"the working state is {_state(cur)}, not x_{i}")
            if i >= adj:
                raise ScheduleError(k, act, f"step {i} was already reversed")
            if i in tapes:
                raise ScheduleError(k, act, f"the tape of step {i} is already live")
            tapes.add(i)
            records += 1
            cur = i + 1
            if len(tapes) > peak_tape:
                peak_tape = len(tapes)
            if has_chain:
                time += F[i + 1] - F[i]
                mem += T[i]
                tape_mem += T[i]
                if shared:
                    for j in ((i,) if hin[i] else ()) + ((i + 1,) if hout[i] else ()):
                        holders[j] += 1
                        if holders[j] == 1:
                            mem += S[j]
                if working:
                    extra = (0 if (i in stored or (shared and holders[i])) else S[i]) + RO[i]
                    if mem + extra > peak_mem:
                        peak_mem = mem + extra
                elif mem > peak_mem:
                    peak_mem = mem
                if tape_mem > peak_tape_mem:
                    peak_tape_mem = tape_mem
        elif cls is Reverse:
            i = act.step
            if i != adj - 1:
                expected = f"step {adj - 1}" if adj > 0 else "no step (all are reversed)"
                raise ScheduleError(k, act, f"steps reverse in order n-1, ..., 0; the next to reverse is {expected}")
            if i not in tapes:
                raise ScheduleError(k, act, f"the tape of step {i} is not live (Record({i}) must come first)")
            tapes.remove(i)
            adj = i
            cur = -1  # NOTE [ Schedule invariants ] 6: a reverse ends the working state
            if has_chain:
                time += B[i]
                if working:
                    if mem + BO[i] > peak_mem:
                        peak_mem = mem + BO[i]
                    mem += A[i] - A[i + 1]  # the adjoint of x_{i+1} becomes that of x_i
                mem -= T[i]
                tape_mem -= T[i]
                if shared:
                    for j in ((i,) if hin[i] else ()) + ((i + 1,) if hout[i] else ()):
                        holders[j] -= 1
                        if holders[j] == 0:
                            mem -= S[j]
        elif cls is Restore:
            i = act.index
            if i not in stored:
                raise ScheduleError(k, act, f"x_{i} is not stored (stored: {_stored_list(stored)})")
            restores += 1
            level = stored[i]
            reads_level[level] = reads_level.get(level, 0) + 1
            cur = i
        elif cls is Snapshot:
            i = act.index
            if i != cur:
                raise ScheduleError(k, act, f"the working state is {_state(cur)}, not x_{i}")
            if i in stored:
                raise ScheduleError(k, act, f"x_{i} is already stored (in {stored[i]!r})")
            level = act.storage
            if limit is not None and level in limit and per_level.get(level, 0) >= limit[level]:
                raise ScheduleError(k, act, f"storage level {level!r} already holds {per_level.get(level, 0)} "
                                            f"state(s), its slots ({limit[level]}): stored there: "
                                            f"{_stored_list({j: v for j, v in stored.items() if v == level})}")
            stored[i] = level
            writes += 1
            writes_level[level] = writes_level.get(level, 0) + 1
            if len(stored) > peak_snap:
                peak_snap = len(stored)
            c = per_level.get(level, 0) + 1
            per_level[level] = c
            if c > peak_level.get(level, 0):
                peak_level[level] = c
            if has_chain:
                if not shared:
                    mem += S[i]
                else:
                    holders[i] += 1
                    if holders[i] == 1:
                        mem += S[i]
                if mem > peak_mem:
                    peak_mem = mem
                bl = bytes_level.get(level, 0) + S[i]
                bytes_level[level] = bl
                if bl > peak_bytes_level.get(level, 0):
                    peak_bytes_level[level] = bl
        elif cls is Discard:
            i = act.index
            level = stored.pop(i, None)
            if level is None:
                raise ScheduleError(k, act, f"x_{i} is not stored (stored: {_stored_list(stored)})")
            per_level[level] -= 1
            if has_chain:
                if not shared:
                    mem -= S[i]
                else:
                    holders[i] -= 1
                    if holders[i] == 0:
                        mem -= S[i]
                bytes_level[level] -= S[i]
        else:
            raise ScheduleError(k, act, "not a revolve action (Advance, Snapshot, Restore, Discard, Record, Reverse)")
    if adj != 0:
        raise ScheduleError(k + 1, None, f"steps 0..{adj - 1} were never reversed", where=where)
    evals = advances + records
    peak_bytes = None
    if has_chain:
        peak_bytes = {level: b / den for level, b in peak_bytes_level.items()}  # one rounding each
        peak_bytes["tape"] = peak_tape_mem / den
    io_time = 0.0
    for level, c in writes_level.items():
        io_time += c * wcost.get(level, 0.0)
    for level, c in reads_level.items():
        io_time += c * rcost.get(level, 0.0)
    base = time if has_chain else float(evals + n)
    return SimulationStats(
        n_steps=n,
        actions=k + 1,
        advances=advances,
        records=records,
        forward_evaluations=evals,
        recomputation_ratio=evals / n,
        snapshot_writes=writes,
        restores=restores,
        peak_snapshots=peak_snap,
        peak_tapes=peak_tape,
        peak_snapshots_by_storage=dict(peak_level),
        time=time if has_chain else None,
        peak_memory=peak_mem / den if has_chain else None,
        peak_bytes_by_storage=peak_bytes,
        writes_by_storage=dict(writes_level),
        restores_by_storage=dict(reads_level),
        io_time=io_time if io_cost is not None else None,
        cost=base + io_time if io_cost is not None else None,
    )


def _levels_checked(where: str, slots, io_cost):
    """(slot limits or None, write costs, read costs) from ``simulate``'s slots= and io_cost=, checked."""
    limit = None
    if slots is not None:
        if not isinstance(slots, Mapping):
            raise TypeError(f"{where}: slots must be a mapping of storage level -> slot count, e.g. "
                            f"{{'ram': 5, 'disk': 10}}; got {slots!r}")
        limit = {name: check_int(where, f"slots[{name!r}]", c, minimum=0) for name, c in slots.items()}
    wcost: dict[str, float] = {}
    rcost: dict[str, float] = {}
    if io_cost is not None:
        if not isinstance(io_cost, Mapping):
            raise TypeError(f"{where}: io_cost must be a mapping of storage level -> (write_cost, read_cost), "
                            f"e.g. {{'disk': (2, 2)}}; got {io_cost!r}")
        for name, pair in io_cost.items():
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"{where}: io_cost[{name!r}] must be a pair (write_cost, read_cost), got {pair!r}")
            wcost[name] = check_real(where, f"io_cost[{name!r}] write cost", pair[0], minimum=0)
            rcost[name] = check_real(where, f"io_cost[{name!r}] read cost", pair[1], minimum=0)
    return limit, wcost, rcost


_LISTS_MAX_STEPS = 10**5  # above this, a uniform chain is simulated without n-element lists


class _Constant:
    """A sequence whose every element is ``value`` (indexable like the per-step lists it replaces)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __getitem__(self, i):
        return self.value


class _Ramp:
    """The prefix sums i * value of a constant cost (F[b] - F[a] is the cost of steps a..b-1)."""

    __slots__ = ("value",)

    def __init__(self, value: float):
        self.value = value

    def __getitem__(self, i):
        return i * self.value


def _all_uniform(chain: Chain) -> bool:
    """True when every numeric field of the chain, working memory included, is one number."""
    from .chain import _NUMERIC

    return all(chain.uniform(name) is not None for name in _NUMERIC)


def _uniform_sequences(chain: Chain):
    """(F, B, exact sizes, denominator) of a uniform chain in O(1) memory: one step's exact sizes, repeated.

    The times are counts times the cost (equal to the prefix sums of the list path up to rounding).
    """
    from .chain import _NUMERIC

    one = Chain(**{name: chain.uniform(name) for name in _NUMERIC}, n_steps=1)  # (to_dict would expand the fields)
    exact1, den = one.exact_sizes()
    exact = {name: _Constant(values[0]) for name, values in exact1.items()}
    return _Ramp(chain.uniform("forward_cost")), _Constant(chain.uniform("backward_cost")), exact, den


def _state(cur: int) -> str:
    return f"x_{cur}" if cur >= 0 else "unknown after a Reverse (Restore a stored state first)"
