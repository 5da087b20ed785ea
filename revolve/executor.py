"""The executor: exact gradients of long time-stepping computations in bounded memory.

``revolve.gradient`` drives an engine through any schedule (NOTE [ The engine protocol ] in
revolve/engine.py: ``revolve.ad`` on numpy by default, torch through ``revolve.integrations.torch``):
advances run the user's step without recording, records keep the step's pullback, reverses apply it. The
gradient equals store-all's to the last bit: every schedule applies the same pullbacks, to the same
(deterministically recomputed) states, in the same order n-1, ..., 0. This is the one executor: schedules,
RAM and checksummed disk snapshots, cleanup on any failure, stats and progress live here for every engine.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ._check import check_int, check_real
from .actions import Advance, Discard, Record, Restore, Reverse, Snapshot
from .ad import tree_flatten, tree_unflatten
from .baselines import periodic, store_all
from .binomial import binomial, binomial_cost
from .chain import Chain
from .errors import InfeasibleBudget, RevolveInternalError
from .schedule import Schedule
from .simulator import SimulationStats, simulate
from .storage import TerminationGuard, make_backend

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


def _predicted(schedule: Schedule, measure: StepMeasurement, n: int) -> SimulationStats:
    """``simulate(schedule, measure.chain(n))`` in memory O(stored states + live tapes), not O(n).

    The simulator keeps per-step exact sizes for chains of up to 10^5 steps (about 0.5 KB a step in Python
    numbers: 150 KB at 300 steps), which would put the validation replay far above a plan of a few snapshots
    and one tape. The measured chain is uniform, with no working memory and no state shared with a tape, so
    its memory at any moment is (stored states) * S + (live tapes) * T: this counts them on the actions as
    ``simulate`` (without a chain, O(stored + live) memory) validates them, and returns its stats with the
    chain's fields filled in as the simulator's uniform path computes them (exact sizes over one power-of-two
    denominator; times as counts times the costs).
    """
    (sp, sq), (tp, tq) = float(measure.state_bytes).as_integer_ratio(), float(measure.tape_bytes).as_integer_ratio()
    den = max(sq, tq)  # both powers of two
    S, T = sp * (den // sq), tp * (den // tq)
    f, b = measure.forward_time, measure.backward_time
    acc = [0, 0, 0, 0.0]  # held bytes (times den), their peak, live tapes' bytes peak, time

    def counted(actions):
        held = peak = tape = tape_peak = 0
        time_ = 0.0
        try:
            for act in actions:
                cls = act.__class__
                if cls is Advance:
                    time_ += act.stop * f - act.start * f
                elif cls is Record:
                    time_ += (act.step + 1) * f - act.step * f
                    held += T
                    tape += T
                    if held > peak:
                        peak = held
                    if tape > tape_peak:
                        tape_peak = tape
                elif cls is Reverse:
                    time_ += b
                    held -= T
                    tape -= T
                elif cls is Snapshot:
                    held += S
                    if held > peak:
                        peak = held
                elif cls is Discard:
                    held -= S
                yield act
        finally:
            acc[:] = [held, peak, tape_peak, time_]

    stats = simulate(counted(schedule), n_steps=n)
    _, peak, tape_peak, time_ = acc
    by_level = {level: c * S / den for level, c in stats.peak_snapshots_by_storage.items()}
    by_level["tape"] = tape_peak / den
    return dataclasses.replace(stats, time=time_, peak_memory=peak / den, peak_bytes_by_storage=by_level)


def _numpy_engine():
    from .engine import NumpyEngine

    return NumpyEngine()


def measure_step(step: Callable, x0, params=None, *, index: int = 0, engine=None) -> StepMeasurement:
    """Measure one step's state size, tape size, forward time and record + reverse time with the engine.

    The step runs on the engine's own copy of x0 (twice: plain, then recorded and reversed), so an
    in-place step leaves the caller's x0 as it was. ``engine``: None for ``revolve.ad``.
    """
    engine = engine or _numpy_engine()
    x = engine.own(x0, "revolve.measure_step")
    t = time.perf_counter()
    engine.advance(step, engine.own(x0, "revolve.measure_step"), params, index)
    forward = time.perf_counter() - t
    t = time.perf_counter()
    y2, pull = engine.record(step, x, params, index)
    size = engine.tape_bytes(pull, params)
    leaves, tree = tree_flatten(y2)
    engine.apply(pull, tree_unflatten(tree, [_ones_like(v) for v in leaves]))
    backward = max(time.perf_counter() - t - forward, 0.0)
    return StepMeasurement(state_bytes=engine.state_bytes(x0) + engine.ambient_bytes(), tape_bytes=size,
                           forward_time=max(forward, 1e-9), backward_time=max(backward, 1e-9))


def _ones_like(v):
    if isinstance(v, np.ndarray) or np.isscalar(v):
        return np.ones_like(np.asarray(v))
    return v.new_ones(v.shape) if hasattr(v, "new_ones") else np.ones_like(np.asarray(v))


def _measure_first_record(engine, step, x0, params, where):
    """Record step 0 from x0 and measure it: ``(measurement, x_1, pullback, ambient before it)``.

    This recording is the run's first evaluation of step 0, not an extra one: the executor uses x_1 for the
    schedule's first advance from x_0, or the pullback for its ``Record(0)``, so the step is called exactly
    as often as the schedule says (NOTE [ Step calls ]). Both times are that one recording's.
    """
    ambient = engine.ambient()
    t = time.perf_counter()
    try:
        y, pull = engine.record(step, x0, params, 0)
    except Exception as e:
        _note(e, f"{where}: raised in step 0 (recording it from x_0 to measure its tape)")
        raise
    elapsed = max(time.perf_counter() - t, 1e-9)
    m = StepMeasurement(state_bytes=engine.state_bytes(x0) + engine.ambient_bytes(),
                        tape_bytes=engine.tape_bytes(pull, params), forward_time=elapsed, backward_time=elapsed)
    return m, y, pull, ambient


@functools.lru_cache(maxsize=32)
def plan_for_memory(measure: StepMeasurement, n_steps: int, memory: float) -> Schedule:
    """The fastest schedule for ``n_steps`` identical steps within ``memory`` bytes.

    Store-all if every tape fits; else the heterogeneous DP for short chains (it may hold several tapes);
    for long ones, Revolve with as many snapshots as fit beside one tape, or periodic checkpointing where
    holding a segment's tapes fits and recomputes less (both costs in closed form). Plans are cached on
    their arguments (a training loop plans the same loop every iteration; schedules are immutable).
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


