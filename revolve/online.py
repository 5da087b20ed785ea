"""Online checkpointing: schedules for a number of steps that is not known until the forward ends.

The forward runs until the user's stop condition; before each step the planner decides whether the current
state becomes a snapshot (and which snapshot it replaces); when the forward ends at n steps, the reverse
sweep reverses all n steps from the snapshots held, each segment between two held snapshots by Revolve
(``revolve.binomial``) with the slots left at that point.

Two ways the forward can end (the planner tells them apart by the number of steps it has advanced):

* **The last step is known before it runs** (a fixed end time reached by the next step, Stumm and Walther's
  setting): the forward advances steps 0..n-2, then ``finish(n)`` is called with the working state x_{n-1};
  the reverse records step n-1 at once. The offline optimum for this case is t(n, s) =
  ``binomial_cost(n, snapshots=s)`` advances.
* **The stop is seen after the step** (``while not converged(x): x = step(x)``): the forward advances all n
  steps, then ``finish(n)`` is called with the working state x_n. Every step was advanced once before n was
  known, so even a planner told n in advance needs t(n + 1, s) advances here (an (n+1)-step schedule whose
  last record and reverse are left out); the online planners reach it wherever they reach t(n + 1, s) in the
  first case.

NOTE [ Online invariants ]
  1. A snapshot decision is made for x_i before step i runs; ``Discard`` comes before ``Snapshot``, so at most
     ``snapshots`` states are stored at any moment, x_0 included (it is stored first and kept to the end).
  2. Held snapshots p_0 = 0 < p_1 < ... < p_k split the steps into segments; segment j (from p_j to the next
     held index, or to the end) is reversed with c_j = s - j slots (its own and the free ones), so the reverse
     sweep costs sum_j t(L_j, c_j) advances (t(0, c) = 0). ``online_cost`` counts exactly this without
     generating actions; the tests check it against ``revolve.simulate`` of the full stream.
  3. Optimality window (our derivation; it explains why Stumm and Walther's Algorithm I can be optimal up to
     beta(s, 2) and no online rule beyond): with the last step known, the stream reaches t(n, s) for n in
     (beta(s, r-1), beta(s, r)] if and only if all s slots hold snapshots and every segment has beta(c_j, r-2) <= L_j <= beta(c_j, r-1) (the
     last segment's length counts the steps before x_{n-1}). Because sum_j t(L_j, c_j) >= sum_j
     [(r-1) L_j - beta(c_j + 1, r-2)] = t(n, s) - (n - 1), with equality exactly inside those windows
     (t(., c) is convex and piecewise linear with these breakpoints; the sum of the lines is t(n, s) by the
     hockey-stick identity).

References:
    P. Stumm, A. Walther. New algorithms for optimal online checkpointing. SIAM J. Sci. Comput.
    32(2):836-854, 2010. doi:10.1137/080742439
    Q. Wang, P. Moin, G. Iaccarino. Minimal repetition dynamic checkpointing algorithm for unsteady adjoint
    calculation. SIAM J. Sci. Comput. 31(4):2549-2567, 2009. doi:10.1137/080727890
    A. Griewank, A. Walther. Algorithm 799: revolve. ACM TOMS 26(1):19-45, 2000. doi:10.1145/347837.347846
"""

from __future__ import annotations

import numbers
from bisect import insort
from functools import lru_cache
from typing import Iterable, Iterator, Literal

from ._check import _short
from .actions import (
    Action,
    _advance,
    _discard,
    _record,
    _restore,
    _reverse,
    _snapshot,
)
from .binomial import _cost, _revolve_actions, beta
from .schedule import Schedule, _shifted

__all__ = ["online", "OnlinePlanner", "online_cost", "ALGORITHMS"]

ALGORITHMS = ("auto", "stumm-walther", "wang-moin")
_INF_LEVEL = float("inf")  # Wang-Moin's level of x_0: never dispensable


