"""The engine's core: tracers, the tape, and ``bind``, which applies a primitive at every active level.

Design (after HIPS/autograd and JAX): every transformation (``vjp``, ``jvp``) opens a new *level*. A value
traced at a level is wrapped in a tracer of that level; a primitive applied to tracers unwraps the top
level, applies itself to what is inside (which may be tracers of lower levels, so transformations
nest), and wraps the result. Reverse-mode tracers append one node per primitive to their level's tape,
in execution order, so the tape is already topologically sorted: the backward pass is a loop over it
in reverse, with no recursion. Forward-mode tracers carry a tangent computed by the primitive's JVP
rule. Plain numpy inputs take a fast path straight to numpy: nothing is recorded.
"""

from __future__ import annotations

import itertools
import sys
from array import array
from typing import Any, Callable

import numpy as np

__all__ = ["Primitive", "Tracer", "RevTracer", "JVPTracer", "Tape", "bind", "value_of", "shape_of"]

# NOTE [ Tuples from lists ]: the engine builds tuples from lists (``tuple([... for ...])``), never from
# generators. ``tuple`` of a generator allocates a guessed size and then resizes it, and the resized tuple goes,
# when freed, to the free list of its final size without having come from it: run over every op of every step,
# that fills CPython's free lists (2000 tuples of each size) with memory no one holds (96 KB of 1-tuples alone
# on the Lorenz example, which tracemalloc counts as allocated).

_levels = itertools.count(1)
_held: dict[int, list] = {}  # id -> [array, number of live tapes holding it read-only] (Tape.hold)
_counter: list | None = None  # [ops, flops] while ops are counted (see revolve.ad.cost)


class Primitive:
    """A primitive operation: its numpy implementation and a flop estimate. Its rules live in ``rules.py``.

    ``retain`` (None: keep everything) maps a differentiated argument's position, or "*" for any, to what
    its cotangent's rule reads: (argument positions, whether the output); the tape keeps the union over
    the arguments traced in a call, and a shape-only ``Meta`` for the rest (``rules.RETAIN``).
    """

    __slots__ = ("name", "impl", "vjp", "jvp", "vjp_into", "vjp_lazy", "odd", "builtin", "flops", "retain", "fwd",
                 "_kept")

    def __init__(self, name: str, impl: Callable, flops: Callable | None = None):
        self.name = name
        self.impl = impl
        self.vjp: Callable | None = None
        self.jvp: Callable | None = None
        self.vjp_into: Callable | None = None  # the VJP rule writing into its cotangent (rules.INPLACE)
        self.vjp_lazy: Callable | None = None  # the VJP rule leaving a negation to the backward pass (rules.LAZY)
        self.odd = False  # its VJP rule is odd in the cotangent, bit for bit (rules.ODD)
        self.builtin = False  # a primitive of the rule table, whose rules return fresh arrays or views of g
        self.flops = flops
        self.retain: dict | None = None
        self.fwd: Callable | None = None  # custom_vjp: fwd(vals, params) -> (out, residuals) replaces impl when taped
        self._kept: dict = {}  # kept()'s answers, by retain table and traced positions

    def kept(self, parents) -> tuple[frozenset | None, bool]:
        """What the tape keeps when the arguments at ``parents``' positions are traced: (positions, output)."""
        retain = self.retain
        if retain is None:
            return None, True
        positions = tuple([pos for pos, _ in parents])
        key = (id(retain), positions)  # the answer for this retain table (custom_vjp sets its own)
        known = self._kept.get(key)
        if known is not None:
            return known
        args: frozenset = frozenset()
        out = False
        for pos in positions:
            entry = retain.get(pos) or retain.get("*")
            if entry is not None:
                args = args | entry[0]
                out = out or entry[1]
        if len(self._kept) < 256:  # variadic primitives (concatenate, stack, einsum) see few distinct patterns
            self._kept[key] = (args, out)
        return args, out

    def __repr__(self) -> str:
        return f"Primitive({self.name})"


