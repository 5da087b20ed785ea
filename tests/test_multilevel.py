"""revolve.multilevel (RAM/disk and GPU/host/disk planning) and simulate's per-level slots and I/O costs.

Oracles: an exhaustive search (Dijkstra) over every schedule of the action vocabulary with one live tape,
the simulator (validity, per-level slots, I/O-inclusive cost), Revolve's closed form t(n, s) (free I/O
equals one level of all the slots; RAM-only is an upper bound, all slots with free I/O a lower bound), and
the executor's gradient with a RAM-only schedule.
"""

import heapq
import itertools
from math import inf

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import revolve
from revolve import (
    Advance, Discard, Record, Restore, Reverse, Schedule, ScheduleError, Snapshot, ad, binomial, binomial_cost,
    multilevel, multilevel_cost, simulate,
)
from revolve.storage import DiskStorage


def exhaustive(n, slots, io, uf=1, ub=1):
    """The least cost over every schedule of n steps (one live tape), levels with slots[k] slots and io[k] =
    (write, read) costs, by Dijkstra over (working state, next step to reverse, stored states)."""
    start = (0, n, frozenset())
    dist = {start: 0}
    heap = [(0, 0, start)]
    tick = itertools.count()
    while heap:
        c, _, state = heapq.heappop(heap)
        if dist[state] != c:
            continue
        cur, adj, stored = state
        if adj == 0:
            return c
        moves = []
        if 0 <= cur < adj - 1:
            moves.append((uf, (cur + 1, adj, stored)))  # Advance one step
        held = {i for i, _ in stored}
        if 0 <= cur <= adj - 2 and cur not in held:
            for k, count in enumerate(slots):
                if sum(1 for _, lv in stored if lv == k) < count:
                    moves.append((io[k][0], (cur, adj, stored | {(cur, k)})))  # Snapshot
        for i, k in stored:
            if i != cur:
                moves.append((io[k][1], (i, adj, stored)))  # Restore
            moves.append((0, (cur, adj, stored - {(i, k)})))  # Discard
        if cur == adj - 1:
            moves.append((uf + ub, (-1, adj - 1, stored)))  # Record and Reverse
        for cost, (cur2, adj2, s2) in moves:
            s2 = frozenset(x for x in s2 if x[0] < adj2)  # a state past the next reverse is never needed
            nxt = (cur2, adj2, s2)
            if c + cost < dist.get(nxt, inf):
                dist[nxt] = c + cost
                heapq.heappush(heap, (c + cost, next(tick), nxt))
    raise AssertionError("no schedule")


def checked(n, slots, io, **kw):
    """multilevel's schedule replayed under the per-level slots: its stats, after the common checks."""
    sched = multilevel(n, slots=slots, io_cost=io, **kw)
    stats = simulate(sched, slots=slots, io_cost=io)
    assert stats.peak_tapes == 1
    for level, peak in stats.peak_snapshots_by_storage.items():
        assert peak <= slots[level], (level, peak)
    assert stats.cost == multilevel_cost(n, slots=slots, io_cost=io, **kw)
    return stats


IO = [(0, 0), (1, 1), (2, 2), (3, 1), (1, 4)]


@pytest.mark.parametrize("n", range(1, 8))
def test_two_levels_equal_the_exhaustive_search(n):
    for ram, disk, (w, r) in itertools.product((1, 2, 3), (0, 1, 2), IO):
        if n == 7 and ram == 3 and disk == 2 and w == 1:
            continue  # the largest search (seconds): covered by its neighbours
        slots, io = {"ram": ram, "disk": disk}, {"disk": (w, r)}
        stats = checked(n, slots, io)
        assert stats.cost == exhaustive(n, [ram, disk], [(0, 0), (w, r)]), (n, slots, io)


