"""Benchmark: planning time of revolve.optimal (the heterogeneous DP) as the chain grows.

    python3 experiments/bench_optimal.py [--slots 500] [--lengths 50 100 200]

Random heterogeneous chains (seeded), budget 30% of store-all's memory. Reports the planning time (one
pass, and with the lower-bound pass of rounded units), the growth exponent between lengths, the method
(exact Pareto lists, or rounded units past their work limit) and the certified gap (0 when exact).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import revolve  # noqa: E402


def chain_of(length: int, seed: int = 0) -> revolve.Chain:
    rng = np.random.default_rng(seed)
    return revolve.Chain(
        forward_cost=rng.uniform(1, 5, length), backward_cost=rng.uniform(2, 10, length),
        state_bytes=rng.uniform(1, 10, length + 1) * 2**20, tape_bytes=rng.uniform(5, 50, length) * 2**20,
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slots", type=int, default=500)
    ap.add_argument("--lengths", type=int, nargs="+", default=[20, 40, 50, 100, 200])
    args = ap.parse_args()
    print(f"revolve.optimal planning time, slots = {args.slots}, budget = 0.3 x store-all memory")
    prev = None
    for length in args.lengths:
        chain = chain_of(length)
        memory = 0.3 * chain.values("tape_bytes").sum()
        t = time.perf_counter()
        sched = revolve.optimal(chain, memory=memory, slots=args.slots, lower_bound=False)
        one = time.perf_counter() - t
        t = time.perf_counter()
        sched = revolve.optimal(chain, memory=memory, slots=args.slots)
        both = time.perf_counter() - t
        stats = revolve.simulate(sched, chain)
        growth = "" if prev is None else f"  growth exponent {math.log(one / prev[1]) / math.log(length / prev[0]):.2f}"
        print(f"  L = {length:4d}: {one:7.2f} s (with lower bound {both:7.2f} s)  peak {stats.peak_memory / memory:.3f} of budget  "
              f"{sched.params['method']:>5}  certified gap {sched.params['certified_gap'] / stats.time:.2%}{growth}")
        prev = (length, one)
    return 0


if __name__ == "__main__":
    sys.exit(main())