class Meta:
    """What the tape keeps of a value its VJP rule does not read: its shape and dtype."""

    __slots__ = ("shape", "dtype")

    def __init__(self, value):
        self.shape = shape_of(value)
        self.dtype = np.asarray(value_of(value)).dtype if not isinstance(value, Tracer) else value.dtype

    def __repr__(self) -> str:
        return f"Meta(shape={self.shape}, dtype={self.dtype})"


_metas: dict[tuple, Meta] = {}  # one shared Meta per (shape, dtype): a tape of 10^5 scalar ops keeps two, not 10^5
_NO_PARAMS: dict = {}  # the parameters of every node recorded without any (never changed: rules only read them)


def _slim(v):
    """A shape-only stand-in for an array (or tracer) the tape need not keep; scalars stay as they are."""
    if not isinstance(v, (np.ndarray, Tracer)):
        return v
    key = (shape_of(v), v.dtype)
    meta = _metas.get(key)
    if meta is None:
        if len(_metas) >= 4096:  # bounded: programs with ever-new shapes do not grow it without limit
            _metas.clear()
        meta = _metas[key] = Meta(v)
    return meta


def _freeze(v) -> None:
    """Make an array the tape keeps read-only (values of other levels and scalars are left alone).

    ``setflags(write=False)``, here and wherever the engine makes an array read-only: assigning
    ``flags.writeable`` leaves memory behind inside numpy (about 10 KB over a few thousand recorded steps).
    """
    if isinstance(v, np.ndarray) and v.flags.writeable:
        v.setflags(write=False)


_SHARED = (type(None), bool, str, type, np.dtype, Primitive)


class _Sizes:
    """The objects a tape keeps, each counted once (``Tape.retained_bytes``), in little memory.

    An object of fewer than 2^20 bytes is one row of one ``array('q')``: its id over 16 (CPython objects are
    16-byte aligned) shifted above its size; the rows are sorted in place and summed once per distinct value.
    That is 8 bytes an object: a set of the ids seen would hold a Python int and a hash slot per object,
    about 60 bytes, twice a small tape's own objects, for every recorded step the executor sizes. Larger
    or unaligned objects (few: arrays with their data) go to a dict.
    """

    __slots__ = ("rows", "large", "exclude")

    def __init__(self, exclude):
        self.rows = array("q")
        self.large: dict[int, int] = {}
        self.exclude = exclude  # ids of objects not to count (nor what they hold)

    def add(self, v) -> None:
        """Count ``v`` and what it holds (a row per reference; ``total`` counts each object once)."""
        t = type(v)
        if t is float or t is _F64:  # the scalars of scalar-heavy steps first: no children, never excluded
            size = _getsizeof(v)
        elif t is Meta and _metas.get((v.shape, v.dtype)) is v:  # shared: lives in the cache anyway
            return
        elif isinstance(v, _SHARED) or v is Ellipsis or v is _NO_PARAMS or id(v) in self.exclude:
            return
        elif t is int and -5 <= v <= 256:  # CPython's cached small ints live anyway
            return
        elif isinstance(v, np.ndarray):
            size = sys.getsizeof(v)  # includes the data when v owns it
            base = v.base
            if base is not None:
                if isinstance(base, np.ndarray):
                    self.add(base)
                else:
                    size += v.nbytes
        elif isinstance(v, (tuple, list)):
            size = sys.getsizeof(v)
            for c in v:
                self.add(c)
        elif isinstance(v, dict):
            size = sys.getsizeof(v)
            for c in v.values():
                self.add(c)
        elif isinstance(v, Meta):  # one of its own (the shared ones returned above)
            size = sys.getsizeof(v)
            self.add(v.shape)
        elif isinstance(v, slice):
            size = sys.getsizeof(v)
            self.add(v.start)
            self.add(v.stop)
            self.add(v.step)
        elif isinstance(v, JVPTracer):
            size = sys.getsizeof(v)
            self.add(v.primal)
            self.add(v.tangent)
        elif isinstance(v, Tracer):  # a tracer of a lower level: what it holds of its own (its tape is its level's)
            size = sys.getsizeof(v)
            self.add(v._primal())
        else:
            size = sys.getsizeof(v)
        key = id(v)
        if size < _ROW_SIZE and not key & 15 and key < _ROW_ID_LIMIT:
            self.rows.append((key >> 4) << 20 | size)
        else:
            self.large[key] = size

    def total(self) -> int:
        total = builtins_sum(self.large.values())
        if self.rows:
            rows = np.frombuffer(self.rows, dtype=np.int64)
            rows.sort()  # in place: equal rows (one object) become neighbours
            first = rows[1:] != rows[:-1]
            total += int(rows[0] & (_ROW_SIZE - 1)) + int(np.bitwise_and(rows[1:][first], _ROW_SIZE - 1).sum())
        return total


