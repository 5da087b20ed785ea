"""Plain numpy on traced values: numpy's ufuncs and functions applied to a tracer run the engine's ops.

A step written with ``np.sin(u)``, ``np.roll(u, 1)`` or ``u.sum()`` works unchanged inside ``grad``,
``vjp`` and ``revolve.gradient``: numpy hands a call that involves a tracer to the tracer's
``__array_ufunc__`` (ufuncs: ``np.sin``, ``np.add``, the operators on ndarrays) or ``__array_function__``
(the other functions: ``np.sum``, ``np.roll``, ``np.concatenate``, ...), which look the function up here.
A numpy function with no entry raises ``NotImplementedError`` naming it: it is never run on the values,
which would silently drop the derivative (NOTE [ No silent detaching ] in core.py).

Each entry maps a numpy callable to the engine function that implements it with numpy's signature; the
derivative rules stay in the one table of ``rules.py``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import ops
from .core import shape_of, value_of

__all__ = ["UFUNCS", "FUNCTIONS", "register_ufunc", "register_function"]

#: numpy ufunc name -> engine function taking the ufunc's positional inputs
UFUNCS: dict[str, Callable] = {}

#: numpy function -> engine function with numpy's signature
FUNCTIONS: dict[Callable, Callable] = {}


def register_ufunc(name: str, fn: Callable) -> None:
    """Route numpy's ufunc ``name`` (e.g. ``"sin"``) on traced values to ``fn``."""
    UFUNCS[name] = fn


def register_function(np_fn: Callable, fn: Callable) -> None:
    """Route the numpy function ``np_fn`` (e.g. ``np.roll``) on traced values to ``fn``."""
    FUNCTIONS[np_fn] = fn


def _where_name(ufunc) -> str:
    return f"np.{getattr(ufunc, '__name__', ufunc)}"


