"""Sparse Jacobians at scale: patterns found by propagating index sets through one trace, columns colored on
index arrays, one JVP per color, the result as a sparse matrix.

Three steps, each usable alone:

1. ``jacobian_sparsity(f, x)`` runs f once on a tracer that carries, for every element of every traced
   value, the set of inputs it may depend on (a CSR array: row = element, columns = inputs). Each primitive
   has a pattern rule (NOTE [ Sparsity rules ]); the result is a ``SparsityPattern`` of index arrays.
2. ``color_columns(pattern)`` partitions the columns into structurally orthogonal groups (no two columns
   of a group share a row; Curtis, Powell and Reid 1974): a distance-2 coloring of the column graph.
3. ``sparse_jacobian(f, x)`` takes one JVP per color and reads each entry off the JVP of its column's
   color. It returns a ``scipy.sparse.csr_matrix`` when scipy is installed, a ``SparseJacobian`` (COO:
   rows, cols, values, shape) otherwise; scipy stays optional and is imported only here, lazily.

No step ever builds a dense (outputs x inputs) array.

NOTE [ Sparsity rules ]: a pattern must be CONSERVATIVE: it may hold entries that are zero, never miss one
that is not (a missed entry would be read off a JVP it does not belong to: a silently wrong Jacobian).
- The pattern is global: it holds for every x at which f runs the same primitives. ``where(c, a, b)``
  depends on a and b whatever c is; ``amax`` on every element it reduces, not only the maximum; a
  multiplication by a traced or constant zero keeps the dependency.
- Exception, for products with constants: ``matmul`` and ``einsum`` use the exact zeros of a constant
  operand (``A @ u`` with a banded constant A has A's band as its pattern). Where a derivative is not
  finite (inf * 0), the dense Jacobian holds a NaN there and this one puts the NaN on another entry of the
  same row: the row shows NaN either way.
- A primitive without a rule (a ``custom_vjp``/``custom_jvp`` function, a primitive added later) makes
  every element of its output depend on every input of its traced arguments (correct, only denser) and
  warns once per call of ``jacobian_sparsity``, naming the primitive.
- Values still flow: f runs on the true values at x, so value-dependent code (``relu``, ``clip``,
  ``ad.at``) runs as it does under ``jvp``. Control flow on values needs ``ad.stop_gradient`` as always;
  the pattern then holds for the branch taken at x.

References:
    A. R. Curtis, M. J. D. Powell, J. K. Reid. On the estimation of sparse Jacobian matrices. IMA J. Appl.
    Math. 13(1):117-119, 1974. doi:10.1093/imamat/13.1.117
    T. F. Coleman, J. J. More. Estimation of sparse Jacobian matrices and graph coloring problems. SIAM J.
    Numer. Anal. 20(1):187-209, 1983. doi:10.1137/0720013
    D. Brelaz. New methods to color the vertices of a graph. Commun. ACM 22(4):251-256, 1979.
    doi:10.1145/359094.359101
    J. C. Culberson. Iterated greedy graph coloring and the difficulty landscape. Tech. rep. TR 92-07,
    University of Alberta, 1992.
    A. H. Gebremedhin, F. Manne, A. Pothen. What color is your Jacobian? Graph coloring for computing
    derivatives. SIAM Review 47(4):629-705, 2005. doi:10.1137/S0036144504444711
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import core, ops
from .core import Tracer, bind, shape_of, value_of

__all__ = ["SparsityPattern", "SparseJacobian", "jacobian_sparsity", "color_columns", "sparse_jacobian"]

_I = np.int64


# ---- public containers ------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class SparsityPattern:
    """The nonzero pattern of an (m, n) Jacobian as index arrays: entry k is at (rows[k], cols[k]).

    Entries are unique and sorted by row, then column (CSR order), so ``indptr`` gives each row's slice.
    Build one from index arrays with ``SparsityPattern(rows, cols, shape)`` (duplicates are merged), or
    from a dense boolean array or a scipy sparse matrix with ``SparsityPattern.of(p)``.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> P = ad.SparsityPattern([0, 0, 1], [1, 0, 1], (2, 3))
        >>> P.rows, P.cols, P.nnz
        (array([0, 0, 1]), array([0, 1, 1]), 3)
        >>> P.toarray().astype(int)
        array([[1, 1, 0],
               [0, 1, 0]])
    """

    rows: np.ndarray
    cols: np.ndarray
    shape: tuple

    def __post_init__(self):
        where = "revolve.ad.SparsityPattern"
        shape = self.shape
        if (not isinstance(shape, (tuple, list)) or len(shape) != 2
                or not all(isinstance(s, (int, np.integer)) and s >= 0 for s in shape)):
            raise ValueError(f"{where}: shape must be a pair of sizes >= 0 (outputs, inputs), got {shape!r}")
        m, n = int(shape[0]), int(shape[1])
        rows, cols = np.asarray(self.rows), np.asarray(self.cols)
        for name, a, bound in (("rows", rows, m), ("cols", cols, n)):
            if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
                raise ValueError(f"{where}: {name} must be a 1-D integer array, got dtype {a.dtype}, shape {a.shape}")
            if a.size and (a.min() < 0 or a.max() >= bound):
                raise ValueError(f"{where}: {name} must lie in [0, {bound}) for shape {(m, n)}, got values in "
                                 f"[{a.min()}, {a.max()}]")
        if rows.shape != cols.shape:
            raise ValueError(f"{where}: rows and cols must have the same length, got {rows.size} and {cols.size}")
        key = _sorted_unique(rows.astype(_I) * max(n, 1) + cols.astype(_I))
        object.__setattr__(self, "rows", key // max(n, 1))
        object.__setattr__(self, "cols", key % max(n, 1))
        object.__setattr__(self, "shape", (m, n))

    @classmethod
    def _trusted(cls, rows, cols, shape) -> "SparsityPattern":
        """A pattern from index arrays already unique and in CSR order (no checks)."""
        p = object.__new__(cls)
        object.__setattr__(p, "rows", rows)
        object.__setattr__(p, "cols", cols)
        object.__setattr__(p, "shape", (int(shape[0]), int(shape[1])))
        return p

    @classmethod
    def of(cls, pattern, *, where: str = "revolve.ad.SparsityPattern.of", name: str = "pattern") -> "SparsityPattern":
        """A pattern from a ``SparsityPattern``, a scipy sparse matrix (its stored entries) or a dense 2-D
        array (its nonzeros; the old boolean form)."""
        if isinstance(pattern, SparsityPattern):
            return pattern
        if hasattr(pattern, "tocoo") and hasattr(pattern, "shape"):  # scipy.sparse, without importing it
            coo = pattern.tocoo()
            return cls(np.asarray(coo.row, dtype=_I), np.asarray(coo.col, dtype=_I), tuple(coo.shape))
        if isinstance(pattern, Tracer):
            raise TypeError(f"{where}: {name} must be a pattern, not a traced value")
        try:
            arr = np.asarray(pattern)
        except Exception as e:  # noqa: BLE001 - reported with the argument's name
            raise TypeError(f"{where}: {name} must be a SparsityPattern, a scipy sparse matrix or a 2-D boolean "
                            f"array, got {type(pattern).__name__}") from e
        if arr.ndim != 2 or arr.dtype == object:
            raise ValueError(f"{where}: {name} must be 2-D (outputs x inputs) when given as an array, got shape "
                             f"{arr.shape} (dtype {arr.dtype})")
        r, c = np.nonzero(arr)
        return cls._trusted(r.astype(_I), c.astype(_I), arr.shape)

    @property
    def nnz(self) -> int:
        """Number of entries."""
        return int(self.rows.size)

    @property
    def indptr(self) -> np.ndarray:
        """CSR row pointers: row i's entries are ``slice(indptr[i], indptr[i + 1])``."""
        out = np.zeros(self.shape[0] + 1, dtype=_I)
        np.cumsum(np.bincount(self.rows, minlength=self.shape[0]), out=out[1:])
        return out

    @property
    def max_row_nnz(self) -> int:
        """The most entries in one row: a lower bound on the colors any column coloring needs."""
        return int(np.bincount(self.rows, minlength=1).max()) if self.nnz else 0

    def toarray(self) -> np.ndarray:
        """The dense boolean (m, n) array (for small patterns and tests)."""
        out = np.zeros(self.shape, dtype=bool)
        out[self.rows, self.cols] = True
        return out

    def tocsr(self):
        """A boolean ``scipy.sparse.csr_matrix`` (needs scipy)."""
        sp = _scipy_sparse()
        if sp is None:
            raise ImportError("revolve.ad.SparsityPattern.tocsr needs scipy; use rows, cols and indptr instead")
        return sp.csr_matrix((np.ones(self.nnz, dtype=bool), self.cols, self.indptr), shape=self.shape)

    def __repr__(self) -> str:
        return f"SparsityPattern(shape={self.shape}, nnz={self.nnz})"


