"""Sparse Jacobians (revolve/ad/sparse.py): index-set sparsity detection, column coloring, colored JVPs.

Oracles: the dense Jacobian by ad.jacfwd / ad.jacrev (values, and the nonzeros a detected pattern must
contain), central differences (nonzeros found without the engine's rules), stencil patterns written out
with index arithmetic, and colorings checked row by row with Python sets.
"""

import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from revolve import ad
from revolve.ad import sparse as sparse_mod

RNG = np.random.default_rng(7)


def dense_of(J):
    return J.toarray() if hasattr(J, "toarray") else np.asarray(J)


def true_nonzeros(f, x):
    """The dense Jacobian (jacfwd) as an (m, n) matrix."""
    return np.asarray(ad.jacfwd(f)(x)).reshape(-1, x.size)


def central_differences(f, x, eps=1e-6):
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = eps
        e = e.reshape(x.shape)
        cols.append((np.asarray(f(x + e)).ravel() - np.asarray(f(x - e)).ravel()) / (2 * eps))
    return np.stack(cols, axis=1)


def assert_valid_coloring(P, colors):
    """No row holds two columns of one color (checked with Python sets, independently of the library)."""
    seen = {}
    for r, c in zip(P.rows.tolist(), P.cols.tolist()):
        key = (r, int(colors[c]))
        assert key not in seen, f"columns {seen[key]} and {c} share row {r} and color {colors[c]}"
        seen[key] = c


def as_set(P):
    return set(zip(P.rows.tolist(), P.cols.tolist()))


# ---- stencils: exact patterns, optimal colorings -----------------------------------------------------

def tri(u):
    interior = u[:-2] - 2 * u[1:-1] + u[2:] + u[1:-1] ** 3
    return ad.concatenate([u[:1] * u[1:2], ad.sin(interior), u[-1:] * u[-2:-1]])


def penta(u):
    out = u * u
    for k in (1, 2):
        pad = ad.zeros_like(u[:k])
        out = out + ad.concatenate([pad, u[:-k]]) * 0.5 ** k + ad.concatenate([u[k:], pad]) * 0.25 ** k
    return ad.sin(out)


def stencil2d(m, periodic):
    def f(u):
        g = ad.reshape(u, (m, m))
        if periodic:
            lap = ad.roll(g, 1, 0) + ad.roll(g, -1, 0) + ad.roll(g, 1, 1) + ad.roll(g, -1, 1) - 4.0 * g
        else:
            p = ad.pad(g, 1)  # zero boundary
            lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * g
        return ad.reshape(ad.tanh(lap) * g, (-1,))

    return f


def banded_set(n, width):
    return {(i, j) for i in range(n) for j in range(max(0, i - width), min(n, i + width + 1))}


def grid_set(m, periodic):
    out = set()
    for i in range(m):
        for j in range(m):
            for di, dj in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
                a, b = i + di, j + dj
                if periodic:
                    a, b = a % m, b % m
                elif not (0 <= a < m and 0 <= b < m):
                    continue
                out.add((i * m + j, a * m + b))
    return out


