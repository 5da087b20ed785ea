"""Claim 5, sparse Jacobians: one JVP per color of a column coloring, not one per input.

    python3 experiments/claim5_sparse_jacobians.py [--quick]

Tridiagonal, pentadiagonal (banded, non-periodic) and periodic 2-D five-point stencil Jacobians: colors (JVPs) against n, and
the time of the colored Jacobian against dense jacfwd (n JVPs), both recovering the same matrix.
"""

from __future__ import annotations

import sys

import numpy as np

from _common import median_time, parser, plt, save

from revolve import ad


def banded(width):
    """A banded (non-periodic) map: output i depends on inputs i-width .. i+width."""

    def f(u):
        out = u * u
        for k in range(1, width + 1):
            pad = ad.zeros_like(u[:k])
            right = ad.concatenate([pad, u[:-k]])  # u_{i-k}, zero beyond the boundary
            left = ad.concatenate([u[k:], pad])  # u_{i+k}
            out = out + right * 0.5 ** k + left * 0.25 ** k
        return ad.sin(out)

    def pattern(n):
        i = np.arange(n)
        return np.abs(i[:, None] - i[None, :]) <= width

    return f, pattern


def stencil2d():
    def f(u):
        m = int(round(np.sqrt(u.shape[0])))
        g = ad.reshape(u, (m, m))
        lap = ad.roll(g, 1, 0) + ad.roll(g, -1, 0) + ad.roll(g, 1, 1) + ad.roll(g, -1, 1) - 4.0 * g
        return ad.reshape(ad.tanh(lap) * g, (-1,))

    def pattern(n):
        m = int(round(np.sqrt(n)))
        idx = np.arange(n).reshape(m, m)
        P = np.zeros((n, n), dtype=bool)
        for sh in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
            P[idx.ravel(), np.roll(idx, sh, axis=(0, 1)).ravel()] = True
        return P

    return f, pattern


def main(argv=None) -> int:
    args = parser(__doc__).parse_args(argv)
    cases = [("tridiagonal", *banded(1), [16, 64]), ("pentadiagonal", *banded(2), [16, 64]),
             ("2-D five-point stencil", *stencil2d(), [16, 64])]
    if not args.quick:
        cases = [(name, f, pat, [64, 256, 1024, 4096] if "2-D" in name else [50, 200, 800, 3200]) for name, f, pat, _ in cases]
    rows = []
    for name, f, pattern, sizes in cases:
        for n in sizes:
            x = np.random.default_rng(0).standard_normal(n)
            P = pattern(n)
            colors = ad.color_columns(P)
            J = ad.sparse_jacobian(f, x, sparsity=P, colors=colors)
            dense = ad.jacfwd(f)(x) if n <= 1024 else None
            if dense is not None:
                assert np.allclose(J, dense, rtol=1e-12, atol=1e-14)
            ts = median_time(lambda: ad.sparse_jacobian(f, x, sparsity=P, colors=colors), 3)
            td = median_time(lambda: ad.jacfwd(f)(x), 1) if n <= 1024 else None
            rows.append((name, n, int(colors.max()) + 1, ts, td))
            print(f"{name:<24} n = {n:>5}: {int(colors.max()) + 1} colors, colored {ts * 1e3:8.1f} ms"
                  + (f", dense jacfwd {td * 1e3:9.1f} ms" if td else ""))
    fig, (ax1, ax2) = plt().subplots(1, 2, figsize=(9, 3.8))
    for name in dict.fromkeys(r[0] for r in rows):
        sel = [r for r in rows if r[0] == name]
        ax1.semilogx([r[1] for r in sel], [r[2] for r in sel], "o-", label=name)
        ax2.loglog([r[1] for r in sel], [r[3] * 1e3 for r in sel], "o-", label=f"{name}, colored")
        dense = [r for r in sel if r[4]]
        ax2.loglog([r[1] for r in dense], [r[4] * 1e3 for r in dense], "x--", label=f"{name}, dense jacfwd")
    ax1.set_xlabel("n (inputs = outputs)")
    ax1.set_ylabel("colors = JVPs needed")
    ax1.set_ylim(0, None)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.set_xlabel("n")
    ax2.set_ylabel("time for the Jacobian (ms)")
    ax2.legend(fontsize=6)
    ax2.grid(alpha=0.3, which="both")
    fig.suptitle("Sparse Jacobians by column coloring")
    save(fig, args.out, "claim5_sparse_jacobians", ["pattern", "n", "colors", "colored_s", "dense_jacfwd_s"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