def _check_slots(where: str, snapshots, memory):
    """snapshots= as a positive integer and memory= as bytes (a size string or a positive number), either None."""
    if snapshots is not None:
        snapshots = check_int(where, "snapshots", snapshots, minimum=1)
    if memory is not None:
        if isinstance(memory, str):
            from .units import parse_bytes

            memory = parse_bytes(memory, where=where, name="memory")
        memory = check_real(where, "memory", memory, positive=True)
    return snapshots, memory


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


def _close_backends(backends: dict, tapes: dict) -> None:
    for backend in list(backends.values()):
        backend.close()
    backends.clear()
    tapes.clear()


class _Run:
    """One execution of a schedule through an engine, in two phases: ``forward()`` runs the actions up to the
    first time x_n is reached and returns it; ``backward(adj)`` runs the rest from the adjoint of x_n and
    returns the adjoint of x_0 and the parameters' gradient. ``revolve.gradient`` runs both at once with the
    loss between them; ``revolve.integrations.torch.checkpointed_loop`` runs them as the forward and backward
    of an autograd Function. ``close()`` (also run when the object is collected) frees every snapshot and
    removes the disk snapshot files; call it on every path.

    NOTE [ Step calls ]: the step runs once per forward evaluation of the schedule, no more. The first
    recording of step 0 (which measures its tape, and must come before a memory plan exists) is the
    schedule's first evaluation of step 0: its output feeds the first ``Advance(0, b)``, or its pullback
    serves ``Record(0)``. A ``Snapshot(0)`` taken before that action keeps the ambient state (RNG) from
    before the recording, so a stochastic step 0 recomputed later draws what it drew then.
    """

    def __init__(self, *, engine, step, x0, n, params, schedule, predicted, measure, first, storage, progress,
                 check_finite, where):
        import weakref

        self.engine, self.step, self.n, self.params, self.where = engine, step, n, params, where
        self.schedule, self.predicted, self.measure = schedule, predicted, measure
        self.check = check_finite
        self._first = first  # (x_1, pullback, ambient before step 0) of the measuring recording, until used
        self.backends: dict[str, Any] = {}
        self.tapes: dict[int, tuple[Any, int]] = {}
        self._close = weakref.finalize(self, _close_backends, self.backends, self.tapes)
        self.snaps: dict[int, tuple[str, int, Any]] = {}  # stored state -> (level, bytes held, ambient state)
        self.t_adv = self.t_rec = self.t_rev = self.t_loss = 0.0
        self.advances = self.records = 0
        self.held = self.peak = 0
        self.grad_params = None
        self.adj = None
        self.x = x0
        self.reached = False
        self.wall = measure.forward_time  # the measuring recording ran before the run: it is its first evaluation
        self._actions = iter(schedule) if schedule is not None else iter(())
        self.planner = None  # an online planner driven by a stop condition (forward_online)
        self._progress = progress
        self.bar = _Progress(progress, n) if n is not None else None
        for level in (predicted.peak_snapshots_by_storage if predicted is not None else ("ram",)):
            self.backends[level] = make_backend(level, storage.get(level), engine)

    def close(self) -> None:
        """Free the snapshots and tapes, remove disk snapshot files, close the progress bar."""
        self._first = None
        self.x = None
        if self.bar is not None:
            self.bar.close()
        self._close()

    def forward(self):
        """Run the schedule until x_n is first reached; return x_n (the executor's working state)."""
        if self.planner is not None:
            return self._forward_online()
        self._drive(until_end=True)
        if not self.reached:
            raise RevolveInternalError("executor: the schedule finished without reaching x_n")
        return self.x

    def backward(self, adj):
        """From the adjoint of x_n, run the rest of the schedule: ``(adjoint of x_0, gradient of params)``."""
        self.adj = adj
        self._drive(until_end=False)
        return self.adj, self.grad_params

    def stats(self) -> ExecutionStats:
        return ExecutionStats(
            n_steps=self.n, advances=self.advances, records=self.records,
            forward_evaluations=self.advances + self.records, peak_bytes=self.peak, time_advance=self.t_adv,
            time_record=self.t_rec, time_reverse=self.t_rev, time_loss=self.t_loss, wall_time=self.wall,
            predicted=self.predicted, schedule=repr(self.schedule), state_bytes=self.measure.state_bytes,
            tape_bytes=self.measure.tape_bytes,
        )

    def _forward_online(self):
        """Advance while ``stop(x_i, i)`` is false, the online planner deciding the snapshots before each step
        (``revolve.OnlinePlanner``: forward(i) before step i; finish(n) once the stop is seen on x_n)."""
        from .online import online

        planner, stop, i = self.planner, self.stop, 0
        while True:
            if i > 0:  # stop(x_0, 0) was asked before the measuring recording (_start_online)
                try:
                    done = stop(self.x, i)
                except Exception as e:
                    _note(e, f"{self.where}: raised in stop(x_{i}, {i})")
                    raise
                if done:
                    break
            self._actions = iter(planner.forward(i))
            self._drive(until_end=False)
            i += 1
        self.n = n = i
        self.reached = True
        self._actions = iter(planner.finish(n))
        self.bar = _Progress(self._progress, n)
        self.schedule = online(snapshots=planner.snapshots, algorithm=planner.algorithm).schedule(
            n, last_step_known=False)  # the stop is seen on x_n, after step n-1 ran
        self.predicted = _predicted(self.schedule, self.measure, n)
        return self.x

    def _finite(self, x, i) -> None:
        if self.check and not self.engine.finite(x):
            raise FloatingPointError(f"{self.where}: step {i} produced a non-finite state (x_{i + 1} has NaN or inf)")

    def _drive(self, *, until_end: bool) -> None:
        """Run actions, dispatching on their type in this one place, until x_n is reached (``until_end``) or
        the schedule ends."""
        engine, step, params, where, n = self.engine, self.step, self.params, self.where, self.n
        wall = time.perf_counter()
        try:
            for action in self._actions:
                match action:
                    case Advance(start=start, stop=b):
                        a = start
                        x = self.x
                        t = time.perf_counter()
                        if self._first is not None:  # the measuring recording was this advance's step 0
                            x, a = self._first[0], a + 1
                            self._finite(x, 0)
                            self._first = None
                            self.t_adv += self.measure.forward_time
                        for i in range(a, b):
                            try:
                                x = engine.advance(step, x, params, i)
                            except Exception as e:
                                _note(e, f"{where}: raised in step {i} (advancing from x_{start})")
                                raise
                            self._finite(x, i)
                        self.x = x
                        self.t_adv += time.perf_counter() - t
                        self.advances += b - start
                        if b == n and not self.reached:
                            self.reached = True
                            if until_end:
                                return
                    case Record(step=i):
                        t = time.perf_counter()
                        if self._first is not None:  # the measuring recording was this one
                            (y, pull, _), self._first = self._first, None
                            t -= self.measure.forward_time
                        else:
                            try:
                                y, pull = engine.record(step, self.x, params, i)
                            except Exception as e:
                                _note(e, f"{where}: raised in step {i} (recording)")
                                raise
                        self._finite(y, i)
                        size = engine.tape_bytes(pull, params)
                        self.t_rec += time.perf_counter() - t
                        self.tapes[i] = (pull, size)
                        del pull
                        self.held += size
                        self.peak = max(self.peak, self.held)
                        self.records += 1
                        self.x = y
                        del y
                        if i + 1 == n and not self.reached:
                            self.reached = True
                            if until_end:
                                return
                    case Reverse(step=i):
                        pull, size = self.tapes.pop(i)
                        t = time.perf_counter()
                        try:
                            adj, g = engine.apply(pull, self.adj)
                        except Exception as e:
                            _note(e, f"{where}: raised in the reverse of step {i}")
                            raise
                        del pull
                        self.t_rev += time.perf_counter() - t
                        self.held -= size
                        self.adj = adj
                        if g is not None:
                            self.grad_params = g if self.grad_params is None else engine.add(self.grad_params, g)
                        self.x = None  # unknown until a Restore (NOTE [ Schedule invariants ] 6)
                        self.bar.update()
                    case Snapshot(index=k, storage=level):
                        # a Snapshot(0) before the measuring recording is used keeps the ambient state from
                        # before that recording (NOTE [ Step calls ])
                        ambient = self._first[2] if self._first is not None else engine.ambient()
                        size = self.backends[level].put(k, self.x) + engine.ambient_bytes()
                        self.snaps[k] = (level, size, ambient)
                        del ambient
                        self.held += size
                        self.peak = max(self.peak, self.held)
                    case Restore(index=k):
                        level, _, ambient = self.snaps[k]
                        self.x = self.backends[level].get(k)
                        engine.reenter(ambient)
                        del ambient
                    case Discard(index=k):
                        level, size, _ = self.snaps.pop(k)
                        self.backends[level].delete(k)
                        self.held -= size
                    case _:
                        raise RevolveInternalError(f"executor: unknown action {action!r}")
        finally:
            self.wall += time.perf_counter() - wall


