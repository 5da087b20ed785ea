"""revolve.ad never returns a silently wrong gradient: conversions raise, transformations nest, kept arrays
cannot change behind a tape's back, and torch's conventions at the singular points (oracle: torch float64)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from revolve import ad

rng = np.random.default_rng(7)


def T(x):
    return torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=True)


# ---- conversions of traced values ------------------------------------------------------------------

CONVERSIONS = [
    ("float()", lambda x: float(x)),
    ("int()", lambda x: int(x)),
    ("bool()", lambda x: bool(x)),
    ("complex()", lambda x: complex(x)),
    (".item()", lambda x: x.item()),
    (".tolist()", lambda x: x.tolist()),
    ("numpy array", lambda x: np.asarray(x)),
    ("numpy array", lambda x: np.array(x)),
    ("index", lambda x: [1, 2, 3][x]),
]


@pytest.mark.parametrize("what,convert", CONVERSIONS, ids=[c[0] + str(i) for i, c in enumerate(CONVERSIONS)])
@pytest.mark.parametrize("transform", ["grad", "jvp"])
def test_converting_a_traced_value_raises_naming_the_conversion(what, convert, transform):
    def f(x):
        return x * convert(x)

    with pytest.raises(TypeError, match=r"(?s)" + f"{what.replace('(', '[(]').replace(')', '[)]').replace('.', '[.]')}.*"
                                         "would detach it.*stop_gradient"):
        if transform == "grad":
            ad.grad(f)(np.array(3.0))
        else:
            ad.jvp(f, (np.array(3.0),), (np.array(1.0),))


def test_float_of_a_traced_value_was_silently_a_constant():
    # the failure mode: grad(x * float(x)) returned 3.0 (x treated as a constant); the true value is 6.0
    with pytest.raises(TypeError, match="float"):
        ad.grad(lambda x: x * float(x))(3.0)
    x = T(3.0)
    (x * x).backward()
    assert ad.grad(lambda x: x * x)(3.0) == x.grad.item() == 6.0


def test_stop_gradient_is_the_explicit_constant_at_every_level():
    g = ad.grad(lambda x: x * ad.stop_gradient(x))(np.array(3.0))
    assert g == 3.0
    assert isinstance(ad.stop_gradient(np.array(2.0)), np.ndarray)
    # a constant for forward mode too, and inside a nested transformation
    _, t = ad.jvp(lambda x: x * ad.stop_gradient(x), (np.array(3.0),), (np.array(1.0),))
    assert t == 3.0
    h = ad.grad(ad.grad(lambda x: x ** 3 * ad.stop_gradient(x)))(np.array(2.0))
    assert h == 6 * 2.0 * 2.0
    # branching on a value through stop_gradient, as a user's control flow does, differentiates the branch
    f = lambda x: ad.sin(x) if float(ad.stop_gradient(x)) > 0 else ad.cos(x)
    assert ad.grad(f)(np.array(0.5)) == np.cos(0.5)
    assert ad.grad(f)(np.array(-0.5)) == -np.sin(-0.5)


def test_a_step_using_float_of_a_parameter_raises_through_revolve_gradient():
    from revolve import gradient

    step = lambda u, p, i: u + 0.01 * u * float(p["k"])
    with pytest.raises(TypeError, match="float") as info:
        gradient(step, np.ones(4), n_steps=5, loss=lambda u: ad.sum(u), params={"k": np.array(2.0)})
    assert any("step 0" in n for n in getattr(info.value, "__notes__", []))
    # written with stop_gradient the parameter is declared a constant: d/dk is 0 by request
    step = lambda u, p, i: u + 0.01 * u * float(ad.stop_gradient(p["k"]))
    r = gradient(step, np.ones(4), n_steps=5, loss=lambda u: ad.sum(u), params={"k": np.array(2.0)})
    assert r.grad_params["k"] == 0.0


# ---- transformations compose at any depth ----------------------------------------------------------

def _torch_hessian(f_torch, x):
    return torch.autograd.functional.hessian(f_torch, torch.tensor(x, dtype=torch.float64)).numpy()


@pytest.mark.parametrize("outer,inner", [("jacfwd", "jacrev"), ("jacrev", "jacrev"), ("jacfwd", "jacfwd"),
                                         ("jacrev", "jacfwd"), ("hessian", None)])
def test_hessians_by_every_composition_equal_torch(outer, inner):
    x = rng.uniform(0.5, 1.5, 4)
    f = lambda x: ad.sum(ad.sin(x) * x ** 3) + ad.sum(x[:-1] * x[1:])
    f_t = lambda x: (torch.sin(x) * x ** 3).sum() + (x[:-1] * x[1:]).sum()
    if outer == "hessian":
        H = ad.hessian(f)(x)
    elif inner == "jacfwd":  # the gradient as forward-mode Jacobian of a scalar has shape x.shape
        H = getattr(ad, outer)(lambda z: ad.jacfwd(f)(z))(x)
    else:
        H = getattr(ad, outer)(getattr(ad, inner)(f))(x)
    np.testing.assert_allclose(H, _torch_hessian(f_t, x), rtol=1e-12, atol=1e-12)


def test_the_reported_nested_jacobian_is_no_longer_zero():
    H = ad.jacfwd(ad.jacrev(lambda x: ad.sum(x ** 3)))(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(H, np.diag([6.0, 12.0]))


def test_grad_through_a_function_that_calls_jacrev_equals_torch():
    x = rng.standard_normal(3)
    g = ad.grad(lambda z: ad.sum(ad.jacrev(lambda y: ad.tanh(y) * y[::-1])(z) ** 2))(x)
    xt = T(x)
    J = torch.autograd.functional.jacobian(lambda y: torch.tanh(y) * y.flip(0), xt, create_graph=True)
    (J ** 2).sum().backward()
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_third_derivative_by_nested_grad_equals_torch():
    f = lambda x: ad.exp(ad.sin(x)) * x
    d3 = ad.grad(ad.grad(ad.grad(f)))(np.array(0.7))
    x = T(0.7)
    y = torch.exp(torch.sin(x)) * x
    (g1,) = torch.autograd.grad(y, x, create_graph=True)
    (g2,) = torch.autograd.grad(g1, x, create_graph=True)
    (g3,) = torch.autograd.grad(g2, x)
    np.testing.assert_allclose(d3, g3.item(), rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_fwd_over_rev_hvp_equals_rev_over_rev(n, seed):
    r = np.random.default_rng(seed)
    x, v, w = r.standard_normal(n), r.standard_normal(n), r.standard_normal((n, n))
    f = lambda x: ad.sum(ad.tanh(w @ x) ** 2)
    hv_fwd = ad.hvp(f, x, v)
    hv_rev = ad.grad(lambda z: ad.sum(ad.grad(f)(z) * v))(x)
    np.testing.assert_allclose(hv_fwd, hv_rev, rtol=1e-10, atol=1e-12)


# ---- arrays a live tape keeps -----------------------------------------------------------------------

def test_changing_the_input_after_vjp_does_not_change_the_pullback():
    x = np.array([1.0, 2.0])
    _, pb = ad.vjp(lambda x: ad.sum(x * x), x)
    x *= 10  # the caller's array stays theirs and writeable
    np.testing.assert_array_equal(pb(np.array(1.0))[0], [2.0, 4.0])
    # a view of the caller's array is protected as well
    base = np.arange(6.0)
    _, pb = ad.vjp(lambda v: ad.sum(ad.sin(v)), base[1:4])
    base[:] = 0.0
    np.testing.assert_array_equal(pb(np.array(1.0))[0], np.cos([1.0, 2.0, 3.0]))


def test_outputs_the_tape_keeps_are_read_only_and_gradients_are_writeable():
    y, pb = ad.vjp(lambda x: ad.exp(x), np.array([0.0, 1.0]))  # exp's rule reads its output
    with pytest.raises(ValueError, match="read-only"):
        y[0] = 5.0
    g = pb(np.ones(2))[0]
    np.testing.assert_array_equal(g, np.exp([0.0, 1.0]))
    for g in (ad.grad(lambda x: ad.sum(x))(np.ones(3)), ad.grad(lambda x: ad.sum(ad.broadcast_to(x, (4, 3))))(np.ones(3))):
        assert g.flags.writeable and 0 not in g.strides
        g[0] = 1.0  # a gradient is the caller's to change


# ---- torch's conventions at singular points ---------------------------------------------------------

def test_power_at_zero_differentiates_as_torch():
    x = np.array([0.0, 0.0, 0.0, 2.0])
    e = np.array([0.0, 1.0, 2.0, 0.0])
    gx, ge = ad.grad(lambda a, b: ad.sum(a ** b), argnums=(0, 1))(x, e)
    xt, et = T(x), T(e)
    (xt ** et).sum().backward()
    np.testing.assert_array_equal(gx, xt.grad.numpy())
    np.testing.assert_array_equal(ge, et.grad.numpy())
    for c in (0.0, 0):  # a constant exponent of 0
        assert ad.grad(lambda a: a ** c)(np.array(0.0)) == 0.0
    yt = T([2.0, 0.0])
    (0.0 ** yt).sum().backward()
    np.testing.assert_array_equal(ad.grad(lambda y: ad.sum(0.0 ** y))(np.array([2.0, 0.0])), yt.grad.numpy())
    # forward mode agrees with reverse mode there
    _, t = ad.jvp(lambda a, b: a ** b, (x, e), (np.ones(4), np.ones(4)))
    np.testing.assert_array_equal(t, gx + ge)


def test_sparse_jacobian_keeps_float32():
    f = lambda x: x[1:] - x[:-1]
    J = ad.sparse_jacobian(f, np.ones(5, dtype=np.float32))
    assert J.dtype == np.float32
    np.testing.assert_array_equal(J.toarray(), ad.jacrev(f)(np.ones(5, dtype=np.float32)))


# ---- lean tapes: each call keeps only what the cotangents it will compute read ----------------------

BINARY = [("multiply", lambda a, b: a * b), ("divide", lambda a, b: a / b), ("power", lambda a, b: a ** b),
          ("maximum", ad.maximum), ("minimum", ad.minimum), ("matmul", lambda a, b: a @ b),
          ("add", lambda a, b: a + b), ("subtract", lambda a, b: a - b)]
TORCH_BINARY = {"multiply": torch.mul, "divide": torch.div, "power": torch.pow, "maximum": torch.maximum,
                "minimum": torch.minimum, "matmul": torch.matmul, "add": torch.add, "subtract": torch.sub}


@pytest.mark.parametrize("name,f", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("argnum", [0, 1, (0, 1)])
def test_binary_rules_with_one_operand_traced_equal_torch(name, f, argnum):
    a = rng.uniform(0.5, 2.0, (3, 3))
    b = rng.uniform(0.5, 2.0, (3, 3))
    loss = lambda a, b: ad.sum(ad.sin(f(a, b)))
    mine = ad.grad(loss, argnums=argnum)(a, b)
    at, bt = T(a), T(b)
    torch.sin(TORCH_BINARY[name](at, bt)).sum().backward()
    want = {0: at.grad.numpy(), 1: bt.grad.numpy()}
    if isinstance(argnum, int):
        np.testing.assert_allclose(mine, want[argnum], rtol=1e-13)
    else:
        for m, k in zip(mine, argnum):
            np.testing.assert_allclose(m, want[k], rtol=1e-13)


def _kept_arrays(pb):
    nodes = [n for n in pb._tape.nodes if n is not None]
    return [v for n in nodes for v in (*n.args, n.out) if isinstance(v, np.ndarray) and v.size > 1]


def test_a_constant_times_x_keeps_the_constant_not_x():
    c = rng.standard_normal(1000)
    x = rng.standard_normal(1000)
    _, pb = ad.vjp(lambda x: c * x, x)
    assert [a is c for a in _kept_arrays(pb)] == [True]  # the rule for x reads c only
    assert c.nbytes < pb.tape_bytes() < c.nbytes + 1500  # plus one node's bookkeeping
    _, pb = ad.vjp(lambda x: x ** 2, x)
    assert [a.shape for a in _kept_arrays(pb)] == [(1000,)]  # x, not the output
    assert np.array_equal(_kept_arrays(pb)[0], x)
    _, pb = ad.vjp(lambda x: x / 3.0, x)
    assert _kept_arrays(pb) == [] and pb.tape_bytes() < 1500


def test_a_constant_the_tape_keeps_is_read_only_while_the_tape_lives():
    c = rng.standard_normal(4)
    x = rng.standard_normal(4)
    _, pb = ad.vjp(lambda x: c * x, x)
    _, pb2 = ad.vjp(lambda x: ad.sum(c * x), x)  # a second tape holding the same constant
    with pytest.raises(ValueError, match="read-only"):
        c[0] = 1.0  # would change what pb returns
    np.testing.assert_array_equal(pb(np.ones(4))[0], c)
    del pb
    assert not c.flags.writeable  # pb2 still keeps it
    del pb2
    assert c.flags.writeable  # no tape keeps it any more: the caller's again
    c[0] = 1.0
    # grad frees its tape before returning, so a constant is writeable right after
    ad.grad(lambda x: ad.sum(c * x))(x)
    assert c.flags.writeable


# ---- extension points: custom rules, stop_gradient, has_aux, pytrees --------------------------------

def _solve_with_custom_adjoint():
    calls = {"bwd": 0}

    @ad.custom_vjp
    def solve(A, b):  # a "black box" solver: the adjoint is another solve
        return np.linalg.solve(A, b)

    def fwd(A, b):
        x = solve(A, b)
        return x, (A, x)

    def bwd(res, g):
        calls["bwd"] += 1
        A, x = res
        lam = solve(ad.transpose(A), g)
        return -ad.reshape(lam, (-1, 1)) * ad.reshape(x, (1, -1)), lam

    solve.defvjp(fwd, bwd)
    return solve, calls


def test_custom_vjp_implicit_solve_equals_torch_and_uses_the_rule():
    solve, calls = _solve_with_custom_adjoint()
    A = rng.standard_normal((4, 4)) + 4 * np.eye(4)
    b = rng.standard_normal(4)
    w = rng.standard_normal(4)
    gA, gb = ad.grad(lambda A, b: ad.sum(ad.sin(solve(A, b)) * w), argnums=(0, 1))(A, b)
    assert calls["bwd"] == 1
    At, bt = T(A), T(b)
    (torch.sin(torch.linalg.solve(At, bt)) * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(gA, At.grad.numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(gb, bt.grad.numpy(), rtol=1e-11, atol=1e-13)
    # the tape keeps the residuals: A and x (plus per-node bookkeeping), not the solver's internals
    _, pb = ad.vjp(lambda b: solve(A, b), b)
    assert A.nbytes + b.nbytes <= pb.tape_bytes() < A.nbytes + b.nbytes + 2000
    # second order by reverse over reverse: the backward rule is written with the engine's ops, so it
    # differentiates (forward mode over a custom_vjp raises, as below)
    H = ad.jacrev(ad.jacrev(lambda b: ad.sum(solve(A, b) ** 2)))(b)
    Ainv = np.linalg.inv(A)
    np.testing.assert_allclose(H, 2 * Ainv.T @ Ainv, rtol=1e-10)
    with pytest.raises(NotImplementedError, match="custom_vjp rule, which serves reverse mode only"):
        ad.jvp(lambda b: solve(A, b), (b,), (b,))
    # plain inputs just run the function
    np.testing.assert_allclose(solve(A, b), np.linalg.solve(A, b))


def test_custom_vjp_rule_with_a_wrong_shape_is_refused():
    @ad.custom_vjp
    def f(x):
        return x * 2.0

    f.defvjp(lambda x: (f(x), None), lambda res, g: (ad.sum(g),))
    with pytest.raises(ValueError, match="cotangent of shape"):
        ad.grad(lambda x: ad.sum(f(x)))(np.ones(3))
    g = ad.custom_vjp(lambda x: x)
    with pytest.raises(TypeError, match="defvjp"):
        g(np.ones(2))


def test_custom_jvp_serves_both_modes_and_equals_torch():
    @ad.custom_jvp
    def softplus(x):
        return np.logaddexp(0.0, x)

    softplus.defjvp(lambda p, t: (softplus(p[0]), t[0] * ad.sigmoid(p[0])))
    x = np.array([-30.0, -1.0, 0.0, 2.0, 30.0])
    xt = T(x)
    torch.nn.functional.softplus(xt).sum().backward()
    np.testing.assert_allclose(ad.grad(lambda x: ad.sum(softplus(x)))(x), xt.grad.numpy(), rtol=1e-13, atol=1e-16)
    _, t = ad.jvp(softplus, (x,), (np.ones(5),))
    np.testing.assert_allclose(t, xt.grad.numpy(), rtol=1e-13, atol=1e-16)
    # second order through the rule: d2/dx2 softplus = sigmoid'(x)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(np.diag(ad.hessian(lambda x: ad.sum(softplus(x)))(x)), s * (1 - s), rtol=1e-10, atol=1e-15)
    # a rule of two arguments transposes into both cotangents
    @ad.custom_jvp
    def mul(a, b):
        return a * b

    mul.defjvp(lambda p, t: (mul(*p), t[0] * p[1] + p[0] * t[1]))
    a, b = rng.standard_normal(3), rng.standard_normal(3)
    ga, gb = ad.grad(lambda a, b: ad.sum(mul(a, b)), argnums=(0, 1))(a, b)
    np.testing.assert_allclose(ga, b)
    np.testing.assert_allclose(gb, a)


def test_has_aux_returns_undifferentiated_values():
    f = lambda x: (ad.sum(x ** 2), {"sum": ad.sum(x), "x": x})
    x = np.array([1.0, 2.0])
    g, aux = ad.grad(f, has_aux=True)(x)
    np.testing.assert_array_equal(g, 2 * x)
    assert not isinstance(aux["sum"], ad.Tracer) and aux["sum"] == 3.0
    (v, aux), g2 = ad.value_and_grad(f, has_aux=True)(x)
    assert v == 5.0 and np.array_equal(g2, g)
    y, pb, aux = ad.vjp(lambda x: (x * 3.0, ad.sum(x)), x, has_aux=True)
    np.testing.assert_array_equal(pb(np.ones(2))[0], [3.0, 3.0])
    assert aux == 3.0
    with pytest.raises(TypeError, match="has_aux=True, f must return a pair"):
        ad.grad(lambda x: ad.sum(x), has_aux=True)(x)


def test_pytrees_namedtuples_dataclasses_none_and_registered_types():
    import dataclasses
    from collections import namedtuple

    State = namedtuple("State", ["u", "v"])

    @dataclasses.dataclass(frozen=True)
    class Params:
        k: np.ndarray
        c: np.ndarray
        name: str = dataclasses.field(default="p", metadata={"static": True})

    class Box:
        def __init__(self, inner):
            self.inner = inner

    ad.register_pytree(Box, lambda b: ((b.inner,), "box"), lambda aux, ch: Box(ch[0]))

    def f(s, p, box, nothing):
        assert nothing is None and p.name == "q"
        return ad.sum(s.u * p.k + ad.sin(s.v) * p.c) + ad.sum(box.inner ** 2)

    s = State(np.array([1.0, 2.0]), np.array([0.5, -0.5]))
    p = Params(np.array([3.0, 4.0]), np.array(2.0), name="q")
    box = Box(np.array([1.0, -2.0]))
    gs, gp, gbox, gnone = ad.grad(f, argnums=(0, 1, 2, 3))(s, p, box, None)
    assert isinstance(gs, State) and isinstance(gp, Params) and isinstance(gbox, Box) and gnone is None
    assert gp.name == "q"
    np.testing.assert_array_equal(gs.u, p.k)
    np.testing.assert_allclose(gs.v, np.cos(s.v) * 2.0)
    np.testing.assert_array_equal(gp.k, s.u)
    np.testing.assert_allclose(gp.c, np.sum(np.sin(s.v)))
    np.testing.assert_array_equal(gbox.inner, 2 * box.inner)
    # a namedtuple state through the executor
    from revolve import gradient

    step = lambda x, q, i: State(x.u + 0.1 * x.v, x.v - 0.1 * ad.sin(x.u) * q["w"])
    r = gradient(step, s, n_steps=12, loss=lambda x: ad.sum(x.u ** 2), params={"w": np.array(1.5)}, snapshots=2)
    def unrolled(x, w):
        for _ in range(12):
            x = step(x, {"w": w}, 0)
        return ad.sum(x.u ** 2)
    gx, gw = ad.grad(unrolled, argnums=(0, 1))(s, np.array(1.5))
    assert isinstance(r.grad_x0, State)
    np.testing.assert_allclose(r.grad_x0.u, gx.u, rtol=1e-13)
    np.testing.assert_allclose(r.grad_params["w"], gw, rtol=1e-13)


# ---- honest accounting: tape_bytes against tracemalloc ----------------------------------------------

@pytest.mark.parametrize("case", ["scalar-chain", "arrays", "mlp"])
def test_tape_bytes_within_ten_percent_of_tracemalloc(case):
    import gc
    import tracemalloc

    if case == "scalar-chain":
        def f(x):
            for _ in range(20_000):
                x = x * 1.00001 + 0.5
            return x
        x = np.array(1.0)
    elif case == "arrays":
        f = lambda x: ad.sum(ad.sin(x) * x + ad.exp(x) ** 2 - ad.roll(x, 1) / (1.0 + x * x))
        x = rng.standard_normal(50_000)
    else:
        W1, W2 = rng.standard_normal((256, 64)), rng.standard_normal((10, 256))
        f = lambda x: ad.sum(W2 @ ad.tanh(W1 @ x) ** 2)
        x = rng.standard_normal((64, 128))
    gc.collect()
    tracemalloc.start()
    try:
        y, pb = ad.vjp(f, x)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the constants W1, W2 were allocated before tracemalloc started: the comparison excludes them
    kept = pb.tape_bytes(exclude=(W1, W2) if case == "mlp" else ())
    assert abs(kept - held) <= 0.1 * held, (kept, held)
