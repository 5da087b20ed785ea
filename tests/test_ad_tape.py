"""Lean tapes and honest accounting (issue 13, item 4).

Oracles: torch's saved tensors for the same computation, counted with ``torch.autograd.graph.saved_tensors_hooks``
(each storage once), for what a tape keeps; torch float64 autograd for the gradients; tracemalloc for
``tape_bytes`` and for ``revolve.gradient``'s peak against its plan.
"""

import gc
import itertools
import tracemalloc

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import revolve  # noqa: E402
from revolve import ad  # noqa: E402
from revolve.examples import lorenz  # noqa: E402

from .oracles import experiments_common  # noqa: E402

rng = np.random.default_rng(4)


def torch_saved_bytes(f, *args):
    """Bytes of the distinct storages torch's autograd saves for backward while computing f(*args)."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        f(*args)
    return sum(storages.values())


def kept_array_bytes(pb) -> int:
    """Data bytes of the distinct arrays a pullback's tape keeps (a view counts its base once)."""
    bases = {}
    for node in pb._tape.nodes:
        if node is None:
            continue
        for v in (*node.args, node.out):
            if isinstance(v, np.ndarray):
                while isinstance(v.base, np.ndarray):
                    v = v.base
                bases[id(v)] = v.nbytes
    return sum(bases.values())


def leaves(*arrays):
    return [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]


# ---- whole computations: the RK2 stencil step, an MLP, an elementwise mix -----------------------------

N = 100_000


def rk2(lib):
    dx, dt, nu = 1.0 / N, 1e-4, 0.01
    roll = ad.roll if lib is ad else torch.roll

    def rhs(u):
        up, um = roll(u, -1), roll(u, 1)
        return -u * (up - um) / (2 * dx) + nu * (up - 2 * u + um) / (dx * dx)

    def f(u):
        k1 = rhs(u)
        k2 = rhs(u + dt * k1)
        return lib.sum((u + 0.5 * dt * (k1 + k2)) ** 2)

    return f, [np.sin(np.linspace(0, 2 * np.pi, N, endpoint=False))]


X_MLP = rng.standard_normal((256, 256))


def mlp(lib):
    x = X_MLP if lib is ad else torch.tensor(X_MLP)

    def f(*p):
        h = x
        for w, b in zip(p[:4], p[4:]):
            h = lib.tanh(h @ w + b)
        return lib.mean(h ** 2)

    return f, [rng.standard_normal((256, 256)) / 16 for _ in range(4)] + [rng.standard_normal(256) for _ in range(4)]


def mix(lib):
    roll = ad.roll if lib is ad else torch.roll
    return (lambda x: lib.sum(lib.sin(x) * x + lib.exp(x) ** 2 - roll(x, 1) / (1.0 + x * x)),
            [rng.standard_normal(N)])


WORKLOADS = {"rk2-stencil": rk2, "mlp": mlp, "elementwise-mix": mix}


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_tape_keeps_no_more_than_torch_saves(name):
    f, args = WORKLOADS[name](ad)
    ft, _ = WORKLOADS[name](torch)
    _, pb = ad.vjp(f, *args)
    torch_bytes = torch_saved_bytes(ft, *leaves(*args))
    # the arrays: never more than torch's saved tensors
    assert kept_array_bytes(pb) <= torch_bytes, (kept_array_bytes(pb), torch_bytes)
    # everything the tape keeps, its Python bookkeeping included (torch's graph nodes are C++ objects the hooks
    # do not see): within 1% of torch's saved tensors at these sizes (a few MB)
    assert pb.tape_bytes() <= 1.01 * torch_bytes, (pb.tape_bytes(), torch_bytes)
    # and the gradient is torch's
    ts = leaves(*args)
    ft(*ts).backward()
    for g, t in zip(pb(np.array(1.0)), ts):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-11, atol=1e-12)


def test_rk2_stencil_step_keeps_five_state_arrays_as_torch():
    # torch saves -u and (u+ - u-) for each of the two right-hand sides, and the final state for the square:
    # five arrays of the state's size; the tape keeps the same five (NOTE in RETAIN: each rule its residuals)
    f, args = rk2(ad)
    ft, _ = rk2(torch)
    _, pb = ad.vjp(f, *args)
    state = args[0].nbytes
    assert torch_saved_bytes(ft, *leaves(*args)) == 5 * state
    assert kept_array_bytes(pb) == 5 * state


