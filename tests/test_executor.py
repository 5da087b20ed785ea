import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import revolve
from revolve import InfeasibleBudget, ScheduleError, ad, gradient
from revolve.examples import burgers, lorenz
from revolve.storage import DiskStorage, SnapshotCorrupted

from .oracles import random_schedule


def small_burgers(points=64):
    return burgers(points, nu=0.05)


@pytest.fixture(scope="module")
def reference():
    step, u0, p, loss = small_burgers()
    return gradient(step, u0, n_steps=40, loss=loss, params=p)


SCHEDULES = [
    lambda n: revolve.binomial(n, snapshots=1),
    lambda n: revolve.binomial(n, snapshots=3),
    lambda n: revolve.binomial(n, snapshots=n + 2),
    lambda n: revolve.periodic(n, every=7),
    lambda n: revolve.store_all(n),
    lambda n: revolve.Schedule.from_json(revolve.binomial(n, snapshots=4).to_json()),
]


@pytest.mark.parametrize("k", range(len(SCHEDULES)))
def test_every_schedule_kind_is_bitwise_store_all(reference, k):
    step, u0, p, loss = small_burgers()
    sched = SCHEDULES[k](40)
    r = gradient(step, u0, n_steps=40, loss=loss, params=p, schedule=sched)
    assert np.array_equal(r.grad_x0, reference.grad_x0)
    assert np.array_equal(r.grad_params["nu"], reference.grad_params["nu"])
    assert r.value == reference.value
    # counts and memory agree with the simulator under the measured chain
    assert r.stats.forward_evaluations == r.stats.predicted.forward_evaluations
    assert r.stats.advances == r.stats.predicted.advances
    assert r.stats.peak_bytes == r.stats.predicted.peak_memory


def test_optimal_schedule_under_budget(reference):
    step, u0, p, loss = small_burgers()
    budget = reference.stats.peak_bytes * 0.2
    r = gradient(step, u0, n_steps=40, loss=loss, params=p, memory=budget)
    assert r.stats.peak_bytes <= budget
    assert r.stats.peak_bytes == r.stats.predicted.peak_memory
    assert np.array_equal(r.grad_x0, reference.grad_x0)


@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=15)
def test_random_schedules_bitwise(reference, seed):
    step, u0, p, loss = small_burgers()
    sched = random_schedule(40, np.random.default_rng(seed))
    r = gradient(step, u0, n_steps=40, loss=loss, params=p, schedule=sched)
    assert np.array_equal(r.grad_x0, reference.grad_x0)
    assert np.array_equal(r.grad_params["nu"], reference.grad_params["nu"])
    assert r.stats.peak_bytes == r.stats.predicted.peak_memory


