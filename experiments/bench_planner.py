"""Benchmark: planning speed of revolve against checkpoint_schedules and pyrevolve, in one run.

    python3 -m pip install checkpoint-schedules pyrevolve   # peers, for this benchmark only
    python3 experiments/bench_planner.py [--quick] [--peer-timeout 150]

Measures (median of --repeats runs, same process, same machine):
  1. iterating the full binomial schedule for n = 10^6, s = 10 (revolve.binomial vs checkpoint_schedules'
     MultistageCheckpointSchedule vs pyrevolve's CRevolve);
  2. planning + iterating n = 1000 and n = 10^4, s = 10 (revolve.binomial vs checkpoint_schedules.Revolve,
     whose construction runs a DP);
  3. the peak Python memory of iterating revolve's schedule for n = 10^4 .. 10^6 (tracemalloc);
  4. simulating the n = 10^6, s = 20 schedule.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import revolve  # noqa: E402


def _count(iterable) -> int:
    k = 0
    for _ in iterable:
        k += 1
    return k


def ours(n: int, s: int) -> tuple[float, int]:
    t = time.perf_counter()
    k = _count(revolve.binomial(n, snapshots=s))
    return time.perf_counter() - t, k


def multistage(n: int, s: int) -> tuple[float, int]:
    from checkpoint_schedules import MultistageCheckpointSchedule

    t = time.perf_counter()
    sched = MultistageCheckpointSchedule(n, s, 0)
    k = 0
    for _ in sched:
        k += 1
        if sched.is_exhausted:
            break
    return time.perf_counter() - t, k


def cs_revolve(n: int, s: int) -> tuple[float, int]:
    from checkpoint_schedules import Revolve

    t = time.perf_counter()
    sched = Revolve(n, s)
    k = 0
    for _ in sched:
        k += 1
        if sched.is_exhausted:
            break
    return time.perf_counter() - t, k


def pyrevolve_crevolve(n: int, s: int) -> tuple[float, int]:
    from pyrevolve.crevolve import Action, CRevolve

    t = time.perf_counter()
    r = CRevolve(s, n)
    k = 0
    while True:
        a = r.revolve()
        k += 1
        if a == Action.terminate or a == Action.error:
            break
    return time.perf_counter() - t, k


def _child(fn, n, s, q):
    q.put(fn(n, s))


def timed(fn, n, s, timeout):
    """Run fn(n, s) in a child process; None if it does not finish within ``timeout`` seconds."""
    q = mp.get_context("fork").Queue()
    p = mp.get_context("fork").Process(target=_child, args=(fn, n, s, q))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.terminate()
        p.join()
        return None
    return q.get() if not q.empty() else None


def median_time(fn, n, s, repeats, timeout):
    runs = [timed(fn, n, s, timeout) for _ in range(repeats)]
    if any(r is None for r in runs):
        return None, None
    return statistics.median(r[0] for r in runs), runs[0][1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-timeout", type=float, default=150.0)
    ap.add_argument("--quick", action="store_true", help="n = 10^5 instead of 10^6, no slow peers")
    args = ap.parse_args()
    big = 10**5 if args.quick else 10**6

    print(f"1. iterate the binomial schedule, n = {big:,}, s = 10 (median of {args.repeats})")
    t_ours, k_ours = median_time(ours, big, 10, args.repeats, args.peer_timeout)
    print(f"   revolve.binomial                     {t_ours:8.2f} s  {k_ours:,} actions")
    rows = [("checkpoint_schedules Multistage", multistage, args.repeats)]
    if not args.quick:
        rows.append(("pyrevolve CRevolve", pyrevolve_crevolve, 1))
    for name, fn, reps in rows:
        try:
            t, k = median_time(fn, big, 10, reps, args.peer_timeout)
        except ImportError:
            print(f"   {name:<36} not installed")
            continue
        if t is None:
            print(f"   {name:<36} > {args.peer_timeout:.0f} s (stopped)")
        else:
            print(f"   {name:<36} {t:8.2f} s  {k:,} actions   revolve takes {t_ours / t:.2f}x its time")

    print("2. plan and iterate, s = 10")
    for n in ((1000,) if args.quick else (1000, 10**4)):
        t_ours, _ = median_time(ours, n, 10, args.repeats, args.peer_timeout)
        try:
            t_peer, _ = median_time(cs_revolve, n, 10, 1, args.peer_timeout)
        except ImportError:
            print(f"   n = {n:>6,}: revolve {t_ours * 1e3:8.1f} ms; checkpoint_schedules not installed")
            continue
        peer = f"> {args.peer_timeout:.0f} s (stopped)" if t_peer is None else f"{t_peer:8.2f} s"
        ratio = f"at least {args.peer_timeout / t_ours:,.0f}x" if t_peer is None else f"{t_peer / t_ours:,.0f}x"
        print(f"   n = {n:>6,}: revolve {t_ours * 1e3:8.1f} ms; checkpoint_schedules.Revolve {peer}; revolve {ratio} faster")

    print("3. peak Python memory while iterating revolve.binomial(n, snapshots=10)")
    for n in (10**4, 10**5, big):
        tracemalloc.start()
        _count(revolve.binomial(n, snapshots=10))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"   n = {n:>9,}: {peak / 1024:8.1f} KiB")

    print(f"4. simulate revolve.binomial({big:,}, snapshots=20)")
    t = time.perf_counter()
    stats = revolve.simulate(revolve.binomial(big, snapshots=20))
    print(f"   {time.perf_counter() - t:.2f} s, {stats.forward_evaluations:,} forward evaluations "
          f"(closed form {revolve.binomial_cost(big, snapshots=20) + big:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
