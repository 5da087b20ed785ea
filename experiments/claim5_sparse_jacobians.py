"""Claim 5, sparse Jacobians: one JVP per color of a column coloring, not one per input.

    python3 experiments/claim5_sparse_jacobians.py [--quick] [--rounds 3]

1. Colors against the lower bound (the most entries in one row) for tridiagonal, pentadiagonal and 2-D
   five-point stencil Jacobians (non-periodic and periodic), the pattern detected by one index-set trace;
   the time of the colored Jacobian beside dense jacfwd where that is affordable (figure and CSV).
2. Tridiagonal n = 10^4 against dense ad.jacrev, in one run: interleaved rounds in shuffled order, process
   CPU time (wall time beside it). The sparse Jacobian is timed whole (pattern detection, coloring, JVPs,
   assembly) and with the pattern and coloring given (JVPs and assembly only).
3. Sizes where dense is out of reach (an n x n float64 matrix of 10^5 is 80 GB): tridiagonal n = 10^5 and
   2-D stencils of about 10^5 points, sparse alone, by phase.
"""

from __future__ import annotations

import random
import statistics
import sys
import time

import numpy as np

from _common import parser, plt, save

from revolve import ad


def banded(width):
    """Output i depends on inputs i-width .. i+width (non-periodic: zero beyond the boundary)."""

    def f(u):
        out = u * u
        for k in range(1, width + 1):
            pad = ad.zeros_like(u[:k])
            right = ad.concatenate([pad, u[:-k]])  # u_{i-k}
            left = ad.concatenate([u[k:], pad])  # u_{i+k}
            out = out + right * 0.5 ** k + left * 0.25 ** k
        return ad.sin(out)

    return f


def stencil2d(m, periodic):
    """tanh(5-point Laplacian) * u on an m x m grid, periodic (roll) or with a zero boundary (pad)."""

    def f(u):
        g = ad.reshape(u, (m, m))
        if periodic:
            lap = ad.roll(g, 1, 0) + ad.roll(g, -1, 0) + ad.roll(g, 1, 1) + ad.roll(g, -1, 1) - 4.0 * g
        else:
            p = ad.pad(g, 1)
            lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * g
        return ad.reshape(ad.tanh(lap) * g, (-1,))

    return f


def values_at(J, P):
    """J's values at P's entries (J: a scipy matrix or a SparseJacobian)."""
    coo = J if isinstance(J, ad.SparseJacobian) else J.tocoo()
    rows, cols, vals = np.asarray(coo.rows if hasattr(coo, "rows") else coo.row), np.asarray(
        coo.cols if hasattr(coo, "cols") else coo.col), np.asarray(coo.values if hasattr(coo, "values") else coo.data)
    key = rows.astype(np.int64) * P.shape[1] + cols
    order = np.argsort(key)
    pos = np.searchsorted(key[order], P.rows * P.shape[1] + P.cols)
    return vals[order][np.minimum(pos, len(order) - 1)] * (key[order][np.minimum(pos, len(order) - 1)] == P.rows * P.shape[1] + P.cols)


def agrees(D, J, P) -> bool:
    """The dense Jacobian D has no nonzero outside P and equals J on P."""
    inside = D[P.rows, P.cols]
    return np.count_nonzero(D) == np.count_nonzero(inside) and np.allclose(values_at(J, P), inside, rtol=1e-13, atol=1e-15)


def timed(fn):
    """(result, CPU seconds, wall seconds) of one call."""
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c, time.perf_counter() - w


def phases(f, x):
    """Pattern detection, coloring and JVPs + assembly, timed separately (CPU seconds)."""
    P, t_detect, _ = timed(lambda: ad.jacobian_sparsity(f, x))
    colors, t_color, _ = timed(lambda: ad.color_columns(P))
    J, t_jvp, _ = timed(lambda: ad.sparse_jacobian(f, x, sparsity=P, colors=colors))
    return P, colors, J, t_detect, t_color, t_jvp


def figure_rows(quick):
    cases = [("tridiagonal", lambda n: banded(1), [50, 200, 800] if quick else [50, 200, 800, 3200, 10_000]),
             ("pentadiagonal", lambda n: banded(2), [50, 200] if quick else [50, 200, 800, 3200, 10_000]),
             ("2-D five-point", lambda n: stencil2d(int(round(n ** 0.5)), False),
              [64, 256] if quick else [64, 256, 1024, 4096, 16_384]),
             ("2-D five-point periodic", lambda n: stencil2d(int(round(n ** 0.5)), True),
              [100, 400] if quick else [100, 400, 1600, 6400, 25_600])]
    ad.sparse_jacobian(ad.sin, np.ones(3))  # warm-up: imports scipy.sparse once, outside the timings
    rows = []
    for name, make, sizes in cases:
        for n in sizes:
            f = make(n)
            x = np.random.default_rng(0).standard_normal(n)
            P, colors, J, t_detect, t_color, t_jvp = phases(f, x)
            ts = t_detect + t_color + t_jvp
            td = None
            if n <= 1024:
                D, td, _ = timed(lambda: ad.jacfwd(f)(x))
                assert agrees(np.asarray(D).reshape(P.shape), J, P), name
            k = int(colors.max()) + 1
            rows.append((name, n, k, P.max_row_nnz, ts, td))
            print(f"{name:<24} n = {n:>6}: {k} colors (lower bound {P.max_row_nnz}), sparse {ts * 1e3:8.1f} ms"
                  + (f", dense jacfwd {td * 1e3:9.1f} ms" if td is not None else ""))
    return rows


