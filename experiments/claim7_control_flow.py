"""Claim 7, dynamic control flow: the tape records the executed trace, so its size and the gradient's
cost follow the data.

    python3 experiments/claim7_control_flow.py [--quick]

f(x) runs Newton's iteration for the square root of x (a vector) until it converges: the number of
iterations depends on x. The tape's operations and bytes grow with the iterations taken, and the gradient
(0.5 / sqrt(x)) stays exact.
"""

from __future__ import annotations

import sys

import numpy as np

from _common import parser, plt, save

from revolve import ad


def newton_sqrt(a):
    x = a * 0.0 + 1.0
    iterations = 0
    while float(ad.stop_gradient(ad.sum(ad.abs(x * x - a)))) > 1e-12 * float(ad.stop_gradient(ad.sum(a))):
        x = 0.5 * (x + a / x)
        iterations += 1
    newton_sqrt.iterations = iterations
    return ad.sum(x)


def main(argv=None) -> int:
    args = parser(__doc__).parse_args(argv)
    scales = [1.5, 1e2, 1e4] if args.quick else [1.5, 10, 1e2, 1e3, 1e4, 1e6, 1e8, 1e12]
    rows = []
    for s in scales:
        a = np.full(1000, s) * np.linspace(1, 2, 1000)
        c = ad.grad_cost(newton_sqrt, a)
        its = newton_sqrt.iterations
        err = np.max(np.abs(ad.grad(newton_sqrt)(a) - 0.5 / np.sqrt(a)) * np.sqrt(a))
        rows.append((s, its, c.gradient.ops, c.tape_bytes, err))
        print(f"scale {s:>8.0e}: {its:>3} iterations, {c.gradient.ops:>5} ops, tape {c.tape_bytes / 1024:8.1f} KiB, "
              f"gradient error {err:.1e}")
    p = plt()
    fig, ax = p.subplots(figsize=(6.4, 4))
    ax.plot([r[1] for r in rows], [r[3] / 1024 for r in rows], "o-", label="tape (KiB)")
    ax.plot([r[1] for r in rows], [r[2] for r in rows], "s-", label="gradient operations")
    ax.set_xlabel("Newton iterations taken (depends on the data)")
    ax.set_ylabel("size")
    ax.set_title("The tape follows the executed trace")
    ax.legend()
    ax.grid(alpha=0.3)
    save(fig, args.out, "claim7_control_flow", ["scale", "iterations", "gradient_ops", "tape_bytes", "rel_gradient_error"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