_F64 = np.float64
_getsizeof = sys.getsizeof
_ROW_SIZE = 1 << 20  # objects below this size are packed into one int64 row with their id (_Sizes)
_ROW_ID_LIMIT = 1 << 47  # ids below this (every address of a 47-bit user space) fit the row's upper 43 bits


builtins_sum = sum


def value_of(x: Any) -> Any:
    """The innermost numpy value of a possibly nested tracer."""
    while isinstance(x, Tracer):
        x = x._primal()
    return x


def shape_of(x: Any) -> tuple:
    """The shape of a value or tracer."""
    while isinstance(x, Tracer):
        x = x._primal()
    shape = getattr(x, "shape", None)
    return shape if shape is not None else np.shape(x)


def bind(prim: Primitive, *args, **params):
    """Apply ``prim`` to ``args``: on the top-level tracer's transformation if any, else on numpy directly."""
    top = None
    for a in args:
        if isinstance(a, Tracer) and (top is None or a.level > top.level):
            top = a
    if top is None:
        try:
            out = prim.impl(*args, **params)
        except ValueError as e:  # numpy names the shapes; say which primitive failed
            raise ValueError(f"revolve.ad.{prim.name}: {e}") from None
        if _counter is not None:
            _counter[0] += 1
            if prim.flops is not None:
                _counter[1] += prim.flops(out, *args, **params)
        return out
    return top.process(prim, args, params)


