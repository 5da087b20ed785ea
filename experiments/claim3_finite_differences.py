"""Claim 3, finite differences: truncation and cancellation error against step size, beside AD.

    python3 experiments/claim3_finite_differences.py [--quick]

The derivative of f(x) = sin(x) exp(x) at x = 1 (exact: exp(x)(sin x + cos x)) by forward differences
(error ~ h, then cancellation ~ eps/h), central differences (~ h^2, then ~ eps/h) and revolve.ad (machine
precision). A gradient of f: R^n -> R costs n + 1 evaluations by forward differences, 2n by central
ones, and a small constant times one evaluation by reverse mode (claim 1).
"""

from __future__ import annotations

import sys

import numpy as np

from _common import parser, plt, save

from revolve import ad


def main(argv=None) -> int:
    args = parser(__doc__).parse_args(argv)
    f = lambda x: ad.sin(x) * ad.exp(x)  # noqa: E731
    x0 = 1.0
    exact = np.exp(x0) * (np.sin(x0) + np.cos(x0))
    ad_err = abs(float(ad.grad(f)(np.array(x0))) - exact) / abs(exact)
    hs = np.logspace(-16, -1, 16 if args.quick else 61)
    rows = []
    for h in hs:
        fwd = (float(f(np.array(x0 + h))) - float(f(np.array(x0)))) / h
        cen = (float(f(np.array(x0 + h))) - float(f(np.array(x0 - h)))) / (2 * h)
        rows.append((h, abs(fwd - exact) / abs(exact), abs(cen - exact) / abs(exact), ad_err))
    best_f = min(rows, key=lambda r: r[1])
    best_c = min(rows, key=lambda r: r[2])
    print(f"forward differences: best relative error {best_f[1]:.1e} at h = {best_f[0]:.0e}")
    print(f"central differences: best relative error {best_c[2]:.1e} at h = {best_c[0]:.0e}")
    print(f"revolve.ad:          relative error {ad_err:.1e}")
    p = plt()
    fig, ax = p.subplots(figsize=(6.4, 4))
    floor = 1e-17
    ax.loglog(hs, [max(r[1], floor) for r in rows], "o-", ms=3, label="forward differences (n + 1 evaluations)")
    ax.loglog(hs, [max(r[2], floor) for r in rows], "s-", ms=3, label="central differences (2n evaluations)")
    ax.axhline(max(ad_err, floor), color="k", ls="--", label="revolve.ad reverse mode")
    ax.set_xlabel("step size h")
    ax.set_ylabel("relative error of d/dx [sin(x) exp(x)] at x = 1")
    ax.set_title("Truncation (right) against cancellation (left)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    save(fig, args.out, "claim3_finite_differences", ["h", "forward_rel_error", "central_rel_error", "ad_rel_error"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
