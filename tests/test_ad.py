"""revolve.ad against independent oracles: central differences (check_grads), torch.autograd, closed forms."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from revolve import ad
from revolve.ad.core import Primitive, bind

rng = np.random.default_rng(0)


def R(*shape):
    return rng.standard_normal(shape)


def P(*shape):  # positive inputs for log, sqrt, pow
    return rng.uniform(0.5, 2.0, shape)


C42, C34 = R(4, 2), R(3, 4)  # constants inside the tested functions

# (name, function, inputs, order)
CASES = [
    ("add-broadcast", lambda a, b: a + b, (R(3, 4), R(4)), 2),
    ("add-scalar-row", lambda a, b: a + b, (R(3, 1), R(1, 4)), 2),
    ("sub", lambda a, b: a - b, (R(2, 3), R(2, 1)), 2),
    ("rsub-const", lambda a: 1.0 - a, (R(5),), 2),
    ("mul-broadcast", lambda a, b: a * b, (R(2, 3, 4), R(3, 1)), 2),
    ("div", lambda a, b: a / b, (R(3, 4), P(4)), 2),
    ("rdiv-const", lambda a: 2.0 / a, (P(4),), 2),
    ("neg", lambda a: -a, (R(3),), 2),
    ("pow-const", lambda a: a ** 3, (R(4),), 2),
    ("pow-both", lambda a, b: a ** b, (P(3), R(3)), 2),
    ("rpow", lambda b: 2.0 ** b, (R(3),), 2),
    ("exp", ad.exp, (R(4),), 2),
    ("log", ad.log, (P(4),), 2),
    ("sin", ad.sin, (R(4),), 2),
    ("cos", ad.cos, (R(4),), 2),
    ("tanh", ad.tanh, (R(4),), 2),
    ("sqrt", ad.sqrt, (P(4),), 2),
    ("abs", ad.abs, (R(6) + 0.1,), 1),
    ("maximum", ad.maximum, (R(5), R(5)), 1),
    ("minimum-broadcast", ad.minimum, (R(3, 4), R(4)), 1),
    ("relu", ad.relu, (R(7),), 1),
    ("where", lambda a, b: ad.where(a > 0, a * b, ad.sin(b)), (R(3, 4), R(4)), 2),
    ("matmul-2d", ad.matmul, (R(3, 4), R(4, 2)), 2),
    ("matmul-vec-mat", lambda a, b: a @ b, (R(4), R(4, 3)), 2),
    ("matmul-mat-vec", lambda a, b: a @ b, (R(3, 4), R(4)), 2),
    ("matmul-vec-vec", ad.dot, (R(4), R(4)), 2),
    ("matmul-batched-broadcast", ad.matmul, (R(2, 3, 4), R(4, 5)), 2),
    ("sum-all", ad.sum, (R(3, 4),), 2),
    ("sum-axis", lambda a: ad.sum(a, axis=1), (R(3, 4, 2),), 2),
    ("sum-axes-keepdims", lambda a: ad.sum(a, axis=(0, 2), keepdims=True), (R(3, 4, 2),), 2),
    ("mean-neg-axis", lambda a: ad.mean(a, axis=-1), (R(3, 4),), 2),
    ("reshape", lambda a: ad.reshape(a, (4, -1)) * 2.0, (R(2, 6),), 2),
    ("transpose", lambda a: ad.transpose(a, (2, 0, 1)) @ C42, (R(3, 4, 3),), 2),
    ("T", lambda a: a.T * 1.5, (R(3, 4),), 2),
    ("getitem-slice", lambda a: a[1:, ::2] ** 2, (R(4, 5),), 2),
    ("getitem-int", lambda a: a[2] * a[0], (R(4, 3),), 2),
    ("getitem-fancy-repeat", lambda a: a[[0, 2, 0, 3]] * 3.0, (R(5),), 2),
    ("getitem-bool", lambda a: a[a > 0] ** 2, (R(6),), 2),
    ("getitem-ellipsis-none", lambda a: a[..., None, 1] * a[0, None, 0], (R(3, 4),), 2),
    ("concatenate", lambda a, b: ad.concatenate([a, b, a], axis=1), (R(2, 3), R(2, 1)), 2),
    ("stack", lambda a, b: ad.stack([a, ad.exp(b)], axis=-1), (R(3), R(3)), 2),
    ("roll", lambda a: ad.roll(a, 2) * a, (R(6),), 2),
    ("roll-axis", lambda a: ad.roll(a, (1, -1), axis=(0, 1)) * a, (R(3, 4),), 2),
    ("broadcast_to", lambda a: ad.broadcast_to(a, (3, 4)) * C34, (R(4),), 2),
    ("sigmoid", ad.sigmoid, (R(4),), 2),
    ("square", ad.square, (R(4),), 2),
]


@pytest.mark.parametrize("name,f,args,order", CASES, ids=[c[0] for c in CASES])
def test_check_grads_every_primitive(name, f, args, order):
    ad.check_grads(f, *args, order=order)


def test_every_primitive_is_covered_and_has_both_rules():
    from revolve.ad.ops import PRIMITIVES

    assert set(PRIMITIVES) == set(ad.RULES)
    for p in PRIMITIVES.values():
        assert p.vjp is not None and p.jvp is not None


def test_check_grads_catches_a_wrong_rule():
    from revolve.ad.ops import p_sin

    good = p_sin.vjp
    p_sin.vjp = lambda g, ans, want, x: (ad.multiply(g, ad.sin(x)),)  # wrong on purpose
    try:
        with pytest.raises(ad.GradientCheckError, match="reverse mode"):
            ad.check_grads(ad.sin, R(5), modes=("rev",))
    finally:
        p_sin.vjp = good


def to_t(x):
    return torch.tensor(x, dtype=torch.float64, requires_grad=True)


TORCH_CASES = [
    (lambda m: ad.sum(ad.tanh(m[0] @ m[1]) * m[2]), lambda m: (torch.tanh(m[0] @ m[1]) * m[2]).sum(), (R(3, 4), R(4, 5), R(3, 5))),
    (lambda m: ad.mean(ad.log(m[0] ** 2 + 1.0) / ad.sqrt(m[1])), lambda m: (torch.log(m[0] ** 2 + 1.0) / torch.sqrt(m[1])).mean(), (R(6), P(6))),
    (lambda m: ad.sum(ad.roll(m[0], 1) - 2 * m[0] + ad.roll(m[0], -1)) ** 2, lambda m: (torch.roll(m[0], 1) - 2 * m[0] + torch.roll(m[0], -1)).sum() ** 2, (R(8),)),
    (lambda m: ad.sum(ad.relu(m[0]) * ad.sin(m[0][::-1] if False else m[0])), lambda m: (torch.relu(m[0]) * torch.sin(m[0])).sum(), (R(9),)),
    (lambda m: ad.sum(ad.concatenate([m[0][:, :2], ad.exp(m[0])], axis=1) ** 2), lambda m: (torch.cat([m[0][:, :2], torch.exp(m[0])], 1) ** 2).sum(), (R(3, 4),)),
]


@pytest.mark.parametrize("k", range(len(TORCH_CASES)))
def test_against_torch(k):
    f_ad, f_t, args = TORCH_CASES[k]
    g = ad.grad(f_ad)(args)
    ts = [to_t(a) for a in args]
    f_t(ts).backward()
    for mine, t in zip(g, ts):
        np.testing.assert_allclose(mine, t.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_jacobians_against_torch():
    W = R(4, 3)

    def f(x):
        return ad.tanh(W @ x) * x[0]

    x = R(3)
    jt = torch.autograd.functional.jacobian(lambda t: torch.tanh(torch.tensor(W) @ t) * t[0], torch.tensor(x))
    np.testing.assert_allclose(ad.jacrev(f)(x), jt.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ad.jacfwd(f)(x), jt.numpy(), rtol=1e-12)


@given(n=st.integers(1, 6), seed=st.integers(0, 10**6))
@settings(max_examples=30)
def test_jvp_vjp_duality(n, seed):
    r = np.random.default_rng(seed)
    A = r.standard_normal((n + 1, n))
    f = lambda x: ad.sin(A @ x) * ad.sum(x ** 2)  # noqa: E731
    x, v, u = r.standard_normal(n), r.standard_normal(n), r.standard_normal(n + 1)
    _, jv = ad.jvp(f, (x,), (v,))
    _, pull = ad.vjp(f, x)
    (jtu,) = pull(u)
    assert np.isclose(u @ jv, jtu @ v, rtol=1e-11, atol=1e-12)


def test_hvp_against_differences_of_gradients():
    A = R(5, 5)

    def f(x):
        return ad.sum(ad.tanh(A @ x) ** 2) + ad.sum(x ** 4)

    x, v = R(5), R(5)
    eps = 1e-5
    g = ad.grad(f)
    fd = (g(x + eps * v) - g(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(ad.hvp(f, x, v), fd, rtol=1e-6, atol=1e-8)
    H = torch.autograd.functional.hessian(
        lambda t: (torch.tanh(torch.tensor(A) @ t) ** 2).sum() + (t ** 4).sum(), torch.tensor(x))
    np.testing.assert_allclose(ad.hvp(f, x, v), H.numpy() @ v, rtol=1e-11)


def test_long_chain_no_recursion_error():
    def f(x):
        for _ in range(100_000):
            x = x * 1.00001
        return ad.sum(x)

    g = ad.grad(f)(np.ones(2))
    np.testing.assert_allclose(g, 1.00001 ** 100_000, rtol=1e-9)


def test_data_dependent_control_flow():
    def newton_sqrt(a):
        x = a * 0.0 + 1.0
        # branching on a value is explicit: stop_gradient (a comparison of tracers works as well)
        while abs(float(ad.stop_gradient(x * x - a))) > 1e-14 * float(ad.stop_gradient(a)):
            x = 0.5 * (x + a / x)
        return x

    for a in (2.0, 9.0, 1e6):
        g = ad.grad(newton_sqrt)(np.array(a))
        np.testing.assert_allclose(g, 0.5 / np.sqrt(a), rtol=1e-9)
    # the tape follows the executed trace: more iterations, more recorded ops
    small = ad.grad_cost(newton_sqrt, np.array(1.5)).gradient.ops
    large = ad.grad_cost(newton_sqrt, np.array(1e12)).gradient.ops
    assert large > small


def test_plain_inputs_record_nothing_and_return_numpy():
    x = R(100)
    y = ad.sum(ad.exp(x) * 2.0)
    assert isinstance(y, np.floating) or isinstance(y, np.ndarray)
    assert not isinstance(y, ad.Tracer)


def test_float32_preserved():
    x = R(5).astype(np.float32)
    g = ad.grad(lambda x: ad.sum(ad.tanh(x) * 2.0))(x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 2 * (1 - np.tanh(x) ** 2), rtol=1e-6)


def test_pytrees():
    params = {"w": R(3, 2), "b": R(2)}
    x = R(4, 3)

    def loss(p, x):
        return ad.mean((ad.tanh(x @ p["w"] + p["b"])) ** 2)

    g = ad.grad(loss)(params, x)
    assert set(g) == {"w", "b"} and g["w"].shape == (3, 2)
    tw, tb = to_t(params["w"]), to_t(params["b"])
    (torch.tanh(torch.tensor(x) @ tw + tb) ** 2).mean().backward()
    np.testing.assert_allclose(g["w"], tw.grad.numpy(), rtol=1e-12)
    gx, gp = ad.grad(loss, argnums=(1, 0))(params, x)
    np.testing.assert_allclose(gp["b"], tb.grad.numpy(), rtol=1e-12)


def test_errors():
    with pytest.raises(TypeError, match="must return a scalar.*use revolve.ad.jacrev or revolve.ad.vjp"):
        ad.grad(lambda x: x * 2)(R(3))
    with pytest.raises(ValueError, match=r"revolve.ad.add: operands could not be broadcast together with shapes \(3,\) \(4,\)"):
        ad.grad(lambda x: ad.sum(ad.add(x, np.ones(4))))(R(3))
    with pytest.raises(ValueError, match=r"matmul: shapes \(3, 4\) and \(3,\) are not aligned"):
        ad.matmul(R(3, 4), R(3))
    with pytest.raises(ValueError, match="cannot reshape"):
        ad.reshape(R(6), (4, -1))
    nope = Primitive("nope", lambda x: x)
    with pytest.raises(NotImplementedError, match="primitive 'nope' has no reverse-mode"):
        ad.grad(lambda x: ad.sum(bind(nope, x)))(R(3))
    with pytest.raises(NotImplementedError, match="primitive 'nope' has no forward-mode"):
        ad.jvp(lambda x: bind(nope, x), (R(3),), (R(3),))
    with pytest.raises(TypeError, match="numpy array .* would detach it"):
        ad.grad(lambda x: ad.sum(np.asarray(x)))(R(3))
    with pytest.raises(NotImplementedError, match="numpy function np.unwrap .* no revolve.ad rule"):
        ad.grad(lambda x: ad.sum(np.unwrap(x)))(R(3))
    with pytest.raises(TypeError, match="floating point"):
        ad.grad(lambda x: ad.sum(x))(np.array(["a"]))


def test_cost_counts():
    n = 10_000
    c = ad.grad_cost(lambda x: ad.sum(ad.sin(x) * x), np.ones(n))
    assert c.function.ops == 3 and c.function.flops == 3 * n
    # the tape keeps what the rules read: x (for sin and multiply) and sin(x) (for multiply); the product
    # feeds only sum, whose rule reads no values; beside them, the nodes' own bookkeeping (a few hundred bytes)
    assert 2 * 8 * n < c.tape_bytes < 2 * 8 * n + 3000
    assert 1 < c.flop_ratio < 5


def test_no_reference_cycles_keep_tapes_alive():
    """A tape must be freed as soon as its pullback is dropped, not when the cyclic collector runs."""
    import gc

    gc.collect()
    gc.disable()
    try:
        y, pull = ad.vjp(lambda x, p: ad.sum(ad.sin(x) * p["a"]), R(50), {"a": R(50)})
        pull(np.ones(()))
        del y, pull
        ad.grad(lambda d: ad.sum(d["w"] @ d["v"]))({"w": R(3, 4), "v": R(4)})
        assert gc.collect() == 0
    finally:
        gc.enable()