def test_three_levels_equal_the_exhaustive_search():
    for n, (g, h, d), (hw, hr), (dw, dr) in itertools.product(range(2, 7), [(1, 1, 1), (1, 2, 1), (2, 1, 1)],
                                                                 [(1, 1), (0, 2)], [(3, 3), (5, 1)]):
        slots, io = {"gpu": g, "host": h, "disk": d}, {"host": (hw, hr), "disk": (dw, dr)}
        stats = checked(n, slots, io)
        assert stats.cost == exhaustive(n, [g, h, d], [(0, 0), (hw, hr), (dw, dr)]), (n, slots, io)


def test_free_io_is_revolve_with_all_the_slots():
    # with free disk I/O the best plan is Revolve with ram + disk slots (Griewank & Walther 2000, eq. (2))
    for n in range(1, 160, 7):
        for ram, disk in [(1, 1), (2, 3), (4, 2), (1, 6)]:
            stats = checked(n, {"ram": ram, "disk": disk}, {"disk": (0, 0)})
            assert stats.cost == binomial_cost(n, snapshots=ram + disk) + 2 * n, (n, ram, disk)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 400), ram=st.integers(1, 6), disk=st.integers(0, 12), w=st.integers(0, 6),
       r=st.integers(0, 6), method=st.sampled_from(["auto", "exact", "fast"]))
def test_streams_are_valid_and_between_the_closed_form_bounds(n, ram, disk, w, r, method):
    slots, io = {"ram": ram, "disk": disk}, {"disk": (w, r)}
    stats = checked(n, slots, io, method=method)
    assert stats.records == n and stats.forward_evaluations == stats.advances + n
    assert stats.cost <= binomial_cost(n, snapshots=ram) + 2 * n  # RAM alone is one of the plans
    assert stats.cost >= binomial_cost(n, snapshots=ram + disk) + 2 * n  # I/O for free can only help
    assert stats.writes_by_storage.get("disk", 0) * w + stats.restores_by_storage.get("disk", 0) * r == stats.io_time


@pytest.mark.parametrize("n,ram,disk,w,r", [(300, 3, 7, 1, 3), (400, 5, 10, 2, 2), (250, 2, 20, 3, 1),
                                            (350, 4, 30, 10, 10)])
def test_fast_tables_bound_the_exact_ones(n, ram, disk, w, r):
    slots, io = {"ram": ram, "disk": disk}, {"disk": (w, r)}
    exact = checked(n, slots, io, method="exact").cost
    fast = checked(n, slots, io, method="fast").cost
    assert exact <= fast <= exact * 1.005


def test_three_level_fast_tables_bound_the_exact_ones():
    slots, io = {"gpu": 3, "host": 4, "disk": 10}, {"host": (1, 1), "disk": (4, 4)}
    for n in (150, 300):
        exact = checked(n, slots, io, method="exact").cost
        assert exact <= checked(n, slots, io, method="fast").cost <= exact * 1.005


def test_a_level_without_slots_takes_no_part():
    slots, io = {"gpu": 2, "host": 0, "disk": 5}, {"host": (1, 1), "disk": (3, 3)}
    stats = checked(50, slots, io)
    assert "host" not in stats.peak_snapshots_by_storage
    assert stats.cost == multilevel_cost(50, slots={"gpu": 2, "disk": 5}, io_cost={"disk": (3, 3)})


def test_tables_past_their_size_limit_plan_with_fewer_slots_and_say_so(monkeypatch):
    import sys

    monkeypatch.setattr(sys.modules["revolve.multilevel"], "_MAX_ENTRIES", 1000)
    with pytest.warns(UserWarning, match=r"10 slots of 'disk' for n=200 .* planning with 4 of them") as rec:
        stats = checked(200, {"ram": 3, "disk": 10}, {"disk": (1, 1)})
    assert rec[0].filename == __file__
    assert stats.peak_snapshots_by_storage["disk"] <= 4