def dispatch_ufunc(ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    """``Tracer.__array_ufunc__``: run the ufunc as the engine's op, or raise naming what is unsupported."""
    name = _where_name(ufunc)
    if "out" in kwargs:
        raise TypeError(
            f"revolve.ad: {name}(..., out=...) would update an array in place from a traced value; the tape cannot "
            f"follow in-place updates: write the functional form (x = {name}(...)) instead"
        )
    if method == "reduce" and ufunc.__name__ in _REDUCTIONS:
        axis = kwargs.pop("axis", 0)
        keepdims = kwargs.pop("keepdims", False)
        _no_other_kwargs(f"{name}.reduce", kwargs, ("dtype",))
        return _REDUCTIONS[ufunc.__name__](inputs[0], axis=axis, keepdims=keepdims)
    if method != "__call__":
        raise NotImplementedError(f"revolve.ad: {name}.{method} on a traced value has no revolve.ad rule")
    fn = UFUNCS.get(ufunc.__name__)
    if fn is None:
        raise NotImplementedError(
            f"revolve.ad: numpy's {name} on a traced value has no revolve.ad rule (supported ufuncs: "
            f"{', '.join(sorted(UFUNCS))}); write it with supported operations, or give it a rule with "
            f"revolve.ad.custom_vjp"
        )
    _no_other_kwargs(name, kwargs, ("dtype", "casting", "order", "subok"))
    if kwargs.get("dtype") is not None:
        raise TypeError(f"revolve.ad: {name}(..., dtype=...) on a traced value is not supported; cast with .astype")
    return fn(*inputs)


def dispatch_function(func, args: tuple, kwargs: dict) -> Any:
    """``Tracer.__array_function__``: run the numpy function as the engine's, or raise naming it."""
    fn = FUNCTIONS.get(func)
    if fn is None:
        mod = getattr(func, "__module__", "numpy") or "numpy"
        mod = "np" if mod == "numpy" else mod.replace("numpy", "np")
        raise NotImplementedError(
            f"revolve.ad: numpy function {mod}.{func.__name__} on a traced value has no revolve.ad rule; running it on "
            f"the values would silently drop the derivative. Write it with supported operations, or give it a rule "
            f"with revolve.ad.custom_vjp"
        )
    if kwargs.get("out") is not None:
        raise TypeError(f"revolve.ad: np.{func.__name__}(..., out=...) with a traced value would update an array in "
                        f"place; use the functional form")
    kwargs = {k: v for k, v in kwargs.items() if not (k == "out" and v is None)}
    return fn(*args, **kwargs)


def _no_other_kwargs(name: str, kwargs: dict, allowed: tuple) -> None:
    extra = set(kwargs) - set(allowed)
    if extra:
        raise TypeError(f"revolve.ad: {name} on a traced value does not take {sorted(extra)}")


# ---- the entries --------------------------------------------------------------------------------------

def _sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    _unsupported("np.sum", dtype=dtype, initial=initial, where=where)
    return ops.sum(a, axis=axis, keepdims=keepdims)


def _mean(a, axis=None, dtype=None, out=None, keepdims=False, where=None):
    _unsupported("np.mean", dtype=dtype, where=where)
    return ops.mean(a, axis=axis, keepdims=keepdims)


def _unsupported(name: str, **given) -> None:
    bad = [k for k, v in given.items() if v is not None]
    if bad:
        raise TypeError(f"revolve.ad: {name}(..., {bad[0]}=...) on a traced value is not supported")


def _reshape(a, *args, **kwargs):
    shape = kwargs.pop("shape", kwargs.pop("newshape", None))
    if shape is None:
        shape = args[0] if len(args) == 1 else args
    _unsupported("np.reshape", order=None if kwargs.get("order", "C") == "C" else kwargs["order"])
    return ops.reshape(a, shape)


def _transpose(a, axes=None):
    return ops.transpose(a, axes)


def _where(cond, a=None, b=None):
    if a is None or b is None:
        raise TypeError("revolve.ad: np.where(cond) with one argument returns indices; give np.where(cond, a, b)")
    return ops.where(cond, a, b)


def _matmul(a, b, **kwargs):
    return ops.matmul(a, b)


def _concatenate(arrays, axis=0, out=None, dtype=None, casting=None):
    _unsupported("np.concatenate", dtype=dtype)
    return ops.concatenate(arrays, axis=axis)


def _stack(arrays, axis=0, out=None, dtype=None, casting=None):
    _unsupported("np.stack", dtype=dtype)
    return ops.stack(arrays, axis=axis)


def _like(fn):
    def like(a, dtype=None, order="K", subok=True, shape=None, **kwargs):
        shape = shape_of(a) if shape is None else shape
        dt = np.result_type(value_of(a)) if dtype is None else dtype
        return fn(shape, dtype=dt)

    return like


_REDUCTIONS: dict[str, Callable] = {
    "add": ops.sum,
}

for _name in ("add", "subtract", "multiply", "divide", "negative", "power", "exp", "log", "sin", "cos", "tanh",
              "sqrt", "abs", "sign", "maximum", "minimum", "matmul", "square"):
    register_ufunc(_name, getattr(ops, _name))
register_ufunc("true_divide", ops.divide)
register_ufunc("absolute", ops.abs)
register_ufunc("positive", lambda a: a)
for _name in ("less", "less_equal", "greater", "greater_equal", "equal", "not_equal", "isfinite", "isnan",
              "isinf", "signbit", "logical_not", "logical_and", "logical_or"):
    # not differentiable: computed on the values, a boolean result (as the comparison operators are)
    register_ufunc(_name, (lambda u: lambda *xs: u(*(value_of(x) for x in xs)))(getattr(np, _name)))

register_function(np.sum, _sum)
register_function(np.mean, _mean)
register_function(np.reshape, _reshape)
register_function(np.transpose, _transpose)
register_function(np.where, _where)
register_function(np.matmul, _matmul)
register_function(np.dot, lambda a, b, out=None: ops.dot(a, b))
register_function(np.concatenate, _concatenate)
register_function(np.stack, _stack)
register_function(np.roll, lambda a, shift, axis=None: ops.roll(a, shift, axis=axis))
register_function(np.broadcast_to, lambda a, shape, subok=False: ops.broadcast_to(a, shape))
register_function(np.swapaxes, ops.swapaxes)
register_function(np.expand_dims, ops.expand_dims)
register_function(np.maximum, lambda a, b, **kw: ops.maximum(a, b))
register_function(np.minimum, lambda a, b, **kw: ops.minimum(a, b))
register_function(np.zeros_like, _like(np.zeros))
register_function(np.ones_like, _like(np.ones))
register_function(np.empty_like, _like(np.zeros))
register_function(np.shape, shape_of)
register_function(np.ndim, lambda a: len(shape_of(a)))
register_function(np.size, lambda a, axis=None: int(np.prod(shape_of(a), dtype=np.int64)) if axis is None
                  else shape_of(a)[axis])
register_function(np.result_type, lambda *xs: np.result_type(*(value_of(x) for x in xs)))


# ---- issue 13: more of numpy ----------------------------------------------------------------------------

def _reduce(fn, name):
    def reduce(a, axis=None, out=None, keepdims=False, initial=None, where=None, dtype=None):
        _unsupported(name, initial=initial, where=where, dtype=dtype)
        return fn(a, axis=axis, keepdims=keepdims)

    return reduce


def _prod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    _unsupported("np.prod", dtype=dtype, initial=initial, where=where)
    return ops.prod(a, axis=axis, keepdims=keepdims)


def _cumsum(a, axis=None, dtype=None, out=None):
    _unsupported("np.cumsum", dtype=dtype)
    return ops.cumsum(a, axis=axis)


def _moment(fn, name):
    def moment(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None, mean=None,
               correction=None):
        _unsupported(name, dtype=dtype, where=where, mean=mean)
        if correction is not None:
            ddof = correction
        return fn(a, axis=axis, keepdims=keepdims, ddof=ddof)

    return moment


def _einsum(*operands, out=None, optimize=False, dtype=None, order="K", casting="safe"):
    _unsupported("np.einsum", dtype=dtype)
    return ops.einsum(*operands)


_NO_VALUE = object()


def _clip(a, a_min=_NO_VALUE, a_max=_NO_VALUE, out=None, *, min=_NO_VALUE, max=_NO_VALUE, **kwargs):  # noqa: A002
    _no_other_kwargs("np.clip", kwargs, ("dtype", "casting", "order", "subok"))
    lo = a_min if a_min is not _NO_VALUE else (None if min is _NO_VALUE else min)
    hi = a_max if a_max is not _NO_VALUE else (None if max is _NO_VALUE else max)
    return ops.clip(a, lo, hi)


def _diff(a, n=1, axis=-1, prepend=_NO_VALUE, append=_NO_VALUE):
    nd = len(shape_of(a))
    ax = axis % nd if nd else 0
    parts = []
    for extra in (prepend, append):
        if extra is _NO_VALUE:
            parts.append(None)
            continue
        shape = list(shape_of(a))
        shape[ax] = 1
        parts.append(extra if len(shape_of(extra)) == nd else ops.broadcast_to(extra, tuple(shape)))
    if parts[0] is not None or parts[1] is not None:
        a = ops.concatenate([p for p in (parts[0], a, parts[1]) if p is not None], axis=ax)
    return ops.diff(a, n=n, axis=axis)


def _pad(array, pad_width, mode="constant", **kwargs):
    _no_other_kwargs("np.pad", kwargs, ("constant_values",))
    cv = kwargs.get("constant_values", 0.0)
    if isinstance(cv, (tuple, list)) or np.ndim(value_of(cv)) > 0:
        raise NotImplementedError("revolve.ad: np.pad(..., constant_values=...) per axis is not supported on a "
                                  "traced value; give one number")
    return ops.pad(array, pad_width, mode=mode, constant_values=cv)


def _take(a, indices, axis=None, out=None, mode="raise"):
    if mode != "raise":
        raise NotImplementedError(f"revolve.ad: np.take(..., mode={mode!r}) on a traced value is not supported")
    return ops.take(a, indices, axis=axis)


def _fft_entry(fn):
    def entry(a, n=None, axis=-1, norm=None, out=None):
        return fn(a, n=n, axis=axis, norm=norm)

    return entry


for _name in ("log1p", "expm1", "tan", "arctan", "arctan2", "sinh", "cosh", "hypot"):
    register_ufunc(_name, getattr(ops, _name))
register_ufunc("conjugate", ops.conj)
_REDUCTIONS.update({"maximum": ops.amax, "minimum": ops.amin, "multiply": ops.prod})

for _fn in (np.max, np.amax):
    register_function(_fn, _reduce(ops.amax, "np.max"))
for _fn in (np.min, np.amin):
    register_function(_fn, _reduce(ops.amin, "np.min"))
register_function(np.prod, _prod)
register_function(np.cumsum, _cumsum)
register_function(np.var, _moment(ops.var, "np.var"))
register_function(np.std, _moment(ops.std, "np.std"))
register_function(np.einsum, _einsum)
register_function(np.tensordot, lambda a, b, axes=2: ops.tensordot(a, b, axes=axes))
register_function(np.outer, lambda a, b, out=None: ops.outer(a, b))
register_function(np.clip, _clip)
register_function(np.squeeze, lambda a, axis=None: ops.squeeze(a, axis=axis))
register_function(np.flip, lambda m, axis=None: ops.flip(m, axis=axis))
register_function(np.fliplr, lambda m: ops.flip(m, axis=1))
register_function(np.flipud, lambda m: ops.flip(m, axis=0))
register_function(np.pad, _pad)
register_function(np.take, _take)
register_function(np.take_along_axis, lambda arr, indices, axis=-1: ops.take_along_axis(arr, indices, axis))
register_function(np.diff, _diff)
register_function(np.ravel, lambda a, order="C": ops.ravel(a) if order == "C" else _unsupported("np.ravel", order=order))
register_function(np.copy, lambda a, order="K", subok=False: a)  # traced values are never changed in place
register_function(np.real, ops.real)
register_function(np.imag, ops.imag)
register_function(np.linalg.solve, ops.solve)
register_function(np.linalg.inv, ops.inv)
register_function(np.linalg.slogdet, ops.slogdet)
register_function(np.linalg.det, ops.det)
register_function(np.linalg.norm, lambda x, ord=None, axis=None, keepdims=False: ops.norm(x, ord, axis, keepdims))
register_function(np.fft.fft, _fft_entry(ops.fft.fft))
register_function(np.fft.ifft, _fft_entry(ops.fft.ifft))
register_function(np.fft.rfft, _fft_entry(ops.fft.rfft))
register_function(np.fft.irfft, _fft_entry(ops.fft.irfft))