@dataclass(frozen=True, eq=False)
class SparseJacobian:
    """A sparse Jacobian in COO form, returned by ``sparse_jacobian`` when scipy is not installed.

    ``values[k]`` is the entry at ``(rows[k], cols[k])`` of the ``shape`` = (outputs, inputs) matrix; entries
    are unique and in CSR order. ``J @ v`` multiplies by a vector (or a matrix of columns), ``toarray()``
    gives the dense matrix and ``tocsr()`` a scipy matrix when scipy is available.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> J = ad.SparseJacobian(np.array([0, 1]), np.array([1, 1]), np.array([2.0, 3.0]), (2, 2))
        >>> J @ np.array([1.0, 1.0])
        array([2., 3.])
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple

    @property
    def dtype(self):
        """The values' dtype."""
        return self.values.dtype

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return int(self.values.size)

    def toarray(self) -> np.ndarray:
        """The dense (m, n) matrix."""
        out = np.zeros(self.shape, dtype=self.values.dtype)
        out[self.rows, self.cols] = self.values
        return out

    def tocsr(self):
        """The same matrix as a ``scipy.sparse.csr_matrix`` (needs scipy)."""
        sp = _scipy_sparse()
        if sp is None:
            raise ImportError("revolve.ad.SparseJacobian.tocsr needs scipy")
        return sp.csr_matrix((self.values, (self.rows, self.cols)), shape=self.shape)

    def __matmul__(self, v):
        v = np.asarray(v)
        if v.shape[:1] != (self.shape[1],):
            raise ValueError(f"revolve.ad.SparseJacobian: cannot multiply a {self.shape} matrix by shape {v.shape}")
        contrib = self.values.reshape((-1,) + (1,) * (v.ndim - 1)) * v[self.cols]
        out = np.zeros((self.shape[0],) + v.shape[1:], dtype=np.result_type(self.values, v))
        np.add.at(out, self.rows, contrib)
        return out

    def __repr__(self) -> str:
        return f"SparseJacobian(shape={self.shape}, nnz={self.nnz}, dtype={self.values.dtype})"


