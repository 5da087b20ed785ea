"""Claim 2, forward against reverse mode for full Jacobians of f: R^n -> R^m.

    python3 experiments/claim2_forward_vs_reverse.py [--quick]

f(x) = tanh(W x) * x[0] with W of shape (m, n), n fixed, m varied. jacfwd costs one JVP per input (n),
jacrev one backward pass per output (m): the crossover sits near m = n.
"""

from __future__ import annotations

import sys

import numpy as np

from _common import median_time, parser, plt, save

from revolve import ad


def main(argv=None) -> int:
    args = parser(__doc__).parse_args(argv)
    n = 20 if args.quick else 100
    ms = [1, 5, 20, 40] if args.quick else [1, 2, 5, 10, 20, 50, 100, 200, 400]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n)
    rows = []
    for m in ms:
        W = rng.standard_normal((m, n)) / np.sqrt(n)

        def f(v, W=W):
            return ad.tanh(W @ v) * v[0]

        jf, jr = ad.jacfwd(f), ad.jacrev(f)
        assert np.allclose(jf(x), jr(x))
        tf = median_time(lambda: jf(x), 3)
        tr = median_time(lambda: jr(x), 3)
        rows.append((n, m, tf, tr))
        print(f"n = {n}, m = {m:>4}: jacfwd {tf * 1e3:8.2f} ms, jacrev {tr * 1e3:8.2f} ms")
    p = plt()
    fig, ax = p.subplots(figsize=(6.4, 4))
    ax.loglog([r[1] for r in rows], [r[2] * 1e3 for r in rows], "o-", label=f"jacfwd ({n} JVPs)")
    ax.loglog([r[1] for r in rows], [r[3] * 1e3 for r in rows], "s-", label="jacrev (m backward passes)")
    ax.axvline(n, color="gray", ls="--", label=f"m = n = {n}")
    ax.set_xlabel("number of outputs m")
    ax.set_ylabel("time for the full Jacobian (ms)")
    ax.set_title(f"Forward vs reverse mode, f: R^{n} -> R^m")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    save(fig, args.out, "claim2_forward_vs_reverse", ["n", "m", "jacfwd_s", "jacrev_s"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
