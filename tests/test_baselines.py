import pytest
from hypothesis import given, strategies as st

from revolve import Chain, periodic, simulate, store_all


@given(n=st.integers(1, 300), k=st.integers(1, 320))
def test_periodic_counts(n, k):
    stats = simulate(periodic(n, every=k))
    last = n - ((n - 1) // k) * k
    assert stats.forward_evaluations == 2 * n - last
    assert stats.peak_snapshots == (n - 1) // k
    assert stats.peak_tapes == min(k, n)


@given(n=st.integers(1, 300))
def test_store_all(n):
    chain = Chain(forward_cost=1.0, backward_cost=2.0, state_bytes=5, tape_bytes=7, n_steps=n)
    stats = simulate(store_all(n), chain)
    assert stats.forward_evaluations == n and stats.advances == 0
    assert stats.peak_memory == 7 * n
    assert stats.time == 3.0 * n


def test_periodic_memory_matches_hand_count():
    # n = 10, every 4: snapshots x_0, x_4 (x_8 starts the directly recorded last segment)
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=list(range(11)), tape_bytes=[100] * 10)
    stats = simulate(periodic(10, every=4), chain)
    # peak: x_0 + x_4 stored (0 + 4 bytes) while the 4 tapes of a middle segment are live
    assert stats.peak_memory == 4 + 400


def test_bad_every():
    with pytest.raises(ValueError, match="revolve.periodic: every must be >= 1, got 0"):
        periodic(10, every=0)
    with pytest.raises(TypeError, match="revolve.periodic: every must be an integer"):
        periodic(10, every=2.5)
    with pytest.raises(ValueError, match="revolve.store_all: n must be >= 1"):
        store_all(0)
