import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from revolve import (
    Chain, InfeasibleBudget, binomial, binomial_cost, frontier, min_memory, optimal, periodic, simulate, store_all,
)

from .oracles import exhaustive_optimum


@st.composite
def int_chains(draw, max_steps=12):
    """Chains with small integral sizes, so a unit of 1 byte discretizes them exactly; half share states with tapes."""
    n = draw(st.integers(1, max_steps))
    shared = draw(st.booleans())
    f = draw(st.lists(st.integers(1, 9), min_size=n, max_size=n))
    b = draw(st.lists(st.integers(1, 9), min_size=n, max_size=n))
    s = draw(st.lists(st.integers(1, 12), min_size=n + 1, max_size=n + 1))
    t = draw(st.lists(st.integers(0 if shared else 1, 20), min_size=n, max_size=n))
    flags = {}
    if shared:  # tapes that keep their step's input or output (NOTE [ Schedule invariants ] 8)
        flags = {name: draw(st.lists(st.booleans(), min_size=n, max_size=n))
                 for name in ("tape_holds_input", "tape_holds_output")}
    if draw(st.booleans()):  # working memory: overheads of evaluating and reversing, adjoints
        flags["forward_overhead"] = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
        flags["backward_overhead"] = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
        flags["adjoint_bytes"] = draw(st.lists(st.integers(0, 12), min_size=n + 1, max_size=n + 1))
        if draw(st.booleans()):
            flags["record_overhead"] = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
    return Chain(forward_cost=f, backward_cost=b, state_bytes=s, tape_bytes=t, **flags)


def exact_optimal(chain, memory):
    """Plan with one-byte units (exact for integral sizes)."""
    return optimal(chain, memory=memory, slots=int(memory), lower_bound=False)


@pytest.mark.parametrize("n", [2, 5, 9, 17, 30])
@pytest.mark.parametrize("s", [1, 2, 3, 5])
def test_uniform_big_tapes_meet_binomial(n, s):
    # tapes so large that only one fits beside the s snapshots: the DP and Revolve solve the same problem
    tape = 1000
    chain = Chain(forward_cost=1, backward_cost=0, state_bytes=1, tape_bytes=tape, n_steps=n)
    sched = exact_optimal(chain, s + tape)
    stats = simulate(sched, chain)
    assert stats.advances == binomial_cost(n, snapshots=s)
    assert stats.peak_memory <= s + tape


@given(chain=int_chains(), data=st.data())
@settings(max_examples=40)
def test_never_worse_than_any_baseline(chain, data):
    n = chain.n_steps
    baselines = [store_all(n), binomial(n, snapshots=data.draw(st.integers(1, n + 1)))]
    baselines.append(periodic(n, every=data.draw(st.integers(1, n))))
    for base in baselines:
        ref = simulate(base, chain)
        sched = exact_optimal(chain, max(ref.peak_memory, 1))
        got = simulate(sched, chain)
        assert got.peak_memory <= ref.peak_memory
        assert got.time <= ref.time + 1e-9, (base, got.time, ref.time)
        assert math.isclose(got.time, sched.params["predicted_time"], rel_tol=1e-12)


@given(chain=int_chains(max_steps=30), frac=st.floats(0.0, 1.0), slots=st.integers(1, 300))
@settings(max_examples=40)
def test_any_slots_stay_within_budget(chain, frac, slots):
    lo = min_memory(chain)
    hi = simulate(store_all(chain.n_steps), chain).peak_memory + 1
    memory = lo + frac * (hi - lo) + 0.37  # not a multiple of anything
    sched = optimal(chain, memory=memory, slots=slots)
    stats = simulate(sched, chain)
    assert stats.peak_memory <= memory
    if sched.params["predicted_time"] is not None:
        assert math.isclose(stats.time, sched.params["predicted_time"], rel_tol=1e-12)
        assert sched.params["lower_bound_time"] <= stats.time + 1e-9
        assert sched.params["discretization_loss"] >= 0


