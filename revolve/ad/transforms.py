"""The engine's transformations: vjp, grad, value_and_grad, jvp, jacrev, jacfwd, hvp; cost accounting;
gradient checks. Sparse Jacobians are in ``sparse.py``.

Functions take and return plain numpy arrays, or tuples, lists and dicts of them ("pytrees").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from . import core
from .core import CountTracer, JVPTracer, RevTracer, Tape, Tracer, value_of

__all__ = [
    "vjp", "grad", "value_and_grad", "jvp", "jacrev", "jacfwd", "hessian", "hvp", "cost", "grad_cost", "OpCount",
    "GradCost", "check_grads", "GradientCheckError", "tree_flatten", "tree_unflatten", "register_pytree",
]


# ---- pytrees -----------------------------------------------------------------------------------------
# A pytree is a nest of containers with arrays (or numbers) at its leaves. Containers: tuples, lists, dicts
# (in sorted key order), namedtuples, dataclass instances (every field a child, unless declared
# ``dataclasses.field(metadata={"static": True})``), types registered with ``register_pytree``; ``None`` is
# an empty container (no leaf), as in JAX.

_REGISTRY: dict[type, tuple[Callable, Callable]] = {}


def register_pytree(cls: type, flatten: Callable, unflatten: Callable) -> None:
    """Make instances of ``cls`` pytree containers.

    Arguments:
        cls: the type.
        flatten: ``flatten(obj) -> (children, aux)``: a sequence of child pytrees and anything hashable-free
            but comparable with ``==`` that rebuilding needs (static data).
        unflatten: ``unflatten(aux, children) -> obj``.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> class Particle:
        ...     def __init__(self, pos, vel):
        ...         self.pos, self.vel = pos, vel
        >>> ad.register_pytree(Particle, lambda p: ((p.pos, p.vel), None), lambda aux, ch: Particle(*ch))
        >>> g = ad.grad(lambda p: ad.sum(p.pos * p.vel))(Particle(np.array([1.0, 2.0]), np.array([3.0, 4.0])))
        >>> g.pos, g.vel
        (array([3., 4.]), array([1., 2.]))
    """
    if not isinstance(cls, type):
        raise TypeError(f"revolve.ad.register_pytree: cls must be a type, got {cls!r}")
    if not callable(flatten) or not callable(unflatten):
        raise TypeError("revolve.ad.register_pytree: flatten and unflatten must be callables")
    _REGISTRY[cls] = (flatten, unflatten)


def _is_namedtuple(t) -> bool:
    return isinstance(t, tuple) and hasattr(type(t), "_fields")


def _dataclass_split(t):
    fields = dataclasses.fields(t)
    dynamic = tuple([f.name for f in fields if not f.metadata.get("static", False)])
    static = tuple([(f.name, getattr(t, f.name)) for f in fields if f.metadata.get("static", False)])
    return dynamic, static


def _walk(t, leaves: list):
    reg = _REGISTRY.get(type(t))
    if reg is not None:
        children, aux = reg[0](t)
        return ("registered", type(t), aux, [_walk(c, leaves) for c in children])
    if t is None:
        return ("none",)
    if _is_namedtuple(t):
        return ("namedtuple", type(t), [_walk(c, leaves) for c in t])
    if isinstance(t, (tuple, list)):
        return (type(t), [_walk(c, leaves) for c in t])
    if isinstance(t, dict):
        keys = sorted(t)
        return (dict, keys, [_walk(t[k], leaves) for k in keys])
    if dataclasses.is_dataclass(t) and not isinstance(t, type):
        dynamic, static = _dataclass_split(t)
        return ("dataclass", type(t), dynamic, static, [_walk(getattr(t, k), leaves) for k in dynamic])
    leaves.append(t)
    return None


def tree_flatten(tree) -> tuple[list, Any]:
    """Leaves (depth first) and a structure to rebuild the tree (see the pytree note above).

    (Module-level helpers, not recursive closures: a closure that calls itself is a reference cycle, which
    here would keep a whole tape alive until the cyclic garbage collector runs.)
    """
    leaves: list = []
    return leaves, _walk(tree, leaves)


def _build(s, it):
    if s is None:
        return next(it)
    kind = s[0]
    if kind is dict:
        return {k: _build(c, it) for k, c in zip(s[1], s[2])}
    if kind == "none":
        return None
    if kind == "namedtuple":
        return s[1](*[_build(c, it) for c in s[2]])
    if kind == "registered":
        return _REGISTRY[s[1]][1](s[2], [_build(c, it) for c in s[3]])
    if kind == "dataclass":
        values = dict(zip(s[2], [_build(c, it) for c in s[4]]))
        values.update(s[3])
        obj = object.__new__(s[1])  # fields set directly: __init__ may compute or validate, __post_init__ too
        for k, v in values.items():
            object.__setattr__(obj, k, v)
        return obj
    return kind([_build(c, it) for c in s[1]])  # NOTE [ Tuples from lists ] in core.py


def tree_unflatten(structure, leaves) -> Any:
    """Inverse of ``tree_flatten``."""
    return _build(structure, iter(leaves))


def _as_input(x, where: str, name: str):
    if isinstance(x, Tracer):
        return x
    arr = np.asarray(x)
    if arr.dtype.kind not in "fc":
        if arr.dtype.kind in "iub":
            return arr.astype(np.float64)
        raise TypeError(f"{where}: {name} must be floating point arrays, got dtype {arr.dtype}")
    return arr


def _out(x):
    """A result leaf: plain numpy unless it is a tracer of an enclosing transformation."""
    return x if isinstance(x, Tracer) else np.asarray(x)


def _grad_out(g):
    """A returned gradient leaf: a writeable array of its own (rules may give broadcast or read-only views)."""
    if isinstance(g, Tracer):
        return g
    g = np.asarray(g)
    return g if g.flags.writeable and 0 not in g.strides else g.copy()


def _zeros_like_leaf(x):
    return np.zeros(np.shape(value_of(x)), dtype=np.result_type(value_of(x)))


def _owned_input(x, policy: str):
    """An input as the tape may keep it (see the note below); ``policy`` is "copy", "own" or "view".

    NOTE [ Arrays a tape keeps ]: a pullback reads the arrays its tape kept when it is called, so an
    array changed in place between the recording and the call would silently change the gradient. The
    tape therefore keeps only read-only arrays. Every array the engine computes and the tape keeps is made
    read-only as it is recorded (``RevTracer.process``); an input is
    - "copy" (``vjp``): copied first, unless it is read-only all the way down already;
    - "own" (the executor's states, which nobody else holds): made read-only itself;
    - "view" (the executor's parameters, the caller's to update between runs): a read-only view, so the
      caller's own array keeps its flags.
    A constant the tape keeps (an array the function closes over, ``c`` in ``c * x``) is not copied: it is
    made read-only while a tape that keeps it lives, and writeable again when the last such tape is freed
    (``Tape.hold``), so changing it in place before the pullback runs raises numpy's read-only error.
    """
    if not isinstance(x, np.ndarray):
        return x
    if policy == "view":
        x = x.view()
    elif policy == "copy":
        base = x.base
        if not x.flags.writeable and (base is None or (isinstance(base, np.ndarray) and not base.flags.writeable)):
            return x
        x = x.copy()
    elif policy != "own":
        from ..errors import RevolveInternalError

        raise RevolveInternalError(f"revolve.ad: unknown input policy {policy!r}")
    x.setflags(write=False)
    return x


# ---- reverse mode ----------------------------------------------------------------------------------

class VJPFunction:
    """The pullback returned by ``vjp``: call it with a cotangent shaped like f's output.

    ``tape_bytes()`` reports the bytes the recorded tape keeps alive; ``n_ops`` its recorded primitives.
    Calling it leaves the tape intact (jacrev calls it once per output); drop it to free the tape.
    """

    __slots__ = ("_tape", "_in_idx", "_in_tree", "_out_tracers", "_out_tree", "_out_shapes", "_leaf_metas")

    def __init__(self, tape, in_idx, in_tree, out_tracers, out_tree, out_shapes, leaf_metas):
        self._tape = tape
        self._in_idx = in_idx
        self._in_tree = in_tree
        self._out_tracers = out_tracers
        self._out_tree = out_tree
        self._out_shapes = out_shapes
        self._leaf_metas = leaf_metas  # (shape, dtype) of each input: a zero cotangent's shape, not the input

    @property
    def n_ops(self) -> int:
        return sum(1 for n in self._tape.nodes if n is not None)

    def tape_bytes(self, exclude=()) -> int:
        """Bytes of the arrays the tape keeps alive, not counting the arrays in ``exclude`` (a pytree)."""
        leaves, _ = tree_flatten(exclude)
        arrays = [x for x in leaves if isinstance(x, np.ndarray)]
        return self._tape.retained_bytes({id(x) for x in arrays} | {id(x.base) for x in arrays if x.base is not None},
                                         also=(self, self._in_idx, self._in_tree, self._out_tracers, self._out_tree,
                                               self._out_shapes, self._leaf_metas))

    def __call__(self, cotangent):
        cts, tree = tree_flatten(cotangent)
        if tree != self._out_tree or len(cts) != len(self._out_tracers):
            raise ValueError("revolve.ad.vjp: the cotangent must have the structure of the function's output")
        seeds: dict[int, Any] = {}
        for ct, t, shape in zip(cts, self._out_tracers, self._out_shapes):
            if np.shape(value_of(ct)) != shape:
                raise ValueError(f"revolve.ad.vjp: cotangent of shape {np.shape(value_of(ct))} for an output of shape {shape}")
            if t is not None:  # the output's tape index (None: an output not recorded on this tape)
                seeds[t] = ct if t not in seeds else seeds[t] + ct
        grads = self._tape.backward(seeds, self._in_idx)
        leaves = []
        for g, (shape, dtype) in zip(grads, self._leaf_metas):
            leaves.append(np.zeros(shape, dtype=dtype) if g is None else _grad_out(g))
        return tree_unflatten(self._in_tree, leaves)


def vjp(f: Callable, *primals, has_aux: bool = False) -> tuple:
    """Evaluate ``f(*primals)`` recording a tape; return its value and the pullback ``vjp_fn(ct) -> cotangents``.

    The pullback returns a tuple with one cotangent per primal, each with the primal's structure. With
    ``has_aux=True``, f returns ``(output, aux)``; aux (any pytree, e.g. diagnostics) is returned as plain
    values, not differentiated: ``(output, pullback, aux)``.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> y, pullback = ad.vjp(lambda x: ad.sin(x) * 2.0, np.array([0.0, 1.0]))
        >>> pullback(np.ones(2))[0]
        array([2.        , 1.08060461])
    """
    return _vjp(f, primals, ("copy",) * len(primals), has_aux=has_aux)


def _split_aux(out, where: str):
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"{where}: with has_aux=True, f must return a pair (output, aux), got {type(out).__name__}")
    return out[0], out[1]


def _strip_level(tree, tape):
    """aux as values: tracers of ``tape``'s level replaced by what they hold (not differentiated)."""
    leaves, structure = tree_flatten(tree)
    return tree_unflatten(structure, [_out(t.value) if isinstance(t, RevTracer) and t.tape is tape else
                                      (t if isinstance(t, Tracer) else t) for t in leaves])


def _vjp(f: Callable, primals: tuple, policies: tuple, has_aux: bool = False) -> tuple:
    """``vjp`` with an input policy per primal (NOTE [ Arrays a tape keeps ]): "copy", "own" or "view"."""
    tape = Tape()
    leaves, tree = [], []
    for p, policy in zip(primals, policies):
        ls, _ = tree_flatten(p)
        leaves.extend((x, policy) for x in ls)
    _, tree = tree_flatten(tuple(primals))
    boxed, in_idx, metas = [], [], []
    for x, policy in leaves:
        x = _owned_input(_as_input(x, "revolve.ad.vjp", "inputs"), policy)
        t = tape.new_input(x)
        boxed.append(t)
        in_idx.append(t.index)
        metas.append((np.shape(value_of(x)), np.result_type(value_of(x))))
    out = f(*tree_unflatten(tree, boxed))
    if has_aux:
        out, aux = _split_aux(out, "revolve.ad.vjp")
    out_leaves, out_tree = tree_flatten(out)
    out_values = [_out(t.value) if isinstance(t, RevTracer) and t.tape is tape else _out(t) for t in out_leaves]
    shapes = [np.shape(value_of(v)) for v in out_values]
    # the pullback keeps the outputs' tape indices, not the outputs (so that it does not keep them alive)
    out_index = [t.index if isinstance(t, RevTracer) and t.tape is tape else None for t in out_leaves]
    fn = VJPFunction(tape, in_idx, tree, out_index, out_tree, shapes, metas)
    if has_aux:
        return tree_unflatten(out_tree, out_values), fn, _strip_level(aux, tape)
    return tree_unflatten(out_tree, out_values), fn


def _select(args, argnums):
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    for a in nums:
        if not -len(args) <= a < len(args):
            raise ValueError(f"revolve.ad.grad: argnums {a} is out of range for {len(args)} arguments")
    return single, tuple([a % len(args) for a in nums])


def _restrict(f: Callable, args: tuple, nums: tuple) -> Callable:
    """f as a function of the arguments at positions ``nums`` only, the others fixed to ``args``."""

    def g(*chosen):
        full = list(args)
        for a, c in zip(nums, chosen):
            full[a] = c
        return f(*full)

    return g


def value_and_grad(f: Callable, argnums: int | Sequence[int] = 0, *, has_aux: bool = False) -> Callable:
    """A function returning ``(f(*args), gradient)`` for a scalar-valued ``f``; see ``grad``.

    With ``has_aux=True``, f returns ``(value, aux)`` and the function returns ``((value, aux), gradient)``.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> f = lambda x: (ad.sum(x ** 2), {"mean": ad.mean(x)})
        >>> (v, aux), g = ad.value_and_grad(f, has_aux=True)(np.array([1.0, 2.0]))
        >>> float(v), float(aux["mean"]), g
        (5.0, 1.5, array([2., 4.]))
    """

    def wrapped(*args):
        single, nums = _select(args, argnums)
        res = vjp(_restrict(f, args, nums), *[args[a] for a in nums], has_aux=has_aux)
        y, pullback = res[0], res[1]
        shape = np.shape(value_of(y)) if not isinstance(y, (tuple, list, dict)) else None
        if shape is None or int(np.prod(shape)) != 1:
            got = "a " + type(y).__name__ if shape is None else f"shape {shape}"
            raise TypeError(
                f"revolve.ad.grad: f must return a scalar, got {got}; for non-scalar outputs use "
                f"revolve.ad.jacrev or revolve.ad.vjp"
            )
        seed = np.ones(shape, dtype=np.asarray(value_of(y)).dtype)
        grads = pullback(seed)
        del pullback  # the tape is freed before returning (and what it held read-only is writeable again)
        g = grads[0] if single else grads
        return ((y, res[2]), g) if has_aux else (y, g)

    return wrapped


def grad(f: Callable, argnums: int | Sequence[int] = 0, *, has_aux: bool = False) -> Callable:
    """The gradient of a scalar-valued ``f`` with respect to argument(s) ``argnums``.

    Arguments may be arrays or pytrees of arrays (tuples, lists, dicts, namedtuples, dataclasses, registered
    types; ``None`` is an empty subtree); the gradient has the same structure. With ``has_aux=True``, f
    returns ``(value, aux)`` and the function returns ``(gradient, aux)``.

    Raises:
        TypeError: f returns something other than a scalar (use ``jacrev`` or ``vjp``).

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> ad.grad(lambda x: ad.sum(x ** 2))(np.array([1.0, 2.0]))
        array([2., 4.])
    """
    vg = value_and_grad(f, argnums, has_aux=has_aux)

    def wrapped(*args):
        if has_aux:
            (_, aux), g = vg(*args)
            return g, aux
        return vg(*args)[1]

    return wrapped


# ---- forward mode ----------------------------------------------------------------------------------

def jvp(f: Callable, primals: Sequence, tangents: Sequence) -> tuple[Any, Any]:
    """Forward mode: ``(f(*primals), J v)`` with tangents propagated beside the primals (no reverse pass).

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> ad.jvp(lambda x: x * x, (np.array(3.0),), (np.array(1.0),))
        (array(9.), array(6.))
    """
    where = "revolve.ad.jvp"
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError(f"{where}: primals and tangents must be tuples, e.g. jvp(f, (x,), (v,))")
    p_leaves, p_tree = tree_flatten(tuple(primals))
    t_leaves, t_tree = tree_flatten(tuple(tangents))
    if p_tree != t_tree:
        raise ValueError(f"{where}: tangents must have the structure of primals")
    level = next(core._levels)
    boxed = []
    for p, t in zip(p_leaves, t_leaves):
        p = _as_input(p, where, "primals")
        t = _as_input(t, where, "tangents")
        if np.shape(value_of(p)) != np.shape(value_of(t)):
            raise ValueError(f"{where}: tangent of shape {np.shape(value_of(t))} for a primal of shape {np.shape(value_of(p))}")
        boxed.append(JVPTracer(p, t, level))
    out = f(*tree_unflatten(p_tree, boxed))
    leaves, tree = tree_flatten(out)
    ys, ts = [], []
    for y in leaves:
        if isinstance(y, JVPTracer) and y.level == level:
            ys.append(_out(y.primal))
            ts.append(_out(y.tangent) if y.tangent is not None else _zeros_like_leaf(y.primal))
        else:
            ys.append(_out(y))
            ts.append(_zeros_like_leaf(y))
    return tree_unflatten(tree, ys), tree_unflatten(tree, ts)


def _single_array_arg(where, args, argnums):
    if not isinstance(argnums, int):
        raise TypeError(f"{where}: argnums must be one integer")
    x = args[argnums]
    if isinstance(x, (tuple, list, dict)):
        raise TypeError(f"{where}: differentiate with respect to one array; got a {type(x).__name__}")
    return _as_input(x, where, "the argument")


def _stack_rows(rows, lead_shape, tail_shape, dtype):
    """Stack per-element results (numpy, or tracers of an enclosing transformation) into lead + tail shape."""
    if not rows:
        return np.zeros(lead_shape + tail_shape, dtype=dtype)
    if any(isinstance(r, Tracer) for r in rows):
        from . import ops

        return ops.reshape(ops.stack(rows, axis=0), lead_shape + tail_shape)
    return np.stack([np.asarray(r) for r in rows]).reshape(lead_shape + tail_shape)


def jacrev(f: Callable, argnums: int = 0) -> Callable:
    """The Jacobian by reverse mode: one recording, one backward pass per output element.

    The result has shape ``f(x).shape + x.shape``. Cheap when f has few outputs. Composes with the other
    transformations at any depth (``jacfwd(jacrev(f))`` is the Hessian, ``grad`` of a function calling
    ``jacrev`` differentiates through it).
    """

    def wrapped(*args):
        x = _single_array_arg("revolve.ad.jacrev", args, argnums)
        g = _restrict(f, args, (argnums,))
        y, pullback = vjp(g, x)
        y_shape, y_dtype = np.shape(value_of(y)), np.result_type(value_of(y))
        size = int(np.prod(y_shape, dtype=np.int64))
        rows = []
        for k in range(size):
            e = np.zeros(size, dtype=y_dtype)
            e[k] = 1.0
            rows.append(pullback(e.reshape(y_shape))[0])
        return _stack_rows(rows, y_shape, np.shape(value_of(x)), np.result_type(value_of(x)))

    return wrapped


def jacfwd(f: Callable, argnums: int = 0) -> Callable:
    """The Jacobian by forward mode: one JVP per input element. Cheap when f has few inputs.

    Composes with the other transformations at any depth, like ``jacrev``.
    """

    def wrapped(*args):
        x = _single_array_arg("revolve.ad.jacfwd", args, argnums)
        g = _restrict(f, args, (argnums,))
        x_shape, x_dtype = np.shape(value_of(x)), np.result_type(value_of(x))
        size = int(np.prod(x_shape, dtype=np.int64))
        cols = []
        for k in range(size):
            e = np.zeros(size, dtype=x_dtype)
            e[k] = 1.0
            cols.append(jvp(g, (x,), (e.reshape(x_shape),))[1])
        if not cols:
            return np.zeros(np.shape(value_of(g(x))) + x_shape, dtype=x_dtype)
        y_shape = np.shape(value_of(cols[0]))
        jac = _stack_rows(cols, (size,), y_shape, x_dtype)  # (input element, *output shape)
        axes = tuple(range(1, 1 + len(y_shape))) + (0,)
        if isinstance(jac, Tracer):
            from . import ops

            return ops.reshape(ops.transpose(jac, axes), y_shape + x_shape)
        return np.transpose(jac, axes).reshape(y_shape + x_shape)

    return wrapped


def hessian(f: Callable, argnums: int = 0) -> Callable:
    """The Hessian of a scalar ``f`` by forward over reverse mode, shaped ``x.shape + x.shape``.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> ad.hessian(lambda x: ad.sum(x ** 3))(np.array([1.0, 2.0]))
        array([[ 6.,  0.],
               [ 0., 12.]])
    """
    return jacfwd(jacrev(f, argnums), argnums)


def hvp(f: Callable, x, v):
    """Hessian-vector product H(x) v of a scalar f, by forward mode over reverse mode.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> ad.hvp(lambda x: ad.sum(x ** 3), np.array([1.0, 2.0]), np.array([1.0, 0.0]))
        array([6., 0.])
    """
    return jvp(grad(f), (x,), (v,))[1]


# ---- cost accounting ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpCount:
    """Primitive operations executed and their estimated floating point operations."""

    ops: int
    flops: int


@dataclass(frozen=True)
class GradCost:
    """What a gradient costs against its function.

    Attributes:
        function: ops and flops of one evaluation of f.
        gradient: ops and flops of evaluating f with recording plus the backward pass.
        tape_bytes: bytes of arrays the tape keeps alive at its peak (the end of the forward pass).
        flop_ratio: gradient.flops / function.flops.
    """

    function: OpCount
    gradient: OpCount
    tape_bytes: int

    @property
    def flop_ratio(self) -> float:
        return self.gradient.flops / max(self.function.flops, 1)


class _Counting:
    def __enter__(self):
        self.prev = core._counter
        core._counter = [0, 0]
        return core._counter

    def __exit__(self, *exc):
        core._counter = self.prev
        return False


def cost(f: Callable, *args) -> OpCount:
    """Count the primitive operations and estimated flops of ``f(*args)`` (run without recording).

    The inputs are wrapped in pass-through tracers so that numpy operators on them (``x * y``) are
    routed through the engine and counted too.
    """
    level = next(core._levels)
    leaves, tree = tree_flatten(tuple(args))
    wrapped = [CountTracer(_as_input(x, "revolve.ad.cost", "inputs"), level) for x in leaves]
    with _Counting() as c:
        f(*tree_unflatten(tree, wrapped))
    return OpCount(ops=c[0], flops=c[1])


def grad_cost(f: Callable, *args, argnums: int | Sequence[int] = 0) -> GradCost:
    """Count the function's cost, the gradient's (recorded forward + backward), and the tape's peak bytes.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> c = ad.grad_cost(lambda x: ad.sum(ad.sin(x) * x), np.ones(1000))
        >>> c.flop_ratio < 5
        True
    """
    fc = cost(f, *args)
    single, nums = _select(args, argnums)
    with _Counting() as c:
        y, pullback = vjp(_restrict(f, args, nums), *[args[a] for a in nums])
        tape_bytes = pullback.tape_bytes()
        pullback(np.ones(np.shape(value_of(y)), dtype=np.asarray(value_of(y)).dtype))
    return GradCost(function=fc, gradient=OpCount(ops=c[0], flops=c[1]), tape_bytes=tape_bytes)


# ---- gradient checks ---------------------------------------------------------------------------------

class GradientCheckError(AssertionError):
    """A derivative disagrees with central differences (or forward with reverse mode)."""


def _flat_dot(a_leaves, b_leaves) -> float:
    return float(sum(np.vdot(np.asarray(value_of(a)), np.asarray(value_of(b))).real for a, b in zip(a_leaves, b_leaves)))


def check_grads(f: Callable, *args, modes: Sequence[str] = ("fwd", "rev"), order: int = 1, eps: float = 1e-6,
                rtol: float = 1e-6, atol: float = 1e-9, seed: int = 0) -> None:
    """Check f's derivatives at ``args`` against central differences along random directions.

    For random input direction v and output direction u: forward mode must give J v, reverse mode
    J^T u, with <u, J v> from central differences (f(x + eps v) - f(x - eps v)) / (2 eps), and the two
    modes must agree (<u, J v> = <J^T u, v>). ``order=2`` also checks the derivatives of the pullback
    (reverse over reverse and forward over reverse). Use float64 inputs.

    Raises:
        GradientCheckError: a mismatch, with both numbers.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> ad.check_grads(lambda x: ad.tanh(x) * x, np.linspace(-1, 1, 5), order=2)
    """
    rng = np.random.default_rng(seed)
    leaves, tree = tree_flatten(tuple(args))
    leaves = [np.asarray(x, dtype=np.float64) for x in leaves]
    v = [rng.standard_normal(np.shape(x)) for x in leaves]

    def at(scale):
        return f(*tree_unflatten(tree, [x + scale * d for x, d in zip(leaves, v)]))

    y0 = f(*tree_unflatten(tree, leaves))
    y_leaves, y_tree = tree_flatten(y0)
    u = [rng.standard_normal(np.shape(value_of(y))) for y in y_leaves]
    yp, _ = tree_flatten(at(eps))
    ym, _ = tree_flatten(at(-eps))
    fd = [(np.asarray(value_of(a)) - np.asarray(value_of(b))) / (2 * eps) for a, b in zip(yp, ym)]
    ujv_fd = _flat_dot(u, fd)

    def close(a, b):
        return abs(a - b) <= atol + rtol * max(abs(a), abs(b), 1.0)

    ujv_fwd = None
    if "fwd" in modes:
        _, t = jvp(f, tuple(tree_unflatten(tree, leaves)), tuple(tree_unflatten(tree, v)))
        t_leaves, _ = tree_flatten(t)
        ujv_fwd = _flat_dot(u, t_leaves)
        if not close(ujv_fwd, ujv_fd):
            raise GradientCheckError(f"forward mode: <u, J v> = {ujv_fwd!r}, central differences give {ujv_fd!r}")
    if "rev" in modes:
        _, pullback = vjp(f, *tree_unflatten(tree, leaves))
        cts = pullback(tree_unflatten(y_tree, u))
        c_leaves, _ = tree_flatten(cts)
        jtu_v = _flat_dot(c_leaves, v)
        if not close(jtu_v, ujv_fd):
            raise GradientCheckError(f"reverse mode: <J^T u, v> = {jtu_v!r}, central differences give {ujv_fd!r}")
        if ujv_fwd is not None and not close(jtu_v, ujv_fwd):
            raise GradientCheckError(f"forward and reverse mode disagree: <u, J v> = {ujv_fwd!r}, <J^T u, v> = {jtu_v!r}")
    if order > 1:
        u_tree = tree_unflatten(y_tree, u)

        def pulled(*xs):
            return vjp(f, *xs)[1](u_tree)

        check_grads(pulled, *args, modes=modes, order=order - 1, eps=eps, rtol=rtol * 10, atol=atol * 10, seed=seed + 1)


# ---- sparse Jacobians: revolve/ad/sparse.py (re-exported here for code that imports them from this module)

from .sparse import SparseJacobian, SparsityPattern, color_columns, jacobian_sparsity, sparse_jacobian  # noqa: E402,F401
