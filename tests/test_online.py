"""Online checkpointing (revolve.online): validity under the simulator, optimality where Stumm and Walther prove
it, the repetition-number guarantees beyond, the incremental interface, and a gradient driven by hand."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import revolve
from revolve import Advance, Discard, Record, Restore, Reverse, Snapshot, beta, online, online_cost, simulate
from revolve.online import OnlinePlanner

from .oracles import closed_form


def repetition(n, s):
    """The least r with C(s + r, s) >= n."""
    r = 0
    while math.comb(s + r, s) < n:
        r += 1
    return r


def advances_per_step(actions, n):
    """How often each step is advanced, counted from the stream."""
    count = [0] * n
    for a in actions:
        if isinstance(a, Advance):
            for i in range(a.start, a.stop):
                count[i] += 1
    return count


def in_range(s, n, last_step_known):
    """True when algorithm='stumm-walther' plans n steps (the forward runs at most beta(s, 3) - 1 steps)."""
    return (n - 1 if last_step_known else n) <= beta(s, 3) - 1


def test_every_stream_is_valid_and_counted_for_small_n_s():
    """All n <= 200, s <= 8, both ends of the forward: valid, <= s snapshots, every step reversed once, and the
    closed-form count equals the simulator's ("stumm-walther" is "auto" within its range; Wang-Moin with the last
    step known)."""
    assert list(online(snapshots=3, algorithm="stumm-walther").schedule(20)) == list(online(snapshots=3).schedule(20))
    for s in range(1, 9):
        for n in range(1, 201):
            for known in (True, False):
                algorithms = ["auto"] + (["wang-moin"] if known else [])
                for algorithm in algorithms:
                    sched = online(snapshots=s, algorithm=algorithm).schedule(n, last_step_known=known)
                    stats = simulate(sched)
                    assert stats.peak_snapshots <= s, (s, n, known, algorithm)
                    assert stats.records == n and stats.peak_tapes == 1
                    assert stats.advances == online_cost(n, snapshots=s, algorithm=algorithm,
                                                         last_step_known=known), (s, n, known, algorithm)


def test_optimal_up_to_beta_s_2_when_the_last_step_is_known():
    """Stumm-Walther Algorithm I reaches t(n, s) for every n <= beta(s, 2) (their optimality result)."""
    for s in range(1, 51):
        ns = list(range(1, beta(s, 2) + 1))
        got = online_cost(ns, snapshots=s)
        assert got == [closed_form(n, s) for n in ns], s
    for s in range(1, 9):  # and the actions themselves, replayed
        for n in range(1, beta(s, 2) + 1):
            assert simulate(online(snapshots=s).schedule(n)).advances == closed_form(n, s), (s, n)


def test_optimal_for_the_stop_seen_after_the_step():
    """With the stop seen on x_n every step ran once before n was known: the offline best is t(n + 1, s)."""
    for s in range(1, 31):
        ns = list(range(1, beta(s, 2)))
        assert online_cost(ns, snapshots=s, last_step_known=False) == [closed_form(n + 1, s) for n in ns], s


def test_extension_to_beta_s_3_repetition_at_most_3_and_near_optimal():
    """beta(s, 2) < n <= beta(s, 3): no step advanced more than 3 times; at most 2 advances above t(n, s)."""
    for s in range(1, 7):
        for n in range(beta(s, 2) + 1, beta(s, 3) + 1):
            acts = list(online(snapshots=s, algorithm="stumm-walther").schedule(n))
            assert max(advances_per_step(acts, n)) <= 3, (s, n)
    for s in range(1, 21):
        ns = list(range(beta(s, 2) + 1, beta(s, 3) + 1))
        excess = [a - closed_form(n, s) for a, n in zip(online_cost(ns, snapshots=s, algorithm="stumm-walther"), ns)]
        assert min(excess) >= 0 and max(excess) <= (1 if s <= 9 else 2), s


def test_extension_keeps_every_segment_within_beta_c_2():
    """The placement itself, for larger s: every segment between held snapshots (the last one up to x_{n-1})
    has at most beta(c, 2) steps for its c slots, so its reversal advances no step more than twice."""
    for s in range(2, 21):
        planner = OnlinePlanner(s, "stumm-walther")
        for n in range(2, beta(s, 3) + 1):
            while planner.steps < n - 1:
                planner.forward(planner.steps)
            held = planner.held + (n - 1,)
            for j in range(len(held) - 1):
                assert held[j + 1] - held[j] <= beta(s - j, 2), (s, n, j, held)


def test_wang_moin_repetition_number_is_the_optimal_one():
    """Wang-Moin (and auto past beta(s, 3)): in the reverse sweep no step is advanced more than r(n, s) times."""
    for s in range(2, 6):
        for algorithm, start in (("wang-moin", 2), ("auto", beta(s, 3) + 1)):
            for n in range(start, min(beta(s, 3) + 60, 400), 3):
                planner = OnlinePlanner(s, algorithm)
                for i in range(n - 1):
                    planner.forward(i)
                reverse = list(planner.finish(n))
                counts = advances_per_step(reverse, n)
                assert max(counts) <= repetition(n, s), (s, n, algorithm, max(counts))


def test_golden_placement_of_the_reference_implementation():
    """The snapshots held at x_{n-1} for s = 5, n = 7..21, as the authors' revolve.cpp (Online_r2, run through
    pyrevolve 2.2.8 with revolve_turn at n) and equinox's Stumm-Walther place them."""
    golden = {
        7: (0, 1, 2, 3, 4), 8: (0, 1, 2, 3, 6), 9: (0, 2, 3, 6, 7), 10: (0, 3, 6, 7, 8), 11: (0, 6, 7, 8, 9),
        12: (0, 6, 7, 8, 9), 13: (0, 6, 7, 8, 11), 14: (0, 6, 8, 11, 12), 15: (0, 6, 11, 12, 13),
        16: (0, 6, 11, 12, 13), 17: (0, 6, 11, 12, 15), 18: (0, 6, 11, 15, 16), 19: (0, 6, 11, 15, 16),
        20: (0, 6, 11, 15, 18), 21: (0, 6, 11, 15, 18),
    }
    planner = online(snapshots=5)
    planner.forward(0)
    for n in range(2, 22):
        if n in golden:
            assert planner.held == golden[n], n
        planner.forward(n - 1)


