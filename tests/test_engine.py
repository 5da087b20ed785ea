"""The engine protocol (revolve/engine.py) and what the one executor does for every engine: step calls, the
stop condition driving the online planner, and disk snapshots through an engine's bytes."""

import numpy as np
import pytest

import revolve
from revolve import ad
from revolve.engine import Engine, NumpyEngine
from revolve.storage import DiskStorage

torch = pytest.importorskip("torch")
from revolve.integrations.torch import TorchEngine  # noqa: E402
from revolve.integrations.torch import gradient as torch_gradient  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_both_engines_satisfy_the_protocol():
    assert isinstance(NumpyEngine(), Engine) and isinstance(TorchEngine(), Engine)


@pytest.mark.parametrize("engine", [NumpyEngine(), TorchEngine()], ids=["numpy", "torch"])
def test_disk_round_trip_is_bitwise_and_checksummed(tmp_path, engine):
    if isinstance(engine, NumpyEngine):
        state = {"a": np.linspace(0, 1, 7, dtype=np.float32), "b": (np.full((2, 3), np.pi),)}
        equal = np.array_equal
    else:
        state = {"a": torch.linspace(0, 1, 7, dtype=torch.bfloat16), "b": (torch.full((2, 3), np.pi, dtype=torch.float64),)}
        equal = torch.equal
    d = DiskStorage(tmp_path, engine)
    assert d.put(4, state) == engine.state_bytes(state)
    back = d.get(4)
    assert equal(back["a"], state["a"]) and equal(back["b"][0], state["b"][0])
    assert back["a"].dtype == state["a"].dtype
    assert engine.checksum(back) == engine.checksum(state)
    d.close()


def test_a_custom_backend_without_an_engine_gets_the_runs():
    class Recording:
        engine = None

        def __init__(self):
            self.data = {}

        def put(self, index, state):
            self.data[index] = self.engine.snapshot(state)
            return self.engine.state_bytes(state)

        def get(self, index):
            return self.engine.restore(self.data[index])

        def delete(self, index):
            del self.data[index]

        def close(self):
            self.data.clear()

    n = 20
    sched = revolve.Schedule.from_actions(
        [revolve.Snapshot(a.index, "mine") if isinstance(a, revolve.Snapshot) else a
         for a in revolve.binomial(n, snapshots=3)], n_steps=n)
    backend = Recording()
    step = lambda x, p, i: x + 0.1 * torch.sin(x)  # noqa: E731
    r = torch_gradient(step, torch.ones(3, dtype=torch.float64), n_steps=n, loss=lambda x: x.sum(), schedule=sched,
                       storage={"mine": backend})
    assert isinstance(backend.engine, TorchEngine)
    ref = torch_gradient(step, torch.ones(3, dtype=torch.float64), n_steps=n, loss=lambda x: x.sum())
    assert torch.equal(r.grad_x0, ref.grad_x0)


# ---- stop condition: n decided by the run, snapshots by the online planner ----------------------------

def _numpy_problem():
    step = lambda x, p, i: x + 0.05 * ad.sin(x) * p["a"]  # noqa: E731
    return step, np.linspace(0.2, 1.0, 4), {"a": np.array(1.3)}


@pytest.mark.parametrize("snapshots", [2, 4, 9])
def test_stop_condition_numpy_equals_the_fixed_n_gradient(snapshots):
    step, x0, p = _numpy_problem()
    stop = lambda x, i: float(np.sum(x)) > 9.0  # noqa: E731
    x, n = x0.copy(), 0  # the oracle's n: a plain forward
    while not stop(x, n):
        x, n = step(x, p, n), n + 1
    calls = []

    def counted(x, pp, i):
        calls.append(i)
        return step(x, pp, i)

    r = revolve.gradient(counted, x0, stop=stop, loss=lambda x: ad.sum(x * x), params=p, snapshots=snapshots)
    ref = revolve.gradient(step, x0, n_steps=n, loss=lambda x: ad.sum(x * x), params=p)
    assert r.stats.n_steps == n > 20
    assert np.array_equal(r.grad_x0, ref.grad_x0) and np.array_equal(r.grad_params["a"], ref.grad_params["a"])
    assert len(calls) == r.stats.forward_evaluations == r.stats.predicted.forward_evaluations
    expected = revolve.simulate(revolve.online(snapshots=snapshots).schedule(n, last_step_known=False), n_steps=n)
    assert r.stats.forward_evaluations == expected.forward_evaluations
    assert r.stats.predicted.peak_snapshots <= snapshots


def test_stop_condition_torch_bitwise_plain_autograd_both_fronts():
    from revolve.integrations.torch import checkpointed_loop

    def step(x, p, i):
        return x + 0.05 * torch.tanh(x * p["a"]) + 0.01 * torch.randn_like(x)

    stop = lambda x, i: bool(x.sum() > 6.0) or i >= 400  # noqa: E731
    x0 = torch.linspace(0.2, 1.0, 5, dtype=torch.float64)
    a = torch.tensor(1.1, dtype=torch.float64)
    torch.manual_seed(2)
    ap, xp = a.clone().requires_grad_(), x0.clone().requires_grad_()
    x, n = xp, 0
    while not stop(x.detach(), n):
        x, n = step(x, {"a": ap}, n), n + 1
    (x * x).sum().backward()
    after = torch.rand(2)
    calls = []

    def counted(x, p, i):
        calls.append(i)
        return step(x, p, i)

    torch.manual_seed(2)
    r = torch_gradient(counted, x0, stop=stop, loss=lambda x: (x * x).sum(), params={"a": a}, snapshots=3)
    assert torch.equal(torch.rand(2), after)
    assert r.stats.n_steps == n > 10
    assert torch.equal(r.grad_x0, xp.grad) and torch.equal(r.grad_params["a"], ap.grad)
    assert len(calls) == r.stats.forward_evaluations == r.stats.predicted.forward_evaluations
    torch.manual_seed(2)
    al, xl = a.clone().requires_grad_(), x0.clone().requires_grad_()
    y = checkpointed_loop(step, xl, stop=stop, params={"a": al}, memory=3 * 5 * 8 + 3 * 5056 + 4000)
    (y * y).sum().backward()
    assert torch.equal(al.grad, ap.grad) and torch.equal(xl.grad, xp.grad)


def test_stop_condition_errors():
    step, x0, p = _numpy_problem()
    loss = lambda x: ad.sum(x)  # noqa: E731
    with pytest.raises(ValueError, match="no step to differentiate"):
        revolve.gradient(step, x0, stop=lambda x, i: True, loss=loss, snapshots=2)
    with pytest.raises(ValueError, match="not both"):
        revolve.gradient(step, x0, n_steps=3, stop=lambda x, i: i > 2, loss=loss, snapshots=2)
    with pytest.raises(ValueError, match="give snapshots= .* or memory="):
        revolve.gradient(step, x0, stop=lambda x, i: i > 2, loss=loss)
    with pytest.raises(TypeError, match="give n_steps"):
        revolve.gradient(step, x0, loss=loss)
    with pytest.raises(ValueError, match="planned online"):
        revolve.gradient(step, x0, stop=lambda x, i: i > 2, loss=loss, schedule=revolve.store_all(3))
