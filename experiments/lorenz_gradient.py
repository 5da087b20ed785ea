"""Gradient of the Lorenz system (RK4) with respect to the initial state and (sigma, rho, beta).

    python3 experiments/lorenz_gradient.py [--steps 1000] [--snapshots 10]

Runs Revolve with a few snapshots and checks every derivative against central differences.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import revolve  # noqa: E402
from revolve.examples import lorenz  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--snapshots", type=int, default=10)
    args = ap.parse_args(argv)
    step, s0, params, loss = lorenz()
    n = args.steps
    r = revolve.gradient(step, s0, n_steps=n, loss=loss, params=params, snapshots=args.snapshots)
    print(f"Lorenz, {n} RK4 steps of 0.01, Revolve with {args.snapshots} snapshots")
    print(r.stats)

    def run(s, p):
        for i in range(n):
            s = step(s, p, i)
        return float(loss(s))

    worst = 0.0
    rows = [(f"x0[{k}]", float(r.grad_x0[k]), lambda h, k=k: run(s0 + h * np.eye(3)[k], params)) for k in range(3)]
    rows += [(name, float(r.grad_params[name]), lambda h, name=name: run(s0, {**params, name: params[name] + h}))
             for name in params]
    for name, value, f in rows:
        h = 1e-7
        fd = (f(h) - f(-h)) / (2 * h)
        rel = abs(value - fd) / max(abs(fd), 1e-12)
        worst = max(worst, rel)
        print(f"  d z_n / d {name:<6} revolve {value: .10e}  central differences {fd: .10e}  rel. diff {rel:.1e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