def test_disk_slots_are_used_and_never_exceeded():
    # the table's first row: peers hold 55 (HRevolve) or 163 (DiskRevolve) disk states with 10 declared
    slots, io = {"ram": 5, "disk": 10}, {"disk": (2, 2)}
    stats = checked(1000, slots, io)
    assert stats.peak_snapshots_by_storage == {"ram": 5, "disk": 10}
    assert stats.cost < binomial_cost(1000, snapshots=5) + 2000


def test_slower_levels_only_when_they_pay():
    # disk I/O dearer than recomputing: the plan stays in RAM and costs what Revolve costs
    stats = checked(200, {"ram": 4, "disk": 50}, {"disk": (500, 500)})
    assert "disk" not in stats.peak_snapshots_by_storage
    assert stats.cost == binomial_cost(200, snapshots=4) + 400


def test_schedule_round_trips_through_json_and_prints():
    s = multilevel(30, slots={"ram": 2, "disk": 3}, io_cost={"disk": (1, 1)})
    assert list(Schedule.from_json(s.to_json())) == list(s)
    assert "kind='multilevel'" in repr(s)
    assert any(isinstance(a, Snapshot) and a.storage == "disk" for a in s)


@pytest.mark.parametrize("kwargs,error,text", [
    (dict(slots=[5, 10]), TypeError, "slots must be a non-empty mapping"),
    (dict(slots={"ram": -1}), ValueError, "slots['ram'] must be >= 0"),
    (dict(slots={"ram": 2}, io_cost={"disk": (1, 1)}), ValueError, "io_cost names level(s) ['disk']"),
    (dict(slots={"ram": 2, "disk": 2}, io_cost={"disk": 3}), ValueError, "must be a pair"),
    (dict(slots={"ram": 2, "disk": 2}, io_cost={"disk": (1, -1)}), ValueError, "read cost must be >= 0"),
    (dict(slots={"disk": 2, "ram": 2}, io_cost={"disk": (1, 1)}), ValueError, "first (fastest) level 'disk'"),
    (dict(slots={"ram": 0, "disk": 2}), ValueError, "must be >= 1 for n >= 2"),
    (dict(slots={"ram": 2}, method="greedy"), ValueError, "method must be 'auto', 'exact' or 'fast'"),
    (dict(slots={"ram": 2}, forward_cost=0), ValueError, "forward_cost must be > 0"),
])
def test_bad_arguments_name_themselves(kwargs, error, text):
    with pytest.raises(error) as info:
        multilevel(10, **kwargs)
    assert text in str(info.value) and "revolve.multilevel" in str(info.value)


# -- simulate's per-level slots and I/O costs --------------------------------------------------------------
def test_simulator_rejects_a_snapshot_past_a_levels_slots():
    sched = binomial(10, snapshots=3)
    with pytest.raises(ScheduleError) as info:
        simulate(sched, slots={"ram": 2})
    err = info.value
    third = [k for k, a in enumerate(sched) if isinstance(a, Snapshot)][2]
    assert err.index == third and err.action == list(sched)[third]
    assert "storage level 'ram' already holds 2 state(s), its slots (2)" in err.rule
    assert f"#{third}" in str(err)
    assert simulate(sched, slots={"ram": 3}).peak_snapshots == 3  # at the limit is fine
    assert simulate(sched, slots={"disk": 0}).peak_snapshots == 3  # a level not used is not in the way