def _plan(where, engine, step, x_start, n, params, schedule, snapshots, memory):
    """The schedule to run and the measuring recording of step 0: ``(schedule, measure, first)``."""
    given = [k for k, v in (("schedule", schedule), ("snapshots", snapshots), ("memory", memory)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"{where}: give at most one of schedule, snapshots and memory; got {' and '.join(given)}")
    if schedule is not None:
        if not isinstance(schedule, Schedule):
            raise TypeError(f"{where}: schedule must be a revolve.Schedule, got {type(schedule).__name__}")
        if schedule.n_steps != n:
            raise ValueError(f"{where}: the schedule is for {schedule.n_steps} steps but n_steps={n}")
    snapshots, memory = _check_slots(where, snapshots, memory)
    measure, y, pull, ambient = _measure_first_record(engine, step, x_start, params, where)
    if schedule is None:
        if snapshots is not None:
            schedule = binomial(n, snapshots=snapshots)
        elif memory is not None:
            # planned on the sizes alone (unit step costs: for identical steps the choice depends on their
            # ratio only, which the one measurement cannot tell apart), so every process of a distributed
            # run that holds states of equal size plans the same schedule
            unit = StepMeasurement(state_bytes=measure.state_bytes, tape_bytes=measure.tape_bytes,
                                   forward_time=1.0, backward_time=1.0)
            schedule = plan_for_memory(unit, n, memory)
        else:
            schedule = store_all(n)
    return schedule, measure, (y, pull, ambient)


def _start(where, engine, step, x0, n_steps, params, schedule, snapshots, memory, storage, progress,
           check_finite, stop=None) -> _Run:
    """Check the arguments, measure step 0, plan, validate the whole schedule, and open a run (no step of the
    schedule has run yet but the measuring recording)."""
    if stop is not None or n_steps is None:
        return _start_online(where, engine, step, x0, n_steps, params, schedule, snapshots, memory, storage,
                             progress, check_finite, stop)
    n = check_int(where, "n_steps", n_steps, minimum=1)
    if not callable(step):
        raise TypeError(f"{where}: step must be a callable, got {type(step).__name__}")
    x_start = engine.own(x0, where)
    schedule, measure, first = _plan(where, engine, step, x_start, n, params, schedule, snapshots, memory)
    predicted = _predicted(schedule, measure, n)  # validates the whole schedule before any more work
    storage = dict(storage or {})
    unknown = set(storage) - set(predicted.peak_snapshots_by_storage) - {"ram"}
    if unknown:
        raise ValueError(f"{where}: storage names level(s) {sorted(unknown)} that the schedule never uses "
                         f"(it uses {sorted(predicted.peak_snapshots_by_storage) or 'none'})")
    return _Run(engine=engine, step=step, x0=x_start, n=n, params=params, schedule=schedule, predicted=predicted,
                measure=measure, first=first, storage=storage, progress=progress, check_finite=check_finite,
                where=where)


def _start_online(where, engine, step, x0, n_steps, params, schedule, snapshots, memory, storage, progress,
                  check_finite, stop) -> _Run:
    """A run whose number of steps is decided by ``stop(x_i, i)``, planned online (``revolve.online``)."""
    from .online import online

    if stop is None:
        raise TypeError(f"{where}: give n_steps (the number of steps) or stop (a callable stop(x, i) -> bool)")
    if n_steps is not None:
        raise ValueError(f"{where}: give n_steps or stop, not both (stop decides the number of steps)")
    if not callable(stop) or not callable(step):
        raise TypeError(f"{where}: step and stop must be callables, got {type(step).__name__} and {type(stop).__name__}")
    if schedule is not None:
        raise ValueError(f"{where}: with stop= the schedule is planned online; give snapshots= or memory=, not schedule=")
    if snapshots is not None and memory is not None:
        raise ValueError(f"{where}: give at most one of snapshots and memory; got snapshots and memory")
    if snapshots is None and memory is None:
        raise ValueError(f"{where}: with stop= give snapshots= (slots for stored states, x_0 included) or memory=")
    snapshots, memory = _check_slots(where, snapshots, memory)
    storage = dict(storage or {})
    if set(storage) - {"ram"}:
        raise ValueError(f"{where}: with stop= snapshots stay in 'ram'; storage names {sorted(set(storage) - {'ram'})}")
    x_start = engine.own(x0, where)
    try:
        done = stop(x_start, 0)
    except Exception as e:
        _note(e, f"{where}: raised in stop(x_0, 0)")
        raise
    if done:
        raise ValueError(f"{where}: stop(x_0, 0) is true: there is no step to differentiate")
    measure, y, pull, ambient = _measure_first_record(engine, step, x_start, params, where)
    if memory is not None:
        S, T = measure.state_bytes, measure.tape_bytes
        snapshots = int((memory - T) // S) if S > 0 else 1
        if snapshots < 1:
            raise InfeasibleBudget(
                f"{where}: memory={memory:.0f} bytes cannot hold one snapshot ({S} bytes) beside one tape "
                f"({T} bytes); the smallest budget with which a schedule exists is {S + T} bytes",
                budget=memory, minimum=S + T)
    run = _Run(engine=engine, step=step, x0=x_start, n=None, params=params, schedule=None, predicted=None,
               measure=measure, first=(y, pull, ambient), storage=storage, progress=progress,
               check_finite=check_finite, where=where)
    run.planner, run.stop = online(snapshots=snapshots), stop
    return run


def gradient(
    step: Callable,
    x0,
    *,
    n_steps: int | None = None,
    loss: Callable,
    params=None,
    schedule: Schedule | None = None,
    snapshots: int | None = None,
    memory: float | str | None = None,
    storage: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    check_finite: bool = False,
    engine=None,
    stop: Callable | None = None,
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
        engine: the AD engine the step is written in (NOTE [ The engine protocol ] in revolve/engine.py);
            None for ``revolve.ad``. ``revolve.integrations.torch.gradient`` passes its torch engine.
        stop: instead of n_steps, ``stop(x_i, i) -> bool`` asked on each state (x_0 first): the forward ends at
            the first x_n for which it is true, and loss(x_n) is differentiated. The snapshots are then
            decided as the steps arrive by the online planner (``revolve.online(snapshots=...)``; memory=
            gives it as many slots as fit beside one tape), the snapshots stay in RAM, and
            ``stats.predicted`` is the simulator's count for the stream it emitted.

    Returns:
        ``GradientResult(value, grad_x0, grad_params, stats)``; grad_params is None without params.
        The step is called exactly ``stats.forward_evaluations`` times, what the schedule evaluates: the
        recording of step 0 that measures it is the schedule's first evaluation of step 0.

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
    if not callable(loss):
        raise TypeError(f"{where}: step and loss must be callables, got {type(step).__name__} and {type(loss).__name__}")
    if not callable(step):
        raise TypeError(f"{where}: step and loss must be callables, got {type(step).__name__} and {type(loss).__name__}")
    engine = engine or _numpy_engine()
    return _run_gradient(where, engine, step, x0, n_steps=n_steps, loss=loss, params=params, schedule=schedule,
                         snapshots=snapshots, memory=memory, storage=storage, progress=progress,
                         check_finite=check_finite, stop=stop)


def _run_gradient(where, engine, step, x0, *, n_steps, loss, params, schedule, snapshots, memory, storage,
                  progress, check_finite, stop=None) -> GradientResult:
    """``gradient`` for any engine: measure, plan, forward, loss, backward, and clean up on every path."""
    # NOTE [ The caller's x0 and in-place steps ]: the executor works on the engine's own copy of x0 (numpy:
    # a private copy; a step gets a writeable array of its own before each advance, snapshots and arrays a
    # tape keeps are read-only, and snapshots are copies), so a step that updates its input in place gets
    # the exact gradient and the caller's x0 is never changed.
    guard = TerminationGuard(enabled=True)  # SIGTERM unwinds like SIGINT, so disk snapshots are removed
    run = None
    try:
        run = _start(where, engine, step, x0, n_steps, params, schedule, snapshots, memory, storage, progress,
                     check_finite, stop)
        guard_needed = run.predicted is not None and bool(set(run.predicted.peak_snapshots_by_storage) - {"ram"})
        if not guard_needed:
            guard.restore()
        x_end = run.forward()
        t = time.perf_counter()
        try:
            value, adj = engine.value_and_grad(loss, x_end)
        except Exception as e:
            _note(e, f"{where}: raised in loss(x_{run.n})")
            raise
        del x_end
        run.t_loss += time.perf_counter() - t
        ambient = engine.ambient()  # the stream plain evaluation would leave: after n steps and the loss
        try:
            grad_x0, grad_params = run.backward(adj)
        finally:
            engine.reenter(ambient)
        del adj
        stats = run.stats()
        stats = ExecutionStats(**{**stats.__dict__, "wall_time": stats.wall_time + run.t_loss})
    finally:
        if run is not None:
            run.close()
        guard.restore()
    return GradientResult(value=value, grad_x0=grad_x0, grad_params=grad_params, stats=stats)