def _reference_online(s, n):
    """Total advances of pyrevolve's online revolve (Stumm and Walther's revolve.cpp) stopped with the last step known."""
    cr = pytest.importorskip("pyrevolve.crevolve")
    r = cr.CRevolve(s)
    cur = 0
    while cur < n - 1:
        a = r.revolve()
        if a == cr.Action.advance:
            cur = min(r.capo, n - 1)
        elif a != cr.Action.takeshot:
            raise AssertionError(a)
    r.turn(n)
    while r.revolve() != cr.Action.terminate:
        pass
    return r.advances


def test_same_counts_as_the_reference_implementation():
    """Equal totals to revolve.cpp's online mode for every n <= beta(s, 3), s = 4..8 (its own branch for s >= 4)."""
    pytest.importorskip("pyrevolve.crevolve")
    for s in (4, 5, 8):
        ns = list(range(2, beta(s, 3) + 1))
        ours = online_cost(ns, snapshots=s, algorithm="stumm-walther")
        assert ours == [_reference_online(s, n) for n in ns], s


def test_incremental_interface_equals_schedule():
    for s in (1, 2, 3, 5):
        for algorithm in ("auto", "wang-moin"):
            for n in (1, 2, 7, 30, 90):
                for known in (True, False):
                    planner = online(snapshots=s, algorithm=algorithm)
                    acts = []
                    for i in range(n - 1 if known else n):
                        acts += planner.forward(i)
                    acts += list(planner.finish(n))
                    assert acts == list(planner.schedule(n, last_step_known=known)), (s, algorithm, n, known)


def test_forward_actions_shape_and_peak():
    """Each forward call: at most one Discard, then at most one Snapshot(i), then Advance(i, i + 1)."""
    planner = online(snapshots=4)
    stored = set()
    for i in range(300):
        acts = planner.forward(i)
        assert acts[-1] == Advance(i, i + 1)
        assert [type(a) for a in acts[:-1]] in ([], [Snapshot], [Discard, Snapshot])
        for a in acts[:-1]:
            (stored.discard if isinstance(a, Discard) else stored.add)(a.index)
        assert len(stored) <= 4 and tuple(sorted(stored)) == planner.held


