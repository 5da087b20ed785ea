"""The executor: exact gradients of long time-stepping computations in bounded memory.

``revolve.gradient`` drives the ``revolve.ad`` engine through any schedule: advances run the user's step
on plain numpy arrays (nothing recorded), records keep the step's pullback, reverses apply it. The
gradient equals store-all's to the last bit: every schedule applies the same pullbacks, to the same
(deterministically recomputed) states, in the same order n-1, ..., 0.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from . import ad
from ._check import check_int, check_real
from .actions import Advance, Discard, Record, Restore, Reverse, Snapshot
from .ad import tree_flatten, tree_unflatten
from .ad.transforms import _vjp as ad_vjp
from .baselines import periodic, store_all
from .binomial import binomial, binomial_cost
from .chain import Chain
from .errors import InfeasibleBudget, RevolveInternalError
from .schedule import Schedule
from .simulator import SimulationStats, simulate
from .storage import TerminationGuard, make_backend, state_nbytes

__all__ = ["gradient", "GradientResult", "ExecutionStats", "measure_step", "plan_for_memory"]

_DP_MAX_STEPS = 100  # above this, uniform steps are planned with Revolve (the DP is O(n^3 slots))


@dataclass(frozen=True)
class ExecutionStats:
    """What a run did and cost, beside what its plan predicted.

    Attributes:
        n_steps, advances, records, forward_evaluations: counted while running.
        peak_bytes: most bytes held at once: snapshot copies plus the arrays the live tapes keep
            (parameters and the working state not counted, as in ``revolve.simulate``).
        time_advance, time_record, time_reverse, time_loss, wall_time: seconds.
        predicted: the simulator's stats for the schedule under the measured chain.
        schedule: the schedule's repr.
        state_bytes, tape_bytes: the sizes measured on the first step.
    """

    n_steps: int
    advances: int
    records: int
    forward_evaluations: int
    peak_bytes: int
    time_advance: float
    time_record: float
    time_reverse: float
    time_loss: float
    wall_time: float
    predicted: SimulationStats
    schedule: str
    state_bytes: int
    tape_bytes: int

    def overhead(self) -> float:
        """Wall time over the time spent inside steps, loss and pullbacks (1.0 = no executor overhead)."""
        inner = self.time_advance + self.time_record + self.time_reverse + self.time_loss
        return self.wall_time / inner if inner > 0 else math.nan

    def __str__(self) -> str:
        from .units import format_bytes

        p = self.predicted
        rows = [
            ("schedule", self.schedule),
            ("steps", f"{self.n_steps:,}"),
            ("forward evaluations", f"{self.forward_evaluations:,} (plan: {p.forward_evaluations:,})"),
            ("recomputation ratio", f"{self.forward_evaluations / self.n_steps:.3f}"),
            ("peak memory held", f"{format_bytes(self.peak_bytes)} (plan: {format_bytes(p.peak_memory or 0)})"),
            ("state / tape of one step", f"{format_bytes(self.state_bytes)} / {format_bytes(self.tape_bytes)}"),
            ("time", f"{self.wall_time:.2f} s (advances {self.time_advance:.2f} s, records {self.time_record:.2f} s, "
                     f"reverses {self.time_reverse:.2f} s)"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@dataclass(frozen=True)
class GradientResult:
    """The loss, its gradients and the run's stats."""

    value: float
    grad_x0: Any
    grad_params: Any
    stats: ExecutionStats = field(repr=False)


@dataclass(frozen=True)
class StepMeasurement:
    """Sizes and times of one step, measured with the engine."""

    state_bytes: int
    tape_bytes: int
    forward_time: float
    backward_time: float

    def chain(self, n_steps: int) -> Chain:
        """The uniform chain these measurements describe."""
        return Chain(forward_cost=self.forward_time, backward_cost=self.backward_time, state_bytes=self.state_bytes,
                     tape_bytes=self.tape_bytes, n_steps=n_steps)