def test_more_slots_lose_less():
    rng = np.random.default_rng(3)
    chain = Chain(forward_cost=rng.uniform(1, 3, 30), backward_cost=rng.uniform(1, 5, 30),
                  state_bytes=rng.uniform(1e5, 1e6, 31), tape_bytes=rng.uniform(1e6, 5e6, 30))
    memory = 0.25 * chain.values("tape_bytes").sum()
    coarse = optimal(chain, memory=memory, slots=20).params
    fine = optimal(chain, memory=memory, slots=800).params
    assert fine["predicted_time"] <= coarse["predicted_time"]
    assert fine["discretization_loss"] <= coarse["discretization_loss"]


def test_exhaustive_search_small_chains():
    """The DP against shortest paths over all simulator states, on random chains of up to 5 steps.

    The DP is optimal within rotor's class of schedules; the exhaustive search spans every schedule. It
    never beats the exhaustive optimum (that would be an invalid schedule) and reaches it on nearly all
    chains; the misses are interleaved schedules outside the class (docs/theory.md).
    """
    rng = np.random.default_rng(11)
    matches, worst, trials = 0, 0.0, 60
    for _ in range(trials):
        n = int(rng.integers(1, 6))
        F = rng.integers(1, 10, n).astype(float)
        B = rng.integers(1, 10, n).astype(float)
        S = rng.choice([1, 1, 2, 12, 20], n + 1).astype(float)
        T = rng.choice([1, 3, 6, 15], n).astype(float)
        chain = Chain(forward_cost=F, backward_cost=B, state_bytes=S, tape_bytes=T)
        lo = min_memory(chain)
        assert exhaustive_optimum(F, B, S, T, lo - 1) == np.inf  # min_memory is the true minimum
        memory = float(rng.integers(int(lo), int(lo + T.sum()) + 1))
        best = exhaustive_optimum(F, B, S, T, memory)
        got = simulate(exact_optimal(chain, memory), chain).time
        assert got >= best - 1e-9
        matches += got <= best + 1e-9
        worst = max(worst, (got - best) / best)
    assert matches >= trials - 3, (matches, worst)
    assert worst < 0.05


@pytest.mark.parametrize("working", [False, True])
def test_exhaustive_search_with_shared_states(working):
    """As above, with tapes that keep their step's input or output (and, with ``working``, overheads and
    adjoints): min_memory is the true minimum and the DP's time the exhaustive optimum on every chain tried."""
    rng = np.random.default_rng(5 + working)
    for _ in range(60):
        n = int(rng.integers(1, 6))
        F = rng.integers(1, 10, n).astype(float)
        B = rng.integers(1, 10, n).astype(float)
        S = rng.choice([1, 1, 2, 12, 20], n + 1).astype(float)
        T = rng.choice([0, 1, 3, 6, 15], n).astype(float)
        hin, hout = rng.random(n) < 0.5, rng.random(n) < 0.5
        work = {}
        if working:
            work = dict(fo=rng.choice([0, 2, 10, 30], n), bo=rng.choice([0, 3, 10, 30], n), adj=rng.choice([0, 1, 5, 20], n + 1),
                        ro=rng.choice([0, 5, 30], n))
        chain = Chain(forward_cost=F, backward_cost=B, state_bytes=S, tape_bytes=T,
                      tape_holds_input=hin.tolist(), tape_holds_output=hout.tolist(),
                      **({} if not working else dict(forward_overhead=work["fo"], backward_overhead=work["bo"],
                                                     adjoint_bytes=work["adj"], record_overhead=work["ro"])))
        lo = min_memory(chain)
        assert exhaustive_optimum(F, B, S, T, lo, hin, hout, **work) < np.inf
        assert exhaustive_optimum(F, B, S, T, lo - 1, hin, hout, **work) == np.inf
        memory = max(1.0, float(rng.integers(int(lo), int(lo + T.sum() + S.sum()) + 1)))
        best = exhaustive_optimum(F, B, S, T, memory, hin, hout, **work)
        sched = exact_optimal(chain, memory)
        stats = simulate(sched, chain)
        assert stats.peak_memory <= memory
        assert stats.time == pytest.approx(best, abs=1e-9)


