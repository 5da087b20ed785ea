import pytest
from hypothesis import given, strategies as st

from revolve import (
    Advance, Chain, Discard, Record, Restore, Reverse, Schedule, ScheduleError, Snapshot, binomial, simulate,
)


def run(actions, n):
    return simulate(Schedule.from_actions(actions, n_steps=n))


def broken(actions, n, index, rule):
    with pytest.raises(ScheduleError) as info:
        run(actions, n)
    err = info.value
    assert err.index == index
    assert rule in err.rule
    assert f"#{index}" in str(err) or err.action is None
    if index < len(actions):
        assert err.action == actions[index]
    return err


OK3 = [Record(0), Record(1), Record(2), Reverse(2), Reverse(1), Reverse(0)]


def test_valid_store_all():
    stats = run(OK3, 3)
    assert stats.records == 3 and stats.peak_tapes == 3 and stats.advances == 0


def test_advance_from_wrong_state():
    broken([Advance(1, 2)], 3, 0, "working state is x_0, not x_1")


@pytest.mark.parametrize("act", [Advance(0, 0), Advance(0, 4)])
def test_advance_bad_range(act):
    broken([act], 3, 0, "start < stop <= n_steps = 3")


def test_snapshot_of_wrong_state():
    broken([Advance(0, 1), Snapshot(0)], 3, 1, "working state is x_1, not x_0")


def test_snapshot_twice():
    broken([Snapshot(0), Snapshot(0)], 3, 1, "already stored")


def test_restore_not_stored():
    broken([Snapshot(0), Restore(1)], 3, 1, "x_1 is not stored (stored: [0])")


def test_discard_not_stored():
    broken([Discard(0)], 3, 0, "x_0 is not stored")


def test_record_wrong_state():
    broken([Record(1)], 3, 0, "working state is x_0, not x_1")


def test_record_already_reversed():
    acts = [Snapshot(0), Advance(0, 2), Record(2), Reverse(2), Restore(0), Advance(0, 2), Record(2)]
    broken(acts, 3, 6, "step 2 was already reversed")


def test_record_tape_already_live():
    acts = [Snapshot(0), Record(0), Restore(0), Record(0)]
    broken(acts, 3, 3, "tape of step 0 is already live")


def test_reverse_out_of_order():
    broken([Record(0), Record(1), Record(2), Reverse(1)], 3, 3, "the next to reverse is step 2")


def test_reverse_without_tape():
    broken([Advance(0, 3), Reverse(2)], 3, 1, "tape of step 2 is not live")


def test_reverse_after_all_done():
    acts = [Record(0), Reverse(0), Reverse(0)]
    broken(acts, 1, 2, "no step (all are reversed)")


def test_unfinished_schedule():
    err = broken([Record(0), Record(1), Reverse(1)], 2, 3, "steps 0..0 were never reversed")
    assert err.action is None


def test_not_an_action():
    broken([("advance", 0, 1)], 3, 0, "not a revolve action")


def test_chain_length_must_match():
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=4)
    with pytest.raises(ValueError, match="n_steps=4 but the schedule has n_steps=3"):
        simulate(Schedule.from_actions(OK3, n_steps=3), chain)


def test_time_and_memory_by_hand():
    chain = Chain(forward_cost=[1, 10, 100], backward_cost=[2, 20, 200], state_bytes=[1, 2, 4, 8], tape_bytes=[16, 32, 64])
    acts = [Snapshot(0), Advance(0, 2), Record(2), Reverse(2), Restore(0), Record(0), Record(1), Reverse(1), Reverse(0), Discard(0)]
    stats = simulate(Schedule.from_actions(acts, n_steps=3), chain)
    assert stats.time == (1 + 10) + 100 + 200 + 1 + 10 + 20 + 2
    # x_0 stored with the tape of step 2 (1 + 64) beats x_0 with tapes 0 and 1 (1 + 16 + 32)
    assert stats.peak_memory == 1 + 64
    assert stats.peak_bytes_by_storage == {"ram": 1, "tape": 64}
    assert stats.advances == 2 and stats.forward_evaluations == 5


def test_peaks_per_storage_level():
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=10, tape_bytes=1, n_steps=3)
    acts = [Snapshot(0, "disk"), Advance(0, 1), Snapshot(1, "ram"), Advance(1, 2), Record(2), Reverse(2),
            Restore(1), Record(1), Reverse(1), Discard(1), Restore(0), Record(0), Reverse(0)]
    stats = simulate(Schedule.from_actions(acts, n_steps=3), chain)
    assert stats.peak_snapshots_by_storage == {"disk": 1, "ram": 1}
    assert stats.peak_bytes_by_storage["disk"] == 10 and stats.peak_bytes_by_storage["ram"] == 10
    assert stats.peak_memory == 21


def test_plain_iterable_needs_n_steps():
    with pytest.raises(TypeError, match="pass n_steps="):
        simulate(iter(OK3))
    assert simulate(iter(OK3), n_steps=3).records == 3