def _scipy_sparse():
    """scipy.sparse if importable, else None (scipy is optional)."""
    try:
        import scipy.sparse as sp
    except ImportError:
        return None
    return sp


# ---- index sets: for each element of a value, the inputs it may depend on (CSR) ---------------------

class _Deps:
    """Row i (element i of a value, C order) may depend on inputs ``indices[indptr[i]:indptr[i + 1]]``
    (sorted and unique within a row)."""

    __slots__ = ("indptr", "indices")

    def __init__(self, indptr, indices):
        self.indptr = indptr
        self.indices = indices

    @property
    def size(self) -> int:
        return self.indptr.size - 1

    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)


def _empty(size: int) -> _Deps:
    return _Deps(np.zeros(size + 1, dtype=_I), np.zeros(0, dtype=_I))


def _gather(d: _Deps, pos) -> _Deps:
    """Row k of the result is row ``pos[k]`` of d (pos < 0: no dependency)."""
    pos = np.asarray(pos, dtype=_I).ravel()
    valid = pos >= 0
    safe = np.where(valid, pos, 0)
    c = np.where(valid, d.counts()[safe] if d.size else 0, 0)
    indptr = np.zeros(pos.size + 1, dtype=_I)
    np.cumsum(c, out=indptr[1:])
    total = int(indptr[-1])
    if total == 0:
        return _Deps(indptr, np.zeros(0, dtype=_I))
    src = np.arange(total, dtype=_I) + np.repeat(d.indptr[safe] - indptr[:-1], c)
    return _Deps(indptr, d.indices[src])


def _sorted_unique(key: np.ndarray) -> np.ndarray:
    """The distinct values of an integer array, sorted (a sort and a mask: faster than numpy's hash unique)."""
    key = np.sort(key)
    if key.size > 1:
        keep = np.empty(key.size, dtype=bool)
        keep[0] = True
        np.not_equal(key[1:], key[:-1], out=keep[1:])
        key = key[keep]
    return key


def _from_pairs(rows, cols, nrows: int, ncols: int) -> _Deps:
    """The CSR set of the (row, input) pairs, duplicates merged."""
    if rows.size == 0:
        return _empty(nrows)
    w = max(ncols, 1)
    key = _sorted_unique(rows * w + cols)
    r = key // w
    indptr = np.zeros(nrows + 1, dtype=_I)
    np.cumsum(np.bincount(r, minlength=nrows), out=indptr[1:])
    return _Deps(indptr, key - r * w)


def _relate(pairs, nrows: int, ncols: int) -> _Deps:
    """Output row ``out[k]`` depends on every input of row ``src[k]`` of d, for each (d, out, src) in pairs.

    ``src`` None: every row of d in order; ``out`` None: out[k] = k (one source row per output row)."""
    pairs = [p for p in pairs if p[0].indices.size]
    if not pairs:
        return _empty(nrows)
    if len(pairs) == 1 or all(p[0] is pairs[0][0] and p[1] is None and p[2] is None for p in pairs):
        d, out, src = pairs[0]
        if out is None:
            return d if src is None else _gather(d, src)
    rs, cs = [], []
    for d, out, src in pairs:
        g = d if src is None else _gather(d, src)
        r = np.repeat(np.arange(g.size, dtype=_I) if out is None else np.asarray(out, dtype=_I).ravel(), g.counts())
        rs.append(r)
        cs.append(g.indices)
    return _from_pairs(np.concatenate(rs), np.concatenate(cs), nrows, ncols)


def _vstack(ds) -> _Deps:
    """The rows of several index sets, one after the other."""
    if len(ds) == 1:
        return ds[0]
    ptrs, offset = [np.zeros(1, dtype=_I)], 0
    for d in ds:
        ptrs.append(d.indptr[1:] + offset)
        offset += int(d.indptr[-1])
    return _Deps(np.concatenate(ptrs), np.concatenate([d.indices for d in ds]))


def _positions(shape) -> np.ndarray:
    return np.arange(int(np.prod(shape, dtype=_I)), dtype=_I).reshape(shape)


def _size(shape) -> int:
    return int(np.prod(shape, dtype=_I))


