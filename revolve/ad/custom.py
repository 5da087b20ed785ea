"""User-supplied derivative rules, in the style of JAX: ``custom_vjp`` and ``custom_jvp``.

A function decorated with one of them becomes a primitive of its own: plain inputs run it as it is;
traced inputs record one node whose rule is the user's. The typical use is an implicit solve, whose
adjoint is another solve rather than the derivative of the solver's iterations.

- ``custom_vjp``: ``f.defvjp(fwd, bwd)`` with ``fwd(*args) -> (out, residuals)`` and
  ``bwd(residuals, g) -> one cotangent per argument`` (None for none). Reverse mode only: forward mode
  raises, naming the function (as in JAX). The tape keeps exactly the residuals.
- ``custom_jvp``: ``f.defjvp(jvp)`` with ``jvp(primals, tangents) -> (out, tangent_out)``, linear in the
  tangents; a tangent is a zero array where the argument is not traced. Reverse mode transposes that
  linear map by recording it once (reverse mode of a linear function is its transpose), so one rule
  serves both modes.

Both compose with every transformation at any depth, since the rules are written with the engine's ops.
Functions take arrays (not pytrees) as positional arguments; keyword arguments are constants.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from .core import Primitive, bind, shape_of, value_of

__all__ = ["custom_vjp", "custom_jvp"]


def _as_tuple(cts, n: int, name: str, what: str) -> tuple:
    if n == 1 and not isinstance(cts, (tuple, list)):
        cts = (cts,)
    if not isinstance(cts, (tuple, list)) or len(cts) != n:
        got = len(cts) if isinstance(cts, (tuple, list)) else type(cts).__name__
        raise ValueError(f"revolve.ad.custom_vjp: {what} of {name} must return one cotangent per argument "
                         f"({n}), got {got}")
    return tuple(cts)


def _check_shapes(cts, args, name):
    for k, (c, a) in enumerate(zip(cts, args)):
        if c is not None and shape_of(c) != shape_of(a):
            raise ValueError(f"revolve.ad.custom_vjp: the backward rule of {name} returned a cotangent of shape "
                             f"{shape_of(c)} for argument {k} of shape {shape_of(a)}")


class custom_vjp:
    """Give ``fun`` a reverse-mode rule of its own.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> @ad.custom_vjp
        ... def solve(A, b):  # x = A^-1 b by any method, even a non-differentiable iteration
        ...     return np.linalg.solve(A, b)
        >>> def solve_fwd(A, b):
        ...     x = solve(A, b)
        ...     return x, (A, x)
        >>> def solve_bwd(res, g):  # the adjoint solve: A^T lam = g; dA = -lam x^T, db = lam
        ...     A, x = res
        ...     lam = solve(ad.transpose(A), g)
        ...     return -lam[:, None] * x[None, :], lam
        >>> solve.defvjp(solve_fwd, solve_bwd)
        >>> A = np.array([[3.0, 1.0], [1.0, 2.0]])
        >>> ad.grad(lambda b: ad.sum(solve(A, b)))(np.array([1.0, 1.0])).round(6)
        array([0.2, 0.4])
    """

    def __init__(self, fun: Callable):
        if not callable(fun):
            raise TypeError(f"revolve.ad.custom_vjp: expected a function, got {fun!r}")
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.name = getattr(fun, "__name__", repr(fun))
        self.prim = Primitive(f"custom_vjp({self.name})", self._impl)
        self.prim.retain = {}  # the tape keeps the residuals only (in the node's params)
        self.prim.fwd = None

    def _impl(self, *args, **kwargs):
        return self.fun(*args, **kwargs)

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        """Set the rule: ``fwd(*args) -> (out, residuals)``, ``bwd(residuals, g) -> cotangents``."""
        if not callable(fwd) or not callable(bwd):
            raise TypeError("revolve.ad.custom_vjp.defvjp: fwd and bwd must be callables")
        name = self.name

        def run_fwd(vals, params):
            res = fwd(*vals, **params)
            if not isinstance(res, tuple) or len(res) != 2:
                raise ValueError(f"revolve.ad.custom_vjp: the forward rule of {name} must return (output, residuals)")
            return res

        def vjp_rule(g, ans, want, *args, _residuals, **params):
            cts = _as_tuple(bwd(_residuals, g), len(args), name, "the backward rule")
            _check_shapes(cts, args, name)
            return tuple([c if w else None for c, w in zip(cts, want)])

        def jvp_rule(t, ans, *args, **params):
            raise NotImplementedError(
                f"revolve.ad: {name} has a custom_vjp rule, which serves reverse mode only; forward mode (jvp, "
                f"jacfwd, hvp) needs a custom_jvp rule instead"
            )

        self.prim.fwd = run_fwd
        self.prim.vjp = vjp_rule
        self.prim.jvp = jvp_rule

    def __call__(self, *args, **kwargs):
        if self.prim.vjp is None:
            raise TypeError(f"revolve.ad.custom_vjp: {self.name} has no rule yet; call {self.name}.defvjp(fwd, bwd)")
        return bind(self.prim, *args, **kwargs)


class custom_jvp:
    """Give ``fun`` a forward-mode rule of its own, which also serves reverse mode (by transposition).

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> @ad.custom_jvp
        ... def log1pexp(x):  # stable softplus, with a derivative that never overflows
        ...     return np.logaddexp(0.0, x)
        >>> log1pexp.defjvp(lambda p, t: (log1pexp(p[0]), t[0] * ad.sigmoid(p[0])))
        >>> ad.grad(lambda x: ad.sum(log1pexp(x)))(np.array([-1000.0, 0.0, 1000.0]))
        array([0. , 0.5, 1. ])
    """

    def __init__(self, fun: Callable):
        if not callable(fun):
            raise TypeError(f"revolve.ad.custom_jvp: expected a function, got {fun!r}")
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.name = getattr(fun, "__name__", repr(fun))
        self.prim = Primitive(f"custom_jvp({self.name})", self._impl)

    def _impl(self, *args, **kwargs):
        return self.fun(*args, **kwargs)

    def defjvp(self, jvp: Callable) -> None:
        """Set the rule: ``jvp(primals, tangents) -> (out, tangent_out)``, linear in the tangents."""
        if not callable(jvp):
            raise TypeError("revolve.ad.custom_jvp.defjvp: jvp must be a callable")
        name = self.name

        def tangent_out(args, tangents, params):
            res = jvp(tuple(args), tuple(tangents), **params)
            if not isinstance(res, tuple) or len(res) != 2:
                raise ValueError(f"revolve.ad.custom_jvp: the rule of {name} must return (output, tangent)")
            return res[1]

        def jvp_rule(t, ans, *args, **params):
            if all(ti is None for ti in t):
                return None
            ts = [ti if ti is not None else _zeros(a) for ti, a in zip(t, args)]
            return tangent_out(args, ts, params)

        def vjp_rule(g, ans, want, *args, **params):
            # the rule is linear in the tangents: reverse mode over it at tangents 0 is its transpose
            from .transforms import vjp

            _, pull = vjp(lambda *ts: tangent_out(args, ts, params), *[_zeros(a) for a in args])
            cts = pull(g)
            return tuple([c if w else None for c, w in zip(cts, want)])

        self.prim.jvp = jvp_rule
        self.prim.vjp = vjp_rule

    def __call__(self, *args, **kwargs):
        if self.prim.jvp is None:
            raise TypeError(f"revolve.ad.custom_jvp: {self.name} has no rule yet; call {self.name}.defjvp(jvp)")
        return bind(self.prim, *args, **kwargs)


def _zeros(a) -> Any:
    v = value_of(a)
    return np.zeros(np.shape(v), dtype=np.result_type(v) if np.result_type(v).kind in "fc" else np.float64)