class Tracer:
    """Base of the engine's tensors: numpy-like operators that dispatch to the engine's functions."""

    __slots__ = ()
    __array_priority__ = 1000  # numpy defers to our reflected operators
    level: int

    def _primal(self):
        raise NotImplementedError

    # -- array-like attributes --------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return shape_of(self)

    @property
    def ndim(self) -> int:
        return len(shape_of(self))

    @property
    def size(self) -> int:
        return int(np.prod(shape_of(self), dtype=np.int64))

    @property
    def dtype(self):
        return np.asarray(value_of(self)).dtype

    @property
    def T(self):

        return _ops.transpose(self)

    def __len__(self) -> int:
        return len(value_of(self))

    # NOTE [ No silent detaching ]: a Python number or a plain array made from a traced value would carry
    # no derivative, so every later use of it would be silently treated as a constant (x * float(x) would
    # differentiate to x). Each conversion raises instead and names the explicit way to take the value.
    def _conversion(self, what: str):
        return TypeError(
            f"revolve.ad: {what} of a traced value would detach it from differentiation (its derivative would "
            f"silently be lost); keep it a traced value and use revolve.ad functions on it, or, if the value is "
            f"meant as a constant, say so with revolve.ad.stop_gradient(x) (a plain numpy array) and convert that"
        )

    def __bool__(self):
        raise self._conversion("bool() (an `if` or `while` on it)")

    def __float__(self):
        raise self._conversion("float()")

    def __int__(self):
        raise self._conversion("int()")

    def __index__(self):
        raise self._conversion("use as an index (operator.index)")

    def __complex__(self):
        raise self._conversion("complex()")

    def item(self, *args):
        raise self._conversion(".item()")

    def tolist(self):
        raise self._conversion(".tolist()")

    def __array__(self, dtype=None, copy=None):
        raise self._conversion("conversion to a numpy array (np.asarray, np.array or a numpy function without "
                               "a revolve.ad rule)")

    # -- numpy's protocols: np.sin(u), np.roll(u, 1), ... on a tracer run the engine's ops (numpy_dispatch.py)
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from .numpy_dispatch import dispatch_ufunc

        return dispatch_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from .numpy_dispatch import dispatch_function

        return dispatch_function(func, args, kwargs)

    # -- operators ------------------------------------------------------------------------------------
    def __add__(self, o):
        return _ops.add(self, o)

    def __radd__(self, o):
        return _ops.add(o, self)

    def __sub__(self, o):
        return _ops.subtract(self, o)

    def __rsub__(self, o):
        return _ops.subtract(o, self)

    def __mul__(self, o):
        return _ops.multiply(self, o)

    def __rmul__(self, o):
        return _ops.multiply(o, self)

    def __truediv__(self, o):
        return _ops.divide(self, o)

    def __rtruediv__(self, o):
        return _ops.divide(o, self)

    def __pow__(self, o):
        return _ops.power(self, o)

    def __rpow__(self, o):
        return _ops.power(o, self)

    def __matmul__(self, o):
        return _ops.matmul(self, o)

    def __rmatmul__(self, o):
        return _ops.matmul(o, self)

    def __neg__(self):
        return _ops.negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops.abs(self)

    def __getitem__(self, idx):
        return _ops.getitem(self, idx)

    # comparisons are not differentiable: they act on the values and return boolean arrays
    def __lt__(self, o):
        return value_of(self) < value_of(o)

    def __le__(self, o):
        return value_of(self) <= value_of(o)

    def __gt__(self, o):
        return value_of(self) > value_of(o)

    def __ge__(self, o):
        return value_of(self) >= value_of(o)

    def __eq__(self, o):
        return value_of(self) == value_of(o)

    def __ne__(self, o):
        return value_of(self) != value_of(o)

    __hash__ = object.__hash__

    # -- numpy-like methods -----------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        return _ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return _ops.mean(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        return _ops.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def transpose(self, *axes):
        return _ops.transpose(self, axes if axes else None)

    # each method below runs numpy's function of the same name, which dispatches to the engine's
    # (numpy_dispatch.py), so a method takes exactly numpy's arguments and refuses the same unsupported ones
    def max(self, axis=None, out=None, keepdims=False, **kwargs):
        return np.max(self, axis=axis, out=out, keepdims=keepdims, **kwargs)

    def min(self, axis=None, out=None, keepdims=False, **kwargs):
        return np.min(self, axis=axis, out=out, keepdims=keepdims, **kwargs)

    def prod(self, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        return np.prod(self, axis=axis, dtype=dtype, out=out, keepdims=keepdims, **kwargs)

    def cumsum(self, axis=None, dtype=None, out=None):
        return np.cumsum(self, axis=axis, dtype=dtype, out=out)

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kwargs):
        return np.var(self, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims, **kwargs)

    def std(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kwargs):
        return np.std(self, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims, **kwargs)

    def clip(self, min=None, max=None, out=None, **kwargs):  # noqa: A002 - numpy's names
        return np.clip(self, min, max, out=out, **kwargs)

    def squeeze(self, axis=None):
        return np.squeeze(self, axis=axis)

    def ravel(self, order="C"):
        return np.ravel(self, order=order)

    def flatten(self, order="C"):
        return np.ravel(self, order=order)  # a traced value is never changed in place, so no copy is needed

    def copy(self, order="C"):
        return self  # traced values are immutable: the copy and the original cannot diverge

    def dot(self, b, out=None):
        return np.dot(self, b, out=out)

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        return _ops.astype(self, dtype)

    def conj(self):
        return _ops.conj(self)

    conjugate = conj

    @property
    def real(self):
        return _ops.real(self)

    @property
    def imag(self):
        return _ops.imag(self)

    def __setitem__(self, idx, value):
        raise TypeError(
            "revolve.ad: item assignment (u[idx] = v) on a traced value would change it in place, which the tape "
            "cannot follow; write the functional update u = revolve.ad.at(u)[idx].set(v) (or .add(v) for u[idx] += v)"
        )


class Node:
    """One recorded primitive application: enough to run its VJP rule later."""

    __slots__ = ("prim", "args", "params", "parents", "out")

    def __init__(self, prim, args, params, parents, out):
        self.prim = prim
        self.args = args  # the arguments one level down (numpy arrays or lower-level tracers)
        self.params = params
        self.parents = parents  # [(argument position, tape index)] for the arguments traced at this level
        self.out = out