# ---- NOTE [ Sparsity rules ]: one rule per primitive (module docstring) -------------------------------
# A rule gets the output value, the arguments' values, their index sets (None: a constant), the params and
# the number of inputs; it returns the output's index set.

def _rule_elementwise(out, vals, deps, params, n):
    shape = np.shape(out)
    pairs = []
    for v, d in zip(vals, deps):
        if d is None:
            continue
        s = shape_of(v)
        pairs.append((d, None, None if tuple(s) == tuple(shape) else np.broadcast_to(_positions(s), shape).ravel()))
    return _relate(pairs, _size(shape), n)


def _rule_zero(out, vals, deps, params, n):  # the derivative is 0 everywhere (sign)
    return _empty(_size(np.shape(out)))


def _rule_index_map(prim):
    """Each output element is one element of the arguments or a constant: run the primitive on positions."""

    def rule(out, vals, deps, params, n):
        offset, pos_args, stacked = 0, [], []
        for v, d in zip(vals, deps):
            s = shape_of(v)
            if d is None:
                pos_args.append(np.full(s, -1, dtype=_I))
            else:
                pos_args.append(np.arange(offset, offset + d.size, dtype=_I).reshape(s))
                stacked.append(d)
                offset += d.size
        pos = np.asarray(prim.impl(*pos_args, **params))
        return _gather(_vstack(stacked), pos.ravel())

    return rule


def _rule_scatter(out, vals, deps, params, n):  # scatter_add(g, idx, shape): out[idx] += g
    (g,), (d,) = vals, deps
    shape = params["shape"]
    size = _size(shape)
    target = np.asarray(_positions(shape)[params["idx"]])
    src = np.broadcast_to(_positions(shape_of(g)), target.shape).ravel()
    target = target.ravel()
    inverse = np.full(size, -1, dtype=_I)
    inverse[target] = src
    if np.count_nonzero(inverse >= 0) == target.size:  # each output at most once: a plain gather
        return _gather(d, inverse)
    return _relate([(d, target, src)], size, n)


def _kept_shape(shape, axes):
    return tuple([1 if i in axes else s for i, s in enumerate(shape)])


def _rule_reduction(out, vals, deps, params, n):
    (x,), (d,) = vals[:1], deps[:1]
    shape = shape_of(x)
    axes = params.get("axis")
    axes = tuple(range(len(shape))) if axes is None else tuple(axes)
    kshape = _kept_shape(shape, axes)
    groups = np.broadcast_to(_positions(kshape), shape).ravel()
    return _relate([(d, groups, None)], _size(kshape), n)


def _rule_logabsdet(out, vals, deps, params, n):
    shape = shape_of(vals[0])
    return _rule_reduction(out, vals, deps, {"axis": (len(shape) - 2, len(shape) - 1)}, n)


def _rule_cumsum(out, vals, deps, params, n):
    (x,), (d,) = vals, deps
    shape = shape_of(x)
    axis = params["axis"]
    length = shape[axis]
    pos = np.moveaxis(_positions(shape), axis, -1).reshape(-1, length)
    i, j = np.tril_indices(length)
    return _relate([(d, pos[:, i].ravel(), pos[:, j].ravel())], _size(shape), n)


def _rule_along_axis(out, vals, deps, params, n):
    """fft, ifft, rfft, irfft: each output element depends on its whole line along ``axis``."""
    (x,), (d,) = vals, deps
    shape, oshape = shape_of(x), np.shape(out)
    kshape = _kept_shape(shape, (params["axis"],))
    line = _relate([(d, np.broadcast_to(_positions(kshape), shape).ravel(), None)], _size(kshape), n)
    return _gather(line, np.broadcast_to(_positions(kshape), oshape).ravel())


def _rule_solve(out, vals, deps, params, n):
    """x = a^-1 b, (..., M, K): x[B, :, k] depends on all of a[B] and on b[B, :, k] (a^-1 is dense)."""
    oshape = np.shape(out)
    pairs = []
    for v, d, axes in zip(vals, deps, ((-2, -1), (-2,))):
        if d is None:
            continue
        s = shape_of(v)
        kshape = _kept_shape(s, tuple([a % len(s) for a in axes]))
        red = _relate([(d, np.broadcast_to(_positions(kshape), s).ravel(), None)], _size(kshape), n)
        pairs.append((red, None, np.broadcast_to(_positions(kshape), oshape).ravel()))
    return _relate(pairs, _size(oshape), n)


def _to_space(arr, letters: str, space: str) -> np.ndarray:
    """``arr`` (axes named by ``letters``) as an array over the axes ``space`` (size 1 where absent)."""
    order = sorted(range(len(letters)), key=lambda i: space.index(letters[i]))
    a = np.transpose(arr, order)
    shape = [1] * len(space)
    for i in order:
        shape[space.index(letters[i])] = arr.shape[i]
    return a.reshape(shape)