def test_infeasible_budget_names_minimum():
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=10, tape_bytes=100, n_steps=5)
    assert min_memory(chain) == 110
    with pytest.raises(InfeasibleBudget, match="smallest budget with which one exists is 110 bytes") as info:
        optimal(chain, memory=109)
    assert info.value.minimum == 110 and isinstance(info.value, ValueError)
    assert simulate(optimal(chain, memory=110), chain).peak_memory <= 110


@pytest.mark.parametrize(
    "kw,exc,msg",
    [
        (dict(memory=0), ValueError, "memory must be > 0"),
        (dict(memory=-5), ValueError, "memory must be > 0"),
        (dict(memory=float("nan")), ValueError, "memory must be finite"),
        (dict(memory="1GB"), TypeError, "memory must be a real number"),
        (dict(memory=1e9, slots=0), ValueError, "slots must be >= 1"),
    ],
)
def test_bad_arguments(kw, exc, msg):
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=3)
    with pytest.raises(exc, match=f"revolve.optimal: {msg}"):
        optimal(chain, **kw)


def test_chain_must_be_a_chain():
    with pytest.raises(TypeError, match="chain must be a revolve.Chain"):
        optimal({"n_steps": 3}, memory=10)


def test_too_large_is_refused_with_advice():
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=5000)
    with pytest.raises(ValueError, match="use revolve.binomial"):
        optimal(chain, memory=100)


@given(chain=int_chains(max_steps=10))
@settings(max_examples=25)
def test_frontier_matches_single_budget_plans(chain):
    front = frontier(chain, slots=max(1, int(simulate(store_all(chain.n_steps), chain).peak_memory)))
    times = [p.time for p in front.points]
    mems = [p.memory for p in front.points]
    assert mems == sorted(mems) and times == sorted(times, reverse=True)
    # the last point reaches store-all's time; each point is what optimal() returns at that memory
    assert math.isclose(front.points[-1].time, simulate(store_all(chain.n_steps), chain).time)
    for p in front.points:
        if p.memory > 0:  # a chain of zero sizes has its one point at 0, which optimal() refuses as a budget
            assert math.isclose(simulate(exact_optimal(chain, p.memory), chain).time, p.time)
        sched = front.schedule(p.memory)
        assert simulate(sched, chain).peak_memory <= p.memory


def test_frontier_csv(tmp_path):
    chain = Chain(forward_cost=1, backward_cost=2, state_bytes=1, tape_bytes=3, n_steps=6)
    front = frontier(chain, slots=18)
    path = tmp_path / "f.csv"
    front.save_csv(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "memory_bytes,time,budget_bytes" and len(lines) == len(front) + 1


def test_budget_at_the_minimum_is_planned_exactly():
    """At the smallest feasible budget rounding sizes up to units loses every plan; with integral sizes the
    DP then plans in units of their greatest common divisor, which rounds nothing."""
    import warnings

    rng = np.random.default_rng(21)
    for _ in range(30):
        n = int(rng.integers(2, 6))
        F = rng.integers(1, 10, n).astype(float)
        B = rng.integers(1, 10, n).astype(float)
        S = (rng.choice([1, 3, 12, 20], n + 1) * 4096).astype(float)
        T = (rng.choice([1, 3, 6, 15], n) * 4096).astype(float)
        chain = Chain(forward_cost=F, backward_cost=B, state_bytes=S, tape_bytes=T)
        lo = min_memory(chain)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback to the minimal-memory schedule
            coarse = optimal(chain, memory=lo, slots=7)  # too few units: rounding loses it, then exact units
            fine = optimal(chain, memory=lo)  # the exact unit needs fewer than 500 units: used at once
        assert simulate(coarse, chain).peak_memory <= lo
        stats = simulate(fine, chain)
        assert stats.peak_memory <= lo
        assert stats.time == simulate(exact_optimal(chain, lo), chain).time  # one-byte units


def test_exact_unit_divides_every_size():
    from revolve.optimal import _exact_unit

    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=4096, tape_bytes=8192, n_steps=3,
                  forward_overhead=4096, record_overhead=[4096, 2048, 4096], backward_overhead=12288, adjoint_bytes=4096)
    assert _exact_unit(chain, 40960) == (2048.0, 20)
    assert _exact_unit(Chain(forward_cost=1, backward_cost=1, state_bytes=1.5, tape_bytes=3, n_steps=2), 10) is None