def _check_snapshots(where: str, value) -> int:
    """snapshots as an int >= 1, or an error naming the argument, the value and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: snapshots must be an integer >= 1 (slots for stored states, x_0 included), "
                        f"got {_short(value)} of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{where}: snapshots must be an integer >= 1 (slots for stored states, x_0 included), "
                         f"got {_short(value)}")
    return int(value)


def _check_algorithm(where: str, value) -> str:
    if value not in ALGORITHMS or not isinstance(value, str):
        raise ValueError(f"{where}: algorithm must be one of {', '.join(repr(a) for a in ALGORITHMS)}, "
                         f"got {_short(value)}")
    return value


@lru_cache(maxsize=1 << 16)
def _t(length: int, c: int) -> int:
    """t(length, c) advances to reverse ``length`` steps from a stored state with c slots; t(0, c) = 0."""
    return 0 if length <= 0 else _cost(length, c)


def _reverse_cost(held: list[int], s: int, end: int) -> int:
    """Advances of the reverse sweep of steps 0..end-1 from the held snapshots (NOTE [ Online invariants ] 2)."""
    total = 0
    k = len(held) - 1
    for j in range(k):
        total += _t(held[j + 1] - held[j], s - j)
    return total + _t(end - held[k], s - k)


# -- the decision rules ------------------------------------------------------------------------------------
# Each rule sees the held snapshots (sorted) before step i runs and answers (store x_i?, index to discard or
# None). The planner applies the answer; the rules keep only what they need to decide.


class _StummWaltherI:
    """Stumm and Walther 2010, Algorithm I: the online placement that is optimal for every n <= beta(s, 2).

    Phases, in the paper's structure (our own formulation): phase 0 stores x_0..x_{s-1} and skips x_s. Phase
    k = 1..s-1 stores the o = s - k states after the skipped one: the first replaces the latest checkpoint not
    yet fixed and is fixed from then on (it sits where Revolve puts a checkpoint for n = beta(s, 2)); each
    following one replaces the earliest checkpoint not yet fixed; the state after them is skipped. Phase k ends
    at P_k = P_{k-1} + s - k + 1 (P_0 = s), the last at P_{s-1} = beta(s, 2) - 2. Why it is optimal: every
    configuration it leaves satisfies the r = 2 window of NOTE [ Online invariants ] 3 (1 <= L_j <= s - j + 1);
    the tests check t(n, s) for every n <= beta(s, 2), s <= 50, against the simulator.
    """

    def __init__(self, s: int):
        self.s = s
        self.fixed = {0}
        self.phase = 0
        self.start = 0  # phase k >= 1 stores x_{start+1} .. x_{start+o}; x_{start+o+1} is skipped
        self.last_decision = beta(s, 2) - 2  # P_{s-1}: the rule decides states 0 .. beta(s, 2) - 2

    def decide(self, i: int, held: list[int]):
        s = self.s
        if self.phase == 0:
            if i < s:
                return True, None
            # i == s: skipped; phase 1 starts after it
            self.phase, self.start = 1, i
            return False, None
        o = s - self.phase
        q = i - self.start - 1  # position within the phase: 0..o-1 store, o skips
        if q < o:
            unfixed = [p for p in held if p not in self.fixed]
            if q == 0:
                # the phase's first state replaces the latest unfixed checkpoint and is fixed
                self.fixed.add(i)
                return True, unfixed[-1]
            return True, unfixed[0]
        self.phase, self.start = self.phase + 1, i
        return False, None


class _StummWaltherII:
    """The extension to beta(s, 2) < n <= beta(s, 3): repetition number at most 3 (Stumm and Walther 2010,
    Algorithm II), near-optimal.

    Our formulation of the second algorithm (following the rules of the authors' reference implementation,
    revolve.cpp's ``Online_r3``): the targets F_k = F_{k-1} + beta(s - k + 1, 2) (F_0 = 0) are where Revolve
    puts its checkpoints for n = beta(s, 3); a snapshot taken at a target is fixed. A snapshot is taken three
    steps after the previous one (the last segment, reversed with one slot, stays within beta(1, 2) = 3) or
    at a target. It replaces the latest unfixed checkpoint p_j whose two segments merged still fit the r = 3
    window of their slot count (L <= beta(s - j + 1, 2)); at a target reached one step after a snapshot, that
    snapshot itself. Every segment stays within beta(c, 2), so each step is advanced at most 3 times. Right
    after each snapshot the last segment is one step long: one advance above t(n, s) at that n is
    unavoidable there (NOTE [ Online invariants ] 3). Measured: at most 1 above t(n, s) for s <= 8 and at most
    2 for s <= 50 over the whole range, with the same totals as the reference implementation for
    s = 4, 5, 6, 8, 10 (pyrevolve 2.2.8).
    """

    def __init__(self, s: int):
        self.s = s
        self.fixed = {0}  # Algorithm I's fixed checkpoints sit where Revolve puts them for beta(s, 2): they move on
        targets, f = [], 0
        for k in range(1, s):
            f += beta(s - k + 1, 2)
            targets.append(f)
        self.targets = targets
        self.next_target = 0
        self.last_decision = beta(s, 3) - 2

    def _victim(self, held: list[int], i: int) -> int | None:
        """The position in ``held`` that x_i replaces: the latest unfixed p_j whose two segments merged fit."""
        s = self.s
        ell = i - held[-1]
        for j in range(len(held) - 1, 0, -1):  # latest first
            if held[j] in self.fixed:
                continue
            # replacing p_j merges segments j-1 and j into one, reversed with s - (j - 1) slots
            right = (held[j + 1] if j + 1 < len(held) else held[j] + ell) - held[j]
            if held[j] - held[j - 1] + right <= beta(s - j + 1, 2):
                return j
        return None

    def decide(self, i: int, held: list[int]):
        s = self.s
        if s == 1:
            return False, None
        ell = i - held[-1]
        target = self.targets[self.next_target] if self.next_target < len(self.targets) else -1
        hit = i == target
        if ell < 3 and not hit:
            if not (ell == 2 and target == i + 2):
                return False, None
            # Two steps before a target: if waiting puts a snapshot at x_{target-1} that x_target could not
            # replace (the merged segment would pass beta(2, 2)), a one-step segment would be left with two
            # slots; a snapshot now instead keeps every segment within beta(c, 2) and the excess at most 2.
            j = self._victim(held, i + 1)
            if j is not None:
                later = sorted(held[:j] + held[j + 1:] + [i + 1])
                if self._victim(later, i + 2) == len(later) - 1:
                    return False, None
        victim = self._victim(held, i)
        if victim is None:
            free = [j for j in range(1, len(held)) if held[j] not in self.fixed]
            if not free:
                return False, None
            # no merge fits: the replacement that keeps the next reverse cheapest
            victim = min(free, key=lambda j: (_reverse_cost(sorted(held[:j] + held[j + 1:] + [i]), s, i + 2), -j))
        if hit:
            self.fixed.add(i)
            self.next_target += 1
        return True, held[victim]


class _WangMoin:
    """Wang, Moin and Iaccarino 2009, Algorithm 1 (dynamic checkpointing with checkpoint levels), any n.

    x_0 has level infinity. Every state is stored: into a free slot at level 0; else, if some checkpoint is
    dispensable (a later checkpoint has a higher level), the latest dispensable one gives way and x_i gets
    level 0; else the latest checkpoint gives way and x_i gets its level + 1. The paper's guarantee, as checked
    here: at every n, each segment between held snapshots is reversed with a repetition number at most the
    optimal r(n, s) (beta(s, r-1) < n <= beta(s, r)), so no step is advanced more than r + 1 times in all.
    """

    def __init__(self, s: int, levels: dict[int, float] | None = None):
        self.s = s
        self.levels: dict[int, float] = dict(levels or {})
        self.last_decision = None  # any n

    def decide(self, i: int, held: list[int]):
        s, levels = self.s, self.levels
        if i == 0:
            levels[0] = _INF_LEVEL
            return True, None
        if len(held) < s:
            levels[i] = 0
            return True, None
        if len(held) == 1:  # s == 1: only x_0, which stays
            return False, None
        higher = -1.0  # the highest level among the later checkpoints seen so far
        for j in range(len(held) - 1, 0, -1):
            lv = levels[held[j]]
            if lv < higher:  # dispensable: the latest such
                del levels[held[j]]
                levels[i] = 0
                return True, held[j]
            if lv > higher:
                higher = lv
        victim = held[-1]
        levels[i] = levels.pop(victim) + 1
        return True, victim


class _Auto:
    """Stumm-Walther I up to beta(s, 2), their extension up to beta(s, 3), then Wang-Moin with every checkpoint
    at level 2 (each was placed for repetition number 3)."""

    def __init__(self, s: int, allow_beyond: bool):
        self.s = s
        self.stage: object = _StummWaltherI(s)
        self.allow_beyond = allow_beyond

    def decide(self, i: int, held: list[int]):
        stage = self.stage
        while stage.last_decision is not None and i > stage.last_decision:
            if isinstance(stage, _StummWaltherI):
                stage = _StummWaltherII(self.s)
            elif isinstance(stage, _StummWaltherII):
                if not self.allow_beyond:
                    b3 = beta(self.s, 3)
                    raise ValueError(
                        f"revolve.online: algorithm='stumm-walther' plans at most beta(s, 3) = {b3:,} steps with "
                        f"snapshots={self.s} (the forward is at step {i}); use algorithm='auto' (Wang-Moin beyond) "
                        f"or more snapshots")
                stage = _WangMoin(self.s, {p: (_INF_LEVEL if p == 0 else 2) for p in held})
            self.stage = stage
        return stage.decide(i, held)


def _rule(s: int, algorithm: str):
    if algorithm == "wang-moin":
        return _WangMoin(s)
    return _Auto(s, allow_beyond=(algorithm == "auto"))


# -- the reverse sweep -------------------------------------------------------------------------------------

def _reverse_actions(held: tuple[int, ...], s: int, n: int, working_at_last: bool) -> Iterator[Action]:
    """Reverse steps n-1..0 from the held snapshots: each segment by Revolve with the slots left."""
    end = n
    if working_at_last:  # the working state is x_{n-1}: its step is recorded at once
        yield _record(n - 1)
        yield _reverse(n - 1)
        end = n - 1
    for j in range(len(held) - 1, -1, -1):
        p = held[j]
        length = end - p
        if length > 1:
            # Revolve on the segment with c = s - j slots (its own included): its opening Snapshot(0) is the held
            # one, so the working state is restored instead, and its closing Discard(0) frees it
            # (NOTE [ Online invariants ] 2)
            sub = _revolve_actions(length, s - j)
            next(sub)  # Snapshot(0)
            yield _restore(p)
            yield from _shifted(sub, p)
        else:
            if length == 1:
                yield _restore(p)
                yield _record(p)
                yield _reverse(p)
            yield _discard(p)
        end = p


# -- the public planner ------------------------------------------------------------------------------------

class OnlinePlanner:
    """An online checkpointing schedule, driven step by step while the forward runs (see ``revolve.online``).

    Driving it (how an executor runs it; one planner serves one forward and reverse):

    1. Before running step i (i = 0, 1, ... in order) and while the forward goes on, call ``forward(i)`` and run
       its actions: ``Discard(j)`` (free x_j), then ``Snapshot(i)`` (store a copy of the working state x_i) if
       the planner keeps x_i, then ``Advance(i, i + 1)`` (run step i without recording).
    2. When the forward ends, call ``finish(n)`` and run the actions it yields, in order: ``Restore``,
       ``Advance``, ``Record``, ``Reverse``, ``Snapshot``, ``Discard`` as in any revolve schedule.
       * The stop is seen on x_n after step n-1 ran (n calls of ``forward``): ``finish(n)``; the working
         state is x_n, where the loss and its adjoint are evaluated before the first action.
       * Step n-1 is known to be the last before it runs (n-1 calls of ``forward``): ``finish(n)`` with the
         working state x_{n-1}; its first action is ``Record(n - 1)``, whose output x_n gives the loss.
    The concatenated stream obeys NOTE [ Schedule invariants ] of ``revolve.actions`` and holds at most
    ``snapshots`` states (x_0 included) at any time; ``schedule(n)`` is that stream for a given n.

    Attributes:
        snapshots: slots for stored states, x_0 included.
        algorithm: "auto", "stumm-walther" or "wang-moin".
        steps: steps advanced so far.
        held: the indices of the stored states, ascending.
        max_steps: the most steps the algorithm plans (beta(s, 3) for "stumm-walther" when the last step is
            known), or None for no limit.
    """

    def __init__(self, snapshots: int, algorithm: str = "auto"):
        where = "revolve.OnlinePlanner"
        self.snapshots = _check_snapshots(where, snapshots)
        self.algorithm = _check_algorithm(where, algorithm)
        self.max_steps = beta(self.snapshots, 3) if self.algorithm == "stumm-walther" else None
        self._rule = _rule(self.snapshots, self.algorithm)
        self._held: list[int] = []
        self.steps = 0
        self._finished = False

    @property
    def held(self) -> tuple[int, ...]:
        return tuple(self._held)

    def __repr__(self) -> str:
        return (f"OnlinePlanner(snapshots={self.snapshots}, algorithm={self.algorithm!r}, steps={self.steps}, "
                f"held={len(self._held)})")

    def _decide(self, i: int) -> int | None:
        """Apply the rule's decision for x_i to ``held``; return the discarded index (or None), -1 if x_i is not kept."""
        store, victim = self._rule.decide(i, self._held)
        if not store:
            return -1
        if victim is not None:
            self._held.remove(victim)
        elif len(self._held) >= self.snapshots:
            raise _bug(f"rule stores x_{i} into a full store {self._held}")
        insort(self._held, i)
        return victim

    def forward(self, i: int) -> list[Action]:
        """The actions before and of step i, which is not known to be the last: [Discard(j)], [Snapshot(i)], Advance(i, i + 1).

        Raises:
            ValueError: i is not the next step, or the planner has finished, or ``algorithm='stumm-walther'``
                and the forward passes its range (the message gives it).
        """
        self._check_open("forward")
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i != self.steps:
            raise ValueError(f"revolve.OnlinePlanner.forward: steps run in order; the next is step {self.steps}, "
                             f"got {_short(i)}")
        i = int(i)
        victim = self._decide(i)
        out: list[Action] = []
        if victim is not None and victim >= 0:
            out.append(_discard(victim))
        if victim != -1:
            out.append(_snapshot(i))
        out.append(_advance(i, i + 1))
        self.steps = i + 1
        return out

    def finish(self, n: int) -> Iterator[Action]:
        """The rest of the schedule once the forward has ended at n steps: the reverse sweep (iterate it once).

        Arguments:
            n: the number of steps: ``steps`` (the working state is x_n) or ``steps + 1`` (the working state is
                x_{n-1} and step n-1, known to be the last, has not run).

        Raises:
            ValueError: n is neither, or the planner has finished already.
        """
        self._check_open("finish")
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n not in (self.steps, self.steps + 1) or n < 1:
            allowed = f"{self.steps} or {self.steps + 1}" if self.steps else "1"
            raise ValueError(f"revolve.OnlinePlanner.finish: n must be the steps advanced ({self.steps}, working "
                             f"state x_n) or one more (working state x_{{n-1}}), so {allowed}; got {_short(n)}")
        n = int(n)
        self._finished = True
        return _reverse_actions(tuple(self._held), self.snapshots, n, working_at_last=(n == self.steps + 1))

    def _check_open(self, what: str) -> None:
        if self._finished:
            raise ValueError(f"revolve.OnlinePlanner.{what}: this planner has finished; make a new one with "
                             f"revolve.online(snapshots={self.snapshots}, algorithm={self.algorithm!r})")

    def schedule(self, n: int, *, last_step_known: bool = True) -> Schedule:
        """The complete stream this planner's algorithm emits for a forward that ends at n steps.

        Generated lazily by a fresh planner of the same kind (this one is not touched): ``forward(i)`` for the
        steps run before the end, then ``finish(n)``.

        Arguments:
            n: number of steps, >= 1.
            last_step_known: True (default) if step n-1 is known to be the last before it runs (n-1 forward
                calls); False if the stop is seen after it (n forward calls).

        Returns:
            A ``Schedule`` (kind "online").

        Example:
            >>> from revolve import binomial_cost, online, simulate
            >>> stats = simulate(online(snapshots=5).schedule(21))
            >>> stats.advances == binomial_cost(21, snapshots=5), stats.peak_snapshots
            (True, 5)
        """
        where = "revolve.OnlinePlanner.schedule"
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"{where}: n must be an integer >= 1, got {_short(n)}")
        if not isinstance(last_step_known, bool):
            raise TypeError(f"{where}: last_step_known must be True or False, got {_short(last_step_known)}")
        n = int(n)
        s, algorithm = self.snapshots, self.algorithm
        runs = n - 1 if last_step_known else n
        if self.max_steps is not None and runs > self.max_steps - 1:
            raise ValueError(f"{where}: algorithm='stumm-walther' plans at most beta(s, 3) = {self.max_steps:,} "
                             f"steps with snapshots={s} (the forward would run {runs} before the end); use "
                             f"algorithm='auto'")

        def actions() -> Iterator[Action]:
            p = OnlinePlanner(s, algorithm)
            for i in range(runs):
                yield from p.forward(i)
            yield from p.finish(n)

        return Schedule(actions, n_steps=n, kind="online",
                        params={"snapshots": s, "algorithm": algorithm, "last_step_known": last_step_known})