def _rule_product(operand_letters, out_letters, out, vals, deps, n):
    """out[o] = sum over the other letters of the product of the operands (matmul, einsum): out[o] depends on
    operand k's elements wherever every constant operand is nonzero (NOTE [ Sparsity rules ])."""
    space = out_letters + "".join(sorted(set("".join(operand_letters)) - set(out_letters)))
    sizes = {c: 1 for c in space}
    for letters, v in zip(operand_letters, vals):
        for c, s in zip(letters, shape_of(v)):
            sizes[c] = max(sizes[c], s)
    full = tuple([sizes[c] for c in space])
    support = np.ones((1,) * len(space), dtype=bool)
    for letters, v, d in zip(operand_letters, vals, deps):
        if d is None:
            support = support & _to_space(np.asarray(value_of(v)) != 0, letters, space)
    support = np.broadcast_to(support, full)
    oshape = np.shape(out)
    out_pos = np.broadcast_to(_to_space(_positions(tuple([sizes[c] for c in out_letters])), out_letters, space), full)
    out_rows = out_pos[support]
    pairs = []
    for letters, v, d in zip(operand_letters, vals, deps):
        if d is not None:
            src = np.broadcast_to(_to_space(_positions(shape_of(v)), letters, space), full)[support]
            pairs.append((d, out_rows, src))
    return _relate(pairs, _size(oshape), n)


def _rule_matmul(out, vals, deps, params, n):
    sa, sb = shape_of(vals[0]), shape_of(vals[1])
    nb = max(len(sa) - 2, len(sb) - 2, 0)
    batch = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:nb]
    la = "k" if len(sa) == 1 else batch[nb - (len(sa) - 2):] + "ik"
    lb = "k" if len(sb) == 1 else batch[nb - (len(sb) - 2):] + "kj"
    lo = batch + ("i" if len(sa) > 1 else "") + ("j" if len(sb) > 1 else "")
    return _rule_product([la, lb], lo, out, vals, deps, n)


def _rule_einsum(out, vals, deps, params, n):
    ins, lo = params["subscripts"].split("->")
    return _rule_product(ins.split(","), lo, out, vals, deps, n)


def _rule_fallback(out, vals, deps, params, n):
    """Every output element depends on every input of every traced argument (correct, only denser)."""
    every = _relate([(d, np.zeros(d.size, dtype=_I), None) for d in deps if d is not None], 1, n)
    return _gather(every, np.zeros(_size(np.shape(out)), dtype=_I))


def _build_rules() -> dict:
    p = ops.PRIMITIVES
    rules = {}
    for name in ("add", "subtract", "multiply", "divide", "negative", "power", "exp", "log", "sin", "cos", "tanh",
                 "sqrt", "abs", "maximum", "minimum", "where", "log1p", "expm1", "tan", "arctan", "arctan2", "sinh",
                 "cosh", "hypot", "astype", "real", "imag", "conj"):
        rules[p[name]] = _rule_elementwise
    rules[p["sign"]] = _rule_zero
    for name in ("reshape", "transpose", "getitem", "concatenate", "stack", "roll", "broadcast_to"):
        rules[p[name]] = _rule_index_map(p[name])
    rules[p["scatter_add"]] = _rule_scatter
    for name in ("sum", "amax", "amin", "prod", "norm2"):
        rules[p[name]] = _rule_reduction
    rules[p["logabsdet"]] = _rule_logabsdet
    rules[p["cumsum"]] = _rule_cumsum
    for name in ("fft", "rfft", "irfft"):
        rules[p[name]] = _rule_along_axis
    rules[p["solve"]] = _rule_solve
    rules[p["matmul"]] = _rule_matmul
    rules[p["einsum"]] = _rule_einsum
    return rules


_RULES: dict | None = None  # keyed by the Primitive object (a custom_vjp function may share a name)


class _IndexSetTracer(Tracer):
    """A value traced by ``jacobian_sparsity``: its value and, per element, the inputs it may depend on."""

    __slots__ = ("value", "deps", "level", "n", "unruled")

    def __init__(self, value, deps: _Deps, level: int, n: int, unruled: set):
        self.value = value
        self.deps = deps
        self.level = level
        self.n = n
        self.unruled = unruled  # names of primitives met without a rule (shared by the whole trace)

    def _primal(self):
        return self.value

    def process(self, prim, args, params):
        level = self.level
        vals, deps = [], []
        for a in args:
            if isinstance(a, _IndexSetTracer) and a.level == level:
                vals.append(a.value)
                deps.append(a.deps)
            else:
                vals.append(a)
                deps.append(None)
        out = bind(prim, *vals, **params)
        rule = _RULES.get(prim)
        if rule is None:
            if prim.name not in self.unruled:
                self.unruled.add(prim.name)
                warnings.warn(f"revolve.ad.jacobian_sparsity: primitive '{prim.name}' has no sparsity rule; every "
                              f"element of its output is taken to depend on every input of its traced arguments "
                              f"(correct, but denser)", stacklevel=3)
            rule = _rule_fallback
        d = rule(out, vals, deps, params, self.n)
        if d.size != _size(shape_of(out)):
            raise RuntimeError(f"revolve.ad.jacobian_sparsity: the sparsity rule of '{prim.name}' gave {d.size} "
                               f"rows for an output of shape {shape_of(out)} (a bug in revolve.ad)")
        return _IndexSetTracer(out, d, level, self.n, self.unruled)

    def __repr__(self) -> str:
        return f"_IndexSetTracer(level={self.level}, shape={self.shape})"