def _record(step, x, params, i):
    """Run step i recording its tape; return (x_{i+1}, pullback).

    The executor hands the tape the arrays of x: nobody else holds them afterwards (the working state moves
    on to x_{i+1}; snapshots are copies), so the engine keeps them read-only without copying them; the
    tape keeps read-only views of the parameters, which stay the caller's (NOTE [ Arrays a tape keeps ]).
    """
    if params is None:
        return ad_vjp(lambda xx: step(xx, None, i), (x,), ("own",))
    return ad_vjp(lambda xx, pp: step(xx, pp, i), (x, params), ("own", "view"))


def _private_copy(x):
    """x with fresh arrays of the caller's dtypes: the executor's own, which a step may change in place."""
    leaves, tree = tree_flatten(x)
    return tree_unflatten(tree, [np.array(v, copy=True) for v in leaves])


def _writeable(x):
    """x ready for a step that may update its input in place: read-only arrays (a snapshot, arrays a tape
    keeps) are replaced by copies, the others are the executor's own already."""
    leaves, tree = tree_flatten(x)
    if all(not isinstance(v, np.ndarray) or v.flags.writeable for v in leaves):
        return x
    return tree_unflatten(tree, [v.copy() if isinstance(v, np.ndarray) and not v.flags.writeable else v for v in leaves])


def _tape_bytes(pull, params) -> int:
    """What a recorded step's tape keeps alive, parameters excepted (they live anyway).

    This includes the step's input and output: once the working state moves on, the tape may be the only
    holder of either. Two live tapes of neighbouring steps can share one state, so sums of tape sizes
    (what the simulator adds up) may count that state twice: conservative, never an undercount.
    """
    return pull.tape_bytes(exclude=params)


def measure_step(step: Callable, x0, params=None, *, index: int = 0) -> StepMeasurement:
    """Measure one step's state size, tape size, forward time and record + reverse time with the engine.

    The step runs on a copy of x0 (twice: plain, then recorded and reversed), so an in-place step leaves
    the caller's x0 as it was.
    """
    t = time.perf_counter()
    step(_private_copy(x0), params, index)
    forward = time.perf_counter() - t
    t = time.perf_counter()
    y2, pull = _record(step, _private_copy(x0), params, index)
    pull(tree_unflatten(tree_flatten(y2)[1], [np.ones_like(np.asarray(v)) for v in tree_flatten(y2)[0]]))
    backward = max(time.perf_counter() - t - forward, 0.0)
    return StepMeasurement(state_bytes=state_nbytes(x0), tape_bytes=_tape_bytes(pull, params),
                           forward_time=max(forward, 1e-9), backward_time=max(backward, 1e-9))


def _measure_first_record(step, x0, params):
    """Record step 0 from x0 and measure it: ``(measurement, x_1, pullback)``.

    This recording is the run's first evaluation of step 0, not an extra one: the executor uses x_1 for the
    schedule's first advance from x_0, or the pullback for its ``Record(0)``, so the step is called exactly
    as often as the schedule says. Both times are that one recording's (the plans for identical steps
    depend on the sizes only; the run's stats report the measured times).
    """
    t = time.perf_counter()
    try:
        y, pull = _record(step, x0, params, 0)
    except Exception as e:
        _note(e, "revolve.gradient: raised in step 0 (recording it from x_0 to measure its tape)")
        raise
    elapsed = max(time.perf_counter() - t, 1e-9)
    m = StepMeasurement(state_bytes=state_nbytes(x0), tape_bytes=_tape_bytes(pull, params),
                        forward_time=elapsed, backward_time=elapsed)
    return m, y, pull