@pytest.mark.parametrize("name,f,n,expected,colors", [
    ("tridiagonal", tri, 300, banded_set(300, 1), 3),
    ("pentadiagonal", penta, 300, banded_set(300, 2), 5),
    ("2-D five-point", stencil2d(17, False), 17 * 17, grid_set(17, False), 5),
    ("2-D five-point periodic", stencil2d(20, True), 400, grid_set(20, True), 5),
])
def test_stencil_patterns_exact_and_colorings_optimal(name, f, n, expected, colors):
    x = RNG.standard_normal(n)
    P = ad.jacobian_sparsity(f, x)
    assert P.shape == (n, n)
    assert as_set(P) == expected
    c = ad.color_columns(P)
    assert c.max() + 1 == colors == P.max_row_nnz  # optimal: the lower bound is met
    assert_valid_coloring(P, c)
    if n <= 400:
        J = ad.sparse_jacobian(f, x, sparsity=P, colors=c)
        np.testing.assert_allclose(J.toarray(), true_nonzeros(f, x), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("m,periodic", [(5, False), (8, False), (31, False), (10, True), (25, True), (50, True)])
def test_five_point_stencil_five_colors(m, periodic):
    """5 colors on the 2-D five-point stencil, non-periodic at any side, periodic when 5 divides the side."""
    P = ad.SparsityPattern(*map(np.array, zip(*grid_set(m, periodic))), (m * m, m * m))
    c = ad.color_columns(P)
    assert c.max() + 1 == 5
    assert_valid_coloring(P, c)


def test_periodic_stencil_other_sides_valid_and_few_colors():
    """Sides not divisible by 5 admit no 5-coloring (each color class would be a perfect code of the torus);
    the coloring stays valid and small."""
    for m in (8, 11, 31):
        P = ad.SparsityPattern(*map(np.array, zip(*grid_set(m, True))), (m * m, m * m))
        c = ad.color_columns(P)
        assert_valid_coloring(P, c)
        assert 6 <= c.max() + 1 <= 10


def test_tridiagonal_three_colors_any_size_and_large():
    for n in (3, 5, 50, 2000):
        c = ad.color_columns(np.eye(n, k=-1) + np.eye(n) + np.eye(n, k=1))  # the dense boolean form still works
        assert c.max() + 1 == 3
    n = 100_000
    P = ad.jacobian_sparsity(tri, RNG.standard_normal(n))
    assert P.nnz == 3 * n - 2 and P.max_row_nnz == 3
    assert ad.color_columns(P).max() + 1 == 3


def test_moved_legacy_2d_stencil():
    m = 8

    def lap(u):
        u = ad.reshape(u, (m, m))
        out = ad.roll(u, 1, 0) + ad.roll(u, -1, 0) + ad.roll(u, 1, 1) + ad.roll(u, -1, 1) - 4 * u
        return ad.reshape(out * u, (-1,))

    x = RNG.standard_normal(m * m)
    pat = ad.jacobian_sparsity(lap, x)
    colors = ad.color_columns(pat)
    assert colors.max() + 1 <= 9
    np.testing.assert_allclose(ad.sparse_jacobian(lap, x, sparsity=pat, colors=colors).toarray(),
                               ad.jacfwd(lap)(x), rtol=1e-13)


# ---- random compositions: values equal the dense Jacobian, patterns contain its nonzeros ---------------

C_MAT = RNG.standard_normal((6, 6)) * (RNG.random((6, 6)) < 0.4)  # a constant with exact zeros


def _ops():
    """(name, function of (a, x, k)) with a the current value (1-D or 2-D), x the input, k a small integer."""

    def flat(a):
        return ad.reshape(a, (-1,))

    return [
        ("sin", lambda a, x, k: ad.sin(a)),
        ("tanh*a", lambda a, x, k: ad.tanh(a) * a),
        ("sqrt", lambda a, x, k: ad.sqrt(a * a + 1.0)),
        ("exp/log1p", lambda a, x, k: ad.exp(ad.tanh(a)) + ad.log1p(a * a)),
        ("abs", lambda a, x, k: ad.abs(a) + 0.5 * a),
        ("pow", lambda a, x, k: a ** 3 - a / 2.0),
        ("roll", lambda a, x, k: ad.roll(a, k - 2, axis=k % a.ndim)),
        ("roll-flat", lambda a, x, k: a * ad.roll(a, 1)),
        ("slice", lambda a, x, k: flat(a)[1:] - flat(a)[:-1] if ad.reshape(a, (-1,)).shape[0] > 1 else a),
        ("step", lambda a, x, k: flat(a)[::2] * flat(a)[::-1][: (flat(a).shape[0] + 1) // 2]),
        ("fancy", lambda a, x, k: flat(a)[np.array([0, k % flat(a).shape[0], 0, -1])] * 2.0),
        ("concat", lambda a, x, k: ad.concatenate([flat(a), ad.sin(x.reshape(-1)[:k + 1])])),
        ("stack", lambda a, x, k: ad.stack([flat(a), ad.cos(flat(a))], axis=k % 2)),
        ("reshape.T", lambda a, x, k: ad.transpose(ad.reshape(flat(a), (-1, 1)) * ad.reshape(flat(a), (1, -1)))
         if flat(a).shape[0] <= 6 else ad.transpose(ad.reshape(flat(a), (1, -1)))),
        ("sum", lambda a, x, k: ad.sum(a, axis=0, keepdims=bool(k % 2)) + 0.0),
        ("mean-bcast", lambda a, x, k: a - ad.mean(a, axis=-1, keepdims=True)),
        ("x-bcast", lambda a, x, k: flat(a) * ad.sum(x)),
        ("matmul-const", lambda a, x, k: C_MAT[:, :min(6, flat(a).shape[0])] @ flat(a)[:min(6, flat(a).shape[0])]),
        ("matmul-self", lambda a, x, k: ad.reshape(flat(a), (1, -1)) @ ad.reshape(flat(a), (-1, 1))),
        ("einsum", lambda a, x, k: ad.einsum("i,i->i", flat(a), ad.sin(flat(a)))),
        ("where", lambda a, x, k: ad.where(ad.stop_gradient(a) > 0, a * 2.0, ad.sin(a))),
        ("maximum", lambda a, x, k: ad.maximum(a, 0.1 * a + 0.3)),
        ("pad", lambda a, x, k: ad.pad(flat(a), (1, 2), mode=("constant", "wrap", "edge", "reflect")[k % 4])
         if flat(a).shape[0] > 2 else a),
        ("diff", lambda a, x, k: ad.diff(flat(a)) if flat(a).shape[0] > 1 else a),
        ("take", lambda a, x, k: ad.take(flat(a), np.array([k % flat(a).shape[0], 0]))),
        ("cumsum", lambda a, x, k: ad.cumsum(a, axis=0)),
        ("at-set", lambda a, x, k: ad.at(flat(a))[0].set(ad.sin(flat(a)[-1]))),
        ("at-add", lambda a, x, k: ad.at(flat(a))[np.array([0, 0, -1])].add(flat(a)[:1] * 3.0)),
        ("amax", lambda a, x, k: ad.amax(a, axis=0) * 1.0),
        ("prod", lambda a, x, k: ad.prod(flat(a)[:3]) + flat(a)),
        ("clip", lambda a, x, k: ad.clip(a, -0.5, 0.5) + a),
        ("sign", lambda a, x, k: ad.sign(a) * a),
        ("norm", lambda a, x, k: ad.linalg.norm(flat(a)) * flat(a)),
        ("solve", lambda a, x, k: ad.linalg.solve(np.eye(flat(a).shape[0]) * 2.0 + 0.1, flat(a))),
        ("rfft", lambda a, x, k: ad.fft.irfft(ad.fft.rfft(flat(a)), n=flat(a).shape[0]) if flat(a).shape[0] > 1 else a),
        ("numpy", lambda a, x, k: np.sin(a) + np.roll(a, 1)),
        ("transpose2", lambda a, x, k: ad.transpose(ad.reshape(flat(a), (1, -1)) + ad.reshape(x, (-1, 1))[:2])),
        ("broadcast_to", lambda a, x, k: ad.broadcast_to(flat(a)[:1], (3,)) * flat(a)[-1]),
        ("flip", lambda a, x, k: ad.flip(a) * a),
        ("take_along", lambda a, x, k: ad.take_along_axis(flat(a), np.array([k % flat(a).shape[0], 0]), axis=0)),
        ("std", lambda a, x, k: ad.std(flat(a)) * flat(a) if flat(a).shape[0] > 1 else a),
        ("arctan2/hypot", lambda a, x, k: ad.arctan2(a, 2.0 + a * a) + ad.hypot(a, 1.0 + ad.roll(a, 1) ** 2)),
        ("slogdet", lambda a, x, k: ad.linalg.slogdet(np.eye(2) + 0.1 * ad.reshape(ad.concatenate([flat(a)] * 4)[:4],
                                                                                  (2, 2)))[1] * a),
    ]


OPS = _ops()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.booleans(),
       st.lists(st.tuples(st.integers(0, len(OPS) - 1), st.integers(0, 5)), min_size=1, max_size=4),
       st.integers(0, 2**31 - 1))
def test_random_compositions_match_dense(n, matrix_input, program, seed):
    x = np.random.default_rng(seed).standard_normal((2, (n + 1) // 2) if matrix_input else (n,))

    def f(u):
        a = u
        for op, k in program:
            a = OPS[op][1](a, u, k)
            if a.ndim == 0:  # a full reduction: keep a 1-D value for the next op
                a = ad.reshape(a, (1,))
        return a

    dense = true_nonzeros(f, x)
    if not np.all(np.isfinite(dense)):
        return
    P = ad.jacobian_sparsity(f, x)
    assert P.shape == dense.shape
    inside = P.toarray()
    missed = (dense != 0) & ~inside
    assert not missed.any(), f"pattern misses entries {np.argwhere(missed)[:5]} of the dense Jacobian"
    # central differences find the nonzeros without the engine's rules
    fd = central_differences(f, x)
    assert not ((np.abs(fd) > 1e-5 * (1 + np.abs(fd).max())) & ~inside).any()
    c = ad.color_columns(P)
    assert_valid_coloring(P, c)
    J = ad.sparse_jacobian(f, x, sparsity=P, colors=c).toarray()
    np.testing.assert_allclose(J, dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ad.sparse_jacobian(f, x).toarray(), np.asarray(ad.jacrev(f)(x)).reshape(dense.shape),
                               rtol=1e-12, atol=1e-12)


def test_constant_matrix_zeros_are_structural():
    n = 30
    A = np.eye(n, k=-1) - 2 * np.eye(n) + np.eye(n, k=1)
    f = lambda u: ad.tanh(A @ u)
    P = ad.jacobian_sparsity(f, RNG.standard_normal(n))
    assert as_set(P) == banded_set(n, 1)
    g = lambda u: ad.einsum("ij,j->i", A, u) + u @ A
    assert as_set(ad.jacobian_sparsity(g, RNG.standard_normal(n))) == banded_set(n, 1)


def test_multi_dimensional_input_and_output():
    x = RNG.standard_normal((4, 3))
    f = lambda u: ad.sum(u * u, axis=1, keepdims=True) * ad.roll(u, 1, axis=0)
    P = ad.jacobian_sparsity(f, x)
    dense = true_nonzeros(f, x)
    assert P.shape == (12, 12) and not ((dense != 0) & ~P.toarray()).any()
    np.testing.assert_allclose(ad.sparse_jacobian(f, x).toarray(), dense, rtol=1e-13)


def test_nested_transformation_inside_f():
    """f may itself use jvp / grad: their operations run on the index-set tracers too."""
    g = lambda u: ad.sum(ad.sin(u) * ad.roll(u, 1))
    f = lambda u: ad.grad(g)(u)  # a Hessian-like banded map
    x = RNG.standard_normal(10)
    P = ad.jacobian_sparsity(f, x)
    dense = true_nonzeros(f, x)
    assert not ((dense != 0) & ~P.toarray()).any()
    np.testing.assert_allclose(ad.sparse_jacobian(f, x).toarray(), dense, rtol=1e-12, atol=1e-14)
    h = lambda u: ad.jvp(lambda v: ad.sin(v) * ad.roll(v, 2), (u,), (np.ones_like(u),))[1]
    dense = true_nonzeros(h, x)
    assert not ((dense != 0) & ~ad.jacobian_sparsity(h, x).toarray()).any()


def test_primitive_without_rule_falls_back_dense_and_warns():
    @ad.custom_jvp
    def smooth(u):
        return np.tanh(u)

    smooth.defjvp(lambda p, t: (smooth(p[0]), t[0] * (1 - np.tanh(ad.stop_gradient(p[0])) ** 2)))
    f = lambda u: ad.concatenate([smooth(u[:3]), u[3:] ** 2])
    x = RNG.standard_normal(6)
    with pytest.warns(UserWarning, match="custom_jvp"):
        P = ad.jacobian_sparsity(f, x)
    expected = {(i, j) for i in range(3) for j in range(3)} | {(i, i) for i in range(3, 6)}
    assert as_set(P) == expected  # every output of the unknown op depends on all its inputs
    np.testing.assert_allclose(ad.sparse_jacobian(f, x, sparsity=P).toarray(), true_nonzeros(f, x), rtol=1e-13)


def test_where_and_constants():
    f = lambda u: ad.where(np.arange(5) % 2 == 0, u, 2.0 * ad.roll(u, 1))  # both branches: global pattern
    P = ad.jacobian_sparsity(f, RNG.standard_normal(5))
    assert as_set(P) == {(i, i) for i in range(5)} | {(i, (i - 1) % 5) for i in range(5)}
    const = lambda u: np.ones(3)  # no dependence at all
    P = ad.jacobian_sparsity(const, np.ones(4))
    assert P.shape == (3, 4) and P.nnz == 0
    J = ad.sparse_jacobian(const, np.ones(4))
    assert J.shape == (3, 4) and J.nnz == 0


# ---- dtypes, result types, scipy optional ----------------------------------------------------------------

def test_float32_stays_float32():
    x = RNG.standard_normal(20).astype(np.float32)
    J = ad.sparse_jacobian(tri, x)
    assert J.dtype == np.float32
    np.testing.assert_allclose(J.toarray(), true_nonzeros(tri, x), rtol=1e-5)


def test_result_is_scipy_csr_and_coo_without_scipy(monkeypatch):
    sp = pytest.importorskip("scipy.sparse")
    x = RNG.standard_normal(40)
    J = ad.sparse_jacobian(penta, x)
    assert isinstance(J, sp.csr_matrix) and J.nnz == 5 * 40 - 6
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.sparse", None)
    assert sparse_mod._scipy_sparse() is None
    K = ad.sparse_jacobian(penta, x)
    assert isinstance(K, ad.SparseJacobian) and K.shape == (40, 40) and K.nnz == J.nnz
    np.testing.assert_array_equal(K.toarray(), J.toarray())
    v = RNG.standard_normal((40, 2))
    np.testing.assert_allclose(K @ v, J.toarray() @ v, rtol=1e-13)
    K32 = ad.sparse_jacobian(penta, x.astype(np.float32))
    assert K32.values.dtype == np.float32
    with pytest.raises(ImportError, match="scipy"):
        K.tocsr()
    monkeypatch.undo()
    np.testing.assert_array_equal(K.tocsr().toarray(), J.toarray())


def test_pattern_forms_accepted():
    sp = pytest.importorskip("scipy.sparse")
    n = 12
    x = RNG.standard_normal(n)
    dense_P = (np.eye(n, k=-1) + np.eye(n) + np.eye(n, k=1)) > 0
    ref = ad.sparse_jacobian(tri, x).toarray()
    for form in (dense_P, sp.csr_matrix(dense_P), ad.SparsityPattern.of(dense_P),
                 ad.SparsityPattern(*np.nonzero(dense_P), (n, n)), ad.jacobian_sparsity(tri, x).tocsr()):
        np.testing.assert_array_equal(ad.sparse_jacobian(tri, x, sparsity=form).toarray(), ref)
    # duplicates are merged, order is canonical
    P = ad.SparsityPattern(np.array([1, 0, 1]), np.array([2, 1, 2]), (2, 3))
    assert P.rows.tolist() == [0, 1] and P.cols.tolist() == [1, 2]
    assert P.indptr.tolist() == [0, 1, 2]


# ---- bad input: errors name the argument ---------------------------------------------------------------

def test_errors_name_the_argument():
    x = np.ones(6)
    with pytest.raises(ValueError, match="sparsity must have shape"):
        ad.sparse_jacobian(tri, x, sparsity=np.ones((6, 5), dtype=bool))
    with pytest.raises(ValueError, match="f has 6 outputs but sparsity has 4 rows"):
        ad.sparse_jacobian(tri, x, sparsity=np.ones((4, 6), dtype=bool))
    with pytest.raises(ValueError, match="2-D"):
        ad.sparse_jacobian(tri, x, sparsity=np.ones(6, dtype=bool))
    with pytest.raises(ValueError, match="colors must be 6 integers"):
        ad.sparse_jacobian(tri, x, colors=np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="colors is not a valid coloring"):
        ad.sparse_jacobian(tri, x, colors=np.zeros(6, dtype=int))
    with pytest.raises(ValueError, match="color_columns: pattern must be 2-D"):
        ad.color_columns(np.ones(3))
    with pytest.raises(ValueError, match="rounds"):
        ad.color_columns(np.eye(3), rounds=-1)
    with pytest.raises(TypeError, match="x must be floating point"):
        ad.sparse_jacobian(tri, np.array(["a", "b"]))
    with pytest.raises(TypeError, match="f must return one array"):
        ad.jacobian_sparsity(lambda u: (u, u), x)
    with pytest.raises(TypeError, match="f must be a callable"):
        ad.sparse_jacobian(np.eye(3), x)
    with pytest.raises(ValueError, match="cols must lie in"):
        ad.SparsityPattern(np.array([0]), np.array([3]), (1, 3))
    with pytest.raises(ValueError, match="shape must be a pair"):
        ad.SparsityPattern(np.array([0]), np.array([0]), (1,))
    with pytest.raises(TypeError, match="plain array"):
        ad.jvp(lambda u: ad.sparse_jacobian(ad.sin, u).sum(), (x,), (x,))


def test_transforms_module_reexports():
    from revolve.ad import transforms

    assert transforms.sparse_jacobian is ad.sparse_jacobian is sparse_mod.sparse_jacobian