def _input(x, where: str) -> np.ndarray:
    from .transforms import _as_input

    if isinstance(x, Tracer):
        raise TypeError(f"{where}: x must be a plain array (sparse Jacobians are not differentiated further; use "
                        f"jacfwd or jacrev inside other transformations), got a traced value")
    return _as_input(x, where, "x")


def _trace(f: Callable, x: np.ndarray, where: str):
    """Run f once on index-set tracers: (its output value, the output's index set)."""
    global _RULES
    if _RULES is None:
        _RULES = _build_rules()
    n = int(x.size)
    level = next(core._levels)
    identity = _Deps(np.arange(n + 1, dtype=_I), np.arange(n, dtype=_I))
    y = f(_IndexSetTracer(x, identity, level, n, set()))
    if isinstance(y, (tuple, list, dict)):
        raise TypeError(f"{where}: f must return one array, got a {type(y).__name__}")
    if isinstance(y, _IndexSetTracer) and y.level == level:
        return np.asarray(value_of(y.value)), y.deps
    if isinstance(y, Tracer):
        raise TypeError(f"{where}: f returned a value traced by another transformation")
    y = np.asarray(y)
    return y, _empty(int(y.size))


def jacobian_sparsity(f: Callable, x) -> SparsityPattern:
    """The sparsity pattern of the Jacobian of f: R^n -> R^m, by one run of f on index-set tracers.

    Each element of each value f computes carries the set of inputs it may depend on; primitives combine
    the sets by their pattern rules (NOTE [ Sparsity rules ] in revolve/ad/sparse.py). The pattern is
    conservative: it never misses an entry that can be nonzero where f runs the same operations, and it
    may hold entries that happen to vanish. Costs about one evaluation of f plus O(entries) index work;
    never builds a dense (m, n) array.

    Arguments:
        f: a function of one array, returning one array (any shapes; rows and columns are the flattened
           output and input, C order).
        x: the point; f runs on its values (value-dependent code such as ``relu`` works as under ``jvp``).

    Returns:
        A ``SparsityPattern`` of shape (f(x).size, x.size).

    Raises:
        TypeError: x is not a floating point (or integer) array, or f returns a tuple, list or dict.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> P = ad.jacobian_sparsity(lambda u: u[1:] * u[:-1], np.ones(4))
        >>> P.toarray().astype(int)
        array([[1, 1, 0, 0],
               [0, 1, 1, 0],
               [0, 0, 1, 1]])
    """
    where = "revolve.ad.jacobian_sparsity"
    x = _input(x, where)
    y, d = _trace(f, x, where)
    return _pattern(d, int(x.size))


def _pattern(d: _Deps, n: int) -> SparsityPattern:
    rows = np.repeat(np.arange(d.size, dtype=_I), d.counts())
    return SparsityPattern._trusted(rows, d.indices, (d.size, n))


# ---- coloring ---------------------------------------------------------------------------------------

def _column_graph(P: SparsityPattern):
    """For each column v, the other columns sharing a row with it: (ptr, adj), CSR."""
    m, n = P.shape
    indptr = P.indptr
    rowlen = np.diff(indptr)
    by_col = np.argsort(P.cols, kind="stable")
    col_rows = P.rows[by_col]  # the rows of column 0, then of column 1, ...
    cnt = rowlen[col_rows]
    total = int(cnt.sum())
    ptr = np.zeros(n + 1, dtype=_I)
    np.cumsum(np.bincount(P.cols[by_col], weights=cnt, minlength=n).astype(_I), out=ptr[1:])
    starts = np.repeat(indptr[col_rows], cnt)
    offs = np.arange(total, dtype=_I) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    adj = P.cols[starts + offs]
    owner = np.repeat(np.arange(n, dtype=_I), np.diff(ptr))
    key = _sorted_unique(owner * n + adj)  # drop repeats and v itself: later passes touch each pair once
    v, w = key // n, key % n
    keep = v != w
    v, w = v[keep], w[keep]
    ptr = np.zeros(n + 1, dtype=_I)
    np.cumsum(np.bincount(v, minlength=n), out=ptr[1:])
    return ptr, w


_MAX_GRAPH = 40_000_000  # column-graph pairs (sum of squared row lengths) color_columns builds at most


def _greedy(ptr: list, adj: list, order, n: int) -> list:
    """Greedy coloring in ``order``: each column takes the least color no column sharing a row holds."""
    color = [-1] * n
    mark = [-1] * (n + 1)  # mark[c] == v: color c is taken next to v
    for v in order:
        for w in adj[ptr[v]:ptr[v + 1]]:
            c = color[w]
            if c >= 0:
                mark[c] = v
        c = 0
        while mark[c] == v:
            c += 1
        color[v] = c
    return color