# -- never slower than a built-in schedule; exact at the budget's edge (issues 15 and 16) -------------------

def test_uniform_chain_issue_15_reaches_binomial():
    """State 1 B, tape 1000 B, 10 steps, 1002 B: binomial(10, snapshots=2) fits with time 40; optimal used to
    return 65 (rounding to 500 units lost the second snapshot) and reported a discretization loss of 36."""
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1000, n_steps=10)
    ref = simulate(binomial(10, snapshots=2), chain)
    assert ref.peak_memory <= 1002
    sched = optimal(chain, memory=1002)
    stats = simulate(sched, chain)
    assert stats.peak_memory <= 1002
    assert stats.time == ref.time == 40
    assert sched.params["certified_gap"] == 0 and sched.params["lower_bound_time"] == 40


@pytest.mark.parametrize("n,s", [(1, 1), (2, 1), (7, 3), (13, 10), (21, 2), (34, 4), (47, 6), (58, 9), (71, 1),
                                 (88, 5), (100, 3), (100, 10)])
def test_uniform_table_equals_binomial_cost(n, s):
    """Uniform chains with tapes 1000x the state and room for s states and one tape: t(n, s) exactly (a sample of
    n <= 100, s <= 10, default slots)."""
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1000, n_steps=n)
    sched = optimal(chain, memory=1000 + s)
    stats = simulate(sched, chain)
    assert stats.advances == binomial_cost(n, snapshots=s)
    assert stats.peak_memory <= 1000 + s


def _builtins(chain):
    """Every built-in schedule for the chain: store-all, binomial for every s, periodic for every segment length,
    and the minimal-memory plan."""
    from revolve.optimal import _min_memory_actions, _min_memory_choice
    from revolve import Schedule

    n = chain.n_steps
    yield store_all(n)
    for s in range(1, n + 1):
        yield binomial(n, snapshots=s)
    for every in range(1, n + 1):
        yield periodic(n, every=every)
    yield Schedule.from_actions(_min_memory_actions(chain, _min_memory_choice(chain)[1]), n_steps=n)


@st.composite
def float_chains(draw, max_steps=7):
    """Chains with fractional sizes (decimal-looking floats, as profilers report them) and, half the time,
    working memory and shared states."""
    n = draw(st.integers(1, max_steps))
    size = st.floats(0.1, 20.0).map(lambda v: round(v, 1))
    kw = dict(forward_cost=draw(st.lists(st.integers(1, 9), min_size=n, max_size=n)),
              backward_cost=draw(st.lists(st.integers(1, 9), min_size=n, max_size=n)),
              state_bytes=draw(st.lists(size, min_size=n + 1, max_size=n + 1)),
              tape_bytes=draw(st.lists(size, min_size=n, max_size=n)))
    if draw(st.booleans()):
        kw["forward_overhead"] = draw(st.lists(size, min_size=n, max_size=n))
        kw["backward_overhead"] = draw(st.lists(size, min_size=n, max_size=n))
        kw["adjoint_bytes"] = draw(st.lists(size, min_size=n + 1, max_size=n + 1))
    if draw(st.booleans()):
        kw["tape_holds_input"] = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        kw["tape_holds_output"] = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return Chain(**kw)


