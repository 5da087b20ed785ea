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


_FIELDS = ("vjp_into", "vjp_lazy", "odd", "builtin")


@contextlib.contextmanager
def plain_rules(*, keep=()):
    """Every primitive's plain VJP rule: no in-place variant, no negation left to the backward pass, no
    cotangent owned by it (``keep``: the fields of those to leave as they are)."""
    off = {"vjp_into": None, "vjp_lazy": None, "odd": False, "builtin": False}
    saved = {name: [getattr(p, f) for f in _FIELDS] for name, p in o.PRIMITIVES.items()}
    try:
        for p in o.PRIMITIVES.values():
            for f in _FIELDS:
                if f not in keep:
                    setattr(p, f, off[f])
        yield
    finally:
        for name, values in saved.items():
            for f, v in zip(_FIELDS, values):
                setattr(o.PRIMITIVES[name], f, v)


def _stencil(u, lib=ad):
    """An RK2 step of a Burgers stencil and a loss, written once for ``lib`` (revolve.ad, or torch as the oracle)."""
    up, um = lib.roll(u, -1), lib.roll(u, 1)
    k1 = -u * (up - um) / 0.2 + 0.01 * (up - 2 * u + um) / 0.01
    v = u + 1e-3 * k1
    vp, vm = lib.roll(v, -1), lib.roll(v, 1)
    k2 = -v * (vp - vm) / 0.2 + 0.01 * (vp - 2 * v + vm) / 0.01
    return lib.sum((u + 5e-4 * (k1 + k2)) ** 2)


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

    t = torch.tensor(x, requires_grad=True)
    (want,) = torch.autograd.grad(_stencil(t, torch), t)
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
    with plain_rules(keep=("vjp_lazy", "odd", "builtin")):
        want = ad.grad_cost(f, *args)
    got = ad.grad_cost(f, *args)
    assert got.gradient.ops == want.gradient.ops and got.gradient.flops == want.gradient.flops


def test_negations_left_to_the_backward_pass_save_their_passes():
    # the stencil's rhs has -u and two subtractions: each negation folds into the sum or rule that follows
    f, args = CASES["rk2 stencil"]
    with plain_rules():
        plain = ad.grad_cost(f, *args)
    got = ad.grad_cost(f, *args)
    assert got.gradient.ops == plain.gradient.ops - 6, (got.gradient, plain.gradient)
    with plain_rules(keep=("vjp_into", "builtin")):
        eager = ad.grad(f)(*args)
    assert np.array_equal(ad.grad(f)(*args), eager)


def test_a_returned_gradient_is_never_left_negated():
    # a gradient that is a negation of the seed (-x, 3 - 2x, x - y) comes back as a plain array, negated
    g = ad.grad(lambda x: ad.sum(-x))(np.ones(3))
    assert type(g) is np.ndarray and np.array_equal(g, -np.ones(3))
    gx, gy = ad.grad(lambda x, y: ad.sum(x - y), argnums=(0, 1))(np.ones(2), np.ones(2))
    assert type(gy) is np.ndarray and np.array_equal(gx, np.ones(2)) and np.array_equal(gy, -np.ones(2))
    g = ad.grad(lambda x: ad.sum(3.0 - x * 2.0))(np.ones(2))
    assert type(g) is np.ndarray and np.array_equal(g, np.full(2, -2.0))
    _, pb = ad.vjp(lambda x: -x, np.ones(2))
    (g,) = pb(np.arange(2.0))
    assert type(g) is np.ndarray and np.array_equal(g, -np.arange(2.0))


def test_a_view_of_a_cotangent_keeps_it_from_being_written():
    # add hands its cotangent to x * 3 and to reshape(y): reshape's rule (run first) passes a view of it to y;
    # x * 3's in-place rule must then not overwrite the array y's view shows
    w = rng.standard_normal((3, 4))
    f = lambda x, y: ad.sum((x * 3.0 + ad.reshape(y, (3, 4))) * w)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal(12)
    gx, gy = ad.grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx, 3.0 * w)
    np.testing.assert_array_equal(gy, w.ravel())


def test_the_callers_cotangent_is_never_written():
    ct = np.arange(1.0, 4.0)
    before = ct.copy()
    for f in (lambda x: x * 2.0 + x, lambda x: -(x * 2.0) - x / 3.0, lambda x: ad.reshape(x * 2.0, (3,)) + x):
        _, pb = ad.vjp(f, np.ones(3))
        (g,) = pb(ct)
        with plain_rules():
            (want,) = pb(ct)
        assert np.array_equal(g, want)
        assert np.array_equal(ct, before)


def test_a_custom_rule_may_keep_its_cotangent():
    # a user's backward rule that keeps g (here: returns it and stashes it) must find it unchanged afterwards
    kept = []

    @ad.custom_vjp
    def ident(x):
        return x * 1.0

    def fwd(x):
        return ident(x), None

    def bwd(res, g):
        kept.append((g, np.array(g, copy=True)))
        return (g,)

    ident.defvjp(fwd, bwd)
    f = lambda x: ad.sum(ident(x * 2.0) * 3.0 + x * 0.0) * 1.0
    x = rng.standard_normal(5)
    g = ad.grad(lambda x: ad.sum(ident(x * 3.0 / 7.0) * 2.0 + ident(x) * 5.0))(x)
    np.testing.assert_allclose(g, 3.0 / 7.0 * 2.0 + 5.0, rtol=1e-15)
    ad.grad(f)(x)
    for arr, copy in kept:
        assert np.array_equal(arr, copy)
