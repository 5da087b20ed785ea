"""revolve.integrations.torch.gradient and checkpointed_loop: torch steps through the one executor.

Oracles: a closed-form adjoint of a linear recurrence (numpy float64), plain autograd over the unrolled loop
(bitwise, stochastic steps included), the simulator's forward evaluations, and torch.profiler's allocator
events for memory.
"""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import revolve  # noqa: E402
from revolve import ad  # noqa: E402
from revolve.storage import SnapshotCorrupted  # noqa: E402
from revolve.integrations.torch import HostStorage, TorchEngine, checkpointed_loop, gradient  # noqa: E402
from tests.oracles import allocator_peak, random_schedule  # noqa: E402

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine a second one spins and slows every op tenfold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _files(root):
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs] + [d for d, _, _ in os.walk(root) if d != str(root)]


# ---- a linear recurrence against its closed-form adjoint --------------------------------------------

def _linear_problem(n=40, d=6, seed=0):
    rng = np.random.default_rng(seed)
    A = 0.35 * rng.standard_normal((d, d))
    b = rng.standard_normal(d)
    c = rng.standard_normal(d)
    x0 = rng.standard_normal(d)
    # the adjoint recurrence lam_i = A^T lam_{i+1}, lam_n = c, in numpy: d/dx0 = lam_0 = (A^T)^n c,
    # d/db = sum_i lam_{i+1}, d/dA = sum_i lam_{i+1} x_i^T
    xs = [x0]
    for _ in range(n):
        xs.append(A @ xs[-1] + b)
    lam = [None] * (n + 1)
    lam[n] = c
    for i in range(n - 1, -1, -1):
        lam[i] = A.T @ lam[i + 1]
    oracle = dict(value=c @ xs[n], x0=lam[0], b=sum(lam[1:]), A=sum(np.outer(lam[i + 1], xs[i]) for i in range(n)))
    assert np.allclose(lam[0], np.linalg.matrix_power(A.T, n) @ c, rtol=1e-12, atol=1e-14)
    return A, b, c, x0, oracle


def _linear_schedules(n, d):
    S, T = 8 * d, 3 * 8 * d
    chain = revolve.Chain(forward_cost=1, backward_cost=2, state_bytes=S, tape_bytes=T, n_steps=n)
    return {
        "binomial": revolve.binomial(n, snapshots=3),
        "periodic": revolve.periodic(n, every=6),
        "optimal": revolve.optimal(chain, memory=4 * S + 2 * T),
        "store_all": revolve.store_all(n),
    }