def test_linear_recurrence_closed_form_adjoint():
    # x_{i+1} = A x_i + c sin(i); L = 0.5 |x_n|^2. Adjoint: lam_n = x_n, lam_i = A^T lam_{i+1};
    # dL/dA = sum_i lam_{i+1} x_i^T, dL/dc = sum_i lam_{i+1} sin(i)
    rng = np.random.default_rng(5)
    m, n = 4, 60
    A = 0.3 * rng.standard_normal((m, m))
    c = rng.standard_normal(m)
    x0 = rng.standard_normal(m)
    xs = [x0]
    for i in range(n):
        xs.append(A @ xs[-1] + c * np.sin(i))
    lam = xs[-1]
    gA, gc = np.zeros_like(A), np.zeros_like(c)
    for i in range(n - 1, -1, -1):
        gA += np.outer(lam, xs[i])
        gc += lam * np.sin(i)
        lam = A.T @ lam
    r = gradient(lambda x, p, i: p["A"] @ x + p["c"] * np.sin(i), x0, n_steps=n,
                 loss=lambda x: 0.5 * ad.sum(x * x), params={"A": A, "c": c}, snapshots=3)
    np.testing.assert_allclose(r.grad_x0, lam, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(r.grad_params["A"], gA, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(r.grad_params["c"], gc, rtol=1e-12, atol=1e-13)
    assert np.isclose(r.value, 0.5 * xs[-1] @ xs[-1])


def central(f, eps):
    return (f(eps) - f(-eps)) / (2 * eps)


def test_burgers_against_finite_differences():
    step, u0, p, loss = small_burgers(128)
    n = 60

    def run(u, nu):
        for i in range(n):
            u = step(u, {"nu": nu}, i)
        return float(loss(u))

    r = gradient(step, u0, n_steps=n, loss=loss, params=p, snapshots=4)
    v = np.random.default_rng(1).standard_normal(u0.shape)
    fd_u = central(lambda e: run(u0 + e * v, p["nu"]), 1e-6)
    fd_nu = central(lambda e: run(u0, p["nu"] + e), 1e-7)
    assert np.isclose(r.grad_x0 @ v, fd_u, rtol=1e-6)
    assert np.isclose(float(r.grad_params["nu"]), fd_nu, rtol=1e-6)


def test_lorenz_against_finite_differences():
    step, s0, p, loss = lorenz()
    n = 200

    def run(s, pp):
        for i in range(n):
            s = step(s, pp, i)
        return float(loss(s))

    r = gradient(step, s0, n_steps=n, loss=loss, params=p, schedule=revolve.binomial(n, snapshots=6))
    for k in range(3):
        e = np.eye(3)[k]
        assert np.isclose(r.grad_x0[k], central(lambda h: run(s0 + h * e, p), 1e-6), rtol=1e-5)
    for name in p:
        fd = central(lambda h: run(s0, {**p, name: p[name] + h}), 1e-6)
        assert np.isclose(float(r.grad_params[name]), fd, rtol=1e-5), name


def test_no_params():
    r = gradient(lambda x, p, i: x * 0.9 + 0.1, np.ones(3), n_steps=10, loss=lambda x: ad.sum(x), snapshots=2)
    assert r.grad_params is None
    np.testing.assert_allclose(r.grad_x0, 0.9 ** 10)


def test_pytree_state():
    def step(s, p, i):
        return {"a": s["a"] + 0.1 * s["b"], "b": s["b"] - 0.1 * s["a"] * p}

    x0 = {"a": np.ones(2), "b": np.zeros(2)}
    r1 = gradient(step, x0, n_steps=30, loss=lambda s: ad.sum(s["a"] ** 2), params=np.array(1.5))
    r2 = gradient(step, x0, n_steps=30, loss=lambda s: ad.sum(s["a"] ** 2), params=np.array(1.5), snapshots=3)
    assert np.array_equal(r1.grad_x0["b"], r2.grad_x0["b"]) and np.array_equal(r1.grad_params, r2.grad_params)


def disk_files(root):
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs] + [d for d, _, _ in os.walk(root) if d != str(root)]


def test_disk_storage_bitwise_and_cleaned(tmp_path, reference):
    step, u0, p, loss = small_burgers()
    sched = random_schedule(40, np.random.default_rng(3), levels=("ram", "disk"))
    r = gradient(step, u0, n_steps=40, loss=loss, params=p, schedule=sched, storage={"disk": tmp_path})
    assert np.array_equal(r.grad_x0, reference.grad_x0)
    assert disk_files(tmp_path) == []


def test_corrupted_snapshot_is_caught_and_named(tmp_path):
    step, u0, p, loss = small_burgers()

    class Corrupting(DiskStorage):
        def put(self, index, state):
            size = super().put(index, state)
            if index == 8:
                path = self._path(index)
                data = bytearray(open(path, "rb").read())
                data[-3] ^= 0xFF
                open(path, "wb").write(bytes(data))
            return size

    # x_8 goes to disk and is restored once; steps 7..0 then run from x_0 with one slot
    head = [revolve.Snapshot(0), revolve.Advance(0, 8), revolve.Snapshot(8, "disk"), revolve.Advance(8, 9),
            revolve.Record(9), revolve.Reverse(9), revolve.Restore(8), revolve.Record(8), revolve.Reverse(8),
            revolve.Discard(8), revolve.Restore(0)]
    sched = revolve.Schedule.from_actions(head + list(revolve.binomial(8, snapshots=1))[1:-1], n_steps=10)
    backend = Corrupting(tmp_path)
    with pytest.raises(SnapshotCorrupted, match="snapshot of state x_8 .* failed its SHA-256 check"):
        gradient(step, u0, n_steps=10, loss=loss, params=p, schedule=sched, storage={"disk": backend})
    assert disk_files(tmp_path) == []


class Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_failure_mid_run_leaves_nothing(tmp_path, exc):
    step, u0, p, loss = small_burgers()

    def failing(u, pp, i):
        if i == 25 and failing.calls > 30:
            raise exc("stop here")
        failing.calls += 1
        return step(u, pp, i)

    failing.calls = 0
    sched = random_schedule(40, np.random.default_rng(9), levels=("disk",))
    with pytest.raises(exc) as info:
        gradient(failing, u0, n_steps=40, loss=loss, params=p, schedule=sched, storage={"disk": tmp_path})
    if exc is Boom:
        assert any("step 25" in note for note in getattr(info.value, "__notes__", []))
    assert disk_files(tmp_path) == []


def test_loss_error_names_loss():
    def bad_loss(x):
        raise RuntimeError("no")

    with pytest.raises(RuntimeError) as info:
        gradient(lambda x, p, i: x * 1.0, np.ones(2), n_steps=3, loss=bad_loss)
    assert any("loss(x_3)" in n for n in getattr(info.value, "__notes__", []))


def test_check_finite_names_step():
    step = lambda x, p, i: x * 10.0 if i < 5 else ad.log(x - 1e30)  # noqa: E731
    with pytest.raises(FloatingPointError, match="step 5 produced a non-finite state"):
        with np.errstate(invalid="ignore"):
            gradient(step, np.ones(2), n_steps=8, loss=lambda x: ad.sum(x), check_finite=True)


def test_infeasible_memory_names_minimum():
    step, u0, p, loss = small_burgers()
    with pytest.raises(InfeasibleBudget, match="smallest budget"):
        gradient(step, u0, n_steps=300, loss=loss, params=p, memory=1000)


@pytest.mark.parametrize(
    "kw,exc,msg",
    [
        (dict(snapshots=3, memory=1e6), ValueError, "at most one of schedule, snapshots and memory"),
        (dict(snapshots=0), ValueError, "snapshots must be >= 1"),
        (dict(schedule=revolve.binomial(5, snapshots=2)), ValueError, "schedule is for 5 steps but n_steps=10"),
        (dict(schedule="binomial"), TypeError, "schedule must be a revolve.Schedule"),
        (dict(memory="lots"), ValueError, "memory must be a size"),
        (dict(storage={"tape": "/tmp"}), ValueError, "never uses"),
    ],
)
def test_bad_arguments(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        gradient(lambda x, p, i: x * 1.0, np.ones(2), n_steps=10, loss=lambda x: ad.sum(x), **kw)


def test_disk_level_without_backend():
    sched = revolve.Schedule.from_actions([revolve.Snapshot(0, "disk"), revolve.Record(0), revolve.Reverse(0)], n_steps=1)
    with pytest.raises(ValueError, match="storage= names no backend"):
        gradient(lambda x, p, i: x * 1.0, np.ones(2), n_steps=1, loss=lambda x: ad.sum(x), schedule=sched)


def test_invalid_schedule_rejected_before_work():
    calls = []
    sched = revolve.Schedule.from_actions([revolve.Record(1)], n_steps=2)
    with pytest.raises(ScheduleError, match="action #0"):
        gradient(lambda x, p, i: calls.append(i) or x * 1.0, np.ones(2), n_steps=2, loss=lambda x: ad.sum(x), schedule=sched)
    assert len(calls) <= 2  # only the measurement of one step ran


def test_progress_bar_does_not_change_the_result(capsys):
    step = lambda x, p, i: x * 0.99 + 0.01  # noqa: E731
    a = gradient(step, np.ones(3), n_steps=50, loss=lambda x: ad.sum(x ** 2), snapshots=3, progress=True)
    b = gradient(step, np.ones(3), n_steps=50, loss=lambda x: ad.sum(x ** 2), snapshots=3, progress=False)
    assert np.array_equal(a.grad_x0, b.grad_x0)
    assert "reversed steps" in capsys.readouterr().err


def test_run_leaves_no_cyclic_garbage():
    import gc

    step, u0, p, loss = small_burgers()
    gc.collect()
    gc.disable()
    try:
        gradient(step, u0, n_steps=30, loss=loss, params=p, snapshots=3)
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_plan_for_memory_takes_the_fewer_evaluations_of_revolve_and_periodic():
    from revolve.executor import StepMeasurement, plan_for_memory

    m = StepMeasurement(state_bytes=8, tape_bytes=24, forward_time=1.0, backward_time=2.0)
    n = 500
    for memory in (40, 200, 1000, 4000, 8000, 11_000):
        sched = plan_for_memory(m, n, memory)
        stats = revolve.simulate(sched, m.chain(n))
        assert stats.peak_memory <= memory
        # an independent search over every binomial slot count and periodic segment length that fits
        best = min(
            [revolve.simulate(revolve.binomial(n, snapshots=s), m.chain(n)).forward_evaluations
             for s in range(1, n + 1) if s * 8 + 24 <= memory]
            + [revolve.simulate(revolve.periodic(n, every=k), m.chain(n)).forward_evaluations
               for k in range(1, n + 1) if ((n - 1) // k) * 8 + k * 24 <= memory]
        )
        assert stats.forward_evaluations == best, (memory, sched)


# ---- in-place steps, the caller's x0, and step calls (NOTE [ The caller's x0 and in-place steps ]) ----

def _in_place_step(x, p, i):
    x += 0.1 * ad.sin(x) * p["a"]  # plain arrays while advancing: updated in place
    return x


def _unrolled_oracle(x0, a, n):
    """The same recurrence, functional, differentiated as one tape (no executor involved)."""
    def f(x, a):
        for _ in range(n):
            x = x + 0.1 * ad.sin(x) * a
        return ad.sum(x * x)

    return ad.value_and_grad(f, argnums=(0, 1))(x0, a)


IN_PLACE_SCHEDULES = [
    lambda n: revolve.binomial(n, snapshots=2),
    lambda n: revolve.binomial(n, snapshots=5),
    lambda n: revolve.periodic(n, every=4),
    lambda n: revolve.store_all(n),
]


@pytest.mark.parametrize("k", range(len(IN_PLACE_SCHEDULES)))
def test_an_in_place_step_gets_the_exact_gradient_and_x0_is_untouched(k):
    n = 17
    x0 = np.linspace(0.2, 1.4, 5)
    keep = x0.copy()
    a = np.array(1.3)
    r = gradient(_in_place_step, x0, n_steps=n, loss=lambda x: ad.sum(x * x), params={"a": a},
                 schedule=IN_PLACE_SCHEDULES[k](n))
    np.testing.assert_array_equal(x0, keep)  # the caller's x0 is never changed
    value, (gx, ga) = _unrolled_oracle(keep, a, n)
    np.testing.assert_allclose(r.value, value, rtol=1e-14)
    np.testing.assert_allclose(r.grad_x0, gx, rtol=1e-13)
    np.testing.assert_allclose(r.grad_params["a"], ga, rtol=1e-13)
    assert a.flags.writeable  # parameters stay the caller's to update
    # and against central differences, independent of the engine
    h = 1e-6
    fd = (_unrolled_oracle(keep, a + h, n)[0] - _unrolled_oracle(keep, a - h, n)[0]) / (2 * h)
    np.testing.assert_allclose(r.grad_params["a"], fd, rtol=1e-7)


def test_an_in_place_step_under_a_memory_budget_and_disk_snapshots(tmp_path):
    n = 40
    x0 = np.linspace(0.2, 1.4, 64)
    a = np.array(0.7)
    value, (gx, ga) = _unrolled_oracle(x0.copy(), a, n)
    on_disk = random_schedule(n, np.random.default_rng(5), levels=("ram", "disk"))
    for kw in ({"memory": 12 * x0.nbytes}, {"schedule": on_disk, "storage": {"disk": str(tmp_path)}}):
        r = gradient(_in_place_step, x0, n_steps=n, loss=lambda x: ad.sum(x * x), params={"a": a}, **kw)
        np.testing.assert_allclose(r.grad_x0, gx, rtol=1e-13)
        np.testing.assert_allclose(r.grad_params["a"], ga, rtol=1e-13)


@pytest.mark.parametrize("make", [lambda n: revolve.binomial(n, snapshots=3), lambda n: revolve.periodic(n, every=5),
                                  lambda n: revolve.store_all(n), lambda n: revolve.binomial(n, snapshots=1)])
def test_the_step_is_called_exactly_as_often_as_the_schedule_evaluates(make):
    calls = []

    def step(x, p, i):
        calls.append(i)
        return x * 0.9 + 0.1

    n = 23
    sched = make(n)
    r = gradient(step, np.ones(3), n_steps=n, loss=lambda x: ad.sum(x), schedule=sched)
    assert len(calls) == r.stats.forward_evaluations == revolve.simulate(sched, n_steps=n).forward_evaluations
    assert calls[0] == 0 and calls.count(n - 1) == 1  # the last step is recorded once, never advanced


def test_a_failure_in_step_0_names_step_0():
    def step(x, p, i):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom") as info:
        gradient(step, np.ones(3), n_steps=4, loss=lambda x: ad.sum(x), snapshots=2)
    assert any("raised in step 0" in note for note in info.value.__notes__)
