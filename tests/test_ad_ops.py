"""revolve.ad's numpy coverage (issue 13): every op and every numpy function that dispatches, against torch
float64 (value, VJP, JVP, Hessian-vector products) and central differences (check_grads, to second order)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from revolve import ad, gradient

rng = np.random.default_rng(13)


def R(*shape):
    return rng.standard_normal(shape)


def P(*shape):  # positive inputs
    return rng.uniform(0.5, 2.0, shape)


def SPD(n, batch=()):  # well-conditioned matrices
    return R(*batch, n, n) + 3.0 * np.eye(n)


def T(x):
    return torch.tensor(np.asarray(x), dtype=torch.float64)


def _ri(y):
    """A complex output as its real and imaginary parts stacked (so cotangents and tangents are real)."""
    return ad.stack([ad.real(y), ad.imag(y)]) if np.iscomplexobj(ad.stop_gradient(y)) else y


def _ri_t(y):
    return torch.stack([y.real, y.imag]) if y.is_complex() else y


I3 = np.array([[0, 1], [2, 2], [1, 0]])
IDX = np.array([0, 2, 2, 1, 0])
W34 = R(3, 4)
V4 = R(4)

# (name, our functions (each checked: ad.<op> and the np.<op> that dispatches), torch function, inputs)
CASES = [
    ("log1p", [ad.log1p, np.log1p], torch.log1p, (P(4),)),
    ("expm1", [ad.expm1, np.expm1], torch.expm1, (R(4),)),
    ("tan", [ad.tan, np.tan], torch.tan, (0.5 * R(3, 2),)),
    ("arctan", [ad.arctan, np.arctan], torch.arctan, (R(5),)),
    ("arctan2-broadcast", [ad.arctan2, np.arctan2], torch.arctan2, (R(3, 4), R(4))),
    ("sinh", [ad.sinh, np.sinh], torch.sinh, (R(4),)),
    ("cosh", [ad.cosh, np.cosh], torch.cosh, (R(4),)),
    ("square", [ad.square, np.square], torch.square, (R(2, 3),)),
    ("hypot-broadcast", [ad.hypot, np.hypot], torch.hypot, (R(3, 1), R(4))),
    ("max-axis", [lambda x: ad.max(x, axis=1), lambda x: np.max(x, axis=1), lambda x: x.max(axis=1),
                  lambda x: np.maximum.reduce(x, axis=1)], lambda x: torch.amax(x, 1), (R(3, 4),)),
    ("max-all", [ad.amax, np.amax, lambda x: x.max()], torch.amax, (R(3, 4),)),
    ("min-keepdims", [lambda x: ad.min(x, axis=(0, 2), keepdims=True), lambda x: np.min(x, (0, 2), keepdims=True),
                      lambda x: x.min(axis=(0, 2), keepdims=True)], lambda x: torch.amin(x, (0, 2), keepdim=True),
     (R(3, 4, 2),)),
    ("prod-axis", [lambda x: ad.prod(x, axis=0), lambda x: np.prod(x, axis=0), lambda x: x.prod(axis=0),
                   lambda x: np.multiply.reduce(x, axis=0)], lambda x: torch.prod(x, 0), (R(3, 4),)),
    ("prod-all", [ad.prod, np.prod, lambda x: x.prod()], torch.prod, (R(5),)),
    ("prod-zeros", [lambda x: ad.prod(x, axis=1)], lambda x: torch.prod(x, 1),
     (np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 1.5], [1.0, -2.0, 3.0]]),)),
    ("cumsum-axis", [lambda x: ad.cumsum(x, axis=1), lambda x: np.cumsum(x, axis=1), lambda x: x.cumsum(axis=1)],
     lambda x: torch.cumsum(x, 1), (R(3, 4),)),
    ("cumsum-flat", [ad.cumsum, np.cumsum, lambda x: x.cumsum()], lambda x: torch.cumsum(x.flatten(), 0), (R(3, 4),)),
    ("var-ddof", [lambda x: ad.var(x, axis=0, ddof=1), lambda x: np.var(x, axis=0, ddof=1), lambda x: x.var(0, ddof=1)],
     lambda x: torch.var(x, 0, correction=1), (R(4, 3),)),
    ("std", [ad.std, np.std, lambda x: x.std()], lambda x: torch.std(x, correction=0), (R(6),)),
    ("std-keepdims", [lambda x: ad.std(x, axis=1, keepdims=True, ddof=1), lambda x: x.std(1, keepdims=True, ddof=1)],
     lambda x: torch.std(x, 1, keepdim=True, correction=1), (R(3, 4),)),
    ("mean-method", [lambda x: x.mean(axis=0), lambda x: np.mean(x, 0)], lambda x: x.mean(0), (R(3, 4),)),
    ("sum-method", [lambda x: x.sum(axis=(0, 1), keepdims=True)], lambda x: x.sum((0, 1), keepdim=True), (R(3, 4, 2),)),
    ("einsum-matmul", [lambda a, b: ad.einsum("ij,jk->ik", a, b), lambda a, b: np.einsum("ij,jk->ik", a, b)],
     lambda a, b: torch.einsum("ij,jk->ik", a, b), (R(2, 3), R(3, 4))),
    ("einsum-implicit-summed", [lambda a, b: ad.einsum("ijk,j", a, b), lambda a, b: np.einsum("ijk,j", a, b)],
     lambda a, b: torch.einsum("ijk,j", a, b), (R(2, 3, 4), R(3))),
    ("einsum-three", [lambda a, b, c: ad.einsum("ij,jk,k->i", a, b, c)], lambda a, b, c: torch.einsum("ij,jk,k->i", a, b, c),
     (R(2, 3), R(3, 4), R(4))),
    ("einsum-scalar", [lambda a, b: ad.einsum("i,i->", a, b)], lambda a, b: torch.einsum("i,i->", a, b), (R(4), R(4))),
    ("tensordot", [lambda a, b: ad.tensordot(a, b, axes=([1, 0], [0, 1])),
                   lambda a, b: np.tensordot(a, b, axes=([1, 0], [0, 1]))],
     lambda a, b: torch.tensordot(a, b, dims=([1, 0], [0, 1])), (R(3, 4, 2), R(4, 3))),
    ("tensordot-int", [lambda a, b: np.tensordot(a, b, 1)], lambda a, b: torch.tensordot(a, b, 1), (R(2, 3), R(3, 2))),
    ("outer", [ad.outer, np.outer], torch.outer, (R(3), R(4))),
    ("dot-method", [lambda a: a.dot(V4), lambda a: np.dot(a, V4)], lambda a: a @ T(V4), (R(3, 4),)),
    ("clip", [lambda x: ad.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), lambda x: x.clip(-0.5, 0.5),
              lambda x: np.clip(x, max=0.5, min=-0.5)], lambda x: torch.clamp(x, -0.5, 0.5), (R(8),)),
    ("clip-traced-bounds", [ad.clip, np.clip], torch.clamp, (R(3, 4), R(4) - 0.5, R(3, 1) + 0.5)),
    ("clip-upper", [lambda x: x.clip(max=0.2)], lambda x: torch.clamp(x, max=0.2), (R(6),)),
    ("squeeze", [lambda x: ad.squeeze(x, axis=0) * W34, lambda x: np.squeeze(x) * W34, lambda x: x.squeeze() * W34],
     lambda x: x.squeeze() * T(W34), (R(1, 3, 4),)),
    ("expand_dims", [lambda x: ad.expand_dims(x, 1), lambda x: np.expand_dims(x, 1)], lambda x: x.unsqueeze(1),
     (R(3, 4),)),
    ("flip", [lambda x: ad.flip(x, 0) * W34, lambda x: np.flip(x, 0) * W34, lambda x: np.flipud(x) * W34],
     lambda x: x.flip(0) * T(W34), (R(3, 4),)),
    ("flip-all", [lambda x: ad.flip(x) * W34, lambda x: np.flip(x) * W34], lambda x: x.flip((0, 1)) * T(W34), (R(3, 4),)),
    ("negative-step-slice", [lambda x: x[::-2, 3:0:-1] ** 2], lambda x: x.flip(0)[::2].flip(1)[:, :3] ** 2, (R(5, 4),)),
    ("broadcast_to", [lambda x: ad.broadcast_to(x, (3, 4)) * W34, lambda x: np.broadcast_to(x, (3, 4)) * W34],
     lambda x: x.broadcast_to((3, 4)) * T(W34), (R(4),)),
    ("pad-constant", [lambda x: ad.pad(x, ((1, 2), (0, 1)), constant_values=2.0),
                      lambda x: np.pad(x, ((1, 2), (0, 1)), constant_values=2.0)],
     lambda x: torch.nn.functional.pad(x, (0, 1, 1, 2), value=2.0), (R(3, 4),)),
    ("pad-wrap", [lambda x: ad.pad(x, (2, 3), mode="wrap"), lambda x: np.pad(x, (2, 3), mode="wrap")],
     lambda x: torch.nn.functional.pad(x[None], (2, 3), mode="circular")[0], (R(4),)),
    ("pad-edge-2d", [lambda x: ad.pad(x, 2, mode="edge"), lambda x: np.pad(x, 2, mode="edge")],
     lambda x: torch.nn.functional.pad(x[None, None], (2, 2, 2, 2), mode="replicate")[0, 0], (R(3, 4),)),
    ("pad-reflect", [lambda x: ad.pad(x, (2, 1), mode="reflect"), lambda x: np.pad(x, (2, 1), mode="reflect")],
     lambda x: torch.nn.functional.pad(x[None], (2, 1), mode="reflect")[0], (R(5),)),
    ("take-flat-repeated", [lambda x: ad.take(x, IDX), lambda x: np.take(x, IDX)], lambda x: torch.take(x, T(IDX).long()),
     (R(3, 4),)),
    ("take-axis-repeated", [lambda x: ad.take(x, IDX, axis=1), lambda x: np.take(x, IDX, axis=1)],
     lambda x: torch.index_select(x, 1, T(IDX).long()), (R(2, 3),)),
    ("take_along_axis", [lambda x: ad.take_along_axis(x, I3, 1), lambda x: np.take_along_axis(x, I3, axis=1)],
     lambda x: torch.take_along_dim(x, T(I3).long(), 1), (R(3, 4),)),
    ("fancy-repeated", [lambda x: x[[0, 2, 0], 1:]], lambda x: x[[0, 2, 0], 1:], (R(3, 4),)),
    ("diff", [lambda x: ad.diff(x, n=2, axis=0), lambda x: np.diff(x, n=2, axis=0)], lambda x: torch.diff(x, n=2, dim=0),
     (R(5, 3),)),
    ("diff-append", [lambda x: np.diff(x, prepend=1.0, append=x[:, :1])],
     lambda x: torch.diff(x, prepend=torch.ones(3, 1, dtype=torch.float64), append=x[:, :1]), (R(3, 4),)),
    ("ravel-flatten", [lambda x: x.ravel() * x.flatten(), lambda x: np.ravel(x) ** 2], lambda x: x.flatten() ** 2,
     (R(2, 3),)),
    ("reshape-T-copy", [lambda x: x.reshape(3, 2).T.copy(), lambda x: np.copy(x.reshape((3, 2))).T],
     lambda x: x.reshape(3, 2).T, (R(2, 3),)),
    ("solve-vector", [ad.linalg.solve, np.linalg.solve], torch.linalg.solve, (SPD(3), R(3))),
    ("solve-batched", [ad.linalg.solve, np.linalg.solve], torch.linalg.solve, (SPD(3, (2,)), R(3, 2))),
    ("inv", [ad.linalg.inv, np.linalg.inv], torch.linalg.inv, (SPD(3),)),
    ("slogdet", [lambda a: ad.linalg.slogdet(a)[1], lambda a: np.linalg.slogdet(a)[1]],
     lambda a: torch.linalg.slogdet(a)[1], (R(2, 3, 3),)),
    ("det", [ad.linalg.det, np.linalg.det], torch.linalg.det, (R(3, 3),)),
    ("norm", [ad.linalg.norm, np.linalg.norm], torch.linalg.norm, (R(3, 4),)),
    ("norm-axis-keepdims", [lambda x: ad.linalg.norm(x, axis=1, keepdims=True)],
     lambda x: torch.linalg.norm(x, dim=1, keepdim=True), (R(3, 4),)),
    ("norm-1", [lambda x: ad.linalg.norm(x, ord=1), lambda x: np.linalg.norm(x, 1)],
     lambda x: torch.linalg.vector_norm(x, 1), (R(5),)),
    ("norm-inf", [lambda x: ad.linalg.norm(x, ord=np.inf, axis=0)], lambda x: torch.linalg.vector_norm(x, np.inf, dim=0),
     (R(3, 4),)),
    ("norm-3", [lambda x: ad.linalg.norm(x, ord=3)], lambda x: torch.linalg.vector_norm(x, 3), (R(5),)),
    ("norm-fro", [lambda x: ad.linalg.norm(x, "fro"), lambda x: np.linalg.norm(x, "fro", axis=(0, 1))],
     lambda x: torch.linalg.matrix_norm(x, "fro"), (R(3, 4),)),
    ("norm-matrix-1", [lambda x: ad.linalg.norm(x, 1), lambda x: np.linalg.norm(x, 1)],
     lambda x: torch.linalg.matrix_norm(x, 1), (R(3, 4),)),
    ("norm-matrix-inf", [lambda x: ad.linalg.norm(x, np.inf)], lambda x: torch.linalg.matrix_norm(x, np.inf), (R(3, 4),)),
    ("rfft", [lambda x: _ri(ad.fft.rfft(x)), lambda x: _ri(np.fft.rfft(x))], lambda x: _ri_t(torch.fft.rfft(x)),
     (R(3, 6),)),
    ("rfft-n-axis", [lambda x: _ri(ad.fft.rfft(x, n=9, axis=0)), lambda x: _ri(np.fft.rfft(x, 9, 0))],
     lambda x: _ri_t(torch.fft.rfft(x, n=9, dim=0)), (R(6, 2),)),
    ("rfft-n-short", [lambda x: _ri(ad.fft.rfft(x, n=4))], lambda x: _ri_t(torch.fft.rfft(x, n=4)), (R(7),)),
    ("irfft", [lambda x: ad.fft.irfft(ad.fft.rfft(x) * np.arange(1.0, 5.0)),
               lambda x: np.fft.irfft(np.fft.rfft(x) * np.arange(1.0, 5.0))],
     lambda x: torch.fft.irfft(torch.fft.rfft(x) * T(np.arange(1.0, 5.0))), (R(6),)),
    ("irfft-odd-n", [lambda x: ad.fft.irfft(ad.fft.rfft(x) * np.exp(1j * np.arange(4.0)), n=7)],
     lambda x: torch.fft.irfft(torch.fft.rfft(x) * torch.exp(1j * T(np.arange(4.0))), n=7), (R(6),)),
    ("fft-ifft", [lambda x: _ri(ad.fft.ifft(ad.fft.fft(x) * np.exp(1j * np.arange(6.0)))),
                  lambda x: _ri(np.fft.ifft(np.fft.fft(x) * np.exp(1j * np.arange(6.0))))],
     lambda x: _ri_t(torch.fft.ifft(torch.fft.fft(x) * torch.exp(1j * T(np.arange(6.0))))), (R(6),)),
    ("fft-n-abs", [lambda x: ad.abs(ad.fft.fft(x, n=4, axis=0)), lambda x: np.abs(np.fft.fft(x, 4, axis=0))],
     lambda x: torch.fft.fft(x, n=4, dim=0).abs(), (R(6, 2),)),
    ("at-set", [lambda u, v: ad.at(u)[1:3].set(v * 2.0)],
     lambda u, v: torch.cat([u[:1], v * 2.0, u[3:]]), (R(5), R(2))),
    ("at-set-broadcast", [lambda u, v: ad.at(u)[:, 0].set(v)],
     lambda u, v: torch.cat([v.expand(3, 1), u[:, 1:]], 1), (R(3, 4), R(1))),
    ("at-add-repeated", [lambda u, v: ad.at(u)[[0, 0, 4]].add(v)],
     lambda u, v: u.index_put((torch.tensor([0, 0, 4]),), v.expand(3), accumulate=True), (R(5), R(1))),
    ("astype-roundtrip", [lambda x: ad.astype(x, np.float64) * x, lambda x: x.astype(np.float64) * x],
     lambda x: x * x, (R(4),)),
    ("integer-input", [lambda x: ad.prod(x, axis=0) * 1.5], lambda x: torch.prod(x, 0) * 1.5,
     (np.array([[1, 2, 3], [4, 5, 6]]),)),
]


def _vjp_jvp(f, args, u, v):
    y, pullback = ad.vjp(f, *args)
    _, tangent = ad.jvp(f, tuple(args), tuple(v))
    return y, pullback(u), tangent


def _torch_vjp_jvp(ft, args, u, v):
    ts = [T(a).requires_grad_(True) for a in args]
    y = ft(*ts)
    cts = torch.autograd.grad(y, ts, T(u), allow_unused=True)
    cts = [torch.zeros_like(t) if c is None else c for c, t in zip(cts, ts)]
    _, tangent = torch.func.jvp(ft, tuple(T(a) for a in args), tuple(T(d) for d in v))
    return y.detach(), cts, tangent


@pytest.mark.parametrize("name,fns,ft,args", CASES, ids=[c[0] for c in CASES])
def test_value_vjp_jvp_against_torch(name, fns, ft, args):
    r = np.random.default_rng(len(name))
    v = [r.standard_normal(np.shape(a)) for a in args]
    y0 = fns[0](*args)
    u = r.standard_normal(np.shape(y0))
    y_t, cts_t, tan_t = _torch_vjp_jvp(ft, args, u, v)
    for f in fns:
        y, cts, tangent = _vjp_jvp(f, args, u, v)
        np.testing.assert_allclose(y, y_t.numpy(), rtol=1e-11, atol=1e-12, err_msg=f"{name}: value")
        for k, (c, ct) in enumerate(zip(cts, cts_t)):
            np.testing.assert_allclose(c, ct.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"{name}: VJP of argument {k}")
        np.testing.assert_allclose(tangent, tan_t.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"{name}: JVP")


@pytest.mark.parametrize("name,fns,ft,args", CASES, ids=[c[0] for c in CASES])
def test_second_order_against_torch_and_central_differences(name, fns, ft, args):
    """fwd-over-rev (ad.hvp) and rev-over-rev (ad.jacrev(ad.grad)) of a scalar loss against torch's Hessian;
    each argument alone as well (the tape then keeps only what that argument's rule reads, rules.RETAIN)."""
    args = tuple(np.asarray(a, dtype=np.float64) for a in args)
    f = fns[0]
    r = np.random.default_rng(len(name) + 1)
    w = r.standard_normal(np.shape(f(*args)))
    for k in range(len(args)):
        def loss(x, k=k):
            a = list(args)
            a[k] = x
            return ad.sum(f(*a) * w) + 0.0 * ad.sum(x)

        def loss_t(x, k=k):
            a = [T(b) for b in args]
            a[k] = x
            return (ft(*a) * T(w)).sum()

        x = args[k]
        d = r.standard_normal(x.shape)
        h_t = torch.autograd.functional.hessian(loss_t, T(x)).reshape(x.size, x.size).numpy()
        np.testing.assert_allclose(ad.hvp(loss, x, d).reshape(-1), h_t @ d.reshape(-1), rtol=1e-9, atol=1e-11,
                                   err_msg=f"{name}: hvp in argument {k}")
        np.testing.assert_allclose(ad.jacrev(ad.grad(loss))(x).reshape(x.size, x.size), h_t, rtol=1e-9, atol=1e-11,
                                   err_msg=f"{name}: rev-over-rev in argument {k}")
        if name not in NOT_SMOOTH_HERE:
            ad.check_grads(loss, x, order=2)
    ad.check_grads(f, *args, order=2 if name not in NOT_SMOOTH_HERE else 1)


#: cases whose inputs include a point where central differences straddle a kink (zeros in prod are exact
#: for torch, but a step of eps crosses them only in the second order's directions; clip with traced bounds
#: crosses none). Kept short: checked against torch above.
NOT_SMOOTH_HERE = {"prod-zeros", "integer-input"}
