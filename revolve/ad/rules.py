"""The one table of derivative rules: for each primitive, its VJP (reverse) and JVP (forward) rule.

VJP rule: ``vjp(g, ans, want, *args, **params)`` returns one cotangent per argument (None for an
argument that is not differentiated or not wanted); ``want[i]`` says whether argument i is traced.
JVP rule: ``jvp(tangents, ans, *args, **params)`` returns the output's tangent (None for zero); a
tangent is None where the argument is not traced.

Rules are written with the engine's own functions, so they can themselves be differentiated (higher
derivatives nest). Broadcasting is undone in one place, ``unbroadcast``.
"""

from __future__ import annotations

import numpy as np

from . import ops as o
from .core import Negated, shape_of, value_of
from .ops import unbroadcast as unb


def _bt(t, shape):
    """A tangent broadcast to the output's shape (None stays None)."""
    if t is None or shape_of(t) == shape:
        return t
    return o.broadcast_to(t, shape)


def _tadd(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return o.add(a, b)


def _shape(x):
    return shape_of(x)


# ---- elementwise arithmetic ------------------------------------------------------------------------

def vjp_add(g, ans, want, x, y):
    return (unb(g, _shape(x)) if want[0] else None, unb(g, _shape(y)) if want[1] else None)


def jvp_add(t, ans, x, y):
    s = _shape(ans)
    return _tadd(_bt(t[0], s), _bt(t[1], s))


def vjp_sub(g, ans, want, x, y):
    return (unb(g, _shape(x)) if want[0] else None, unb(o.negative(g), _shape(y)) if want[1] else None)


def jvp_sub(t, ans, x, y):
    s = _shape(ans)
    ty = None if t[1] is None else o.negative(t[1])
    return _tadd(_bt(t[0], s), _bt(ty, s))


def vjp_mul(g, ans, want, x, y):
    return (unb(o.multiply(g, y), _shape(x)) if want[0] else None,
            unb(o.multiply(g, x), _shape(y)) if want[1] else None)


def jvp_mul(t, ans, x, y):
    s = _shape(ans)
    a = None if t[0] is None else _bt(o.multiply(t[0], y), s)
    b = None if t[1] is None else _bt(o.multiply(x, t[1]), s)
    return _tadd(a, b)


def vjp_div(g, ans, want, x, y):
    return (unb(o.divide(g, y), _shape(x)) if want[0] else None,
            unb(o.negative(o.multiply(g, o.divide(ans, y))), _shape(y)) if want[1] else None)


def jvp_div(t, ans, x, y):
    s = _shape(ans)
    a = None if t[0] is None else _bt(o.divide(t[0], y), s)
    b = None if t[1] is None else _bt(o.negative(o.multiply(t[1], o.divide(ans, y))), s)
    return _tadd(a, b)


def vjp_neg(g, ans, want, x):
    return (o.negative(g),)


def jvp_neg(t, ans, x):
    return o.negative(t[0])


def _dpow_dx(x, y):
    # y * x**(y-1), and 0 where y == 0 (as torch: d/dx x**0 = 0 even at x = 0, where the formula is 0 * inf);
    # a constant exponent stays a Python number so numpy takes its fast paths (x**1, x**2)
    if isinstance(y, (int, float, np.integer, np.floating)) or (isinstance(y, np.ndarray) and y.ndim == 0):
        c = float(y)
        if c == 0.0:
            return o.zeros_like(x)
        if c == 2.0:
            return o.multiply(x, 2.0)
        if c == 1.0:
            return o.ones_like(x)
        return o.multiply(o.power(x, c - 1.0), c)
    zero = value_of(y) == 0
    if not np.any(zero):
        return o.multiply(y, o.power(x, o.subtract(y, 1.0)))
    safe = o.where(zero, 1.0, x)  # no 0**-1 computed where the answer is 0 anyway
    return o.where(zero, 0.0, o.multiply(y, o.power(safe, o.subtract(y, 1.0))))


def _dpow_dy(ans, x, y):
    # x**y * log(x), and 0 where x == 0 and y >= 0 (as torch: the limit of 0**y is reached from x**y's side
    # that exists; the formula is 0 * -inf there)
    zero = np.logical_and(value_of(x) == 0, value_of(y) >= 0)
    if not np.any(zero):
        return o.multiply(ans, o.log(x))
    return o.where(zero, 0.0, o.multiply(ans, o.log(o.where(zero, 1.0, x))))


def vjp_pow(g, ans, want, x, y):
    gx = unb(o.multiply(g, _dpow_dx(x, y)), _shape(x)) if want[0] else None
    gy = unb(o.multiply(g, _dpow_dy(ans, x, y)), _shape(y)) if want[1] else None
    return (gx, gy)


def jvp_pow(t, ans, x, y):
    s = _shape(ans)
    a = None if t[0] is None else _bt(o.multiply(t[0], _dpow_dx(x, y)), s)
    b = None if t[1] is None else _bt(o.multiply(t[1], _dpow_dy(ans, x, y)), s)
    return _tadd(a, b)


# ---- elementwise functions -------------------------------------------------------------------------

def vjp_exp(g, ans, want, x):
    return (o.multiply(g, ans),)


def jvp_exp(t, ans, x):
    return o.multiply(t[0], ans)


def vjp_log(g, ans, want, x):
    return (o.divide(g, x),)


def jvp_log(t, ans, x):
    return o.divide(t[0], x)


def vjp_sin(g, ans, want, x):
    return (o.multiply(g, o.cos(x)),)


def jvp_sin(t, ans, x):
    return o.multiply(t[0], o.cos(x))


def vjp_cos(g, ans, want, x):
    return (o.negative(o.multiply(g, o.sin(x))),)


def jvp_cos(t, ans, x):
    return o.negative(o.multiply(t[0], o.sin(x)))


def vjp_tanh(g, ans, want, x):
    return (o.multiply(g, o.subtract(1.0, o.multiply(ans, ans))),)


def jvp_tanh(t, ans, x):
    return o.multiply(t[0], o.subtract(1.0, o.multiply(ans, ans)))


def vjp_sqrt(g, ans, want, x):
    return (o.divide(o.multiply(g, 0.5), ans),)


def jvp_sqrt(t, ans, x):
    return o.divide(o.multiply(t[0], 0.5), ans)


def _dabs(x):
    # complex x: d|z| = Re(conj(z) dz) / |z|, so the cotangent is g conj(z) / |z| (NOTE [ Complex cotangents ]
    # in ops.py); written with |z| recomputed, as sign's derivative is 0 only for real values
    if np.iscomplexobj(value_of(x)):
        return _over_ans(o.conj(x), o.abs(x))
    return o.sign(x)


def _real_ct(g):
    """The cotangent of a real output, real: a complex one can reach it from a real value multiplied by a
    complex one (whose rule does not know that one factor is real); its imaginary part is not a derivative."""
    return o.real(g)


def vjp_abs(g, ans, want, x):
    return (o.multiply(_real_ct(g), _dabs(x)),)


def jvp_abs(t, ans, x):
    return o.real(o.multiply(t[0], _dabs(x)))


def vjp_zero(g, ans, want, *args, **params):
    return (None,) * len(args)


def jvp_zero(t, ans, *args, **params):
    return None


def _mask_max(x, y):
    return value_of(x) >= value_of(y)


def _mask_min(x, y):
    return value_of(x) <= value_of(y)


def _vjp_select(mask_fn):
    def rule(g, ans, want, x, y):
        mask = np.broadcast_to(mask_fn(x, y), _shape(ans))
        gx = unb(o.where(mask, g, 0.0), _shape(x)) if want[0] else None
        gy = unb(o.where(mask, 0.0, g), _shape(y)) if want[1] else None
        return (gx, gy)

    return rule


def _jvp_select(mask_fn):
    def rule(t, ans, x, y):
        s = _shape(ans)
        mask = np.broadcast_to(mask_fn(x, y), s)
        tx = _bt(t[0], s) if t[0] is not None else 0.0
        ty = _bt(t[1], s) if t[1] is not None else 0.0
        return o.where(mask, tx, ty)

    return rule


def vjp_where(g, ans, want, c, x, y):
    c = np.broadcast_to(c, _shape(ans))
    gx = unb(o.where(c, g, 0.0), _shape(x)) if want[1] else None
    gy = unb(o.where(c, 0.0, g), _shape(y)) if want[2] else None
    return (None, gx, gy)


def jvp_where(t, ans, c, x, y):
    s = _shape(ans)
    tx = _bt(t[1], s) if t[1] is not None else 0.0
    ty = _bt(t[2], s) if t[2] is not None else 0.0
    return o.where(np.broadcast_to(c, s), tx, ty)


# ---- linear algebra --------------------------------------------------------------------------------

def _matrix_shape(s, first: bool):
    """The shape numpy's matmul promotes a 1-D operand to: (1, k) for the first, (k, 1) for the second."""
    if len(s) != 1:
        return s
    return (1, s[0]) if first else (s[0], 1)


def vjp_matmul(g, ans, want, a, b):
    # each cotangent reads only the other operand (RETAIN), so only that one is reshaped
    sa, sb = _matrix_shape(_shape(a), True), _matrix_shape(_shape(b), False)
    out2 = np.broadcast_shapes(sa[:-2], sb[:-2]) + (sa[-2], sb[-1])
    g2 = o.reshape(g, out2)
    ga = gb = None
    if want[0]:
        b2 = o.reshape(b, sb) if _shape(b) != sb else b
        ga = o.reshape(unb(o.matmul(g2, o.swapaxes(b2, -1, -2)), sa), _shape(a))
    if want[1]:
        a2 = o.reshape(a, sa) if _shape(a) != sa else a
        gb = o.reshape(unb(o.matmul(o.swapaxes(a2, -1, -2), g2), sb), _shape(b))
    return (ga, gb)


def jvp_matmul(t, ans, a, b):
    x = None if t[0] is None else o.matmul(t[0], b)
    y = None if t[1] is None else o.matmul(a, t[1])
    return _tadd(x, y)


# ---- reductions and shape operations ---------------------------------------------------------------

def vjp_sum(g, ans, want, x, axis=None, keepdims=False):
    shape = _shape(x)
    if not keepdims:
        axes = range(len(shape)) if axis is None else axis
        kept = list(shape)
        for ax in axes:
            kept[ax] = 1
        g = o.reshape(g, tuple(kept))
    return (o.broadcast_to(g, shape),)


def jvp_sum(t, ans, x, axis=None, keepdims=False):
    return o.sum(t[0], axis=axis, keepdims=keepdims)


def vjp_reshape(g, ans, want, x, shape):
    return (o.reshape(g, _shape(x)),)


def jvp_reshape(t, ans, x, shape):
    return o.reshape(t[0], shape)


def vjp_transpose(g, ans, want, x, axes=None):
    inv = None if axes is None else tuple(np.argsort(axes))
    return (o.transpose(g, inv),)


def jvp_transpose(t, ans, x, axes=None):
    return o.transpose(t[0], axes)


def vjp_getitem(g, ans, want, x, idx):
    return (o.scatter_add(g, idx, _shape(x)),)


def jvp_getitem(t, ans, x, idx):
    return o.getitem(t[0], idx)


def vjp_scatter(g, ans, want, x, idx, shape):
    return (o.getitem(g, idx),)


def jvp_scatter(t, ans, x, idx, shape):
    return o.scatter_add(t[0], idx, shape)


def _pieces(g, sizes, axis):
    """Slices of g along ``axis`` of the given sizes."""
    nd = len(_shape(g))
    ax = axis % nd
    out, start = [], 0
    for size in sizes:
        idx = (slice(None),) * ax + (slice(start, start + size),)
        out.append(o.getitem(g, idx))
        start += size
    return out


def vjp_concat(g, ans, want, *xs, axis):
    nd = len(_shape(ans))
    sizes = [_shape(x)[axis % nd] for x in xs]
    parts = _pieces(g, sizes, axis)
    return tuple([p if w else None for p, w in zip(parts, want)])


def jvp_concat(t, ans, *xs, axis):
    if all(ti is None for ti in t):
        return None
    return o.concatenate([ti if ti is not None else o.zeros_like(x) for ti, x in zip(t, xs)], axis=axis)


def vjp_stack(g, ans, want, *xs, axis):
    nd = len(_shape(ans))
    ax = axis % nd
    out = []
    for i, w in enumerate(want):
        out.append(o.getitem(g, (slice(None),) * ax + (i,)) if w else None)
    return tuple(out)


def jvp_stack(t, ans, *xs, axis):
    if all(ti is None for ti in t):
        return None
    return o.stack([ti if ti is not None else o.zeros_like(x) for ti, x in zip(t, xs)], axis=axis)


def vjp_roll(g, ans, want, x, shift, axis=None):
    neg = tuple([-s for s in shift]) if isinstance(shift, tuple) else -shift
    return (o.roll(g, neg, axis=axis),)


def jvp_roll(t, ans, x, shift, axis=None):
    return o.roll(t[0], shift, axis=axis)


def vjp_broadcast(g, ans, want, x, shape):
    return (unb(g, _shape(x)),)


def jvp_broadcast(t, ans, x, shape):
    return o.broadcast_to(t[0], shape)


# ---- more elementwise functions (issue 13) ----------------------------------------------------------

def vjp_log1p(g, ans, want, x):
    return (o.divide(g, o.add(x, 1.0)),)


def jvp_log1p(t, ans, x):
    return o.divide(t[0], o.add(x, 1.0))


def vjp_expm1(g, ans, want, x):
    return (o.multiply(g, o.add(ans, 1.0)),)


def jvp_expm1(t, ans, x):
    return o.multiply(t[0], o.add(ans, 1.0))


def vjp_tan(g, ans, want, x):
    return (o.multiply(g, o.add(o.multiply(ans, ans), 1.0)),)


def jvp_tan(t, ans, x):
    return o.multiply(t[0], o.add(o.multiply(ans, ans), 1.0))


def vjp_arctan(g, ans, want, x):
    return (o.divide(g, o.add(o.multiply(x, x), 1.0)),)


def jvp_arctan(t, ans, x):
    return o.divide(t[0], o.add(o.multiply(x, x), 1.0))


def vjp_sinh(g, ans, want, x):
    return (o.multiply(g, o.cosh(x)),)


def jvp_sinh(t, ans, x):
    return o.multiply(t[0], o.cosh(x))


def vjp_cosh(g, ans, want, x):
    return (o.multiply(g, o.sinh(x)),)


def jvp_cosh(t, ans, x):
    return o.multiply(t[0], o.sinh(x))


def vjp_arctan2(g, ans, want, y, x):
    # d atan2(y, x) = (x dy - y dx) / (x^2 + y^2)
    r2 = o.add(o.multiply(x, x), o.multiply(y, y))
    gy = unb(o.divide(o.multiply(g, x), r2), _shape(y)) if want[0] else None
    gx = unb(o.negative(o.divide(o.multiply(g, y), r2)), _shape(x)) if want[1] else None
    return (gy, gx)


def jvp_arctan2(t, ans, y, x):
    s = _shape(ans)
    r2 = o.add(o.multiply(x, x), o.multiply(y, y))
    a = None if t[0] is None else _bt(o.divide(o.multiply(t[0], x), r2), s)
    b = None if t[1] is None else _bt(o.negative(o.divide(o.multiply(t[1], y), r2)), s)
    return _tadd(a, b)


def _over_ans(v, ans):
    """v / ans, and 0 where ans == 0 (hypot and the 2-norm at 0: NOTE [ Tie conventions ] in ops.py)."""
    zero = value_of(ans) == 0
    if not np.any(zero):
        return o.divide(v, ans)
    return o.where(zero, 0.0, o.divide(v, o.where(zero, 1.0, ans)))


def vjp_hypot(g, ans, want, a, b):
    ga = unb(o.multiply(g, _over_ans(a, ans)), _shape(a)) if want[0] else None
    gb = unb(o.multiply(g, _over_ans(b, ans)), _shape(b)) if want[1] else None
    return (ga, gb)


def jvp_hypot(t, ans, a, b):
    s = _shape(ans)
    x = None if t[0] is None else _bt(o.multiply(t[0], _over_ans(a, ans)), s)
    y = None if t[1] is None else _bt(o.multiply(t[1], _over_ans(b, ans)), s)
    return _tadd(x, y)


# ---- more reductions: amax, amin, prod, cumsum, norm2 ------------------------------------------------

def _keep(shape, axis):
    """The shape a reduction over ``axis`` has with keepdims=True."""
    axes = range(len(shape)) if axis is None else axis
    return tuple([1 if i in axes else n for i, n in enumerate(shape)])


def _kept(v, shape, axis, keepdims):
    """A reduction's output (or cotangent) reshaped to keepdims form."""
    return v if keepdims else o.reshape(v, _keep(shape, axis))


def _tie_weights(x, ans, axis, keepdims):
    # the cotangent of a max/min split evenly among the tied entries (torch's amax/amin)
    shape = _shape(x)
    mask = value_of(x) == np.reshape(value_of(ans), _keep(shape, axis))
    return mask / np.sum(mask, axis=axis, keepdims=True)


def vjp_amax(g, ans, want, x, axis=None, keepdims=False):
    shape = _shape(x)
    return (o.multiply(o.broadcast_to(_kept(g, shape, axis, keepdims), shape), _tie_weights(x, ans, axis, keepdims)),)


def jvp_amax(t, ans, x, axis=None, keepdims=False):
    return o.sum(o.multiply(t[0], _tie_weights(x, ans, axis, keepdims)), axis=axis, keepdims=keepdims)


def _prod_others(x, ans, axis, keepdims):
    """For each entry, the product of the other entries of its reduced group (shape of x)."""
    shape = _shape(x)
    xv = value_of(x)
    if not np.any(xv == 0):
        return o.divide(o.broadcast_to(_kept(ans, shape, axis, keepdims), shape), x)
    # zeros: the product of the others directly, from a group-by-group copy with the entry itself set to 1
    nd = len(shape)
    axes = tuple(range(nd)) if axis is None else tuple(axis)
    rest = tuple([i for i in range(nd) if i not in axes])
    perm = rest + axes
    n = int(np.prod([shape[i] for i in axes], dtype=np.int64))
    lead = tuple([shape[i] for i in rest])
    xt = o.reshape(o.transpose(x, perm), lead + (n,))
    xb = o.broadcast_to(o.reshape(xt, lead + (1, n)), lead + (n, n))
    others = o.prod(o.where(np.eye(n, dtype=bool), 1.0, xb), axis=-1)
    others = o.reshape(others, tuple([shape[i] for i in perm]))
    return o.transpose(others, tuple(np.argsort(perm)))


def vjp_prod(g, ans, want, x, axis=None, keepdims=False):
    shape = _shape(x)
    return (o.multiply(o.broadcast_to(_kept(g, shape, axis, keepdims), shape), _prod_others(x, ans, axis, keepdims)),)


def jvp_prod(t, ans, x, axis=None, keepdims=False):
    return o.sum(o.multiply(t[0], _prod_others(x, ans, axis, keepdims)), axis=axis, keepdims=keepdims)


def vjp_cumsum(g, ans, want, x, axis):
    return (o.flip(o.cumsum(o.flip(g, axis), axis=axis), axis),)


def jvp_cumsum(t, ans, x, axis):
    return o.cumsum(t[0], axis=axis)


def _unit(x, ans, axis, keepdims):
    """x / |x| over the reduced group (0 for a zero group); conj(x) / |x| for complex x (NOTE [ Complex
    cotangents ] in ops.py)."""
    shape = _shape(x)
    xc = o.conj(x)
    return _over_ans(xc, o.broadcast_to(_kept(ans, shape, axis, keepdims), shape))


def vjp_norm2(g, ans, want, x, axis=None, keepdims=False):
    shape = _shape(x)
    g = _real_ct(g)
    return (o.multiply(o.broadcast_to(_kept(g, shape, axis, keepdims), shape), _unit(x, ans, axis, keepdims)),)


def jvp_norm2(t, ans, x, axis=None, keepdims=False):
    return o.real(o.sum(o.multiply(t[0], _unit(x, ans, axis, keepdims)), axis=axis, keepdims=keepdims))


# ---- casts, complex parts, einsum, linear algebra, FFT --------------------------------------------------

def vjp_cast(g, ans, want, x, dtype):
    xd = x.dtype
    return (o.astype(g, xd) if np.issubdtype(xd, np.inexact) else g,)


def jvp_cast(t, ans, x, dtype):
    return o.astype(t[0], dtype)


def vjp_real(g, ans, want, x):
    return (_real_ct(g),)


def jvp_real(t, ans, x):
    return o.real(t[0])


def vjp_imag(g, ans, want, x):
    return (o.multiply(_real_ct(g), -1j),)  # Im z = y: cotangent dL/dRe - i dL/dIm = -i g


def jvp_imag(t, ans, x):
    return o.imag(t[0])


def vjp_conj(g, ans, want, x):
    return (o.conj(g),)


def jvp_conj(t, ans, x):
    return o.conj(t[0])


def _einsum_parts(subscripts):
    ins, out = subscripts.split("->")
    return ins.split(","), out


def vjp_einsum(g, ans, want, *xs, subscripts):
    ins, out = _einsum_parts(subscripts)
    grads = []
    for i, w in enumerate(want):
        if not w:
            grads.append(None)
            continue
        others = [ins[j] for j in range(len(ins)) if j != i]
        present = set(out).union(*others) if others else set(out)
        target = "".join(c for c in ins[i] if c in present)
        gi = o.bind(o.p_einsum, g, *[xs[j] for j in range(len(xs)) if j != i],
                    subscripts=",".join([out, *others]) + "->" + target)
        shape = _shape(xs[i])
        if target != ins[i]:  # letters summed over in operand i alone: broadcast back
            gi = o.broadcast_to(o.reshape(gi, tuple([n if c in present else 1 for c, n in zip(ins[i], shape)])), shape)
        grads.append(gi)
    return tuple(grads)


def jvp_einsum(t, ans, *xs, subscripts):
    out = None
    for i, ti in enumerate(t):
        if ti is not None:
            ops_ = list(xs)
            ops_[i] = ti
            out = _tadd(out, o.bind(o.p_einsum, *ops_, subscripts=subscripts))
    return out


def vjp_solve(g, ans, want, a, b):
    # x = a^-1 b: gb = a^-T g, ga = -gb x^T
    gb = o.bind(o.p_solve, o.swapaxes(a, -1, -2), g)
    ga = unb(o.negative(o.matmul(gb, o.swapaxes(ans, -1, -2))), _shape(a)) if want[0] else None
    return (ga, unb(gb, _shape(b)) if want[1] else None)


def jvp_solve(t, ans, a, b):
    rhs = t[1]
    if t[0] is not None:
        ax = o.matmul(t[0], ans)
        rhs = o.negative(ax) if rhs is None else o.subtract(rhs, ax)
    return o.bind(o.p_solve, a, rhs)


def vjp_logabsdet(g, ans, want, a):
    ainv_t = o.inv(o.swapaxes(a, -1, -2))
    return (o.multiply(o.reshape(g, _shape(g) + (1, 1)), ainv_t),)


def jvp_logabsdet(t, ans, a):
    return o.sum(o.multiply(o.inv(o.swapaxes(a, -1, -2)), t[0]), axis=(-2, -1))


def vjp_fft(g, ans, want, x, n, axis, inverse):
    # the DFT matrix is symmetric, so the transpose of fft (ifft) is fft (ifft) of the cotangent, cut or
    # zero-padded back to the input's length (NOTE [ Complex cotangents ] in ops.py)
    gx = o._resize(o.bind(o.p_fft, g, n=None, axis=axis, inverse=inverse), _shape(x)[axis], axis)
    return (gx if np.issubdtype(x.dtype, np.complexfloating) else o.real(gx),)


def jvp_fft(t, ans, x, n, axis, inverse):
    return o.bind(o.p_fft, t[0], n=n, axis=axis, inverse=inverse)


def vjp_rfft(g, ans, want, x, n, axis):
    m = _shape(x)[axis]
    full = m if n is None else n
    g = o._resize(g, full, axis)  # the dropped negative frequencies have cotangent 0
    return (o._resize(o.real(o.bind(o.p_fft, g, n=None, axis=axis, inverse=False)), m, axis),)


def jvp_rfft(t, ans, x, n, axis):
    return o.bind(o.p_rfft, t[0], n=n, axis=axis)


def vjp_irfft(g, ans, want, x, n, axis):
    # y_j = (1/n) sum_k w_k Re(c_k e^{2 pi i jk/n}), w = 1, 2, ..., 2, 1 (the last 1 only for even n), so the
    # cotangent of c_k is w_k conj(rfft(g))_k / n
    half = n // 2 + 1
    w = np.full(half, 2.0 / n)
    w[0] = 1.0 / n
    if n % 2 == 0:
        w[-1] = 1.0 / n
    nd = len(_shape(x))
    w = w.reshape(tuple([half if i == axis else 1 for i in range(nd)]))
    c = o.multiply(o.conj(o.bind(o.p_rfft, _real_ct(g), n=n, axis=axis)), w)
    return (o._resize(c, _shape(x)[axis], axis),)


def jvp_irfft(t, ans, x, n, axis):
    return o.bind(o.p_irfft, t[0], n=n, axis=axis)


#: The table: primitive name -> (VJP rule, JVP rule).
RULES = {
    "add": (vjp_add, jvp_add),
    "subtract": (vjp_sub, jvp_sub),
    "multiply": (vjp_mul, jvp_mul),
    "divide": (vjp_div, jvp_div),
    "negative": (vjp_neg, jvp_neg),
    "power": (vjp_pow, jvp_pow),
    "exp": (vjp_exp, jvp_exp),
    "log": (vjp_log, jvp_log),
    "sin": (vjp_sin, jvp_sin),
    "cos": (vjp_cos, jvp_cos),
    "tanh": (vjp_tanh, jvp_tanh),
    "sqrt": (vjp_sqrt, jvp_sqrt),
    "abs": (vjp_abs, jvp_abs),
    "sign": (vjp_zero, jvp_zero),
    "maximum": (_vjp_select(_mask_max), _jvp_select(_mask_max)),
    "minimum": (_vjp_select(_mask_min), _jvp_select(_mask_min)),
    "where": (vjp_where, jvp_where),
    "matmul": (vjp_matmul, jvp_matmul),
    "sum": (vjp_sum, jvp_sum),
    "reshape": (vjp_reshape, jvp_reshape),
    "transpose": (vjp_transpose, jvp_transpose),
    "getitem": (vjp_getitem, jvp_getitem),
    "scatter_add": (vjp_scatter, jvp_scatter),
    "concatenate": (vjp_concat, jvp_concat),
    "stack": (vjp_stack, jvp_stack),
    "roll": (vjp_roll, jvp_roll),
    "broadcast_to": (vjp_broadcast, jvp_broadcast),
    "log1p": (vjp_log1p, jvp_log1p),
    "expm1": (vjp_expm1, jvp_expm1),
    "tan": (vjp_tan, jvp_tan),
    "arctan": (vjp_arctan, jvp_arctan),
    "arctan2": (vjp_arctan2, jvp_arctan2),
    "sinh": (vjp_sinh, jvp_sinh),
    "cosh": (vjp_cosh, jvp_cosh),
    "hypot": (vjp_hypot, jvp_hypot),
    "amax": (vjp_amax, jvp_amax),
    "amin": (vjp_amax, jvp_amax),  # the same rule: ties with the reduced value share the cotangent
    "prod": (vjp_prod, jvp_prod),
    "cumsum": (vjp_cumsum, jvp_cumsum),
    "norm2": (vjp_norm2, jvp_norm2),
    "astype": (vjp_cast, jvp_cast),
    "real": (vjp_real, jvp_real),
    "imag": (vjp_imag, jvp_imag),
    "conj": (vjp_conj, jvp_conj),
    "einsum": (vjp_einsum, jvp_einsum),
    "solve": (vjp_solve, jvp_solve),
    "logabsdet": (vjp_logabsdet, jvp_logabsdet),
    "fft": (vjp_fft, jvp_fft),
    "rfft": (vjp_rfft, jvp_rfft),
    "irfft": (vjp_irfft, jvp_irfft),
}


_EINSUM_MAX = 32  # operands an einsum may have (ops.einsum checks)

#: What each VJP rule reads, per differentiated argument: primitive name -> {argument position (or "*" for
#: any position): (positions of the arguments whose values that cotangent reads, whether it reads the
#: output)}. The tape keeps the union over the arguments traced in that call and a shape-only ``Meta`` for
#: the rest (so ``c * x`` keeps c, not x; ``x ** 2`` keeps x, not its output); a position missing from an
#: entry reads nothing, and a primitive missing here keeps everything. A rule must read only what its
#: entry names for the arguments it is asked for (``want``): the tests run every rule on tapes kept this way.
RETAIN = {
    "add": {},
    "subtract": {},
    "multiply": {0: ((1,), False), 1: ((0,), False)},
    "divide": {0: ((1,), False), 1: ((1,), True)},
    "negative": {},
    "power": {0: ((0, 1), False), 1: ((0, 1), True)},
    "exp": {0: ((), True)},
    "log": {0: ((0,), False)},
    "sin": {0: ((0,), False)},
    "cos": {0: ((0,), False)},
    "tanh": {0: ((), True)},
    "sqrt": {0: ((), True)},
    "abs": {0: ((0,), False)},
    "sign": {},
    "maximum": {0: ((0, 1), False), 1: ((0, 1), False)},
    "minimum": {0: ((0, 1), False), 1: ((0, 1), False)},
    "where": {1: ((0,), False), 2: ((0,), False)},
    "matmul": {0: ((1,), False), 1: ((0,), False)},
    "sum": {},
    "reshape": {},
    "transpose": {},
    "getitem": {},
    "scatter_add": {},
    "concatenate": {},
    "stack": {},
    "roll": {},
    "broadcast_to": {},
    "log1p": {0: ((0,), False)},
    "expm1": {0: ((), True)},
    "tan": {0: ((), True)},
    "arctan": {0: ((0,), False)},
    "arctan2": {0: ((0, 1), False), 1: ((0, 1), False)},
    "sinh": {0: ((0,), False)},
    "cosh": {0: ((0,), False)},
    "hypot": {0: ((0,), True), 1: ((1,), True)},
    "amax": {0: ((0,), True)},
    "amin": {0: ((0,), True)},
    "prod": {0: ((0,), True)},
    "cumsum": {},
    "norm2": {0: ((0,), True)},
    "astype": {},
    "real": {},
    "imag": {},
    "conj": {},
    # operand i's cotangent reads every other operand (einsum takes any number of operands)
    "einsum": {i: (tuple([j for j in range(_EINSUM_MAX) if j != i]), False) for i in range(_EINSUM_MAX)},
    "solve": {0: ((0,), True), 1: ((0,), False)},
    "logabsdet": {0: ((0,), False)},
    "fft": {},
    "rfft": {},
    "irfft": {},
}


# ---- in-place variants of VJP rules (first-order numpy) ------------------------------------------------
#
# NOTE [ Cotangents written in place ]: the backward pass (``Tape.backward``) owns some cotangent arrays: sums
# it made and fresh arrays that built-in rules returned, which no one else holds. A node's cotangent g is
# dropped once the node's rule has run, so when g is owned, the node's rule may write its result into g
# instead of a new array: the same operation on the same operands, bitwise the same numbers, and one array
# fewer to allocate and fill (on the development machine a fresh 10^6-point product costs 2.5x an in-place
# one). A variant runs only when g and every argument are plain numpy values (first order: not tracers of
# an outer transformation); it returns None when the result would not fit g (another dtype or shape, or
# broadcasting to undo), and the rule above runs instead. It applies the primitive with ``out=g`` through
# ``bind``, so that op counts (``revolve.ad.cost``) see it.

def _fits(g, *operands) -> bool:
    """True when an elementwise op of g with ``operands`` has g's shape and dtype (so g can take the result)."""
    dtype, shape = g.dtype, g.shape
    for v in operands:  # the common cases without numpy's promotion machinery
        if not (type(v) is float and dtype.kind in "fc" or type(v) is np.ndarray and v.dtype == dtype and v.shape == shape):
            break
    else:
        return True
    return (np.result_type(g, *operands) == dtype
            and np.broadcast_shapes(shape, *[np.shape(v) for v in operands]) == shape)


def into_mul(g, ans, want, x, y):
    if want[0] and want[1]:
        if not (_shape(x) == _shape(y) == g.shape and _fits(g, x, y)):
            return None
        gx = o.multiply(g, y)
        return (gx, o.bind(o.p_mul, g, x, out=g))
    traced, other = (x, y) if want[0] else (y, x)
    if _shape(traced) != g.shape or not _fits(g, other):
        return None
    o.bind(o.p_mul, g, other, out=g)
    return (g, None) if want[0] else (None, g)


def into_div(g, ans, want, x, y):
    if want[1] or _shape(x) != g.shape or not _fits(g, y):
        return None
    return (o.bind(o.p_div, g, y, out=g), None)


def into_neg(g, ans, want, x):
    return (o.bind(o.p_neg, g, out=g),)


def into_pow(g, ans, want, x, y):
    if want[1] or _shape(x) != g.shape:
        return None
    d = _dpow_dx(x, y)  # numpy: x and y are plain values here
    if not _fits(g, d):
        return None
    return (o.bind(o.p_mul, g, d, out=g), None)


INPLACE = {"multiply": into_mul, "divide": into_div, "negative": into_neg, "power": into_pow}


# NOTE [ Negated cotangents ]: subtract's rule hands its second operand -g, negative's hands its operand -g;
# written out, each is one more pass over an array, and the sum it then goes into another. The backward pass
# can instead hold such a cotangent as ``Negated(g)`` and fold the sign into what comes next: a - b for
# a + (-b), b - a for (-a) + b, -(a + b) for (-a) + (-b), and, for a node whose rule is odd in its cotangent
# (``ODD``: rule(-g) = -rule(g) bit for bit, up to the sign of a zero), the rule run on g with its results
# negated; a negation is written out only before any other rule and for a returned gradient. Each of these
# is IEEE arithmetic's own identity (negation is exact; rounding is symmetric), so the numbers are those of
# the rules above. First-order numpy only, like the in-place variants.

def lazy_sub(g, ans, want, x, y):
    return (unb(g, _shape(x)) if want[0] else None, Negated(unb(g, _shape(y))) if want[1] else None)


def lazy_neg(g, ans, want, x):
    return (Negated(g),)


LAZY = {"subtract": lazy_sub, "negative": lazy_neg}
ODD = frozenset({"add", "subtract", "multiply", "divide", "roll", "reshape", "transpose", "broadcast_to", "sum",
                 "getitem"})


def install() -> None:
    """Attach the table's rules to the primitives (once, at import)."""
    missing = set(o.PRIMITIVES) - set(RULES)
    if missing:
        from ..errors import RevolveInternalError

        raise RevolveInternalError(f"revolve.ad: primitives without rules: {sorted(missing)}")
    for name, (vjp, jvp) in RULES.items():
        prim = o.PRIMITIVES[name]
        prim.vjp, prim.jvp = vjp, jvp
        prim.vjp_into = INPLACE.get(name)
        prim.vjp_lazy = LAZY.get(name)
        prim.odd = name in ODD
        prim.builtin = True
        if name in RETAIN:
            prim.retain = {pos: (frozenset(args), out) for pos, (args, out) in RETAIN[name].items()}
