"""Gradient of a 1-D viscous Burgers simulation (10^5 points, 10^4 RK2 steps) in bounded memory.

    python3 experiments/burgers_gradient.py [--points 100000] [--steps 10000] [--memory 256MiB] [--quick]

Differentiates the final energy with respect to the initial condition and the viscosity under a memory
budget (store-all would need hundreds of GB), then checks both against central differences.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import revolve  # noqa: E402
from revolve.examples import burgers  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--memory", default="256MiB")
    ap.add_argument("--quick", action="store_true", help="2,000 points and 200 steps (for tests)")
    args = ap.parse_args(argv)
    if args.quick:
        args.points, args.steps, args.memory = 2_000, 200, "4MiB"
    revolve.tune_allocator()
    step, u0, params, loss = burgers(args.points)
    n = args.steps
    t = time.perf_counter()
    r = revolve.gradient(step, u0, n_steps=n, loss=loss, params=params, memory=args.memory)
    print(f"Burgers: {args.points:,} points, {n:,} steps, budget {args.memory}")
    print(r.stats)
    print(f"store-all would hold {revolve.format_bytes(n * r.stats.tape_bytes)}; gradient took {time.perf_counter() - t:.1f} s")

    def run(u, nu):
        for i in range(n):
            u = step(u, {"nu": np.array(nu)}, i)
        return float(loss(u))

    nu = float(params["nu"])
    v = np.random.default_rng(0).standard_normal(u0.shape)
    eps_u, eps_nu = 1e-6, 1e-6 * nu
    fd_u = (run(u0 + eps_u * v, nu) - run(u0 - eps_u * v, nu)) / (2 * eps_u)
    fd_nu = (run(u0, nu + eps_nu) - run(u0, nu - eps_nu)) / (2 * eps_nu)
    ad_u, ad_nu = float(r.grad_x0 @ v), float(r.grad_params["nu"])
    err_u, err_nu = abs(ad_u - fd_u) / abs(fd_u), abs(ad_nu - fd_nu) / abs(fd_nu)
    print(f"directional derivative in u0: revolve {ad_u:.10g}, central differences {fd_u:.10g} (rel. diff {err_u:.1e})")
    print(f"derivative in nu:             revolve {ad_nu:.10g}, central differences {fd_nu:.10g} (rel. diff {err_nu:.1e})")
    return 0 if max(err_u, err_nu) < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