@pytest.mark.parametrize("kind", ["binomial", "periodic", "optimal", "store_all"])
def test_linear_recurrence_closed_form_adjoint(kind):
    n, d = 40, 6
    A, b, c, x0, oracle = _linear_problem(n, d)
    sched = _linear_schedules(n, d)[kind]
    calls = []

    def step(x, p, i):
        calls.append(i)
        return p["A"] @ x + p["b"]

    ct = torch.tensor(c)
    r = gradient(step, torch.tensor(x0), n_steps=n, loss=lambda x: ct @ x,
                 params={"A": torch.tensor(A), "b": torch.tensor(b)}, schedule=sched)
    np.testing.assert_allclose(r.value, oracle["value"], rtol=1e-12)
    np.testing.assert_allclose(r.grad_x0.numpy(), oracle["x0"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(r.grad_params["b"].numpy(), oracle["b"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(r.grad_params["A"].numpy(), oracle["A"], rtol=1e-12, atol=1e-14)
    # the step runs exactly as often as the schedule evaluates it (the measuring recording included)
    assert len(calls) == r.stats.forward_evaluations == revolve.simulate(sched, n_steps=n).forward_evaluations

    # the autograd front, the same numbers into .grad
    At, bt = torch.tensor(A, requires_grad=True), torch.tensor(b, requires_grad=True)
    x0t = torch.tensor(x0, requires_grad=True)
    (ct @ checkpointed_loop(step, x0t, n_steps=n, params={"A": At, "b": bt}, schedule=sched)).backward()
    np.testing.assert_allclose(x0t.grad.numpy(), oracle["x0"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(At.grad.numpy(), oracle["A"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(bt.grad.numpy(), oracle["b"], rtol=1e-12, atol=1e-14)


def test_parameter_gradient_sharing_the_adjoints_memory():
    # x + b: autograd hands the same tensor to x's and b's gradients; the engine sums b's in place, so the
    # first contribution must be copied (else the sum and the adjoint would be one tensor: 2^n instead of n)
    n = 7
    c = torch.linspace(-1.0, 1.0, 5, dtype=F64)
    step = lambda x, p, i: x + p["b"]  # noqa: E731
    for plan in (dict(snapshots=3), dict(schedule=revolve.store_all(n))):
        r = gradient(step, torch.ones(5, dtype=F64), n_steps=n, loss=lambda x: (c * x).sum(),
                     params={"b": torch.zeros(5, dtype=F64)}, **plan)
        assert torch.equal(r.grad_params["b"], n * c) and torch.equal(r.grad_x0, c)
        b = torch.zeros(5, dtype=F64, requires_grad=True)
        (c * checkpointed_loop(step, torch.ones(5, dtype=F64), n_steps=n, params={"b": b}, **plan)).sum().backward()
        assert torch.equal(b.grad, n * c)


# ---- nonlinear and stochastic steps, bitwise against plain autograd over the unrolled loop ------------

def _stochastic_step(x, p, i):
    """A recurrent step with dropout and SDE-like noise: every evaluation draws from the RNG."""
    h = torch.tanh(x["h"] @ p["W"] + p["u"] * x["v"])
    h = torch.nn.functional.dropout(h, 0.25, training=True)
    return {"h": h + 0.05 * torch.randn_like(h), "v": 0.9 * x["v"] + 0.1 * h.mean(dim=1, keepdim=True)}


def _stochastic_setup():
    g = torch.Generator().manual_seed(3)
    W = (0.4 * torch.randn(16, 16, generator=g, dtype=F64))
    u = torch.randn(1, 16, generator=g, dtype=F64)
    x0 = {"h": torch.randn(5, 16, generator=g, dtype=F64), "v": torch.randn(5, 1, generator=g, dtype=F64)}
    return W, u, x0


def _loss(x):
    return (x["h"] ** 2).sum() + x["v"].sum()


def _plain(step, x0, params, n, seed):
    """Plain autograd over the unrolled loop: value, grads of x0 and params, and the RNG draw after it."""
    torch.manual_seed(seed)
    p = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    x0 = {k: v.detach().clone().requires_grad_() for k, v in x0.items()}
    x = x0
    for i in range(n):
        x = step(x, p, i)
    value = _loss(x)
    value.backward()
    return value.item(), {k: v.grad for k, v in x0.items()}, {k: v.grad for k, v in p.items()}, torch.rand(3)


STOCHASTIC_PLANS = {
    "binomial": lambda n: dict(schedule=revolve.binomial(n, snapshots=2)),
    "periodic": lambda n: dict(schedule=revolve.periodic(n, every=5)),
    "random": lambda n: dict(schedule=random_schedule(n, np.random.default_rng(1))),
    "memory": lambda n: dict(memory=4 * (5 * 16 + 5) * 8 + 3 * 5056 + 20_000),
}


@pytest.mark.parametrize("plan", list(STOCHASTIC_PLANS))
def test_stochastic_step_is_bitwise_plain_autograd(plan):
    n = 30
    W, u, x0 = _stochastic_setup()
    value, gx, gp, after = _plain(_stochastic_step, x0, {"W": W, "u": u}, n, seed=11)
    kw = STOCHASTIC_PLANS[plan](n)

    torch.manual_seed(11)
    r = gradient(_stochastic_step, x0, n_steps=n, loss=_loss, params={"W": W, "u": u}, **kw)
    assert torch.equal(torch.rand(3), after)  # the caller's stream continues as after the plain loop
    assert r.value == value
    for k in gx:
        assert torch.equal(r.grad_x0[k], gx[k]), k
    for k in gp:
        assert torch.equal(r.grad_params[k], gp[k]), k
    assert r.stats.forward_evaluations > n or plan == "memory"

    torch.manual_seed(11)
    Wl, ul = W.clone().requires_grad_(), u.clone().requires_grad_()
    x0l = {k: v.clone().requires_grad_() for k, v in x0.items()}
    y = checkpointed_loop(_stochastic_step, x0l, n_steps=n, params={"W": Wl, "u": ul}, **kw)
    _loss(y).backward()
    assert torch.equal(torch.rand(3), after)
    assert torch.equal(Wl.grad, gp["W"]) and torch.equal(ul.grad, gp["u"])
    assert torch.equal(x0l["h"].grad, gx["h"]) and torch.equal(x0l["v"].grad, gx["v"])


def test_module_params_and_tuple_state_bitwise_into_grad():
    torch.manual_seed(0)
    cell = torch.nn.GRUCell(8, 8).double()
    xs = torch.randn(25, 3, 8, dtype=F64)

    def step(x, m, i):
        h, acc = x
        h = m(xs[i], h)
        return h, acc + h.pow(2).mean()

    h0 = torch.zeros(3, 8, dtype=F64, requires_grad=True)
    acc0 = torch.zeros((), dtype=F64)
    x = (h0, acc0)
    for i in range(25):
        x = step(x, cell, i)
    (x[0].sum() + x[1]).backward()
    plain = {k: p.grad.clone() for k, p in cell.named_parameters()}
    plain_h0 = h0.grad.clone()
    cell.zero_grad()
    h0.grad = None

    y = checkpointed_loop(step, (h0, acc0), n_steps=25, params=cell, snapshots=3)
    (y[0].sum() + y[1]).backward()
    for k, p in cell.named_parameters():
        assert torch.equal(p.grad, plain[k]), k
    assert torch.equal(h0.grad, plain_h0)
    # the gradient front: gradients by parameter name
    r = gradient(step, (h0, acc0), n_steps=25, loss=lambda x: x[0].sum() + x[1], params=cell, snapshots=3)
    assert set(r.grad_params) == set(plain)
    for k in plain:
        assert torch.equal(r.grad_params[k], plain[k]), k
    assert torch.equal(r.grad_x0[0], plain_h0)


def test_output_feeds_further_torch_code_and_autograd_grad():
    a = torch.tensor(0.7, dtype=F64, requires_grad=True)
    x0 = torch.linspace(0.1, 1.0, 7, dtype=F64)
    step = lambda x, p, i: x + 0.02 * torch.sin(x) * p["a"]  # noqa: E731
    y = checkpointed_loop(step, x0, n_steps=200, params={"a": a}, snapshots=4)
    z = torch.cumsum(y, 0).pow(2).sum() * a  # a also used outside the loop
    (g,) = torch.autograd.grad(z, a)
    ap = a.detach().clone().requires_grad_()
    x = x0
    for i in range(200):
        x = step(x, {"a": ap}, i)
    (gp,) = torch.autograd.grad(torch.cumsum(x, 0).pow(2).sum() * ap, ap)
    torch.testing.assert_close(g, gp, rtol=1e-13, atol=0)
    with pytest.raises(RuntimeError, match="ran twice"):
        y2 = checkpointed_loop(step, x0, n_steps=20, params={"a": a}, snapshots=2)
        s = y2.sum()
        s.backward(retain_graph=True)
        s.backward()


# ---- step calls: exactly the schedule's evaluations, for both engines --------------------------------

@pytest.mark.parametrize("engine", ["numpy", "torch"])
@pytest.mark.parametrize("plan", [dict(snapshots=3), dict(memory=3000), dict(schedule="periodic"),
                                  dict(memory=1e9)])
def test_step_calls_equal_the_schedules_evaluations(engine, plan):
    n = 150
    calls = []
    if plan.get("schedule") == "periodic":
        plan = dict(schedule=revolve.periodic(n, every=9))
    if engine == "numpy":
        def step(x, p, i):
            calls.append(i)
            return x * 0.99 + 0.01

        r = revolve.gradient(step, np.ones(3), n_steps=n, loss=lambda x: ad.sum(x), **plan)
    else:
        def step(x, p, i):
            calls.append(i)
            return x * 0.99 + 0.01

        r = gradient(step, torch.ones(3, dtype=F64), n_steps=n, loss=lambda x: x.sum(),
                     preserve_rng_state=False, **plan)
    assert len(calls) == r.stats.forward_evaluations == r.stats.predicted.forward_evaluations
    assert calls.count(n - 1) == 1


# ---- snapshots on disk and in host memory -----------------------------------------------------------

def test_disk_and_host_snapshots_bitwise_checksummed_and_removed(tmp_path):
    n = 30
    W, u, x0 = _stochastic_setup()
    value, gx, gp, _ = _plain(_stochastic_step, x0, {"W": W, "u": u}, n, seed=5)
    sched = random_schedule(n, np.random.default_rng(7), levels=("ram", "host", "disk"))
    seen = []

    def step(x, p, i):
        seen.append(len(_files(tmp_path)))
        return _stochastic_step(x, p, i)

    torch.manual_seed(5)
    r = gradient(step, x0, n_steps=n, loss=_loss, params={"W": W, "u": u}, schedule=sched,
                 storage={"disk": tmp_path, "host": HostStorage()})
    assert max(seen) > 0 and _files(tmp_path) == []  # files were written, and removed at the end
    assert r.value == value and torch.equal(r.grad_params["W"], gp["W"]) and torch.equal(r.grad_x0["h"], gx["h"])


class _Stop(Exception):
    pass


@pytest.mark.parametrize("exc", [_Stop, KeyboardInterrupt])
def test_disk_snapshots_removed_on_failure_and_interruption(tmp_path, exc):
    n = 40
    sched = random_schedule(n, np.random.default_rng(2), levels=("disk",))
    count = [0]

    def step(x, p, i):
        count[0] += 1
        if count[0] == 60:
            assert _files(tmp_path)
            raise exc("stop")
        return x + 0.1 * torch.sin(x)

    with pytest.raises(exc):
        gradient(step, torch.ones(4, dtype=F64), n_steps=n, loss=lambda x: x.sum(), schedule=sched,
                 storage={"disk": tmp_path})
    assert _files(tmp_path) == []
    count[0] = 0
    with pytest.raises(exc):  # in the autograd front's backward too
        checkpointed_loop(step, torch.ones(4, dtype=F64, requires_grad=True), n_steps=n, schedule=sched,
                          storage={"disk": tmp_path}).sum().backward()
    assert _files(tmp_path) == []


def test_corrupted_disk_snapshot_is_refused_and_a_dropped_graph_removes_its_files(tmp_path):
    import gc

    n = 12
    sched = revolve.Schedule.from_actions(
        [revolve.Snapshot(a.index, "disk") if isinstance(a, revolve.Snapshot) else a
         for a in revolve.binomial(n, snapshots=2)], n_steps=n)
    step = lambda x, p, i: x * 1.01 + 0.1  # noqa: E731
    x0 = torch.ones(6, dtype=F64, requires_grad=True)
    y = checkpointed_loop(step, x0, n_steps=n, schedule=sched, storage={"disk": tmp_path})
    files = [f for f in _files(tmp_path) if f.endswith(".state")]
    assert files
    with open(files[0], "r+b") as f:
        f.seek(-2, 2)
        f.write(b"\xff\xff")
    with pytest.raises(SnapshotCorrupted, match="SHA-256"):
        y.sum().backward()
    assert _files(tmp_path) == []
    # a graph dropped before its backward frees its snapshot files with it
    y = checkpointed_loop(step, x0, n_steps=n, schedule=sched, storage={"disk": tmp_path})
    assert _files(tmp_path)
    del y
    gc.collect()
    assert _files(tmp_path) == []
    e = TorchEngine()
    state = {"a": torch.arange(5, dtype=torch.bfloat16), "b": torch.ones(2, 3, dtype=F64)}
    back = [e.from_bytes(*spec_blob) for spec_blob in _round_trip(e, state)]
    assert all(torch.equal(v, w) and v.dtype == w.dtype for (v, _), w in zip(back, [state["a"], state["b"]]))
    assert e.checksum(state) == e.checksum({k: v.clone() for k, v in state.items()})
    assert e.checksum(state) != e.checksum({"a": state["a"], "b": state["b"] * 2})


def _round_trip(e, state):
    out = []
    for leaf in (state["a"], state["b"]):
        spec, data = e.to_bytes(leaf)
        out.append((spec, bytes(data), 0))
    return out


# ---- errors that name the problem -------------------------------------------------------------------

def test_errors():
    w = torch.tensor(2.0, requires_grad=True)
    with pytest.raises(ValueError, match="neither in x nor in params"):
        gradient(lambda x, p, i: x * w, torch.ones(2), n_steps=3, loss=lambda x: x.sum())

    def in_place(x, p, i):
        return x.add_(1.0) if not x.requires_grad else x + 1.0

    with pytest.raises(RuntimeError, match="modified in place"):
        gradient(in_place, torch.ones(2), n_steps=10, loss=lambda x: x.sum(), snapshots=2)
    with pytest.raises(TypeError, match="scalar tensor"):
        gradient(lambda x, p, i: x * 2, torch.ones(2), n_steps=3, loss=lambda x: x)
    with pytest.raises(TypeError, match="floating point tensors"):
        gradient(lambda x, p, i: x * 2, torch.ones(2, dtype=torch.int64), n_steps=3, loss=lambda x: x.sum())
    with pytest.raises(TypeError, match="x0 must be a tensor"):
        checkpointed_loop(lambda x, p, i: x * 2, np.ones(2), n_steps=3)
    with pytest.raises(ValueError, match="give at most one of schedule, snapshots and memory"):
        checkpointed_loop(lambda x, p, i: x * 2, torch.ones(2), n_steps=3, snapshots=2, memory=100)
    with pytest.raises(revolve.InfeasibleBudget, match="smallest budget"):
        gradient(lambda x, p, i: x * 2, torch.ones(1000), n_steps=300, loss=lambda x: x.sum(), memory=100)


def test_backward_under_another_autocast_state_recomputes_in_the_forwards():
    torch.manual_seed(0)
    W = torch.randn(8, 8)
    step = lambda x, p, i: torch.tanh(x @ p["W"])  # noqa: E731
    x0 = torch.randn(4, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = x0
        for i in range(12):
            x = step(x, {"W": W}, i)
        (gp,) = torch.autograd.grad(x.float().sum(), x0)
        y = checkpointed_loop(step, x0, n_steps=12, params={"W": W}, snapshots=2)
    assert y.dtype == torch.bfloat16
    (g,) = torch.autograd.grad(y.float().sum(), x0)  # backward outside autocast: recomputes in bf16
    assert torch.equal(g, gp)


# ---- memory: the allocator's peak within the plan plus one step's working memory -----------------------

def test_memory_peak_within_plan_plus_one_steps_working_memory():
    n, m = 600, 2 * 10**4
    state = 8 * m
    x0 = torch.linspace(0.0, 1.0, m, dtype=F64)
    a = torch.tensor(0.3, dtype=F64)
    step = lambda x, p, i: x + 1e-3 * torch.sin(x) * p["a"]  # noqa: E731
    loss = lambda x: (x * x).sum()  # noqa: E731

    def one_step():  # plain autograd of one step: its working memory, measured apart from the executor
        xd = x0.clone().requires_grad_()
        torch.autograd.grad(loss(step(xd, {"a": a}, 0)), xd)

    working = allocator_peak(one_step)
    holder = {}

    def run():
        holder["r"] = gradient(step, x0, n_steps=n, loss=loss, params={"a": a}, memory=12 * state,
                               preserve_rng_state=False)

    peak = allocator_peak(run)
    stats = holder["r"].stats
    plan = stats.predicted.peak_memory
    plain_would_need = n * stats.tape_bytes
    assert stats.predicted.peak_snapshots <= 11
    assert plan <= 12 * state
    assert peak <= plan + working + 2 * state, (peak, plan, working)  # + the adjoint and the working state
    # memory= bounds the allocator's peak itself: the plan got what one step's working memory left
    assert peak <= 12 * state, (peak, plan)
    assert plan + TorchEngine().measure_working(step, x0, {"a": a}, "test") <= 12 * state
    assert plain_would_need > 50 * peak
    # a budget where a periodic plan fits beside its lighter working memory (no recomputing advance in the
    # reverse sweep, each segment's first input counted twice by the plan): chosen, and still within memory
    calls = []

    def counted(x, p, i):
        calls.append(i)
        return step(x, p, i)

    holder["loop"] = []
    a_ = a.clone().requires_grad_()

    def run_loop():
        y = checkpointed_loop(counted, x0, n_steps=150, params={"a": a_}, memory=40 * state,
                              preserve_rng_state=False, stats=holder["loop"].append)
        loss(y).backward()

    peak_periodic = allocator_peak(run_loop)
    st = holder["loop"][0]
    assert st.schedule.startswith("Schedule(kind='periodic'"), st.schedule
    assert peak_periodic <= 40 * state, (peak_periodic, st.predicted.peak_memory)
    assert len(calls) == st.forward_evaluations == st.predicted.forward_evaluations
    print(f"\nmemory: {n} steps of {m} float64: allocator peak {peak / 2**20:.1f} MiB, plan "
          f"{plan / 2**20:.1f} MiB + one step's working memory {working / 2**20:.1f} MiB; plain autograd would "
          f"need {plain_would_need / 2**30:.2f} GiB of tapes; {stats.forward_evaluations} evaluations")
