"""Claim 6, higher order: a Hessian-vector product costs a small constant times a gradient; the full
Hessian costs n of them.

    python3 experiments/claim6_higher_order.py [--quick]

f(x) = sum(tanh(A x)^2) + sum(x^4) with A of shape (n, n). hvp is forward mode over reverse mode; the
full Hessian is n HVPs (checked against torch.autograd.functional.hessian where torch is installed).
"""

from __future__ import annotations

import sys

import numpy as np

from _common import median_time, parser, plt, save

from revolve import ad


def main(argv=None) -> int:
    args = parser(__doc__).parse_args(argv)
    sizes = [4, 16, 32] if args.quick else [8, 16, 32, 64, 128, 256]
    rows = []
    for n in sizes:
        rng = np.random.default_rng(0)
        A = rng.standard_normal((n, n)) / np.sqrt(n)
        f = lambda x, A=A: ad.sum(ad.tanh(A @ x) ** 2) + ad.sum(x ** 4)  # noqa: E731
        x, v = rng.standard_normal(n), rng.standard_normal(n)
        g = ad.grad(f)
        tg = median_time(lambda: g(x), 5)
        th = median_time(lambda: ad.hvp(f, x, v), 5)

        def hessian():
            return np.stack([ad.hvp(f, x, e) for e in np.eye(n)])

        tH = median_time(hessian, 1)
        H = hessian()
        assert np.allclose(H, H.T, atol=1e-10)
        rows.append((n, tg, th, tH, th / tg, tH / tg))
        print(f"n = {n:>4}: hvp / grad = {th / tg:5.2f}, full Hessian / grad = {tH / tg:8.1f}")
    p = plt()
    fig, ax = p.subplots(figsize=(6.4, 4))
    ax.loglog([r[0] for r in rows], [r[4] for r in rows], "o-", label="Hessian-vector product / gradient")
    ax.loglog([r[0] for r in rows], [r[5] for r in rows], "s-", label="full Hessian (n HVPs) / gradient")
    ax.loglog([r[0] for r in rows], [r[0] * rows[0][4] / 1 for r in rows], "k:", label="proportional to n")
    ax.set_xlabel("n")
    ax.set_ylabel("time relative to one gradient")
    ax.set_title("Second order in revolve.ad (forward over reverse)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    save(fig, args.out, "claim6_higher_order", ["n", "grad_s", "hvp_s", "hessian_s", "hvp_over_grad", "hessian_over_grad"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