@given(chain=st.one_of(int_chains(max_steps=8), float_chains()))
@settings(max_examples=60, deadline=None)
def test_never_slower_than_any_fitting_builtin(chain):
    """For each built-in schedule, optimal with that schedule's simulated peak as the budget (default slots) fits
    it and is at least as fast; the simulator is the oracle of both."""
    import warnings

    for base in _builtins(chain):
        ref = simulate(base, chain)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warned fallback
            sched = optimal(chain, memory=max(ref.peak_memory, 5e-324))  # a budget must be > 0
        got = simulate(sched, chain)
        assert got.peak_memory <= ref.peak_memory
        assert got.time <= ref.time, (base.kind, got.time, ref.time, sched.params)
        assert got.time == pytest.approx(sched.params["predicted_time"], rel=1e-12)


def test_float_sizes_at_the_budget_edge_issue_16():
    """Store-all peaks at exactly 11.7; min_memory said 11.700000000000001 (float sums in another order), so
    optimal refused the budget. Sizes are now added as exact integers everywhere."""
    from fractions import Fraction

    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=[8.9, 9.9, 7.1, 4.4], tape_bytes=[1.8, 1.9, 8.0])
    exact = float(sum(map(Fraction, [1.8, 1.9, 8.0])))
    assert simulate(store_all(3), chain).peak_memory == exact == min_memory(chain)
    sched = optimal(chain, memory=11.7)
    stats = simulate(sched, chain)
    assert stats.peak_memory <= 11.7 and stats.time == 6


@given(chain=float_chains(max_steps=6))
@settings(max_examples=40, deadline=None)
def test_min_memory_is_a_budget_that_works(chain):
    """optimal accepts exactly min_memory(chain) and its plan's simulated peak is within it; a float below it
    is refused, naming that minimum."""
    lo = min_memory(chain)
    stats = simulate(optimal(chain, memory=lo), chain)
    assert stats.peak_memory <= lo
    below = math.nextafter(lo, 0)
    if below > 0:
        with pytest.raises(InfeasibleBudget) as info:
            optimal(chain, memory=below)
        assert info.value.minimum == lo


def test_rounded_units_bound_the_exact_optimum(monkeypatch):
    """With the exact lists disabled, optimal plans in rounded units: its plan is no faster than the exact one
    and its lower bound no slower, so the certified gap covers the true loss."""
    import sys

    opt = sys.modules["revolve.optimal"]  # the module (revolve.optimal the attribute is the function)
    rng = np.random.default_rng(7)
    for _ in range(8):
        n = int(rng.integers(3, 12))
        chain = Chain(forward_cost=rng.uniform(1, 3, n), backward_cost=rng.uniform(1, 5, n),
                      state_bytes=rng.uniform(1e5, 1e6, n + 1), tape_bytes=rng.uniform(1e6, 5e6, n))
        lo = min_memory(chain)
        memory = lo + rng.uniform(0, 1) * (simulate(store_all(n), chain).peak_memory - lo)
        exact = optimal(chain, memory=memory)
        with monkeypatch.context() as m:
            m.setattr(opt, "_MAX_POINTS", -1)
            rounded = optimal(chain, memory=memory, slots=50)
        assert exact.params["method"] in ("exact", "pareto", "store_all")
        assert rounded.params["method"] in ("units", "store_all")
        t_exact = simulate(exact, chain).time
        assert simulate(rounded, chain).peak_memory <= memory
        if rounded.params["method"] == "units":
            assert rounded.params["lower_bound_time"] <= t_exact + 1e-9 <= rounded.params["predicted_time"] + 2e-9
            assert rounded.params["certified_gap"] == rounded.params["predicted_time"] - rounded.params["lower_bound_time"]


def test_min_memory_names_its_class_with_working_memory():
    """Issue 15's 2-step chain with working memory: the DP's class needs 13 bytes, the exhaustive search finds
    an interleaved schedule (step 0 recorded while step 1's tape is live, so the smaller adjoint of x_2 is the
    one held) that peaks at 12. InfeasibleBudget says its minimum is within the class."""
    F, B, S, T = [1.0, 1.0], [1.0, 1.0], [0.0, 4.0, 3.0], [5.0, 2.0]
    work = dict(fo=[2, 0], bo=[2, 3], adj=[4, 5, 1], ro=[3, 4])
    chain = Chain(forward_cost=F, backward_cost=B, state_bytes=S, tape_bytes=T, forward_overhead=work["fo"],
                  backward_overhead=work["bo"], adjoint_bytes=work["adj"], record_overhead=work["ro"])
    assert min_memory(chain) == 13
    assert exhaustive_optimum(F, B, S, T, 12, **work) < np.inf == exhaustive_optimum(F, B, S, T, 11, **work)
    with pytest.raises(InfeasibleBudget, match="in revolve.optimal's class of schedules.*can need less") as info:
        optimal(chain, memory=12)
    assert info.value.minimum == 13
    assert simulate(optimal(chain, memory=13), chain).peak_memory <= 13