# ---- rule by rule: what a call keeps, for each set of traced operands, against torch's saved tensors -----

A = rng.uniform(0.5, 2.0, (40, 30))
B = rng.uniform(0.5, 2.0, (40, 30))
M = rng.uniform(0.5, 2.0, (30, 20))
MASK = rng.standard_normal((40, 30)) > 0

OPS = [  # (name, ours, torch's, inputs)
    ("add", lambda a, b: a + b, torch.add, (A, B)),
    ("subtract", lambda a, b: a - b, torch.sub, (A, B)),
    ("multiply", lambda a, b: a * b, torch.mul, (A, B)),
    ("multiply-self", lambda a: a * a, lambda a: a * a, (A,)),
    ("divide", lambda a, b: a / b, torch.div, (A, B)),
    ("power", lambda a, b: a ** b, torch.pow, (A, B)),
    ("power-const", lambda a: a ** 3.0, lambda a: a ** 3.0, (A,)),
    ("scale", lambda a: a * 2.5, lambda a: a * 2.5, (A,)),
    ("divide-const", lambda a: a / 3.0, lambda a: a / 3.0, (A,)),
    ("negative", lambda a: -a, torch.neg, (A,)),
    ("exp", ad.exp, torch.exp, (A,)),
    ("log", ad.log, torch.log, (A,)),
    ("sin", ad.sin, torch.sin, (A,)),
    ("cos", ad.cos, torch.cos, (A,)),
    ("tanh", ad.tanh, torch.tanh, (A,)),
    ("sqrt", ad.sqrt, torch.sqrt, (A,)),
    ("abs", ad.abs, torch.abs, (A - 1.2,)),
    ("log1p", ad.log1p, torch.log1p, (A,)),
    ("expm1", ad.expm1, torch.expm1, (A,)),
    ("tan", ad.tan, torch.tan, (A - 1.2,)),
    ("arctan", ad.arctan, torch.arctan, (A,)),
    ("sinh", ad.sinh, torch.sinh, (A,)),
    ("cosh", ad.cosh, torch.cosh, (A,)),
    ("arctan2", ad.arctan2, torch.arctan2, (A, B)),
    ("hypot", ad.hypot, torch.hypot, (A, B)),
    ("maximum", ad.maximum, torch.maximum, (A, B)),
    ("minimum", ad.minimum, torch.minimum, (A, B)),
    ("where", lambda a, b: ad.where(MASK, a, b), lambda a, b: torch.where(torch.tensor(MASK), a, b), (A, B)),
    ("matmul", lambda a, m: a @ m, torch.matmul, (A, M)),
    ("sum", lambda a: ad.sum(a, axis=0), lambda a: a.sum(0), (A,)),
    ("amax", lambda a: ad.max(a, axis=1), lambda a: torch.amax(a, 1), (A,)),
    ("prod", lambda a: ad.prod(a, axis=0), lambda a: torch.prod(a, 0), (A,)),
    ("cumsum", lambda a: ad.cumsum(a, axis=1), lambda a: torch.cumsum(a, 1), (A,)),
    ("norm", lambda a: ad.linalg.norm(a, axis=1), lambda a: torch.linalg.vector_norm(a, dim=1), (A,)),
    ("roll", lambda a: ad.roll(a, 3, axis=1), lambda a: torch.roll(a, 3, 1), (A,)),
    ("getitem", lambda a: a[::2, 1:7], lambda a: a[::2, 1:7], (A,)),
    ("transpose", lambda a: a.T, lambda a: a.T, (A,)),
    ("reshape", lambda a: ad.reshape(a, (30, 40)), lambda a: a.reshape(30, 40), (A,)),
]


def _subsets(n):
    return [s for k in range(1, n + 1) for s in itertools.combinations(range(n), k)]


CALLS = [(name, ours, theirs, args, traced) for name, ours, theirs, args in OPS for traced in _subsets(len(args))]


@pytest.mark.parametrize("name,ours,theirs,args,traced", CALLS,
                         ids=[f"{c[0]}-{''.join(map(str, c[4]))}" for c in CALLS])
