"""Claim 1, the cheap gradient principle: gradient cost / function cost stays a small constant as n grows.

    python3 experiments/claim1_cheap_gradient.py [--quick]

f(x) = sum(log(1 + x^2) * sin(x) + roll(x, 1) * tanh(x)) for x in R^n, n = 10 .. 10^6. Reports the
ratio in counted flops (the engine's own count) and in measured time (medians).
"""

from __future__ import annotations

import sys

import numpy as np

from _common import median_time, parser, plt, save

from revolve import ad


def f(x):
    return ad.sum(ad.log(1.0 + x * x) * ad.sin(x) + ad.roll(x, 1) * ad.tanh(x))


def main(argv=None) -> int:
    args = parser(__doc__).parse_args(argv)
    sizes = [10, 100, 1000] if args.quick else [10, 100, 1_000, 10_000, 100_000, 1_000_000]
    rows = []
    g = ad.grad(f)
    for n in sizes:
        x = np.random.default_rng(0).standard_normal(n)
        c = ad.grad_cost(f, x)
        reps = 3 if args.quick else (20 if n <= 10_000 else 5)
        tf, tg = median_time(lambda: f(x), reps), median_time(lambda: g(x), reps)
        rows.append((n, c.function.flops, c.gradient.flops, c.flop_ratio, tf, tg, tg / tf))
        print(f"n = {n:>9,}: flop ratio {c.flop_ratio:.2f}, time ratio {tg / tf:.2f}")
    p = plt()
    fig, ax = p.subplots(figsize=(6.4, 4))
    ax.semilogx([r[0] for r in rows], [r[3] for r in rows], "o-", label="counted flops")
    ax.semilogx([r[0] for r in rows], [r[6] for r in rows], "s-", label="measured time")
    ax.axhline(5, color="gray", ls="--", label="5 (the principle's bound)")
    ax.set_ylim(0, max(8, max(r[6] for r in rows) * 1.1))
    ax.set_xlabel("number of inputs n")
    ax.set_ylabel("gradient cost / function cost")
    ax.set_title("Cheap gradient principle in revolve.ad")
    ax.legend()
    ax.grid(alpha=0.3)
    save(fig, args.out, "claim1_cheap_gradient",
         ["n", "function_flops", "gradient_flops", "flop_ratio", "function_s", "gradient_s", "time_ratio"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