def test_simulator_charges_writes_and_reads_per_level():
    acts = [Snapshot(0, "disk"), Advance(0, 2), Snapshot(2, "ram"), Record(2), Reverse(2), Restore(2),
            Discard(2), Restore(0), Advance(0, 1), Record(1), Reverse(1), Restore(0), Record(0), Reverse(0),
            Discard(0)]
    s = Schedule.from_actions(acts, n_steps=3)
    stats = simulate(s, slots={"ram": 1, "disk": 1}, io_cost={"disk": (5, 3), "ram": (1, 0.5)})
    assert stats.writes_by_storage == {"disk": 1, "ram": 1}
    assert stats.restores_by_storage == {"disk": 2, "ram": 1}
    assert stats.io_time == 5 + 2 * 3 + 1 + 0.5
    assert stats.cost == stats.forward_evaluations + 3 + stats.io_time
    with pytest.raises(ScheduleError, match="'disk' already holds 0 state"):
        simulate(s, slots={"disk": 0})
    plain = simulate(s)
    assert plain.io_time is None and plain.cost is None  # no io_cost, no I/O-inclusive cost
    free = simulate(s, io_cost={})
    assert free.io_time == 0 and free.cost == free.forward_evaluations + 3
    chain = revolve.Chain(n_steps=3, forward_cost=2.0, backward_cost=3.0, state_bytes=1, tape_bytes=1)
    timed = simulate(s, chain, io_cost={"disk": (5, 3)})
    assert timed.cost == timed.time + 5 + 6


@pytest.mark.parametrize("kwargs,error,text", [
    (dict(slots=3), TypeError, "slots must be a mapping"),
    (dict(slots={"ram": -2}), ValueError, "slots['ram'] must be >= 0"),
    (dict(io_cost=[(1, 1)]), TypeError, "io_cost must be a mapping"),
    (dict(io_cost={"disk": (1,)}), ValueError, "must be a pair (write_cost, read_cost)"),
    (dict(io_cost={"disk": (1, float("nan"))}), ValueError, "must be finite"),
])
def test_simulator_level_arguments_are_checked(kwargs, error, text):
    with pytest.raises(error) as info:
        simulate(binomial(5, snapshots=2), **kwargs)
    assert text in str(info.value) and "revolve.simulate" in str(info.value)


# -- the executor runs the plan ------------------------------------------------------------------------------
class CountingDisk(DiskStorage):
    """A disk backend that counts the states it holds (the executor's view, not the simulator's)."""

    def __init__(self, directory):
        super().__init__(directory)
        self.held = self.peak = self.puts = 0

    def put(self, index, state):
        self.held += 1
        self.puts += 1
        self.peak = max(self.peak, self.held)
        return super().put(index, state)

    def delete(self, index):
        self.held -= 1
        super().delete(index)


def test_gradient_runs_a_disk_plan_and_matches_ram(tmp_path):
    def step(u, p, i):
        return u + 0.05 * (np.roll(u, 1) - 2 * u + np.roll(u, -1)) * p["k"] - 0.01 * ad.sin(u) * u

    rng = np.random.default_rng(0)
    u0, p = rng.standard_normal(16), {"k": np.array(0.7)}
    loss = lambda u: ad.sum(u ** 2)  # noqa: E731
    n, slots, io = 60, {"ram": 2, "disk": 3}, {"disk": (1, 1)}
    sched = multilevel(n, slots=slots, io_cost=io)
    predicted = simulate(sched, slots=slots, io_cost=io)
    assert predicted.peak_snapshots_by_storage["disk"] >= 1  # the plan does use the disk
    disk = CountingDisk(tmp_path)
    r = revolve.gradient(step, u0, n_steps=n, loss=loss, params=p, schedule=sched, storage={"disk": disk})
    ram = revolve.gradient(step, u0, n_steps=n, loss=loss, params=p, schedule=binomial(n, snapshots=2))
    np.testing.assert_allclose(r.grad_x0, ram.grad_x0, rtol=1e-12, atol=0)
    np.testing.assert_allclose(r.grad_params["k"], ram.grad_params["k"], rtol=1e-12, atol=0)
    assert r.value == ram.value
    assert 1 <= disk.peak <= slots["disk"] and disk.puts == predicted.writes_by_storage["disk"]
    assert r.stats.predicted.peak_snapshots_by_storage["ram"] <= slots["ram"]
    assert r.stats.forward_evaluations == predicted.forward_evaluations
    assert not any(tmp_path.iterdir())  # the run folder is removed