def test_each_rule_keeps_no_more_than_torch_for_the_operands_traced(name, ours, theirs, args, traced):
    def f(*chosen):
        full = list(args)
        for k, v in zip(traced, chosen):
            full[k] = v
        return ours(*full)

    y, pb = ad.vjp(f, *(args[k] for k in traced))
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=k in traced) for k, a in enumerate(args)]
    assert kept_array_bytes(pb) <= torch_saved_bytes(theirs, *tensors), name
    # the rule reads only what was kept, and its cotangents are torch's
    u = rng.standard_normal(np.shape(y))
    yt = theirs(*tensors)
    grads = torch.autograd.grad(yt, [tensors[k] for k in traced], torch.tensor(u))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-13)
    for g, gt in zip(pb(u), grads):
        np.testing.assert_allclose(g, gt.numpy(), rtol=1e-11, atol=1e-12)


def test_a_constant_operand_is_kept_and_the_traced_one_is_not():
    c = rng.standard_normal(500)
    x = rng.standard_normal(500)

    def kept(pb):
        return [v for n in pb._tape.nodes if n is not None for v in (*n.args, n.out) if isinstance(v, np.ndarray)]

    _, pb = ad.vjp(lambda x: c * x, x)
    assert [v is c for v in kept(pb)] == [True]  # d(c x)/dx reads c only
    _, pb = ad.vjp(lambda c_: c_ * x, c)
    assert [v is x for v in kept(pb)] == [True]
    _, pb = ad.vjp(lambda x: x ** 2, x)
    assert len(kept(pb)) == 1 and np.array_equal(kept(pb)[0], x)  # x, not its output
    _, pb = ad.vjp(lambda x: ad.exp(x), x)
    assert len(kept(pb)) == 1 and np.array_equal(kept(pb)[0], np.exp(x))  # its output, not x
    _, pb = ad.vjp(lambda x: x / 3.0 - ad.roll(x, 1) + 2.0 * x, x)
    assert kept(pb) == []  # linear: nothing


def test_a_tape_keeps_one_shape_record_per_shape_and_not_the_outputs():
    # 10^4 scalar operations: per-node bookkeeping only, with the shape stand-ins shared
    def f(x):
        for _ in range(10_000):
            x = x * 1.00001 + 0.5
        return x

    y, pb = ad.vjp(f, np.array(1.0))
    metas = {id(v) for n in pb._tape.nodes if n is not None for v in (*n.args, n.out) if type(v).__name__ == "Meta"}
    assert len(metas) == 1
    # the pullback does not keep f's outputs alive
    big = rng.standard_normal(10_000)
    y, pb = ad.vjp(lambda x: x * 2.0, big)
    assert pb.tape_bytes() < 2000 and kept_array_bytes(pb) == 0


# ---- honest accounting: tape_bytes against tracemalloc ----------------------------------------------
#
# NOTE [ Measuring with tracemalloc ]: CPython keeps freed small objects (tuples, floats, lists, dicts) on
# free lists for reuse, and tracemalloc counts memory on a free list as allocated. A full collection
# (gc.collect()) empties the free lists, so tracemalloc's count right after one is what is alive. The
# measurements below therefore empty the free lists at the points they read (after a recording; between the
# actions of a run), and freeze the objects that existed before (gc.freeze) so that those collections stay
# cheap. Without that, a run's peak also counts every size class's free list at its fullest over the run.

def _held_by_vjp(f, *args):
    ad.vjp(f, *args)  # warm: first-call caches are not the tape's
    gc.collect()
    tracemalloc.start()
    try:
        y, pb = ad.vjp(f, *args)
        gc.collect()  # empties the free lists: what remains traced is what is alive (NOTE above)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return pb, held


def _lorenz_step():
    step, s0, params, _ = lorenz()
    return (lambda s, p: step(s, p, 0)), [s0, params]


def _scalar_chain():
    def f(x):
        for _ in range(10_000):
            x = ad.sin(x) * 0.5 + x
        return x

    return f, [np.array(0.3)]


@pytest.mark.parametrize("case", ["rk2-stencil", "elementwise-mix", "lorenz-step", "scalar-chain"])
def test_tape_bytes_within_ten_percent_of_tracemalloc(case):
    if case in WORKLOADS:
        f, args = WORKLOADS[case](ad)
    else:
        f, args = _lorenz_step() if case == "lorenz-step" else _scalar_chain()
    pb, held = _held_by_vjp(f, *args)
    assert abs(pb.tape_bytes() - held) <= 0.1 * held, (pb.tape_bytes(), held)


