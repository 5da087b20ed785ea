"""Benchmark: the executor's overhead, the demo's peak memory, and its time against store-all, in one run.

    python3 experiments/bench_executor.py [--points 100000] [--steps 300]

1. Overhead: wall time of revolve.gradient divided by (forward evaluations x the measured time of a
   plain step + n x the measured time of a record + reverse), for Burgers steps of a millisecond and
   more; 1.0 means the executor adds nothing. The step times are measured inside the same run (the
   executor times every advance, record, reverse and the loss), and, for reference, in isolation, where
   each step pays first-touch page faults the run's reused memory does not (so that ratio can dip below 1).
2. Peak memory of the demo's configuration, measured by tracemalloc (which sees numpy's allocations),
   against the plan's prediction and store-all's requirement.
3. Time of the budgeted gradient against store-all at a size where store-all still fits.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median_time  # noqa: E402

import revolve  # noqa: E402
from revolve import ad  # noqa: E402
from revolve.demo import DEFAULT_MEMORY, DEFAULT_POINTS, DEFAULT_STEPS  # noqa: E402
from revolve.examples import burgers  # noqa: E402


def overhead(points, n, snapshots):
    step, u0, p, loss = burgers(points)
    t_step = median_time(lambda: step(u0, p, 0), 9)

    def rec_rev():
        y, pull = ad.vjp(lambda u, pp: step(u, pp, 0), u0, p)
        pull(np.ones_like(y))

    t_rr = median_time(rec_rev, 9)
    r = revolve.gradient(step, u0, n_steps=n, loss=loss, params=p, snapshots=snapshots)
    ideal = r.stats.advances * t_step + n * t_rr + r.stats.time_loss
    return t_step, t_rr, r.stats, r.stats.wall_time / ideal


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    revolve.tune_allocator()

    print("1. executor overhead (Burgers, binomial with 8 snapshots)")
    for points in (args.points // 4, args.points):
        t_step, t_rr, stats, ratio = overhead(points, args.steps, 8)
        print(f"   {points:>7,} points: step {t_step * 1e3:6.2f} ms, record+reverse {t_rr * 1e3:6.2f} ms, "
              f"{stats.forward_evaluations:,} evaluations: wall / in-run step times = {stats.overhead():.4f}, "
              f"wall / isolated step times = {ratio:.3f}")

    print(f"2. peak memory of the demo ({DEFAULT_POINTS:,} points, {DEFAULT_STEPS:,} steps, budget {DEFAULT_MEMORY}), tracemalloc")
    step, u0, p, loss = burgers(DEFAULT_POINTS)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    r = revolve.gradient(step, u0, n_steps=DEFAULT_STEPS, loss=loss, params=p, memory=DEFAULT_MEMORY)
    traced = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    planned = r.stats.predicted.peak_memory
    store_all = DEFAULT_STEPS * r.stats.tape_bytes
    fmt = revolve.format_bytes
    # what one record + reverse needs beyond the model's count: the working state, the adjoint, the step's
    # forward and backward temporaries (measured alone, nothing stored)
    tracemalloc.start()
    base1 = tracemalloc.get_traced_memory()[0]
    y, pull = ad.vjp(lambda u, pp: step(u, pp, 0), u0, p)
    tape_alone = pull.tape_bytes(exclude=p)
    pull(np.ones_like(y))
    one_step = tracemalloc.get_traced_memory()[1] - base1
    tracemalloc.stop()
    del y, pull
    print(f"   plan {fmt(planned)}; executor's own count {fmt(r.stats.peak_bytes)}; tracemalloc peak {fmt(traced)}")
    print(f"   one record + reverse alone peaks at {fmt(one_step)} (its tape {fmt(tape_alone)}): plan + that beyond the tape "
          f"= {fmt(planned + one_step - tape_alone)}, against the {fmt(traced)} traced")
    print(f"   store-all would need {fmt(store_all)}: the demo holds {traced / store_all:.2%} of it")

    n = 200
    print(f"3. time against store-all where it fits ({DEFAULT_POINTS:,} points, {n} steps)")
    step, u0, p, loss = burgers(DEFAULT_POINTS)
    times = {}
    for name, kw in (("store-all", {}), (f"budget {DEFAULT_MEMORY}", {"memory": DEFAULT_MEMORY})):
        t = time.perf_counter()
        r = revolve.gradient(step, u0, n_steps=n, loss=loss, params=p, **kw)
        times[name] = (time.perf_counter() - t, r.stats)
    (t_all, s_all), (t_b, s_b) = times.values()
    print(f"   store-all {t_all:.2f} s holding {fmt(s_all.peak_bytes)}; budgeted {t_b:.2f} s holding "
          f"{fmt(s_b.peak_bytes)} ({s_b.schedule}): {t_b / t_all:.2f}x the time at {s_b.peak_bytes / s_all.peak_bytes:.1%} of the memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