def _dsatur(ptr: list, adj: list, n: int, start: int) -> list:
    """Brelaz's DSatur: color next the column whose neighbours hold the most distinct colors, with the least
    color free for it; saturation buckets (dicts, newest first) make each step O(degree)."""
    color = [-1] * n
    sat = [0] * n
    masks = [0] * n  # bit c set: a neighbour holds color c
    maxdeg = max(ptr[v + 1] - ptr[v] for v in range(n))
    buckets = [dict.fromkeys(range(n))] + [{} for _ in range(maxdeg + 1)]  # saturation <= degree
    top = 0
    v = start
    for step in range(n):
        if step:
            while not buckets[top]:
                top -= 1
            v = buckets[top].popitem()[0]
        else:
            del buckets[0][v]
        m = masks[v]
        c = (~m & (m + 1)).bit_length() - 1  # the lowest free color
        color[v] = c
        bit = 1 << c
        for w in adj[ptr[v]:ptr[v + 1]]:
            if color[w] < 0:
                mw = masks[w]
                if not mw & bit:
                    s = sat[w]
                    del buckets[s][w]
                    s += 1
                    sat[w] = s
                    masks[w] = mw | bit
                    buckets[s][w] = None
                    if s > top:
                        top = s
    return color


def _recolor_by_classes(ptr, adj, color, n, perm) -> list:
    """Culberson's iterated greedy: greedy over the columns grouped by color class (classes in ``perm``
    order) never uses more colors than ``color``, and often fewer."""
    classes = [[] for _ in range(max(color) + 1)]
    for v, c in enumerate(color):
        classes[c].append(v)
    return _greedy(ptr, adj, [v for c in perm for v in classes[c]], n)


def color_columns(pattern, *, rounds: int = 4, seed: int = 0) -> np.ndarray:
    """A column coloring of a Jacobian pattern: columns sharing a row get distinct colors (a distance-2
    coloring of the column graph), so one JVP per color recovers every entry.

    Works on index arrays in O(sum over rows of entries^2) = O(nnz * row degree) per pass, stopping as soon
    as the count meets the lower bound ``max_row_nnz`` (the most entries in one row): first the cyclic
    coloring j mod bound (optimal on banded patterns, checked in O(nnz)), then Brelaz's DSatur (5 colors on
    the 2-D five-point stencil), greedy in the natural order and up to ``rounds`` passes of Culberson's
    iterated greedy, keeping the fewest colors. Patterns whose rows are so long that the column graph would
    pass 4 * 10^7 pairs (each needs at least its longest row's count of colors) get a cyclic coloring or
    one color per column.

    Arguments:
        pattern: a ``SparsityPattern``, a scipy sparse matrix or a dense 2-D boolean array.
        rounds: iterated-greedy passes after DSatur (0 to skip); ``seed`` seeds their random class orders.

    Returns:
        An int64 array with one color (0, 1, ...) per column.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> P = ad.SparsityPattern.of(np.eye(6, k=-1) + np.eye(6) + np.eye(6, k=1))
        >>> ad.color_columns(P)
        array([0, 1, 2, 0, 1, 2])

    References: Curtis, Powell, Reid 1974; Coleman and More 1983; Brelaz 1979; Culberson 1992 (module
    docstring).
    """
    P = SparsityPattern.of(pattern, where="revolve.ad.color_columns")
    if not isinstance(rounds, (int, np.integer)) or rounds < 0:
        raise ValueError(f"revolve.ad.color_columns: rounds must be an integer >= 0, got {rounds!r}")
    m, n = P.shape
    bound = P.max_row_nnz
    if n == 0:
        return np.zeros(0, dtype=_I)
    if bound <= 1:
        return np.zeros(n, dtype=_I)
    if bound == n:  # a row holds every column: n colors are needed, one per column
        return np.arange(n, dtype=_I)
    cyclic = np.arange(n, dtype=_I) % bound  # Curtis-Powell-Reid's coloring of banded patterns: optimal when valid
    if _is_valid(cyclic, P, bound):
        return cyclic
    rowlen = np.bincount(P.rows, minlength=m)
    if int(np.dot(rowlen, rowlen)) > _MAX_GRAPH:  # rows so long that the column graph would not fit in memory:
        for k in range(bound + 1, min(n, bound + 8)):  # they need >= bound colors anyway; cyclic ones or n
            if _is_valid(np.arange(n, dtype=_I) % k, P, k):
                return np.arange(n, dtype=_I) % k
        return np.arange(n, dtype=_I)
    ptr_a, adj_a = _column_graph(P)
    ptr, adj = ptr_a.tolist(), adj_a.tolist()
    best = _dsatur(ptr, adj, n, int(np.argmax(np.diff(ptr_a))))
    if max(best) + 1 > bound:
        natural = _greedy(ptr, adj, range(n), n)
        if max(natural) < max(best):
            best = natural
    rng = np.random.default_rng(seed)
    stale = 0
    for r in range(rounds):
        k = max(best) + 1
        if k <= bound or stale >= 2:
            break
        perm = list(range(k))[::-1] if r % 2 == 0 else [int(c) for c in rng.permutation(k)]
        new = _recolor_by_classes(ptr, adj, best, n, perm)
        stale = stale + 1 if max(new) >= max(best) else 0
        if max(new) <= max(best):
            best = new
    return np.asarray(best, dtype=_I)