class Tape:
    """The nodes of one reverse-mode level, in execution order (a topological order by construction)."""

    __slots__ = ("level", "nodes", "held")

    def __init__(self):
        self.level = next(_levels)
        self.nodes: list[Node | None] = []  # None marks an input
        self.held: list[np.ndarray] = []  # the caller's constant arrays made read-only while this tape lives

    def hold(self, v) -> None:
        """Keep a constant array (a closure's, the caller's) read-only while this tape lives (NOTE [ Arrays a
        tape keeps ] in transforms.py); its flag comes back when the last tape holding it is freed."""
        if not (isinstance(v, np.ndarray) and v.flags.writeable):
            if isinstance(v, np.ndarray) and id(v) in _held:
                _held[id(v)][1] += 1
                self.held.append(v)
            return
        v.setflags(write=False)
        _held[id(v)] = [v, 1]
        self.held.append(v)

    def __del__(self):
        for v in self.held:
            entry = _held.get(id(v))
            if entry is None or entry[0] is not v:
                continue
            entry[1] -= 1
            if entry[1] == 0:
                del _held[id(v)]
                try:
                    v.flags.writeable = True
                except ValueError:  # its base became read-only meanwhile: leave it so
                    pass

    def new_input(self, value) -> "RevTracer":
        self.nodes.append(None)
        return RevTracer(value, self, len(self.nodes) - 1)

    def retained_bytes(self, exclude: set[int] | frozenset = frozenset(), also: tuple = ()) -> int:
        """Bytes the tape keeps alive for the backward pass: the distinct arrays it keeps (a view counts its
        base once) and every Python object of its own (nodes, their argument lists, parameters, shape-only
        stand-ins, scalars, residuals), so that steps of many scalar operations are sized honestly.

        ``exclude`` holds ids of arrays not to count (e.g. parameters that live anyway); ``also``, objects
        kept beside the tape (a pullback's own fields), counted with it, each object once.
        """
        acc = _Sizes(exclude)
        for o in also:
            acc.add(o)
        nodes = self.nodes
        total = sys.getsizeof(self) + sys.getsizeof(nodes)
        getsizeof, add = sys.getsizeof, acc.add
        for node in nodes:
            if node is not None:
                # a node, its argument tuple, its parameter dict and its parent pairs are made for it alone
                # (``RevTracer.process``): counted here, without a row; what they hold may be shared
                args, params, parents = node.args, node.params, node.parents
                total += getsizeof(node) + getsizeof(args) + getsizeof(parents)
                for v in args:
                    add(v)
                if params is not _NO_PARAMS:
                    total += getsizeof(params)
                    for v in params.values():
                        add(v)
                for pair in parents:
                    total += getsizeof(pair)
                    add(pair[1])  # the tape index (the position is a small int)
                add(node.out)
        return total + acc.total()

    def backward(self, seeds: dict[int, Any], needed: list[int]) -> list[Any]:
        """Propagate cotangents ``seeds`` (tape index -> cotangent) back to the tape indices ``needed``."""
        from .ops import add, negative, p_add, p_neg, p_sub, subtract

        nodes = self.nodes
        cts: list[Any] = [None] * len(nodes)
        # arrays this pass made (NOTE [ Cotangents written in place ] in rules.py), by id: how many cotangent
        # slots hold each (itself, a view of it, or it negated: NOTE [ Negated cotangents ]); a slot that is the
        # only holder may add into it and its node's rule may write into it
        ours: dict[int, int] | None = {}
        ndarray = np.ndarray
        for i, g in seeds.items():
            cts[i] = g if cts[i] is None else add(cts[i], g)
        for i in range(len(nodes) - 1, -1, -1):
            node = nodes[i]
            g = cts[i]
            if node is None or g is None:
                continue
            cts[i] = None  # free as we go
            prim, args, parents = node.prim, node.args, node.parents
            want = [False] * len(args)
            for pos, _ in parents:
                want[pos] = True
            grads = None
            negate = False
            gv = g.value if type(g) is Negated else g
            held = _key(gv, ours)  # the array of this pass that this slot held (or viewed)
            if held is not None and not prim.builtin:
                del ours[held]  # a user's rule (custom_vjp) may keep g: never write into it again
                held = None
            mine = held is not None and ours[held] == 1 and gv.flags.writeable
            if type(g) is Negated:  # -g.value (plain numpy: only first-order rules leave negations)
                g = g.value
                if prim is p_neg:
                    grads = (g,)  # -(-a) = a
                elif prim.odd and _plain(args):
                    negate = True  # rule(-a) = -rule(a): run the rule on a, negate what it returns
                elif mine:
                    g = bind(p_neg, g, out=g)
                else:
                    g = negative(g)
                    if type(g) is ndarray and ours is not None:  # a fresh negation is this pass's too
                        if held is not None:
                            _release(held, ours)
                        held = id(g)
                        ours[held] = 1
                        mine = True
            if grads is None:
                lazy, into = prim.vjp_lazy, prim.vjp_into
                if (lazy is not None or mine and into is not None) and not isinstance(g, Tracer) and _plain(args):
                    grads = (lazy or into)(g, node.out, want, *args, **node.params)
                if grads is None:
                    grads = prim.vjp(g, node.out, want, *args, **node.params)
                if negate:
                    grads = [None if c is None else c.value if type(c) is Negated else Negated(c) for c in grads]
            for pos, j in parents:
                c = grads[pos]
                if c is None:
                    continue
                cn = type(c) is Negated
                cv = c.value if cn else c
                cur = cts[j]
                if cur is None:
                    cts[j] = c
                    if type(cv) is ndarray and ours is not None:
                        base = cv.base
                        if base is None:
                            if id(cv) in ours:
                                ours[id(cv)] += 1
                            elif cv is not g and prim.builtin and cv is not node.out and _not_in(cv, args):
                                ours[id(cv)] = 1  # a fresh array of a built-in rule
                        elif type(base) is not ndarray:
                            ours = None  # a view whose owner numpy does not say: no more writing in place
                        elif id(base) in ours:
                            ours[id(base)] += 1  # every view counts, read-only ones too
                    continue
                un = type(cur) is Negated
                uv = cur.value if un else cur
                key = _key(uv, ours)
                fits = (key is not None and ours[key] == 1 and uv.flags.writeable and type(cv) is ndarray
                        and cv.shape == uv.shape and cv.dtype == uv.dtype)
                # each sum bitwise the one the negations written out would give: a + (-b) = a - b,
                # (-a) + b = b - a, (-a) + (-b) = -(a + b)
                if un == cn:
                    if fits:
                        bind(p_add, uv, cv, out=uv)
                        continue
                    total = add(uv, cv)
                    cts[j] = Negated(total) if un else total
                elif cn:
                    if fits:
                        bind(p_sub, uv, cv, out=uv)
                        continue
                    total = cts[j] = subtract(uv, cv)
                else:
                    if fits:
                        cts[j] = bind(p_sub, cv, uv, out=uv)
                        continue
                    total = cts[j] = subtract(cv, uv)
                if key is not None:
                    _release(key, ours)
                if type(total) is ndarray and ours is not None:
                    ours[id(total)] = 1
            if held is not None:
                _release(held, ours)  # after the parents took what they hold of it
        out = []
        for i in needed:
            g = cts[i]
            if type(g) is Negated:
                key = _key(g.value, ours)
                g = cts[i] = (bind(p_neg, g.value, out=g.value) if key is not None and ours[key] == 1
                              and g.value.flags.writeable else negative(g.value))
            out.append(g)
        return out


