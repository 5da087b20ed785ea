"""Benchmark: the cheap gradient principle in revolve.ad, in counted flops and in measured time.

    python3 experiments/bench_ad.py [--repeats 7]

For each function: flops(gradient) / flops(function) from the engine's own counts, and
time(gradient) / time(function), both medians of --repeats runs in this process. The gradient's time
includes the recorded forward pass and the backward pass.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median_time  # noqa: E402

from revolve import ad, tune_allocator  # noqa: E402


def stencil_step(n):
    """One explicit RK2 step of the viscous Burgers equation on n periodic points; loss = sum of squares."""
    dx, dt, nu = 1.0 / n, 1e-4, 0.01

    def rhs(u):
        up, um = ad.roll(u, -1), ad.roll(u, 1)
        return -u * (up - um) / (2 * dx) + nu * (up - 2 * u + um) / (dx * dx)

    def f(u):
        k1 = rhs(u)
        k2 = rhs(u + dt * k1)
        return ad.sum((u + 0.5 * dt * (k1 + k2)) ** 2)

    x = np.sin(np.linspace(0, 2 * np.pi, n, endpoint=False))
    return f, (x,)


def mlp(batch=256, width=256, depth=4):
    rng = np.random.default_rng(0)
    params = [(rng.standard_normal((width, width)) / np.sqrt(width), np.zeros(width)) for _ in range(depth)]
    x = rng.standard_normal((batch, width))

    def f(params):
        h = x
        for w, b in params:
            h = ad.tanh(h @ w + b)
        return ad.mean(h ** 2)

    return f, (params,)


def matrix_product(n=200, k=8):
    rng = np.random.default_rng(1)
    mats = [rng.standard_normal((n, n)) / np.sqrt(n) for _ in range(k)]

    def f(mats):
        p = mats[0]
        for m in mats[1:]:
            p = p @ m
        return ad.sum(p * p)

    return f, (mats,)


def torch_ratio(name, repeats):
    """time(gradient) / time(function) of the same function in torch.autograd (CPU, float64), or None."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    if name.startswith("stencil"):
        n = 100_000 if "10^5" in name else 10_000
        dx, dt, nu = 1.0 / n, 1e-4, 0.01

        def rhs(u):
            up, um = torch.roll(u, -1), torch.roll(u, 1)
            return -u * (up - um) / (2 * dx) + nu * (up - 2 * u + um) / (dx * dx)

        def f(u):
            k1 = rhs(u)
            k2 = rhs(u + dt * k1)
            return ((u + 0.5 * dt * (k1 + k2)) ** 2).sum()

        x = torch.sin(torch.linspace(0, 2 * np.pi, n + 1, dtype=torch.float64)[:-1])
        inputs = [x]
    elif name.startswith("MLP"):
        g = torch.Generator().manual_seed(0)
        inputs = [torch.randn(256, 256, dtype=torch.float64, generator=g) / 16 for _ in range(4)]
        xb = torch.randn(256, 256, dtype=torch.float64, generator=g)

        def f(*ws):
            h = xb
            for w in ws:
                h = torch.tanh(h @ w)
            return (h ** 2).mean()
    else:
        g = torch.Generator().manual_seed(1)
        inputs = [torch.randn(200, 200, dtype=torch.float64, generator=g) / 200**0.5 for _ in range(8)]

        def f(*ms):
            p = ms[0]
            for m in ms[1:]:
                p = p @ m
            return (p * p).sum()

    def value():
        with torch.no_grad():
            f(*inputs)

    def gradient():
        leaves = [t.detach().requires_grad_() for t in inputs]
        torch.autograd.grad(f(*leaves), leaves)

    return median_time(gradient, repeats) / median_time(value, repeats)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    # Arrays of 10^5 doubles exceed glibc's first mmap threshold: every temporary would be a fresh mmap whose
    # page faults (expensive in a VM) dominate the timings. Keep freed memory for reuse, for both engines.
    tune_allocator()
    cases = [("stencil RK2 step, 10^5 points", *stencil_step(100_000)),
             ("stencil RK2 step, 10^4 points", *stencil_step(10_000)),
             ("MLP 4 x 256, batch 256", *mlp()),
             ("product of 8 matrices 200 x 200", *matrix_product())]
    print("gradient cost / function cost (medians; torch: the same function in torch.autograd, CPU float64)")
    print(f"{'function':<34} {'flops f':>12} {'flop ratio':>10} {'time f':>10} {'time ratio':>10} {'torch ratio':>11} {'tape':>10}")
    for name, f, fargs in cases:
        c = ad.grad_cost(f, *fargs)
        tf = median_time(lambda: f(*fargs), args.repeats)
        tg = median_time(lambda: ad.grad(f)(*fargs), args.repeats)
        tr = torch_ratio(name, args.repeats)
        trs = f"{tr:>11.2f}" if tr is not None else f"{'-':>11}"
        print(f"{name:<34} {c.function.flops:>12,} {c.flop_ratio:>10.2f} {tf * 1e3:>8.2f}ms {tg / tf:>10.2f} {trs} {c.tape_bytes / 2**20:>7.1f}MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
