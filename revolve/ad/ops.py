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


def _elementwise(result, *args, **params):  # (params may hold out=, from rules.INPLACE)
    return int(np.size(result))


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
def _roll_impl(x, shift, axis=None):
    """np.roll; a 1-D array by an integer shift as two slice copies into one new array (np.roll's own steps,
    without its Python layers: a stencil rolls every step)."""
    if axis is None and type(x) is np.ndarray and x.ndim == 1 and type(shift) is int and x.shape[0]:
        n = x.shape[0]
        s = shift % n
        out = np.empty_like(x)
        out[s:] = x[:n - s]
        out[:s] = x[n - s:]
        return out
    return np.roll(x, shift, axis=axis)


p_roll = Primitive("roll", _roll_impl, _zero)
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
    """Elementwise maximum; at ties the whole derivative goes to ``a`` (torch splits it in halves between a and b;
    NOTE [ Tie conventions ])."""
    return bind(p_max, a, b)


def minimum(a, b):
    """Elementwise minimum; at ties the whole derivative goes to ``a`` (torch splits it in halves; NOTE [ Tie
    conventions ])."""
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
        shape = tuple([size // known if s == -1 else s for s in shape])
    elif known != size:
        raise ValueError(f"revolve.ad.reshape: cannot reshape an array of shape {shape_of(a)} into {shape}")
    return bind(p_reshape, a, shape=shape)


def transpose(a, axes=None):
    """Permute the axes (reverse them by default)."""
    if axes is not None:
        axes = tuple([int(ax) % len(shape_of(a)) for ax in axes])
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
        return tuple([_freeze_index(i) for i in idx])
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
    """max(a, 0); derivative 0 at a == 0, as torch's relu (NOTE [ Tie conventions ]).

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> ad.grad(lambda x: ad.sum(ad.relu(x)))(np.array([-1.0, 0.0, 2.0]))
        array([0., 0., 1.])
    """
    return where(np.logical_not(np.asarray(value_of(a)) <= 0), a, 0.0)  # NaN stays NaN, as in torch


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
    axes = tuple([i for i, s in enumerate(shape) if s == 1 and shape_of(g)[i] != 1])
    if axes:
        g = sum(g, axis=axes, keepdims=True)
    return g


_builtin_sum = builtins.sum


# ---- more elementwise functions, reductions, shapes, linear algebra, FFT (issue 13) ------------------
#
# NOTE [ Tie conventions ]: where a function is not differentiable, the engine picks the derivative torch
# picks, so gradients agree with torch.autograd bit for bit in structure:
# - ``amax``/``amin`` (reductions): the cotangent is split evenly among the tied maxima (torch's amax/amin;
#   torch's ``max(dim)`` instead sends it all to one index).
# - ``maximum``/``minimum`` (elementwise): at a tie the whole derivative goes to the first argument (torch
#   splits it in halves between the two).
# - ``relu`` at 0: derivative 0 (torch: 0). ``abs`` at 0: 0 (torch: 0). ``clip`` at a bound: 1 (torch's clamp:
#   1 on the closed interval [lo, hi]).
# - ``hypot(0, 0)``, the 2-norm of a zero vector and ``std`` of equal values: derivative 0 (torch: 0 for the
#   norm and std, nan for hypot).

def _amax_impl(x, axis=None, keepdims=False):
    return np.amax(x, axis=axis, keepdims=keepdims)


def _amin_impl(x, axis=None, keepdims=False):
    return np.amin(x, axis=axis, keepdims=keepdims)


def _prod_impl(x, axis=None, keepdims=False):
    return np.prod(x, axis=axis, keepdims=keepdims)


def _cast_impl(x, dtype):
    return np.asarray(x).astype(dtype)


def _einsum_impl(*xs, subscripts):
    return np.einsum(subscripts, *xs, optimize=len(xs) > 2)


def _einsum_flops(out, *xs, subscripts):
    letters = set(subscripts.replace(",", "").replace("->", ""))
    sizes = {}
    for sub, x in zip(subscripts.split("->")[0].split(","), xs):
        for c, n in zip(sub, np.shape(x)):
            sizes[c] = n
    return 2 * int(np.prod([sizes.get(c, 1) for c in letters], dtype=np.int64))


def _solve_impl(a, b):
    return np.linalg.solve(a, b)


def _logabsdet_impl(a):
    return np.linalg.slogdet(a)[1]


def _norm2_impl(x, axis=None, keepdims=False):
    return np.sqrt(np.sum(np.abs(x) ** 2, axis=axis, keepdims=keepdims))


p_log1p = Primitive("log1p", np.log1p, _elementwise)
p_expm1 = Primitive("expm1", np.expm1, _elementwise)
p_tan = Primitive("tan", np.tan, _elementwise)
p_arctan = Primitive("arctan", np.arctan, _elementwise)
p_arctan2 = Primitive("arctan2", np.arctan2, _elementwise)
p_sinh = Primitive("sinh", np.sinh, _elementwise)
p_cosh = Primitive("cosh", np.cosh, _elementwise)
p_hypot = Primitive("hypot", np.hypot, _elementwise)
p_amax = Primitive("amax", _amax_impl, _reduce_flops)
p_amin = Primitive("amin", _amin_impl, _reduce_flops)
p_prod = Primitive("prod", _prod_impl, _reduce_flops)
p_cumsum = Primitive("cumsum", lambda x, axis: np.cumsum(x, axis=axis), _reduce_flops)
p_cast = Primitive("astype", _cast_impl, _zero)
p_einsum = Primitive("einsum", _einsum_impl, _einsum_flops)
p_solve = Primitive("solve", _solve_impl, lambda out, a, b: int(np.size(a)) * int(np.shape(a)[-1]) + 2 * int(np.size(out)) * int(np.shape(a)[-1]))
p_logabsdet = Primitive("logabsdet", _logabsdet_impl, lambda out, a: int(np.size(a)) * int(np.shape(a)[-1]))
p_norm2 = Primitive("norm2", _norm2_impl, _reduce_flops)
p_real = Primitive("real", np.real, _zero)
p_imag = Primitive("imag", np.imag, _zero)
p_conj = Primitive("conj", np.conj, _elementwise)
p_fft = Primitive("fft", lambda x, n, axis, inverse: (np.fft.ifft if inverse else np.fft.fft)(x, n=n, axis=axis),
                  _reduce_flops)
p_rfft = Primitive("rfft", lambda x, n, axis: np.fft.rfft(x, n=n, axis=axis), _reduce_flops)
p_irfft = Primitive("irfft", lambda x, n, axis: np.fft.irfft(x, n=n, axis=axis), _reduce_flops)

PRIMITIVES.update({p.name: p for p in (
    p_log1p, p_expm1, p_tan, p_arctan, p_arctan2, p_sinh, p_cosh, p_hypot, p_amax, p_amin, p_prod, p_cumsum,
    p_cast, p_einsum, p_solve, p_logabsdet, p_norm2, p_real, p_imag, p_conj, p_fft, p_rfft, p_irfft,
)})

__all__ += [
    "log1p", "expm1", "tan", "arctan", "arctan2", "sinh", "cosh", "hypot", "amax", "amin", "max", "min", "prod",
    "cumsum", "var", "std", "einsum", "tensordot", "outer", "clip", "squeeze", "flip", "pad", "take",
    "take_along_axis", "diff", "astype", "ravel", "real", "imag", "conj", "at", "linalg", "fft",
]


def log1p(a):
    """Elementwise log(1 + a), accurate for small a."""
    return bind(p_log1p, a)


def expm1(a):
    """Elementwise exp(a) - 1, accurate for small a."""
    return bind(p_expm1, a)


def tan(a):
    """Elementwise tangent."""
    return bind(p_tan, a)


def arctan(a):
    """Elementwise inverse tangent."""
    return bind(p_arctan, a)


def arctan2(y, x):
    """Elementwise angle of the point (x, y), as ``np.arctan2(y, x)``; differentiable in both."""
    return bind(p_arctan2, y, x)


def sinh(a):
    """Elementwise hyperbolic sine."""
    return bind(p_sinh, a)


def cosh(a):
    """Elementwise hyperbolic cosine."""
    return bind(p_cosh, a)


def hypot(a, b):
    """Elementwise sqrt(a**2 + b**2) without overflow; derivative 0 at (0, 0) (NOTE [ Tie conventions ])."""
    return bind(p_hypot, a, b)


def _reduction_axis(axis, a):
    return _norm_axis(axis, len(shape_of(a)))


def _check_nonempty(name, a, axes):
    shape = shape_of(a)
    reduced = range(len(shape)) if axes is None else axes
    if any(shape[i] == 0 for i in reduced):
        raise ValueError(f"revolve.ad.{name}: zero-size reduction over axis {axes} of an array of shape {shape} has "
                         f"no identity; reduce a non-empty axis")


def amax(a, axis=None, keepdims=False):
    """Maximum over ``axis`` (int, tuple or None for all).

    At ties the derivative is split evenly among the tied maxima, as torch's ``amax`` does (NOTE [ Tie
    conventions ]).

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> ad.grad(lambda x: ad.amax(x))(np.array([1.0, 3.0, 3.0]))
        array([0. , 0.5, 0.5])
    """
    axes = _reduction_axis(axis, a)
    _check_nonempty("amax", a, axes)
    return bind(p_amax, a, axis=axes, keepdims=keepdims)


def amin(a, axis=None, keepdims=False):
    """Minimum over ``axis``; at ties the derivative is split evenly, as torch's ``amin`` (see ``amax``)."""
    axes = _reduction_axis(axis, a)
    _check_nonempty("amin", a, axes)
    return bind(p_amin, a, axis=axes, keepdims=keepdims)


max = amax  # noqa: A001 - numpy's name
min = amin  # noqa: A001 - numpy's name


def prod(a, axis=None, keepdims=False):
    """Product over ``axis``; exact derivatives also where entries are zero (products of the others)."""
    return bind(p_prod, a, axis=_reduction_axis(axis, a), keepdims=keepdims)


def cumsum(a, axis=None):
    """Cumulative sum along ``axis`` (None: of the flattened array), as ``np.cumsum``."""
    if axis is None:
        return bind(p_cumsum, reshape(a, (-1,)), axis=0)
    nd = len(shape_of(a))
    if not -nd <= axis < nd:
        raise ValueError(f"revolve.ad.cumsum: axis {axis} is out of bounds for an array of {nd} dimensions")
    return bind(p_cumsum, a, axis=axis % nd)


def var(a, axis=None, keepdims=False, ddof=0):
    """Variance over ``axis`` with ``ddof`` delta degrees of freedom, as ``np.var`` (two-pass, as numpy)."""
    shape = shape_of(a)
    axes = _norm_axis(axis, len(shape))
    count = int(np.prod([shape[i] for i in (axes if axes is not None else range(len(shape)))], dtype=np.int64))
    if count - ddof <= 0:
        raise ValueError(f"revolve.ad.var: ddof must be < the number of reduced elements ({count}), got {ddof}")
    d = subtract(a, mean(a, axis=axes, keepdims=True))
    return sum(multiply(d, d), axis=axes, keepdims=keepdims) / (count - ddof)


def std(a, axis=None, keepdims=False, ddof=0):
    """Standard deviation over ``axis`` with ``ddof``, as ``np.std``; derivative 0 where the spread is 0, as
    torch's (written as the 2-norm of the deviations, whose derivative at 0 is 0)."""
    shape = shape_of(a)
    axes = _norm_axis(axis, len(shape))
    count = int(np.prod([shape[i] for i in (axes if axes is not None else range(len(shape)))], dtype=np.int64))
    if count - ddof <= 0:
        raise ValueError(f"revolve.ad.std: ddof must be < the number of reduced elements ({count}), got {ddof}")
    d = subtract(a, mean(a, axis=axes, keepdims=True))
    return bind(p_norm2, d, axis=axes, keepdims=keepdims) / np.sqrt(count - ddof)


def _parse_einsum(subscripts: str, shapes) -> str:
    """Explicit ``in,in->out`` subscripts (numpy's implicit output made explicit); no ellipsis."""
    s = subscripts.replace(" ", "")
    if "." in s:
        raise NotImplementedError(f"revolve.ad.einsum: ellipsis ('...') in subscripts {subscripts!r} is not supported; "
                                  f"name every axis")
    if "->" in s:
        ins, out = s.split("->")
    else:
        ins = s
        letters = ins.replace(",", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    parts = ins.split(",")
    if len(parts) != len(shapes):
        raise ValueError(f"revolve.ad.einsum: subscripts {subscripts!r} name {len(parts)} operands, got {len(shapes)}")
    for p, sh in zip(parts, shapes):
        if len(p) != len(sh):
            raise ValueError(f"revolve.ad.einsum: subscripts {p!r} for an operand of shape {sh}")
        if len(set(p)) != len(p):
            raise NotImplementedError(f"revolve.ad.einsum: a repeated index within one operand ({p!r}, a diagonal or "
                                      f"trace) is not supported; take the diagonal with indexing first")
    return ",".join(parts) + "->" + out


def einsum(subscripts, *operands):
    """Einstein summation, as ``np.einsum(subscripts, *operands)`` (explicit or implicit output, no ellipsis).

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> ad.einsum("ij,j->i", np.eye(2), np.array([1.0, 2.0]))
        array([1., 2.])
    """
    if not isinstance(subscripts, str):
        raise TypeError("revolve.ad.einsum: the first argument must be the subscripts string, e.g. 'ij,jk->ik'")
    if not 1 <= len(operands) <= 32:
        raise ValueError(f"revolve.ad.einsum: takes 1 to 32 operands, got {len(operands)}; contract in steps")
    subs = _parse_einsum(subscripts, [shape_of(x) for x in operands])
    return bind(p_einsum, *operands, subscripts=subs)


def tensordot(a, b, axes=2):
    """Sum products over the given axes, as ``np.tensordot`` (axes: an int or a pair of sequences)."""
    na, nb = len(shape_of(a)), len(shape_of(b))
    if isinstance(axes, (int, np.integer)):
        ax_a, ax_b = list(range(na - int(axes), na)), list(range(int(axes)))
    else:
        ax_a, ax_b = axes
        ax_a = [ax_a] if isinstance(ax_a, (int, np.integer)) else list(ax_a)
        ax_b = [ax_b] if isinstance(ax_b, (int, np.integer)) else list(ax_b)
    ax_a = [int(i) % na for i in ax_a]
    ax_b = [int(i) % nb for i in ax_b]
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if na + nb > len(letters):
        raise ValueError(f"revolve.ad.tensordot: at most {len(letters)} dimensions in all, got {na + nb}")
    sa = list(letters[:na])
    sb = list(letters[na:na + nb])
    for i, j in zip(ax_a, ax_b):
        sb[j] = sa[i]
    out = [c for k, c in enumerate(sa) if k not in ax_a] + [c for k, c in enumerate(sb) if k not in ax_b]
    return einsum("".join(sa) + "," + "".join(sb) + "->" + "".join(out), a, b)


def outer(a, b):
    """Outer product of the flattened ``a`` and ``b``, as ``np.outer``."""
    return multiply(reshape(a, (-1, 1)), reshape(b, (1, -1)))


def clip(a, a_min=None, a_max=None):
    """Clip to [a_min, a_max], as ``np.clip``; derivative 1 inside the closed interval and 0 outside (torch's
    clamp), and the bounds get the derivative where they are taken."""
    out = a
    if a_min is not None:
        out = where(value_of(out) < value_of(a_min), a_min, out)
    if a_max is not None:
        out = where(value_of(out) > value_of(a_max), a_max, out)
    return out


def squeeze(a, axis=None):
    """Remove size-1 axes (all, or the given ones), as ``np.squeeze``."""
    shape = shape_of(a)
    if axis is None:
        keep = [n for n in shape if n != 1]
    else:
        axes = _norm_axis(axis, len(shape))
        bad = [i for i in axes if shape[i] != 1]
        if bad:
            raise ValueError(f"revolve.ad.squeeze: axis {bad[0]} of shape {shape} has size {shape[bad[0]]}, not 1")
        keep = [n for i, n in enumerate(shape) if i not in axes]
    return reshape(a, tuple(keep))


def flip(a, axis=None):
    """Reverse the order of elements along ``axis`` (None: every axis), as ``np.flip``."""
    nd = len(shape_of(a))
    axes = range(nd) if axis is None else _norm_axis(axis, nd)
    idx = tuple([slice(None, None, -1) if i in axes else slice(None) for i in range(nd)])
    return getitem(a, idx)


def take(a, indices, axis=None):
    """Elements at ``indices`` along ``axis`` (None: of the flattened array), as ``np.take``; repeated
    indices accumulate their cotangents."""
    indices = np.asarray(value_of(indices))
    if axis is None:
        return getitem(reshape(a, (-1,)), indices)
    nd = len(shape_of(a))
    ax = _norm_axis(axis, nd)[0]
    return getitem(a, (slice(None),) * ax + (indices,))


def take_along_axis(a, indices, axis):
    """Pick values along ``axis`` by an index array of ``a``'s rank, as ``np.take_along_axis``."""
    indices = np.asarray(value_of(indices))
    shape = shape_of(a)
    nd = len(shape)
    if axis is None:
        return take(a, indices.reshape(-1))
    if indices.ndim != nd:
        raise ValueError(f"revolve.ad.take_along_axis: indices must have the array's {nd} dimensions, got {indices.ndim}")
    ax = _norm_axis(axis, nd)[0]
    full = np.broadcast_shapes(tuple([n if i != ax else 1 for i, n in enumerate(shape)]),
                               tuple([n if i != ax else 1 for i, n in enumerate(indices.shape)]))
    idx = []
    for i in range(nd):
        if i == ax:
            idx.append(np.broadcast_to(indices, full[:ax] + (indices.shape[ax],) + full[ax + 1:]))
        else:
            r = np.arange(full[i]).reshape(tuple([-1 if k == i else 1 for k in range(nd)]))
            idx.append(r)
    return getitem(a, tuple(idx))


def diff(a, n=1, axis=-1):
    """The n-th discrete difference along ``axis``, as ``np.diff``."""
    if n < 0:
        raise ValueError(f"revolve.ad.diff: order n must be >= 0, got {n}")
    nd = len(shape_of(a))
    ax = _norm_axis(axis, nd)[0]
    for _ in range(n):
        hi = (slice(None),) * ax + (slice(1, None),)
        lo = (slice(None),) * ax + (slice(None, -1),)
        a = subtract(getitem(a, hi), getitem(a, lo))
    return a


_PAD_MODES = ("constant", "wrap", "edge", "reflect", "symmetric")


def pad(a, pad_width, mode="constant", constant_values=0.0):
    """Pad an array, as ``np.pad``, with ``mode`` one of constant, wrap, edge, reflect, symmetric.

    Every mode but constant is an index map (``np.pad`` of the positions), so the cotangent of a padded
    entry flows back to the entry it copies.
    """
    if mode not in _PAD_MODES:
        raise ValueError(f"revolve.ad.pad: mode must be one of {_PAD_MODES}, got {mode!r}")
    shape = shape_of(a)
    nd = len(shape)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (nd, 2)) if nd else np.zeros((0, 2), np.int64)
    if np.any(widths < 0):
        raise ValueError(f"revolve.ad.pad: pad widths must be >= 0, got {pad_width}")
    out = a
    for ax in range(nd):
        before, after = int(widths[ax, 0]), int(widths[ax, 1])
        if before == after == 0:
            continue
        if mode == "constant":
            cur = list(shape_of(out))
            dt = np.result_type(value_of(out), value_of(constant_values))
            parts = []
            if before:
                cur[ax] = before
                parts.append(np.full(tuple(cur), value_of(constant_values), dtype=dt))
            parts.append(out)
            if after:
                cur[ax] = after
                parts.append(np.full(tuple(cur), value_of(constant_values), dtype=dt))
            out = concatenate(parts, axis=ax)
        else:
            if shape[ax] == 0:
                raise ValueError(f"revolve.ad.pad: mode {mode!r} cannot pad the empty axis {ax}")
            positions = np.pad(np.arange(shape[ax]), (before, after), mode=mode)
            out = getitem(out, (slice(None),) * ax + (positions,))
    return out


def astype(a, dtype):
    """``a`` cast to ``dtype``; the cotangent is cast back to ``a``'s dtype. A cast to an integer or boolean
    dtype is a constant (not differentiable: it returns the plain array)."""
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.inexact):
        return np.asarray(value_of(a)).astype(dtype)
    return bind(p_cast, a, dtype=dtype)


def ravel(a):
    """The flattened array, as ``np.ravel``."""
    return reshape(a, (-1,))


def real(a):
    """Real part (of a complex array; a real array is returned as it is)."""
    if not np.iscomplexobj(value_of(a)):
        return a
    return bind(p_real, a)


def imag(a):
    """Imaginary part (zeros for a real array, a constant)."""
    if not np.iscomplexobj(value_of(a)):
        return np.zeros(shape_of(a), dtype=np.result_type(value_of(a), np.float64) if np.issubdtype(
            np.result_type(value_of(a)), np.integer) else np.result_type(value_of(a)))
    return bind(p_imag, a)


def conj(a):
    """Complex conjugate (a real array is returned as it is)."""
    if not np.iscomplexobj(value_of(a)):
        return a
    return bind(p_conj, a)


class _At:
    """``at(u)``: index it to get the functional updates ``set`` and ``add``."""

    __slots__ = ("_u",)

    def __init__(self, u):
        self._u = u

    def __getitem__(self, idx):
        return _AtIndex(self._u, _freeze_index(idx))


class _AtIndex:
    """``at(u)[idx]``: ``.set(v)`` and ``.add(v)`` return the updated copy of ``u``."""

    __slots__ = ("_u", "_idx")

    def __init__(self, u, idx):
        self._u = u
        self._idx = idx

    def _target_shape(self):
        return np.broadcast_to(np.zeros((), np.int8), shape_of(self._u))[self._idx].shape

    def add(self, v):
        """u with v added at idx (repeated indices accumulate, as ``np.add.at``)."""
        sel = self._target_shape()
        vb = v if shape_of(v) == sel else broadcast_to(v, sel)
        return add(self._u, scatter_add(vb, self._idx, shape_of(self._u)))

    def set(self, v):
        """u with the entries at idx replaced by v (idx must name each entry at most once)."""
        shape = shape_of(self._u)
        count = np.zeros(shape, dtype=np.int64)
        np.add.at(count, self._idx, 1)
        if count.max(initial=0) > 1:
            raise ValueError("revolve.ad.at(u)[idx].set: idx names an entry more than once, so which value wins is "
                             "ambiguous; use unique indices (or .add to accumulate)")
        sel = self._target_shape()
        vb = v if shape_of(v) == sel else broadcast_to(v, sel)
        return where(count > 0, scatter_add(vb, self._idx, shape), self._u)


def at(u):
    """Functional item updates: ``at(u)[idx].set(v)`` and ``at(u)[idx].add(v)`` return a new array.

    The traced form of ``u[idx] = v`` and ``u[idx] += v`` (which a traced value refuses: the tape cannot follow
    in-place updates). Differentiable in ``u`` and ``v``; ``v`` broadcasts to the shape of ``u[idx]``. On plain
    arrays it returns a new numpy array and leaves ``u`` unchanged, so the same step runs taped and untaped.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> u = np.arange(4.0)
        >>> ad.at(u)[0].set(-1.0), ad.at(u)[[1, 1]].add(10.0)
        (array([-1.,  1.,  2.,  3.]), array([ 0., 21.,  2.,  3.]))
        >>> ad.grad(lambda v: ad.sum(ad.at(u)[-1].set(v) ** 2))(np.array(3.0))
        array(6.)
    """
    return _At(u)


# ---- linear algebra: ad.linalg.solve, inv, slogdet, norm ---------------------------------------------

def _square_matrix(name, a):
    s = shape_of(a)
    if len(s) < 2 or s[-1] != s[-2]:
        raise ValueError(f"revolve.ad.linalg.{name}: needs square matrices (..., M, M), got shape {s}")
    return s


def solve(a, b):
    """The solution x of a @ x = b, as ``np.linalg.solve`` (b: (..., M) when 1-D, else (..., M, K)).

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> ad.linalg.solve(2.0 * np.eye(2), np.array([2.0, 4.0]))
        array([1., 2.])
    """
    sa = _square_matrix("solve", a)
    sb = shape_of(b)
    if len(sb) == 1:
        if sb[0] != sa[-1]:
            raise ValueError(f"revolve.ad.linalg.solve: b of shape {sb} does not match a of shape {sa}")
        return reshape(bind(p_solve, a, reshape(b, (sb[0], 1))), (sb[0],) if len(sa) == 2 else sa[:-2] + (sb[0],))
    if len(sb) < 2 or sb[-2] != sa[-1]:
        raise ValueError(f"revolve.ad.linalg.solve: b of shape {sb} does not match a of shape {sa} (give b as "
                         f"(..., M, K) or (M,))")
    return bind(p_solve, a, b)


def inv(a):
    """The inverse matrix, as ``np.linalg.inv`` (solve(a, I), so its derivatives are solve's)."""
    s = _square_matrix("inv", a)
    eye = np.broadcast_to(np.eye(s[-1], dtype=np.result_type(value_of(a), np.float64)), s)
    return bind(p_solve, a, eye)


def slogdet(a):
    """(sign, log|det a|), as ``np.linalg.slogdet``; the sign is a constant, log|det| is differentiable
    (its derivative is inv(a).T)."""
    _square_matrix("slogdet", a)
    sign = np.linalg.slogdet(value_of(a))[0]
    return sign, bind(p_logabsdet, a)


def det(a):
    """The determinant, sign * exp(log|det|) (differentiable where a is invertible)."""
    sign, logdet = slogdet(a)
    return multiply(sign, exp(logdet))


def _norm2(x, axis, keepdims):
    return bind(p_norm2, x, axis=_reduction_axis(axis, x), keepdims=keepdims)


def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 - numpy's name
    """Vector and matrix norms, as ``np.linalg.norm``: vectors any ord (2 by default; 1, inf, -inf, p),
    matrices 'fro' (default), 1 and inf. The 2-norm of a zero vector has derivative 0 (torch's choice).

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> ad.grad(ad.linalg.norm)(np.array([3.0, 4.0]))
        array([0.6, 0.8])
    """
    nd = len(shape_of(x))
    if axis is None:
        if ord is None or (ord == "fro" and nd == 2) or (ord == 2 and nd == 1):
            return _norm2(x, None, keepdims)
        if nd == 1:
            axis = 0
        elif nd == 2:
            axis = (0, 1)
        else:
            raise ValueError(f"revolve.ad.linalg.norm: ord={ord!r} needs a 1-D or 2-D array or an axis, got {nd} "
                             f"dimensions")
    axes = _norm_axis(axis, nd)
    if isinstance(axis, tuple) and len(axis) == 2:
        r, c = (ax % nd for ax in axis)
        if ord is None or ord == "fro":
            return _norm2(x, axes, keepdims)
        if ord in (1, -1):
            s = sum(abs(x), axis=r, keepdims=True)
            red = amax if ord == 1 else amin
            out = red(s, axis=c, keepdims=True)
        elif ord in (np.inf, -np.inf):
            s = sum(abs(x), axis=c, keepdims=True)
            red = amax if ord == np.inf else amin
            out = red(s, axis=r, keepdims=True)
        else:
            raise NotImplementedError(f"revolve.ad.linalg.norm: matrix ord={ord!r} is not supported; use 'fro', "
                                      f"1, -1, inf or -inf")
        return out if keepdims else squeeze(out, axis=axes)
    if len(axes) != 1:
        raise ValueError(f"revolve.ad.linalg.norm: axis must be an int or a pair, got {axis!r}")
    if ord is None or ord == 2:
        return _norm2(x, axes, keepdims)
    if ord == 1:
        return sum(abs(x), axis=axes, keepdims=keepdims)
    if ord == np.inf:
        return amax(abs(x), axis=axes, keepdims=keepdims)
    if ord == -np.inf:
        return amin(abs(x), axis=axes, keepdims=keepdims)
    if isinstance(ord, str) or ord == 0:
        raise ValueError(f"revolve.ad.linalg.norm: vector ord must be a nonzero number, got {ord!r}")
    return power(sum(power(abs(x), float(ord)), axis=axes, keepdims=keepdims), 1.0 / float(ord))


# ---- FFT: ad.fft.fft, ifft, rfft, irfft ----------------------------------------------------------------
#
# NOTE [ Complex cotangents ]: as numpy-based JAX does, a cotangent of a complex value z is the transpose of
# the linear map, not its adjoint: for a real loss L it is dL/dRe z - i dL/dIm z (torch returns the
# conjugate, dL/dRe z + i dL/dIm z). Gradients of a real loss with respect to real inputs are the same in
# both conventions, and the cotangent of a real input of a complex op is the real part.

def _fft_axis(name, a, n, axis):
    nd = len(shape_of(a))
    if nd == 0:
        raise ValueError(f"revolve.ad.fft.{name}: needs at least a 1-D array, got a 0-d value")
    ax = _norm_axis(axis, nd)[0]
    if n is not None and int(n) < 1:
        raise ValueError(f"revolve.ad.fft.{name}: n must be >= 1, got {n}")
    return ax, None if n is None else int(n)


def _fft(a, n=None, axis=-1, norm=None):
    if norm not in (None, "backward"):
        raise NotImplementedError(f"revolve.ad.fft.fft: norm={norm!r} is not supported; scale the result")
    ax, n = _fft_axis("fft", a, n, axis)
    return bind(p_fft, a, n=n, axis=ax, inverse=False)


def _ifft(a, n=None, axis=-1, norm=None):
    if norm not in (None, "backward"):
        raise NotImplementedError(f"revolve.ad.fft.ifft: norm={norm!r} is not supported; scale the result")
    ax, n = _fft_axis("ifft", a, n, axis)
    return bind(p_fft, a, n=n, axis=ax, inverse=True)


def _rfft(a, n=None, axis=-1, norm=None):
    if norm not in (None, "backward"):
        raise NotImplementedError(f"revolve.ad.fft.rfft: norm={norm!r} is not supported; scale the result")
    if np.iscomplexobj(value_of(a)):
        raise TypeError("revolve.ad.fft.rfft: needs a real input; use fft for complex ones")
    ax, n = _fft_axis("rfft", a, n, axis)
    return bind(p_rfft, a, n=n, axis=ax)


def _irfft(a, n=None, axis=-1, norm=None):
    if norm not in (None, "backward"):
        raise NotImplementedError(f"revolve.ad.fft.irfft: norm={norm!r} is not supported; scale the result")
    ax, n = _fft_axis("irfft", a, n, axis)
    if n is None:
        n = 2 * (shape_of(a)[ax] - 1)
        if n < 1:
            raise ValueError("revolve.ad.fft.irfft: an input of length 1 needs an explicit n")
    return bind(p_irfft, a, n=n, axis=ax)


def _resize(x, m, axis):
    """x cut or zero-padded to length m along axis (the transpose of numpy's n= handling)."""
    k = shape_of(x)[axis]
    if k == m:
        return x
    if k > m:
        return getitem(x, (slice(None),) * axis + (slice(0, m),))
    widths = [(0, 0)] * len(shape_of(x))
    widths[axis] = (0, m - k)
    return pad(x, widths)


class _Namespace:
    """A module-like namespace of engine functions (``ad.linalg``, ``ad.fft``)."""

    def __init__(self, name, **fns):
        self.__name__ = name
        self.__dict__.update(fns)

    def __repr__(self) -> str:
        return f"<revolve.ad.{self.__name__}: {', '.join(k for k in self.__dict__ if not k.startswith('_'))}>"


linalg = _Namespace("linalg", solve=solve, inv=inv, slogdet=slogdet, det=det, norm=norm)
fft = _Namespace("fft", fft=_fft, ifft=_ifft, rfft=_rfft, irfft=_irfft)