def test_min_memory_refuses_a_chain_too_long():
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=5000)
    with pytest.raises(ValueError, match="revolve.min_memory: a chain of n_steps=5000 is too long"):
        min_memory(chain)


@pytest.mark.parametrize("every", [4, 8, 12])
def test_wide_exact_sizes_do_not_overflow(every):
    """Decimal sizes from 0.1 to 49.9 need 2^-55-byte units: their sums pass 2^63, so the lists hold Python
    integers. The empty sub-problem's list was int64, and sums with it overflowed silently (a negative memory
    at rebuild). Optimal against periodic, which holds several tapes at once."""
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=[0.1, 19.9] * 12 + [0.3], tape_bytes=[49.9, 0.7] * 12)
    ref = simulate(periodic(24, every=every), chain)
    got = simulate(optimal(chain, memory=ref.peak_memory), chain)
    assert got.peak_memory <= ref.peak_memory and got.time <= ref.time


def test_frontier_of_a_chain_that_stores_nothing():
    """Every size zero (hypothesis found it): the frontier is the one store-all point at memory 0, not a refusal
    of the store-all peak 0 as a budget."""
    chain = Chain(forward_cost=[3], backward_cost=[2], state_bytes=[0, 0], tape_bytes=[0])
    front = frontier(chain, slots=1)
    assert [(p.memory, p.time) for p in front.points] == [(0.0, 5.0)]


@given(chain=float_chains(max_steps=14), scales=st.sampled_from([(2.0**-30, 1e6 / 3), (1.0, 2.0**40 / 7),
                                                                   (1e-3, 1e3), (1e5 / 3, 1e-4)]))
@settings(max_examples=60, deadline=None)
def test_min_memory_two_limb_integers_equal_python_integers(chain, scales):
    """Fractional sizes whose exact sums pass int64 run the min-memory recurrence on two int64 limbs; its
    minimum and every choice equal the same recurrence on Python integers (the slow exact path)."""
    import importlib

    opt = importlib.import_module("revolve.optimal")  # the module (revolve.optimal is also the function)
    small, large = scales  # sizes of very different magnitudes: their exact sums need more than 64 bits
    kw = {"state_bytes": chain.values("state_bytes") * small, "tape_bytes": chain.values("tape_bytes") * large}
    for name in ("forward_overhead", "backward_overhead", "adjoint_bytes", "record_overhead"):
        if chain.values(name).any():
            kw[name] = chain.values(name) * small
    flags = {name: chain.holds(name) for name in ("tape_holds_input", "tape_holds_output")}
    chain = Chain(forward_cost=chain.values("forward_cost"), backward_cost=chain.values("backward_cost"),
                  **kw, **{k: v for k, v in flags.items() if v.any()})
    if opt._int_sizes(chain)[0]["state_bytes"].dtype != object:
        return  # sums fit int64: the plain path
    wide, ch_w = opt._min_memory_choice(chain)
    saved = opt._WIDE_BITS
    try:
        opt._WIDE_BITS = -200  # no limb pair is wide enough: Python integers
        slow, ch_s = opt._min_memory_choice(chain)
    finally:
        opt._WIDE_BITS = saved
    assert wide == slow
    for kind in ("E", "W", "H"):
        assert np.array_equal(getattr(ch_w, kind), getattr(ch_s, kind)), kind
    stats = simulate(optimal(chain, memory=wide), chain)
    assert stats.peak_memory <= wide