def _is_valid(colors: np.ndarray, P: SparsityPattern, k: int) -> bool:
    """No two entries of one row have columns of one color (O(nnz log nnz))."""
    key = P.rows * k + colors[P.cols]
    return _sorted_unique(key).size == key.size


def _check_colors(colors, P: SparsityPattern, where: str) -> np.ndarray:
    n = P.shape[1]
    c = np.asarray(colors)
    if c.shape != (n,) or (c.size and c.dtype.kind not in "iu"):
        raise ValueError(f"{where}: colors must be {n} integers, one per input, got shape {c.shape} dtype {c.dtype}")
    c = c.astype(_I)
    if c.size and c.min() < 0:
        raise ValueError(f"{where}: colors must be >= 0, got {c.min()}")
    if P.nnz:
        if not _is_valid(c, P, int(c.max()) + 1):
            raise ValueError(f"{where}: colors is not a valid coloring of sparsity: two columns of one color share "
                             f"a row, so their entries would be mixed; use color_columns(sparsity)")
    return c


# ---- the Jacobian -----------------------------------------------------------------------------------

def sparse_jacobian(f: Callable, x, *, sparsity=None, colors=None):
    """The Jacobian of f: R^n -> R^m at x from one JVP per color of a column coloring.

    Columns that share no row of the pattern are probed together: a tridiagonal Jacobian of any size takes
    3 JVPs, a 2-D five-point stencil 5. The pattern is detected by one index-set trace of f
    (``jacobian_sparsity``) unless given; nothing of size m x n is ever built.

    Arguments:
        f: a function of one array returning one array (rows: its flattened output; columns: x flattened).
        x: the point (float32 stays float32; integers become float64).
        sparsity: the pattern: a ``SparsityPattern``, a scipy sparse matrix (its stored entries) or a dense
            (m, n) boolean array; None detects it. Entries outside it are taken as zero.
        colors: one color per column, valid for the pattern (default: ``color_columns(sparsity)``).

    Returns:
        A ``scipy.sparse.csr_matrix`` of shape (m, n) when scipy is installed, else a ``SparseJacobian``
        (COO: rows, cols, values, shape; ``.toarray()``, ``@``). Values have x's dtype (complex if f's
        derivatives are).

    Raises:
        ValueError: a pattern whose shape does not match x or f's output, colors that are not a valid
            coloring of it. TypeError: x traced or not numeric, f returning several arrays.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> f = lambda u: ad.roll(u, 1) - 2 * u + ad.roll(u, -1)
        >>> J = ad.sparse_jacobian(f, np.zeros(6))
        >>> J.shape, J.nnz, J.toarray()[0]
        ((6, 6), 18, array([-2.,  1.,  0.,  0.,  0.,  1.]))
    """
    from .transforms import jvp

    where = "revolve.ad.sparse_jacobian"
    x = _input(x, where)
    n = int(x.size)
    if isinstance(f, (np.ndarray, SparsityPattern)) or not callable(f):
        raise TypeError(f"{where}: f must be a callable, got {type(f).__name__}")
    m = None
    if sparsity is None:
        y, d = _trace(f, x, where)
        m = int(y.size)
        P = _pattern(d, n)
    else:
        P = SparsityPattern.of(sparsity, where=where, name="sparsity")
        if P.shape[1] != n:
            raise ValueError(f"{where}: sparsity must have shape (outputs, {n}) for x of {n} elements, got "
                             f"{P.shape}")
    colors = color_columns(P) if colors is None else _check_colors(colors, P, where)
    ncolors = int(colors.max()) + 1 if n else 0
    tangents = []
    for c in range(ncolors):
        seed_v = (colors == c).astype(x.dtype).reshape(x.shape)
        _, t = jvp(f, (x,), (seed_v,))
        if isinstance(t, (tuple, list, dict)):
            raise TypeError(f"{where}: f must return one array, got a {type(t).__name__}")
        t = np.asarray(t).reshape(-1)
        if m is None:
            m = int(t.size)
        if t.size != m or m != P.shape[0]:
            raise ValueError(f"{where}: f has {t.size} outputs but sparsity has {P.shape[0]} rows (shape "
                             f"{P.shape}); give a pattern of shape ({t.size}, {n})")
        tangents.append(t)
    if m is None:  # no JVP ran (no inputs or no colors): f's output size from one call
        m = int(np.size(f(x)))
        if m != P.shape[0]:
            raise ValueError(f"{where}: f has {m} outputs but sparsity has {P.shape[0]} rows (shape {P.shape})")
    dtype = x.dtype
    if any(np.iscomplexobj(t) for t in tangents) and dtype.kind != "c":
        dtype = np.result_type(dtype, np.complex64)
    if P.nnz:
        T = np.stack(tangents)
        values = T[colors[P.cols], P.rows].astype(dtype, copy=False)
    else:
        values = np.zeros(0, dtype=dtype)
    sp = _scipy_sparse()
    if sp is None:
        return SparseJacobian(P.rows, P.cols, values, (m, n))
    return sp.csr_matrix((values, P.cols, P.indptr), shape=(m, n))