def online(*, snapshots: int, algorithm: Literal["auto", "stumm-walther", "wang-moin"] = "auto") -> OnlinePlanner:
    """An online checkpointing planner: snapshots are decided as steps arrive, n is known only at the end.

    Algorithms:
        "auto" (default): Stumm and Walther's Algorithm I, which reaches the offline optimum t(n, s) for every
            n <= beta(s, 2) = (s + 1)(s + 2)/2; then their extension, repetition number at most 3 for
            n <= beta(s, 3); then Wang, Moin and Iaccarino's dynamic checkpointing for any n.
        "stumm-walther": the first two only; the forward may run at most beta(s, 3) steps (an error beyond).
        "wang-moin": Wang-Moin from the first step (every state is stored on arrival; repetition number at
            most the optimal r(n, s) in each reversed segment).
    Figures measured against t(n, s) up to n = 10^6 are in docs/theory.md ("Online checkpointing").

    Arguments:
        snapshots: slots for stored states, counting the one that holds x_0, >= 1.
        algorithm: one of the above.

    Returns:
        An ``OnlinePlanner``: ``forward(i)`` before each step, ``finish(n)`` at the end (its docstring says how
        an executor drives it), ``schedule(n)`` for the whole stream.

    Raises:
        TypeError, ValueError: snapshots not an integer >= 1, or an unknown algorithm.

    Example:
        >>> from revolve import online
        >>> planner = online(snapshots=3)
        >>> x, i = 0.0, 0
        >>> while x < 5.0:                      # the stop condition, seen on x_i
        ...     actions = planner.forward(i)    # [..., Snapshot(i)?, Advance(i, i + 1)]: run them
        ...     x, i = x + 1.0, i + 1
        >>> i, planner.held
        (5, (0, 1, 4))
        >>> reverse = list(planner.finish(i))   # working state x_5: restore, recompute, record, reverse
        >>> reverse[:4]
        [Restore(index=4), Record(step=4), Reverse(step=4), Discard(index=4)]

    References:
        Stumm & Walther, SIAM J. Sci. Comput. 32(2):836-854, 2010. doi:10.1137/080742439
        Wang, Moin & Iaccarino, SIAM J. Sci. Comput. 31(4):2549-2567, 2009. doi:10.1137/080727890
    """
    where = "revolve.online"
    return OnlinePlanner(_check_snapshots(where, snapshots), _check_algorithm(where, algorithm))


