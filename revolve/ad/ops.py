"""The engine's primitives and its numpy-like functions.

Each primitive has a numpy implementation and a flop estimate here; its VJP and JVP rules are in the one
table of ``rules.py``. Derived functions (``mean``, ``relu``, ``square``, ...) are built from primitives,
so they need no rules of their own.
"""

from __future__ import annotations

import builtins

import numpy as np

from .core import Primitive, Tracer, bind, shape_of, value_of

__all__ = [
    "add", "subtract", "multiply", "divide", "negative", "power", "exp", "log", "sin", "cos", "tanh", "sqrt",
    "abs", "sign", "maximum", "minimum", "relu", "where", "matmul", "dot", "sum", "mean", "reshape",
    "transpose", "getitem", "concatenate", "stack", "roll", "broadcast_to", "square", "zeros_like",
    "ones_like", "unbroadcast", "scatter_add", "swapaxes", "expand_dims", "sigmoid", "stop_gradient",
]


def _elementwise(out, *args, **params):
    return int(np.size(out))


def _zero(out, *args, **params):
    return 0


def _matmul_flops(out, a, b):
    k = np.shape(a)[-1]
    return 2 * int(np.size(out)) * int(k)


def _reduce_flops(out, x, **params):
    return int(np.size(x))


def _scatter_impl(g, idx, shape):
    out = np.zeros(shape, dtype=np.result_type(g))
    if _is_basic_index(idx):
        out[idx] += g  # no repeated positions with basic indexing: a plain add is exact
    else:
        np.add.at(out, idx, g)
    return out


def _is_basic_index(idx) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice)) for i in items)


def _concat_impl(*xs, axis):
    return np.concatenate(xs, axis=axis)


def _stack_impl(*xs, axis):
    return np.stack(xs, axis=axis)


p_add = Primitive("add", np.add, _elementwise)
p_sub = Primitive("subtract", np.subtract, _elementwise)
p_mul = Primitive("multiply", np.multiply, _elementwise)
p_div = Primitive("divide", np.divide, _elementwise)
p_neg = Primitive("negative", np.negative, _elementwise)
p_pow = Primitive("power", np.power, _elementwise)
p_exp = Primitive("exp", np.exp, _elementwise)
p_log = Primitive("log", np.log, _elementwise)
p_sin = Primitive("sin", np.sin, _elementwise)
p_cos = Primitive("cos", np.cos, _elementwise)
p_tanh = Primitive("tanh", np.tanh, _elementwise)
p_sqrt = Primitive("sqrt", np.sqrt, _elementwise)
p_abs = Primitive("abs", np.abs, _elementwise)
p_sign = Primitive("sign", np.sign, _elementwise)
p_max = Primitive("maximum", np.maximum, _elementwise)
p_min = Primitive("minimum", np.minimum, _elementwise)
p_where = Primitive("where", np.where, _elementwise)
p_matmul = Primitive("matmul", np.matmul, _matmul_flops)
p_sum = Primitive("sum", lambda x, axis=None, keepdims=False: np.sum(x, axis=axis, keepdims=keepdims), _reduce_flops)
p_reshape = Primitive("reshape", lambda x, shape: np.reshape(x, shape), _zero)
p_transpose = Primitive("transpose", lambda x, axes=None: np.transpose(x, axes), _zero)
p_getitem = Primitive("getitem", lambda x, idx: x[idx], _zero)
p_scatter = Primitive("scatter_add", _scatter_impl, lambda out, g, idx, shape: int(np.size(g)))
p_concat = Primitive("concatenate", _concat_impl, _zero)
p_stack = Primitive("stack", _stack_impl, _zero)
p_roll = Primitive("roll", lambda x, shift, axis=None: np.roll(x, shift, axis=axis), _zero)
p_broadcast = Primitive("broadcast_to", lambda x, shape: np.broadcast_to(x, shape), _zero)

PRIMITIVES = {p.name: p for p in (
    p_add, p_sub, p_mul, p_div, p_neg, p_pow, p_exp, p_log, p_sin, p_cos, p_tanh, p_sqrt, p_abs, p_sign,
    p_max, p_min, p_where, p_matmul, p_sum, p_reshape, p_transpose, p_getitem, p_scatter, p_concat, p_stack,
    p_roll, p_broadcast,
)}