def plan_for_memory(measure: StepMeasurement, n_steps: int, memory: float) -> Schedule:
    """The fastest schedule for ``n_steps`` identical steps within ``memory`` bytes.

    Store-all if every tape fits; else the heterogeneous DP for short chains (it may hold several tapes);
    for long ones, Revolve with as many snapshots as fit beside one tape, or periodic checkpointing where
    holding a segment's tapes fits and recomputes less (both costs in closed form).
    """
    S, T = measure.state_bytes, measure.tape_bytes
    if n_steps * T <= memory:
        return store_all(n_steps)
    if n_steps <= _DP_MAX_STEPS:
        from .optimal import optimal

        return optimal(measure.chain(n_steps), memory=memory)
    n = n_steps
    s = int((memory - T) // S) if S > 0 else n
    if s < 1:
        need = S + T
        raise InfeasibleBudget(
            f"revolve.gradient: memory={memory:.0f} bytes cannot hold one snapshot ({S} bytes) beside one tape "
            f"({T} bytes); the smallest budget with which a schedule exists is {need} bytes",
            budget=memory, minimum=need,
        )
    s = min(s, n)
    best = binomial(n, snapshots=s)
    best_evals = binomial_cost(n, snapshots=s) + n
    # Periodic checkpointing holds a whole segment's tapes: with room between Revolve's need and store-all's
    # it can recompute less. Its cost for every segment length k, in closed form (revolve.periodic):
    # snapshots (n-1)//k, k live tapes, forward evaluations n + ((n-1)//k) * k.
    k = _best_periodic(n, S, T, memory)
    if k is not None and n + ((n - 1) // k) * k < best_evals:
        best = periodic(n, every=k)
    return best


def _best_periodic(n: int, S: float, T: float, memory: float) -> int | None:
    """The segment length k of the fewest forward evaluations n + q*k, q = (n-1)//k, with q*S + k*T <= memory.

    The k sharing one quotient q form a block [(n-1)//(q+1) + 1, (n-1)//q]; within it q*k and the memory
    q*S + k*T both grow with k, so only each block's first k competes. The blocks are visited from the
    largest k down, and the search stops once no smaller k can do better (q*k >= n - k). Memory O(1) (an
    array over every k would take 16 bytes per step: 16 GB at n = 10^9); ties go to the smallest k. The
    k >= n (q = 0) are store-all, which the caller has ruled out.
    """
    if n < 2:
        return None
    # q*S <= memory  <=>  q <= floor(memory / S)  <=>  k > (n-1) / (floor(memory / S) + 1)
    k_min = 1 if S <= 0 else (n - 1) // (int(memory // S) + 1) + 1
    k = n - 1 if T <= 0 else min(n - 1, int(memory // T))
    best_k, best_work = None, None
    while k >= k_min:
        q = (n - 1) // k
        first = max((n - 1) // (q + 1) + 1, k_min)  # the first k of this block
        if best_work is not None and n - first > best_work:
            break  # every k <= first does at least n - k work
        if q * S + first * T <= memory and (best_work is None or q * first <= best_work):
            best_k, best_work = first, q * first
        k = first - 1
    return best_k


def _tree_add(a, b):
    la, tree = tree_flatten(a)
    lb, _ = tree_flatten(b)
    return tree_unflatten(tree, [x + y for x, y in zip(la, lb)])


def _check_finite(x, i) -> None:
    for leaf in tree_flatten(x)[0]:
        if not np.all(np.isfinite(leaf)):
            raise FloatingPointError(f"revolve.gradient: step {i} produced a non-finite state (x_{i + 1} has NaN or inf)")


def _note(e: BaseException, msg: str) -> None:
    if hasattr(e, "add_note"):
        e.add_note(msg)


class _Progress:
    """Progress over the reversed steps: ``revolve._io.Progress`` (tqdm, else a plain line; None: on a terminal)."""

    def __init__(self, enabled, n):
        from ._io import Progress

        self._progress = Progress(n, "revolve: reversed steps", enabled=enabled)

    def update(self):
        self._progress.update()

    def close(self):
        self._progress.close()


def gradient(
    step: Callable,
    x0,
    *,
    n_steps: int,
    loss: Callable,
    params=None,
    schedule: Schedule | None = None,
    snapshots: int | None = None,
    memory: float | str | None = None,
    storage: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    check_finite: bool = False,
) -> GradientResult:
    """The gradient of ``loss(x_n)`` where x_{i+1} = step(x_i, params, i), computed under a checkpointing schedule.

    Arguments:
        step: ``step(x, params, i) -> x_next``, written with ``revolve.ad`` operations (numpy operators
            on its arguments work too); x and params are arrays or tuples/lists/dicts of arrays.
        x0: the initial state.
        n_steps: number of steps, >= 1.
        loss: ``loss(x_n) -> scalar``.
        params: parameters shared by all steps (their gradient is accumulated over the steps), or None.
        schedule: any ``Schedule`` for n_steps (binomial, optimal, periodic, store_all, loaded from JSON).
        snapshots: plan Revolve with this many snapshot slots.
        memory: plan within this many bytes (a number or a size like "512MiB"); one step is measured
            first, then the fastest plan is chosen (store-all, the DP, or Revolve).
            Give at most one of schedule, snapshots and memory; with none, all steps are stored.
        storage: storage level -> backend for the schedule's ``Snapshot(storage=...)`` levels: a
            directory (snapshots written there, checksummed, removed at the end) or a backend object.
            "ram" needs no entry.
        progress: show the reversed steps on stderr (a tqdm bar, or a plain line without tqdm); None
            (default) shows it only when stderr is a terminal.
        check_finite: raise FloatingPointError naming the step that first produces NaN or inf.

    Returns:
        ``GradientResult(value, grad_x0, grad_params, stats)``; grad_params is None without params.

    Raises:
        ValueError, TypeError: bad arguments (naming them), or a schedule that is invalid or for another
            number of steps (``ScheduleError``).
        InfeasibleBudget: ``memory`` too small for any schedule (the message gives the minimum).
        SnapshotCorrupted: a disk snapshot changed after it was written.
        Whatever ``step`` or ``loss`` raise, with a note naming the step; on any failure every snapshot
        file is removed.

    Example:
        >>> import numpy as np
        >>> from revolve import ad, gradient
        >>> step = lambda x, p, i: x + 0.01 * ad.sin(x) * p["a"]
        >>> r = gradient(step, np.ones(3), n_steps=100, loss=lambda x: ad.sum(x ** 2),
        ...              params={"a": np.array(2.0)}, snapshots=4)
        >>> r.stats.forward_evaluations, r.grad_x0.shape
        (474, (3,))
    """
    where = "revolve.gradient"
    n = check_int(where, "n_steps", n_steps, minimum=1)
    if not callable(step) or not callable(loss):
        raise TypeError(f"{where}: step and loss must be callables, got {type(step).__name__} and {type(loss).__name__}")
    given = [k for k, v in (("schedule", schedule), ("snapshots", snapshots), ("memory", memory)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"{where}: give at most one of schedule, snapshots and memory; got {' and '.join(given)}")
    leaves0, _ = tree_flatten(x0)
    if not leaves0:
        raise ValueError(f"{where}: x0 holds no arrays")
    for leaf in leaves0:
        if np.asarray(leaf).dtype.kind not in "fc":
            raise TypeError(f"{where}: x0 must hold floating point arrays, got dtype {np.asarray(leaf).dtype}")

    # NOTE [ The caller's x0 and in-place steps ]: the executor works on its own copy of x0, gives a step a
    # writeable array of its own before each advance (snapshots and arrays a tape keeps are read-only), and
    # stores snapshots as copies, so a step that updates its input in place gets the exact gradient and
    # the caller's x0 is never changed.
    x_start = _private_copy(x0)
    measure, first_y, first_pull = _measure_first_record(step, x_start, params)
    t_first = measure.forward_time
    if check_finite:
        _check_finite(first_y, 0)
    chain = measure.chain(n)
    if schedule is not None:
        if not isinstance(schedule, Schedule):
            raise TypeError(f"{where}: schedule must be a revolve.Schedule, got {type(schedule).__name__}")
        if schedule.n_steps != n:
            raise ValueError(f"{where}: the schedule is for {schedule.n_steps} steps but n_steps={n}")
    elif snapshots is not None:
        schedule = binomial(n, snapshots=check_int(where, "snapshots", snapshots, minimum=1))
    elif memory is not None:
        if isinstance(memory, str):
            from .units import parse_bytes

            memory = parse_bytes(memory, where=where, name="memory")
        memory = check_real(where, "memory", memory, positive=True)
        schedule = plan_for_memory(measure, n, memory)
    else:
        schedule = store_all(n)
    predicted = simulate(schedule, chain)  # validates the whole schedule before any work

    storage = dict(storage or {})
    unknown = set(storage) - set(predicted.peak_snapshots_by_storage) - {"ram"}
    if unknown:
        raise ValueError(f"{where}: storage names level(s) {sorted(unknown)} that the schedule never uses "
                         f"(it uses {sorted(predicted.peak_snapshots_by_storage) or 'none'})")
    backends: dict[str, Any] = {}
    snap_level: dict[int, str] = {}
    snap_bytes: dict[int, int] = {}
    tapes: dict[int, tuple[Any, int]] = {}
    bar = _Progress(progress, n)
    t_adv = t_rec = t_rev = t_loss = 0.0
    advances = records = 0
    held = peak = 0
    grad_params = None
    value = None
    adj = None
    x = x_start
    cur = 0
    i = -1
    wall = time.perf_counter()
    guard = TerminationGuard(enabled=bool(set(predicted.peak_snapshots_by_storage) - {"ram"}))  # SIGTERM as SIGINT
    try:
        for level in predicted.peak_snapshots_by_storage:
            backends[level] = make_backend(level, storage.get(level))

        def reached_end(x_end):
            nonlocal value, adj, t_loss
            t = time.perf_counter()
            try:
                value, adj = ad.value_and_grad(loss)(x_end)
            except Exception as e:
                _note(e, f"{where}: raised in loss(x_{n})")
                raise
            t_loss += time.perf_counter() - t

        for action in schedule:
            match action:
                case Advance(start=start, stop=b):
                    a = start
                    t = time.perf_counter()
                    if first_y is not None:  # the measuring recording was this advance's step 0
                        x, first_y, first_pull, a = first_y, None, None, a + 1
                        t_adv += t_first
                    x = _writeable(x)
                    for i in range(a, b):
                        try:
                            x = step(x, params, i)
                        except Exception as e:
                            _note(e, f"{where}: raised in step {i} (advancing from x_{start})")
                            raise
                        if check_finite:
                            _check_finite(x, i)
                    t_adv += time.perf_counter() - t
                    advances += b - start
                    cur = b
                    if b == n and adj is None:
                        reached_end(x)
                case Record(step=i):
                    t = time.perf_counter()
                    if first_y is not None:  # the measuring recording was this one
                        y, pull, first_y, first_pull = first_y, first_pull, None, None
                        t -= t_first
                    else:
                        try:
                            y, pull = _record(step, x, params, i)
                        except Exception as e:
                            _note(e, f"{where}: raised in step {i} (recording)")
                            raise
                    if check_finite:
                        _check_finite(y, i)
                    size = _tape_bytes(pull, params)
                    t_rec += time.perf_counter() - t
                    tapes[i] = (pull, size)
                    held += size
                    peak = max(peak, held)
                    records += 1
                    x, cur = y, i + 1
                    if cur == n and adj is None:
                        reached_end(x)
                case Reverse(step=i):
                    pull, size = tapes.pop(i)
                    t = time.perf_counter()
                    try:
                        cts = pull(adj)
                    except Exception as e:
                        _note(e, f"{where}: raised in the reverse of step {i}")
                        raise
                    t_rev += time.perf_counter() - t
                    del pull
                    held -= size
                    adj = cts[0]
                    if params is not None:
                        grad_params = cts[1] if grad_params is None else _tree_add(grad_params, cts[1])
                    bar.update()
                case Snapshot(index=k, storage=level):
                    size = backends[level].put(k, x)
                    snap_level[k], snap_bytes[k] = level, size
                    held += size
                    peak = max(peak, held)
                case Restore(index=k):
                    x, cur = backends[snap_level[k]].get(k), k
                case Discard(index=k):
                    backends[snap_level.pop(k)].delete(k)
                    held -= snap_bytes.pop(k)
                case _:
                    raise RevolveInternalError(f"executor: unknown action {action!r}")
    finally:
        bar.close()
        first_y = first_pull = None
        for backend in backends.values():
            backend.close()
        tapes.clear()
        guard.restore()
    wall = time.perf_counter() - wall
    if adj is None or value is None:
        raise RevolveInternalError("executor: the schedule finished without reaching x_n")
    stats = ExecutionStats(
        n_steps=n, advances=advances, records=records, forward_evaluations=advances + records, peak_bytes=peak,
        time_advance=t_adv, time_record=t_rec, time_reverse=t_rev, time_loss=t_loss, wall_time=wall,
        predicted=predicted, schedule=repr(schedule), state_bytes=measure.state_bytes, tape_bytes=measure.tape_bytes,
    )
    return GradientResult(value=float(np.asarray(value)), grad_x0=adj, grad_params=grad_params, stats=stats)
