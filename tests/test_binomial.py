import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import revolve
from revolve import Record, Reverse, binomial, binomial_cost, min_snapshots, repetition_number, simulate

from .oracles import brute_force_advances, brute_force_writes, closed_form

N_MAX, S_MAX = 200, 12


@pytest.fixture(scope="module")
def tables():
    T = brute_force_advances(N_MAX, S_MAX)
    return T, brute_force_writes(N_MAX, S_MAX, T)


def test_every_small_n_s_is_optimal_and_writes_fewest(tables):
    T, W = tables
    for n in range(1, N_MAX + 1):
        for s in range(1, S_MAX + 1):
            stats = simulate(binomial(n, snapshots=s))
            assert stats.advances == T[n, s] == closed_form(n, s) == binomial_cost(n, snapshots=s), (n, s)
            assert stats.peak_snapshots <= s, (n, s)
            assert stats.peak_tapes == 1
            assert stats.records == n
            # x_0's snapshot (needed again unless n = 1) plus the fewest writes among time-optimal schedules
            # (Alg. 799's criterion)
            assert stats.snapshot_writes == (n > 1) + W[n, s], (n, s)


def test_every_snapshot_written_is_read():
    """No unread writes: each Snapshot(i) is followed by a Restore(i) (binomial(1, s) used to store x_0 for nothing)."""
    from revolve import Restore, Snapshot

    for n in range(1, 41):
        for s in range(1, 9):
            acts = list(binomial(n, snapshots=s))
            for k, a in enumerate(acts):
                if isinstance(a, Snapshot):
                    assert Restore(a.index) in acts[k + 1:], (n, s, a)
    assert list(binomial(1, snapshots=3)) == [Record(0), Reverse(0)]


def test_brute_force_equals_closed_form_up_to_600():
    T = brute_force_advances(600, 20)
    for n in range(1, 601, 7):
        for s in range(1, 21):
            assert T[n, s] == binomial_cost(n, snapshots=s), (n, s)


def test_paper_example_8_steps_4_slots_writes_4():
    # REFERENCES.md 1: (n, s) = (8, 4) needs 4 writes; other optimal schedules write up to 6
    stats = simulate(binomial(8, snapshots=4))
    assert stats.snapshot_writes == 4
    assert stats.advances == binomial_cost(8, snapshots=4) == 10


@pytest.mark.parametrize(
    "n,s,t", [(1000, 10, 3636), (10**4, 5, 112868), (10**4, 10, 57624), (10**6, 20, 6815960)]
)
def test_sample_values(n, s, t):
    assert binomial_cost(n, snapshots=s) == t


def test_conventions():
    for n in (2, 5, 37):
        assert binomial_cost(n, snapshots=1) == n * (n - 1) // 2
        assert binomial_cost(n, snapshots=n - 1) == n - 1
        assert binomial_cost(n, snapshots=n + 5) == n - 1
    assert binomial_cost(1, snapshots=1) == 0


def test_huge_n_is_exact_and_instant():
    n = 10**12
    for s in (1, 2, 3, 10, 50):
        t = binomial_cost(n, snapshots=s)
        assert t == closed_form(n, s) if s >= 10 else True
        r = repetition_number(n, snapshots=s)
        assert math.comb(s + r, s) >= n > math.comb(s + r - 1, s)
        assert t == r * n - math.comb(s + r, r - 1)
    assert binomial_cost(n, snapshots=1) == n * (n - 1) // 2


def test_repetition_number_definition():
    for n in range(1, 300):
        for s in range(1, 8):
            r = repetition_number(n, snapshots=s)
            assert math.comb(s + r, s) >= n
            assert r == 0 or math.comb(s + r - 1, s) < n


def test_min_snapshots_r2_at_one_million():
    assert min_snapshots(10**6, repetitions=2) == 1413


@given(n=st.integers(2, 5000), ratio=st.floats(1.0, 8.0))
def test_min_snapshots_max_ratio_is_least(n, ratio):
    best = (2 * n - 1) / n
    if ratio < best:
        with pytest.raises(ValueError, match="max_ratio must be >="):
            min_snapshots(n, max_ratio=ratio)
        return
    s = min_snapshots(n, max_ratio=ratio)
    assert (binomial_cost(n, snapshots=s) + n) / n <= ratio
    if s > 1:
        assert (binomial_cost(n, snapshots=s - 1) + n) / n > ratio


@given(n=st.integers(1, 3000), s=st.integers(1, 40))
def test_random_n_s_simulate_to_the_closed_form(n, s):
    stats = simulate(binomial(n, snapshots=s))
    assert stats.advances == closed_form(n, s)
    assert stats.peak_snapshots <= min(s, max(n - 1, 1))
    assert stats.forward_evaluations == stats.advances + n


def test_schedule_is_lazy_and_reiterable():
    sched = binomial(10**9, snapshots=30)  # generating it whole would take hours
    first = sched.head(5)
    assert first == sched.head(5)
    assert first[0] == revolve.Snapshot(0)


@pytest.mark.parametrize("bad", [0, -3])
def test_bad_n_values(bad):
    with pytest.raises(ValueError, match=rf"revolve.binomial: n must be >= 1, got {bad}"):
        binomial(bad, snapshots=3)
    with pytest.raises(ValueError, match=rf"revolve.binomial_cost: snapshots must be >= 1, got {bad}"):
        binomial_cost(10, snapshots=bad)


@pytest.mark.parametrize("bad", [2.0, 1.5, True, "3", None])
def test_bad_n_types(bad):
    with pytest.raises(TypeError, match=r"revolve.binomial: n must be an integer, got"):
        binomial(bad, snapshots=3)
    with pytest.raises(TypeError, match=r"revolve.binomial: snapshots must be an integer, got"):
        binomial(10, snapshots=bad)


def test_numpy_integers_accepted():
    assert binomial_cost(np.int64(1000), snapshots=np.int32(10)) == 3636


def test_keyword_only():
    with pytest.raises(TypeError):
        binomial(10, 3)  # noqa
    with pytest.raises(TypeError):
        binomial_cost(10, 3)  # noqa


def test_min_snapshots_needs_exactly_one_bound():
    with pytest.raises(ValueError, match="exactly one"):
        min_snapshots(100)
    with pytest.raises(ValueError, match="exactly one"):
        min_snapshots(100, max_ratio=3.0, repetitions=2)