@given(n=st.integers(1, 60), s=st.integers(1, 8), data=st.data())
def test_mutations_of_valid_schedules_are_caught(n, s, data):
    """Dropping one action from a valid binomial schedule is either still valid or caught at/after it."""
    acts = list(binomial(n, snapshots=s))
    k = data.draw(st.integers(0, len(acts) - 1))
    mutated = acts[:k] + acts[k + 1:]
    try:
        stats = run(mutated, n)
    except ScheduleError as e:
        assert e.index >= k
    else:
        # only dropping a Discard (or the final one) keeps a schedule valid
        assert isinstance(acts[k], Discard), acts[k]
        assert stats.records == n


def test_states_shared_with_tapes_count_once():
    # Linear-like steps keep their input, Tanh-like steps their output: x_1 is kept by both tapes
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=[1, 2, 4, 8], tape_bytes=[16, 32, 64],
                  tape_holds_input=[True, False, True], tape_holds_output=[False, True, False])
    acts = [Snapshot(0), Record(0), Record(1), Record(2), Reverse(2), Reverse(1), Reverse(0), Discard(0)]
    stats = simulate(Schedule.from_actions(acts, n_steps=3), chain)
    # tapes 16 + 32 + 64, states x_0 (snapshot and tape 0), x_2 (tape 1's output, tape 2's input): once each
    assert stats.peak_memory == 16 + 32 + 64 + 1 + 4
    assert stats.peak_bytes_by_storage == {"ram": 1, "tape": 16 + 32 + 64}
    # a snapshot of a state a live tape keeps costs nothing more
    acts = [Record(0), Record(1), Snapshot(2), Record(2), Reverse(2), Discard(2), Reverse(1), Reverse(0)]
    assert simulate(Schedule.from_actions(acts, n_steps=3), chain).peak_memory == 16 + 32 + 64 + 1 + 4


@given(n=st.integers(1, 9), data=st.data())
def test_shared_state_memory_matches_a_recount(n, data):
    """The simulator's running peak equals a from-scratch recount of the held set after every action."""
    import numpy as np

    from .oracles import random_schedule

    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    S = rng.integers(1, 50, n + 1).tolist()
    T = rng.integers(0, 50, n).tolist()
    hin = [bool(b) for b in rng.random(n) < 0.5]
    hout = [bool(b) for b in rng.random(n) < 0.5]
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=S, tape_bytes=T, tape_holds_input=hin,
                  tape_holds_output=hout)
    sched = random_schedule(n, rng)
    stored, tapes, peak = set(), set(), 0
    for act in sched:
        match act:
            case Snapshot(index=i):
                stored.add(i)
            case Discard(index=i):
                stored.remove(i)
            case Record(step=i):
                tapes.add(i)
            case Reverse(step=i):
                tapes.remove(i)
        states = stored | {i for i in tapes if hin[i]} | {i + 1 for i in tapes if hout[i]}
        peak = max(peak, sum(S[i] for i in states) + sum(T[i] for i in tapes))
    assert simulate(sched, chain).peak_memory == peak


def test_working_memory_by_hand():
    # overheads are a moment's peaks on top of what is held, and a running step's input counts unless held;
    # the adjoint of x_k is held until step k - 1 reverses, the output's from the start
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=[1, 2, 4], tape_bytes=[16, 32],
                  forward_overhead=[100, 7], backward_overhead=[5, 200], adjoint_bytes=[1000, 3, 9])
    acts = [Snapshot(0), Advance(0, 1), Record(1), Reverse(1), Restore(0), Discard(0), Record(0), Reverse(0)]
    stats = simulate(Schedule.from_actions(acts, n_steps=2), chain)
    moments = [
        1 + 9 + 100,            # advance: x_0 stored (its input, held), adjoint of x_2, step 0's overhead
        1 + 32 + 9 + 2 + 7,     # record step 1: x_0, tape 1, adjoint, its unheld input x_1, overhead
        1 + 32 + 9 + 200,       # reverse step 1
        16 + 3 + 1 + 100,       # record step 0 after discarding x_0: its input counts again
        16 + 3 + 5,             # reverse step 0
    ]
    assert stats.peak_memory == max(moments) == 242
    chain2 = Chain(forward_cost=1, backward_cost=1, state_bytes=[1, 2, 4], tape_bytes=[16, 32], adjoint_bytes=[1000, 3, 9])
    assert simulate(Schedule.from_actions(acts, n_steps=2), chain2).peak_memory == 1 + 32 + 9 + 2


def test_working_state_ends_with_a_reverse():
    acts = [Snapshot(0), Record(0), Record(1), Reverse(1), Reverse(0)]
    run(acts, 2)
    acts = [Snapshot(0), Advance(0, 1), Record(1), Reverse(1), Record(0), Reverse(0)]
    broken(acts, 2, 4, "unknown after a Reverse")
