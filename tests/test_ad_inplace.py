"""The backward pass writes cotangents in place where it owns them (NOTE [ Cotangents written in place ] in
revolve/ad/rules.py): the same gradients, bit for bit, as the rules that make a new array for every result.

Oracles: the same pullback with the in-place variants switched off (every rule then returns new arrays, as
before they existed), torch float64 autograd, and the arrays the tape keeps, unchanged by any call.
"""

import contextlib

import numpy as np
import pytest
import torch

from revolve import ad
from revolve.ad import ops as o
from revolve.ad import rules

rng = np.random.default_rng(11)


@contextlib.contextmanager
def plain_rules():
    """Every primitive's plain VJP rule, and no cotangent owned by the backward pass."""
    saved = {name: (p.vjp_into, p.builtin) for name, p in o.PRIMITIVES.items()}
    try:
        for p in o.PRIMITIVES.values():
            p.vjp_into, p.builtin = None, False
        yield
    finally:
        for name, (into, builtin) in saved.items():
            o.PRIMITIVES[name].vjp_into, o.PRIMITIVES[name].builtin = into, builtin


def _stencil(u):
    up, um = ad.roll(u, -1), ad.roll(u, 1)
    k1 = -u * (up - um) / 0.2 + 0.01 * (up - 2 * u + um) / 0.01
    v = u + 1e-3 * k1
    vp, vm = ad.roll(v, -1), ad.roll(v, 1)
    k2 = -v * (vp - vm) / 0.2 + 0.01 * (vp - 2 * v + vm) / 0.01
    return ad.sum((u + 5e-4 * (k1 + k2)) ** 2)


c32 = rng.standard_normal(6).astype(np.float32)
CASES = {
    "rk2 stencil": (_stencil, [rng.standard_normal(50)]),
    "x * x, x + x, x - x": (lambda x: ad.sum(x * x + (x + x) * x - (x - x) * 3.0), [rng.standard_normal(7)]),
    "shared cotangent of an add": (lambda x, y: ad.sum((x + y) * 2.0 / 3.0 - (x + y) ** 2), [rng.standard_normal(5)] * 2),
    "broadcasting (row, column, 0-d)": (lambda a, b, c: ad.sum(((a * b) / c - a) ** 2),
                                        [rng.standard_normal((4, 1)), rng.standard_normal(3), np.array(1.7)]),
    "float32 with float64 constants": (lambda x: ad.sum((x * np.float64(1.5) - x / np.float64(3.0)) ** 2) * x[0],
                                       [c32]),
    "float32 with a float32 array": (lambda x: ad.sum((x * c32 / (c32 + 3.0)) ** 2), [c32.copy()]),
    "views: reshape, transpose, getitem": (lambda x: ad.sum((ad.reshape(x * 2.0, (3, 4)).T[1:] * -1.0) ** 3),
                                           [rng.standard_normal(12)]),
    "matmul and tanh": (lambda w, x: ad.sum(ad.tanh(x @ w) * 2.0 - (x @ w) / 4.0),
                        [rng.standard_normal((4, 3)), rng.standard_normal((5, 4))]),
    "powers": (lambda x: ad.sum(x ** 2 * 3.0 + (x * 2.0) ** 3 - x ** 0.5), [np.abs(rng.standard_normal(6)) + 0.1]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_in_place_cotangents_are_bitwise_the_plain_rules(case):
    f, args = CASES[case]
    argnums = tuple(range(len(args)))
    with plain_rules():
        want = ad.grad(f, argnums=argnums)(*args)
    got = ad.grad(f, argnums=argnums)(*args)
    for w, g in zip(want, got):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert np.array_equal(g, w), (g, w)
        assert g.flags.writeable


@pytest.mark.parametrize("case", list(CASES))
def test_a_pullback_called_twice_gives_the_same_and_leaves_its_tape_alone(case):
    f, args = CASES[case]
    y, pb = ad.vjp(f, *args)
    kept = [(v, v.copy()) for node in pb._tape.nodes if node is not None
            for v in (*node.args, node.out) if isinstance(v, np.ndarray)]
    first = pb(np.ones_like(y))
    second = pb(np.ones_like(y))
    for a, b in zip(first, second):
        assert np.array_equal(a, b)
    for v, before in kept:
        assert np.array_equal(v, before)


def test_the_stencil_gradient_matches_torch():
    x = rng.standard_normal(64)
    got = ad.grad(_stencil)(x)

    def tf(u):
        up, um = torch.roll(u, -1), torch.roll(u, 1)
        k1 = -u * (up - um) / 0.2 + 0.01 * (up - 2 * u + um) / 0.01
        v = u + 1e-3 * k1
        vp, vm = torch.roll(v, -1), torch.roll(v, 1)
        k2 = -v * (vp - vm) / 0.2 + 0.01 * (vp - 2 * v + vm) / 0.01
        return torch.sum((u + 5e-4 * (k1 + k2)) ** 2)

    t = torch.tensor(x, requires_grad=True)
    (want,) = torch.autograd.grad(tf(t), t)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-13, atol=1e-13)


def test_second_order_through_in_place_rules():
    # the outer tape sees the inner pullback's ops: in-place variants do not run on tracers
    f, _ = CASES["powers"]
    x = np.abs(rng.standard_normal(4)) + 0.2
    h = ad.jacfwd(ad.grad(f))(x)
    with plain_rules():
        h_plain = ad.jacfwd(ad.grad(f))(x)
    assert np.array_equal(h, h_plain)
    t = torch.tensor(x, requires_grad=True)
    want = torch.autograd.functional.hessian(lambda u: torch.sum(u ** 2 * 3.0 + (u * 2.0) ** 3 - u ** 0.5), t)
    np.testing.assert_allclose(h, want.numpy(), rtol=1e-12)


def test_in_place_variants_count_their_ops():
    # revolve.ad.cost sees an op written into its cotangent as it sees the op that makes a new array
    f, args = CASES["rk2 stencil"]
    with plain_rules():
        want = ad.grad_cost(f, *args)
    got = ad.grad_cost(f, *args)
    assert got.gradient.ops == want.gradient.ops and got.gradient.flops == want.gradient.flops


def test_the_in_place_table_names_real_primitives():
    assert set(rules.INPLACE) <= set(o.PRIMITIVES)