def test_gradient_driven_by_hand_equals_offline():
    """A manual loop runs a plain numpy step until a stop condition, then the reverse: the gradient equals
    revolve.gradient's under the offline binomial schedule, and the forward evaluations are the predicted ones."""
    h, a = 0.05, 1.3

    def step_np(x):
        return x + h * a * np.sin(x)

    def vjp_np(x, g):  # d step / d x = 1 + h a cos(x), elementwise
        return g * (1.0 + h * a * np.cos(x))

    x0 = np.linspace(0.1, 1.0, 4)
    for known in (False, True):
        planner = online(snapshots=3)
        store, x, i, evals = {}, x0.copy(), 0, 0
        while True:  # the forward: until the state's first entry passes 0.9
            if known and step_np(x)[0] > 0.9:  # the user can tell the next step is the last
                n = i + 1
                break
            if not known and x[0] > 0.9:
                n = i
                break
            for act in planner.forward(i):
                if isinstance(act, Snapshot):
                    store[act.index] = x.copy()
                elif isinstance(act, Discard):
                    del store[act.index]
                else:
                    x, evals = step_np(x), evals + 1
            i += 1
        adj, tape = (2 * x if not known else None), {}
        for act in planner.finish(n):
            if isinstance(act, Restore):
                x = store[act.index].copy()
            elif isinstance(act, Advance):
                for _ in range(act.start, act.stop):
                    x, evals = step_np(x), evals + 1
            elif isinstance(act, Record):
                tape[act.step] = x.copy()
                x, evals = step_np(x), evals + 1
                if adj is None:  # the first record reached x_n
                    adj = 2 * x
            elif isinstance(act, Reverse):
                adj = vjp_np(tape.pop(act.step), adj)
            elif isinstance(act, Snapshot):
                store[act.index] = x.copy()
            elif isinstance(act, Discard):
                del store[act.index]
        assert not tape and len(store) == 0
        offline = revolve.gradient(lambda xx, p, k: xx + h * a * revolve.ad.sin(xx), x0, n_steps=n,
                                   loss=lambda xx: revolve.ad.sum(xx ** 2), snapshots=3)
        np.testing.assert_allclose(adj, offline.grad_x0, rtol=1e-13, atol=0)
        predicted = online_cost(n, snapshots=3, last_step_known=known) + n
        assert evals == predicted, (known, evals, predicted)
        assert n > 10  # the loop really ran long enough to need recomputation


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "3", None])
def test_bad_snapshots_name_the_argument_and_range(bad):
    for make in (lambda: online(snapshots=bad), lambda: OnlinePlanner(bad),
                 lambda: online_cost(5, snapshots=bad)):
        with pytest.raises((TypeError, ValueError)) as e:
            make()
        assert "snapshots must be an integer >= 1" in str(e.value) and repr(bad) in str(e.value)


def test_bad_algorithm_and_protocol_errors():
    with pytest.raises(ValueError, match="algorithm must be one of 'auto', 'stumm-walther', 'wang-moin'"):
        online(snapshots=3, algorithm="revolve")
    planner = online(snapshots=3)
    with pytest.raises(ValueError, match="the next is step 0, got 1"):
        planner.forward(1)
    planner.forward(0)
    planner.forward(1)
    with pytest.raises(ValueError, match="so 2 or 3; got 5"):
        planner.finish(5)
    list(planner.finish(2))
    with pytest.raises(ValueError, match="has finished"):
        planner.forward(2)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        online(snapshots=2).schedule(0)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        online_cost([3, 0], snapshots=2)
    sw = online(snapshots=2, algorithm="stumm-walther")  # beta(2, 3) = 10 steps at most
    for i in range(9):
        sw.forward(i)
    with pytest.raises(ValueError, match=r"beta\(s, 3\) = 10 steps"):
        sw.forward(9)
    with pytest.raises(ValueError, match=r"beta\(s, 3\) = 10"):
        online(snapshots=2, algorithm="stumm-walther").schedule(11)
    assert simulate(online(snapshots=2, algorithm="stumm-walther").schedule(10)).records == 10


@settings(max_examples=25, deadline=None)
@given(s=st.integers(1, 30), n=st.integers(1, 2500), known=st.booleans(),
       algorithm=st.sampled_from(["auto", "wang-moin"]))
def test_random_larger_streams_are_valid(s, n, known, algorithm):
    """Larger n and s than the sweep: valid, <= s snapshots, counted as simulated, never below t(n, s)."""
    stats = simulate(online(snapshots=s, algorithm=algorithm).schedule(n, last_step_known=known))
    assert stats.peak_snapshots <= s and stats.records == n
    assert stats.advances == online_cost(n, snapshots=s, algorithm=algorithm, last_step_known=known)
    assert stats.advances >= closed_form(n if known else n + 1, s)


def test_schedule_round_trips_through_json():
    sched = online(snapshots=3).schedule(30, last_step_known=False)
    back = revolve.Schedule.from_json(sched.to_json())
    assert list(back) == list(sched) and back.params == sched.params and back.kind == "online"