def add(a, b):
    """a + b, with numpy broadcasting."""
    return bind(p_add, a, b)


def subtract(a, b):
    """a - b."""
    return bind(p_sub, a, b)


def multiply(a, b):
    """a * b."""
    return bind(p_mul, a, b)


def divide(a, b):
    """a / b."""
    return bind(p_div, a, b)


def negative(a):
    """-a."""
    return bind(p_neg, a)


def power(a, b):
    """a ** b (differentiable in both; the derivative in b needs a > 0)."""
    return bind(p_pow, a, b)


def exp(a):
    """Elementwise e**a."""
    return bind(p_exp, a)


def log(a):
    """Elementwise natural logarithm."""
    return bind(p_log, a)


def sin(a):
    """Elementwise sine."""
    return bind(p_sin, a)


def cos(a):
    """Elementwise cosine."""
    return bind(p_cos, a)


def tanh(a):
    """Elementwise hyperbolic tangent."""
    return bind(p_tanh, a)


def sqrt(a):
    """Elementwise square root."""
    return bind(p_sqrt, a)


def abs(a):  # noqa: A001 - numpy's name
    """Elementwise absolute value (derivative sign(a), 0 at 0)."""
    return bind(p_abs, a)


def sign(a):
    """Elementwise sign; its derivative is zero."""
    return bind(p_sign, a)


def maximum(a, b):
    """Elementwise maximum; at ties the derivative goes to ``a``."""
    return bind(p_max, a, b)


def minimum(a, b):
    """Elementwise minimum; at ties the derivative goes to ``a``."""
    return bind(p_min, a, b)


def where(cond, a, b):
    """Elementwise ``a if cond else b``; ``cond`` is not differentiated."""
    return bind(p_where, value_of(cond), a, b)


def matmul(a, b):
    """Matrix product with numpy's rules (1-D operands, batched stacks)."""
    sa, sb = shape_of(a), shape_of(b)
    if len(sa) == 0 or len(sb) == 0:
        raise ValueError(f"revolve.ad.matmul: operands must be at least 1-D, got shapes {sa} and {sb}")
    ka = sa[-1]
    kb = sb[-2] if len(sb) >= 2 else sb[0]
    if ka != kb:
        raise ValueError(f"revolve.ad.matmul: shapes {sa} and {sb} are not aligned ({ka} != {kb})")
    return bind(p_matmul, a, b)


def dot(a, b):
    """Dot product of 1-D or 2-D arrays (``matmul`` for those; higher ranks: use matmul)."""
    if len(shape_of(a)) > 2 or len(shape_of(b)) > 2:
        raise ValueError(f"revolve.ad.dot: only 1-D and 2-D operands, got shapes {shape_of(a)} and {shape_of(b)}; use matmul")
    return matmul(a, b)


def _norm_axis(axis, ndim):
    if axis is None:
        return None
    axes = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for ax in axes:
        if not -ndim <= ax < ndim:
            raise ValueError(f"revolve.ad: axis {ax} is out of bounds for an array of {ndim} dimensions")
        out.append(ax % ndim)
    return tuple(sorted(out))


def sum(a, axis=None, keepdims=False):  # noqa: A001 - numpy's name
    """Sum over ``axis`` (int, tuple or None for all)."""
    return bind(p_sum, a, axis=_norm_axis(axis, len(shape_of(a))), keepdims=keepdims)


def mean(a, axis=None, keepdims=False):
    """Mean over ``axis``."""
    shape = shape_of(a)
    axes = _norm_axis(axis, len(shape))
    count = int(np.prod([shape[i] for i in (axes if axes is not None else range(len(shape)))], dtype=np.int64))
    return sum(a, axis=axes, keepdims=keepdims) / count