def headline(n, rounds):
    """Interleaved, shuffled rounds: dense jacrev, sparse whole, sparse with the pattern and colors given."""
    f = banded(1)
    x = np.random.default_rng(1).standard_normal(n)
    P = ad.jacobian_sparsity(f, x)
    colors = ad.color_columns(P)
    ad.sparse_jacobian(f, x, sparsity=P, colors=colors)  # warm-up (imports scipy once)
    D = ad.jacrev(f)(x)
    J = ad.sparse_jacobian(f, x)
    same = agrees(D, J, P)
    del D
    runs = {"dense jacrev": lambda: ad.jacrev(f)(x),
            "sparse, pattern detected": lambda: ad.sparse_jacobian(f, x),
            "sparse, pattern given": lambda: ad.sparse_jacobian(f, x, sparsity=P, colors=colors)}
    cpu = {k: [] for k in runs}
    wall = {k: [] for k in runs}
    rng = random.Random(0)
    for _ in range(rounds):
        order = list(runs)
        rng.shuffle(order)
        for k in order:
            _, c, w = timed(runs[k])
            cpu[k].append(c)
            wall[k].append(w)
    print(f"\ntridiagonal n = {n}, {rounds} interleaved rounds (shuffled order), CPU time (wall beside it); "
          f"sparse equals dense on every entry: {same}")
    med = {k: statistics.median(v) for k, v in cpu.items()}
    for k in runs:
        print(f"  {k:<26} CPU {med[k] * 1e3:9.1f} ms (rounds {', '.join(f'{t * 1e3:.1f}' for t in cpu[k])}), "
              f"wall {statistics.median(wall[k]) * 1e3:9.1f} ms")
    dense = cpu["dense jacrev"]
    for k in ("sparse, pattern detected", "sparse, pattern given"):
        per_round = [d / s for d, s in zip(dense, cpu[k])]
        print(f"  dense jacrev / {k:<26}: {med['dense jacrev'] / med[k]:7.0f}x (per round {min(per_round):.0f}x "
              f"to {max(per_round):.0f}x)")
    return same


def large(quick):
    cases = [("tridiagonal", banded(1), 10_000 if quick else 100_000),
             ("2-D five-point", stencil2d(32 if quick else 316, False), (32 if quick else 316) ** 2),
             ("2-D five-point periodic", stencil2d(30 if quick else 320, True), (30 if quick else 320) ** 2),
             ("2-D five-point periodic", stencil2d(31 if quick else 316, True), (31 if quick else 316) ** 2)]
    print("\nsparse alone (dense is out of reach), CPU time by phase:")
    for name, f, n in cases:
        x = np.random.default_rng(2).standard_normal(n)
        P, colors, J, t_detect, t_color, t_jvp = phases(f, x)
        _, t_whole, _ = timed(lambda: ad.sparse_jacobian(f, x))
        print(f"  {name:<24} n = {n:>6}: nnz {P.nnz:>7}, {int(colors.max()) + 1} colors (lower bound "
              f"{P.max_row_nnz}); detect {t_detect * 1e3:7.1f} ms, color {t_color * 1e3:7.1f} ms, JVPs and "
              f"assembly {t_jvp * 1e3:7.1f} ms; sparse_jacobian whole {t_whole * 1e3:7.1f} ms")


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the n = 10^4 comparison")
    args = ap.parse_args(argv)
    rows = figure_rows(args.quick)
    ok = headline(1000 if args.quick else 10_000, 2 if args.quick else args.rounds)
    large(args.quick)
    fig, (ax1, ax2) = plt().subplots(1, 2, figsize=(9, 3.8))
    for name in dict.fromkeys(r[0] for r in rows):
        sel = [r for r in rows if r[0] == name]
        ax1.semilogx([r[1] for r in sel], [r[2] for r in sel], "o-", label=name)
        ax2.loglog([r[1] for r in sel], [r[4] * 1e3 for r in sel], "o-", label=f"{name}, sparse")
        dense = [r for r in sel if r[5] is not None]
        if dense:
            ax2.loglog([r[1] for r in dense], [r[5] * 1e3 for r in dense], "x--", label=f"{name}, dense jacfwd")
    ax1.set_xlabel("n (inputs = outputs)")
    ax1.set_ylabel("colors = JVPs needed")
    ax1.set_ylim(0, None)
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    ax2.set_xlabel("n")
    ax2.set_ylabel("CPU time for the Jacobian (ms)")
    ax2.legend(fontsize=5)
    ax2.grid(alpha=0.3, which="both")
    fig.suptitle("Sparse Jacobians: pattern by one trace, column coloring, one JVP per color")
    save(fig, args.out, "claim5_sparse_jacobians",
         ["pattern", "n", "colors", "lower_bound", "sparse_cpu_s", "dense_jacfwd_cpu_s"], rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