def _key(v, ours: dict | None):
    """The id of the array of this pass that v is or views (None if none: NOTE [ Cotangents written in place ])."""
    if ours is None or type(v) is not np.ndarray:
        return None
    base = v.base
    key = id(v) if base is None else id(base)
    return key if key in ours else None


def _release(key: int, ours: dict | None) -> None:
    if ours is None:
        return
    n = ours[key] - 1
    if n:
        ours[key] = n
    else:
        del ours[key]


class Negated:
    """A cotangent held as -value until it is needed (NOTE [ Negated cotangents ] in rules.py)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _plain(args) -> bool:
    """True when no argument is a tracer (first order: the rule's operands are numpy values)."""
    for a in args:
        if isinstance(a, Tracer):
            return False
    return True


def _not_in(c, args) -> bool:
    """True when c is none of ``args`` (by identity)."""
    for a in args:
        if a is c:
            return False
    return True


class RevTracer(Tracer):
    """A value traced by reverse mode: its value and its index on its level's tape."""

    __slots__ = ("value", "tape", "index")

    def __init__(self, value, tape: Tape, index: int):
        self.value = value
        self.tape = tape
        self.index = index

    @property
    def level(self) -> int:
        return self.tape.level

    def _primal(self):
        return self.value

    def process(self, prim, args, params):
        if prim.vjp is None:
            raise NotImplementedError(f"revolve.ad: primitive '{prim.name}' has no reverse-mode (VJP) rule")
        tape = self.tape
        vals = []
        parents = []
        for pos, a in enumerate(args):
            if isinstance(a, RevTracer) and a.tape is tape:
                vals.append(a.value)
                parents.append((pos, a.index))
            else:
                vals.append(a)
        parents = tuple(parents)  # what the node keeps is as small as Python allows: tuples, shared Metas
        if prim.fwd is not None:  # a custom_vjp: its forward rule computes the output and the residuals to keep
            out, residuals = prim.fwd(vals, params)
            params = {**params, "_residuals": residuals}
        else:
            out = bind(prim, *vals, **params)
        # keep only what the VJP rule reads for the arguments traced here (rules.RETAIN), so that the tape
        # does not hold every intermediate array
        keep, keep_out = prim.kept(parents)
        if keep is None:
            kept = tuple(vals)
        else:
            kept = tuple([v if k in keep or not isinstance(v, (np.ndarray, Tracer)) else _slim(v)
                          for k, v in enumerate(vals)])
        # NOTE [ Arrays a tape keeps ] (transforms.py): what the tape keeps of this level's values is made
        # read-only, so nothing can change it before the pullback reads it; a constant array it keeps is held
        # read-only while the tape lives
        for k, v in enumerate(kept):
            if isinstance(v, np.ndarray):
                if any(pos == k for pos, _ in parents):
                    _freeze(v)
                else:
                    tape.hold(v)
        if keep_out:
            _freeze(out)
        tape.nodes.append(Node(prim, kept, params or _NO_PARAMS, parents, out if keep_out else _slim(out)))
        return RevTracer(out, tape, len(tape.nodes) - 1)

    def __repr__(self) -> str:
        return f"RevTracer(level={self.level}, shape={self.shape})"


class JVPTracer(Tracer):
    """A value traced by forward mode: its primal and its tangent (None for zero) at one level."""

    __slots__ = ("primal", "tangent", "level")

    def __init__(self, primal, tangent, level: int):
        self.primal = primal
        self.tangent = tangent
        self.level = level

    def _primal(self):
        return self.primal

    def process(self, prim, args, params):
        if prim.jvp is None:
            raise NotImplementedError(f"revolve.ad: primitive '{prim.name}' has no forward-mode (JVP) rule")
        level = self.level
        primals = []
        tangents = []
        for a in args:
            if isinstance(a, JVPTracer) and a.level == level:
                primals.append(a.primal)
                tangents.append(a.tangent)
            else:
                primals.append(a)
                tangents.append(None)
        out = bind(prim, *primals, **params)
        t = prim.jvp(tangents, out, *primals, **params)
        if t is None:
            return out
        return JVPTracer(out, t, level)

    def __repr__(self) -> str:
        return f"JVPTracer(level={self.level}, shape={self.shape})"


class CountTracer(Tracer):
    """A pass-through tracer: routes numpy operators through the engine so that ``cost`` sees every op."""

    __slots__ = ("value", "level")

    def __init__(self, value, level: int):
        self.value = value
        self.level = level

    def _primal(self):
        return self.value

    def process(self, prim, args, params):
        level = self.level
        vals = [a.value if isinstance(a, CountTracer) and a.level == level else a for a in args]
        return CountTracer(bind(prim, *vals, **params), level)


from . import ops as _ops  # noqa: E402 - last: ops imports this module (the operators above use it)