def reshape(a, shape):
    """Reshape (one dimension may be -1)."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    size = int(np.prod(shape_of(a), dtype=np.int64))
    known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
    if -1 in shape:
        if known == 0 or size % known:
            raise ValueError(f"revolve.ad.reshape: cannot reshape an array of shape {shape_of(a)} into {shape}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    elif known != size:
        raise ValueError(f"revolve.ad.reshape: cannot reshape an array of shape {shape_of(a)} into {shape}")
    return bind(p_reshape, a, shape=shape)


def transpose(a, axes=None):
    """Permute the axes (reverse them by default)."""
    if axes is not None:
        axes = tuple(int(ax) % len(shape_of(a)) for ax in axes)
    return bind(p_transpose, a, axes=axes)


def swapaxes(a, i, j):
    """Swap two axes."""
    n = len(shape_of(a))
    axes = list(range(n))
    axes[i % n], axes[j % n] = axes[j % n], axes[i % n]
    return transpose(a, tuple(axes))


def expand_dims(a, axis):
    """Insert a size-1 axis at ``axis``."""
    shape = list(shape_of(a))
    axis = axis % (len(shape) + 1)
    shape.insert(axis, 1)
    return reshape(a, tuple(shape))


def _freeze_index(idx):
    """Make an index hashable-agnostic and safe to keep on the tape (lists become arrays)."""
    if isinstance(idx, tuple):
        return tuple(_freeze_index(i) for i in idx)
    if isinstance(idx, list):
        return np.asarray(idx)
    if isinstance(idx, Tracer):
        return value_of(idx)
    return idx


def getitem(a, idx):
    """Indexing and slicing (basic and advanced), as ``a[idx]``."""
    return bind(p_getitem, a, idx=_freeze_index(idx))


def scatter_add(g, idx, shape):
    """A zero array of ``shape`` with ``g`` added at ``idx`` (the transpose of ``getitem``)."""
    return bind(p_scatter, g, idx=idx, shape=tuple(shape))


def concatenate(arrays, axis=0):
    """Join a sequence of arrays along an existing axis."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("revolve.ad.concatenate: need at least one array")
    return bind(p_concat, *arrays, axis=axis)


def stack(arrays, axis=0):
    """Join a sequence of equally shaped arrays along a new axis."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("revolve.ad.stack: need at least one array")
    shapes = {shape_of(x) for x in arrays}
    if len(shapes) > 1:
        raise ValueError(f"revolve.ad.stack: all arrays must have the same shape, got {sorted(shapes)}")
    return bind(p_stack, *arrays, axis=axis)


def roll(a, shift, axis=None):
    """Roll elements along ``axis`` (periodic shifts, e.g. for stencils)."""
    return bind(p_roll, a, shift=shift, axis=axis)


def broadcast_to(a, shape):
    """Broadcast to ``shape``."""
    return bind(p_broadcast, a, shape=tuple(shape))


def square(a):
    """a * a."""
    return multiply(a, a)


def relu(a):
    """max(a, 0)."""
    return maximum(a, 0.0)


def sigmoid(a):
    """1 / (1 + exp(-a)), written as 0.5 * (tanh(a / 2) + 1) for stability."""
    return 0.5 * (tanh(0.5 * a) + 1.0)


def stop_gradient(a):
    """The value of ``a`` as a plain numpy array, a constant for every transformation (its derivative is 0).

    The explicit way to use a traced value as a constant, e.g. ``float(ad.stop_gradient(k))``; converting a
    traced value directly (``float(k)``, ``np.asarray(k)``) raises rather than losing the derivative silently.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> ad.grad(lambda x: x * ad.stop_gradient(x))(np.array(3.0))
        array(3.)
    """
    return value_of(a)


def zeros_like(a):
    """Zeros of ``a``'s shape and dtype (a constant: not traced)."""
    return np.zeros(shape_of(a), dtype=np.asarray(value_of(a)).dtype)


def ones_like(a):
    """Ones of ``a``'s shape and dtype (a constant: not traced)."""
    return np.ones(shape_of(a), dtype=np.asarray(value_of(a)).dtype)


def unbroadcast(g, shape: tuple):
    """Sum ``g`` down to ``shape``, undoing numpy broadcasting (the one place broadcasting is reversed)."""
    gshape = shape_of(g)
    if gshape == tuple(shape):
        return g
    lead = len(gshape) - len(shape)
    if lead > 0:
        g = sum(g, axis=tuple(range(lead)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and shape_of(g)[i] != 1)
    if axes:
        g = sum(g, axis=axes, keepdims=True)
    return g


_builtin_sum = builtins.sum