def test_sizing_a_tape_takes_a_fraction_of_it():
    # the executor sizes every tape it records: doing so must not need as much memory again as the tape
    f, args = _lorenz_step()
    y, pb = ad.vjp(f, *args)
    pb.tape_bytes()
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        size = pb.tape_bytes()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base <= 0.3 * size, (peak - base, size)


# ---- revolve.gradient's measured peak against its plan (Lorenz, RK4) --------------------------------

def _gradient_peak(n, snapshots):
    step, s0, params, loss = lorenz()
    run = lambda: revolve.gradient(step, s0, n_steps=n, loss=loss, params=params, snapshots=snapshots)
    run()  # warm: imports and first-call caches are not the run's
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        r = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base, r.stats.predicted.peak_memory


def test_lorenz_gradient_peak_within_its_plan_when_tapes_dominate():
    # store-all: the plan is 200 tapes of the measured size; tracemalloc's peak for the whole run lands within it
    peak, plan = _gradient_peak(200, None)
    assert 0.9 * plan <= peak <= 1.05 * plan, (peak, plan)


def _revolve_peak(n, snapshots):
    """tracemalloc's peak of revolve.gradient on the Lorenz example under Revolve, and the plan's peak."""
    step, s0, params, loss = lorenz()
    plan = revolve.binomial(n, snapshots=snapshots)
    run = lambda schedule: revolve.gradient(step, s0, n_steps=n, loss=loss, params=params, schedule=schedule)
    run(plan)  # warm: imports and first-call caches are not the run's
    gc.collect()
    gc.freeze()
    try:
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            r = run(experiments_common().free_lists_emptied(plan))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        gc.unfreeze()
    return peak - base, r.stats.predicted.peak_memory, r.stats.tape_bytes


def test_lorenz_gradient_peak_within_its_plan_with_few_snapshots():
    # Revolve with 10 snapshots: the plan is 10 snapshots and one tape (24 KB), at 100 steps as at 300
    short, plan_short, _ = _revolve_peak(100, 10)
    peak, plan, tape = _revolve_peak(300, 10)
    assert plan == plan_short
    # nothing the run holds grows with the number of steps (the validation replay held per-step exact sizes:
    # 313 KB at 300 steps; now 0.5 KB more at 300 than at 100, the schedule generator's deeper stack)
    assert peak <= short + 0.05 * plan, (peak, short, plan)
    # beyond the plan: the working memory of the one step being recorded, sized or reversed, and the
    # executor's own state (the schedule's generator, the snapshots' entries, the stats): less than one tape
    assert peak <= plan + tape, (peak, plan, tape)


@pytest.mark.parametrize("sizes", [(24, 25_484), (8.5, 24.25), (4_000_000, 1)])
def test_the_runs_predicted_stats_are_the_simulators(sizes):
    # revolve.gradient predicts a run's cost in O(stored + live) memory; it must be simulate()'s answer
    from revolve.executor import StepMeasurement, _predicted

    state, tape = sizes
    m = StepMeasurement(state_bytes=state, tape_bytes=tape, forward_time=0.37, backward_time=1.3)
    schedules = [revolve.binomial(1, snapshots=1), revolve.binomial(57, snapshots=4), revolve.store_all(9),
                 revolve.periodic(40, every=7), revolve.online(snapshots=5).schedule(33, last_step_known=False),
                 revolve.optimal(m.chain(12), memory=3 * state + 2 * tape)]
    for schedule in schedules:
        want = revolve.simulate(schedule, m.chain(schedule.n_steps))
        got = _predicted(schedule, m, schedule.n_steps)
        for name in want.__dataclass_fields__:
            if name == "time":
                assert got.time == pytest.approx(want.time, rel=1e-12), schedule
            else:
                assert getattr(got, name) == getattr(want, name), (schedule, name)


def test_an_invalid_schedule_is_refused_before_any_step():
    from revolve.actions import Advance, Record, Reverse

    calls = []
    bad = revolve.Schedule.from_actions([Advance(0, 1), Record(1), Reverse(1), Record(0), Reverse(0), Reverse(0)],
                                        n_steps=2)
    with pytest.raises(revolve.ScheduleError):
        revolve.gradient(lambda x, p, i: calls.append(i) or x * 2.0, np.ones(2), n_steps=2,
                         loss=lambda x: ad.sum(x), schedule=bad)
    assert calls == [0]  # the measuring recording of step 0 only