def online_cost(n: int | Iterable[int], *, snapshots: int, algorithm: str = "auto",
                last_step_known: bool = True) -> int | list[int]:
    """The advances of the online stream for n steps, counted without generating actions.

    Runs only the placement decisions and sums Revolve's closed-form cost over the segments
    (NOTE [ Online invariants ] 2): O(n s) time, so n = 10^6 takes seconds where replaying the actions takes
    minutes. Given several n (any order), one pass answers them all. Forward evaluations are advances + n.

    Example:
        >>> from revolve import binomial_cost, online_cost
        >>> online_cost(21, snapshots=5) == binomial_cost(21, snapshots=5)
        True
    """
    where = "revolve.online_cost"
    s = _check_snapshots(where, snapshots)
    algorithm = _check_algorithm(where, algorithm)
    single = isinstance(n, numbers.Integral) and not isinstance(n, bool)
    ns = [n] if single else list(n)
    for v in ns:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{where}: n must be an integer >= 1 (or an iterable of them), got {_short(v)}")
    p = OnlinePlanner(s, algorithm)
    out = {}
    # the config that serves n is the one after the decisions for x_0 .. x_{runs-1}
    for v in sorted(set(int(v) for v in ns)):
        runs = v - 1 if last_step_known else v
        while p.steps < runs:
            p._decide(p.steps)
            p.steps += 1
        if not p._held:  # n = 1 with the last step known: nothing stored, nothing advanced
            out[v] = 0
            continue
        end = v - 1 if last_step_known else v
        out[v] = runs + _reverse_cost(p._held, s, end)
    return out[int(ns[0])] if single else [out[int(v)] for v in ns]


def _bug(msg: str):
    from .errors import RevolveInternalError

    return RevolveInternalError(f"revolve.online: {msg} (this is a bug in revolve)")
