"""Scale of revolve.optimal's DP: planning time and peak memory as the chain grows, at the default precision.

    python3 experiments/_bench_dp_scale.py [--lengths 50 100 200 400 700 1000] [--slots 500] [--no-lower-bound]

Random heterogeneous chains (seeded; states 1-10 MiB, tapes 5-50 MiB in whole bytes as profilers report
them, forward 1-5, backward 2-10), budget 30% of the tapes' total. Each length is planned twice in this
process: once timed (process CPU time, and wall time beside it), once under tracemalloc for the peak of
Python-visible memory (numpy's tables included). ``dp_scale()`` returns the rows; the growth exponent is
the least-squares slope of log(CPU time) against log(L) over the rows planned in rounded units.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import revolve  # noqa: E402

LENGTHS = (50, 100, 200, 400, 700, 1000)


def chain_of(length: int, seed: int = 0) -> revolve.Chain:
    """A heterogeneous chain of ``length`` steps with whole-byte sizes."""
    rng = np.random.default_rng(seed)
    return revolve.Chain(
        forward_cost=rng.uniform(1, 5, length), backward_cost=rng.uniform(2, 10, length),
        state_bytes=np.round(rng.uniform(1, 10, length + 1) * 2**20),
        tape_bytes=np.round(rng.uniform(5, 50, length) * 2**20),
    )


def _plan(chain: revolve.Chain, memory: float, slots: int, lower_bound: bool) -> revolve.Schedule:
    return revolve.optimal(chain, memory=memory, slots=slots, lower_bound=lower_bound)


def dp_scale(lengths=LENGTHS, *, slots: int = revolve.optimal.__kwdefaults__["slots"], lower_bound: bool = True,
             seed: int = 0, trace_memory: bool = True) -> list[dict]:
    """Plan one random chain per length; return a row per length.

    Each row: ``L``, ``cpu_s`` and ``wall_s`` (the timed run), ``peak_bytes`` (tracemalloc's peak during a
    second, traced run; None without ``trace_memory``), ``method`` and ``slots`` (from the schedule's params),
    ``certified_gap`` (relative to the predicted time) and ``simulated_ok`` (the simulator's peak is within the
    budget and its time equals the predicted time to 1e-9).
    """
    rows = []
    for length in lengths:
        chain = chain_of(length, seed)
        memory = 0.3 * float(chain.values("tape_bytes").sum())
        gc.collect()
        c0, w0 = time.process_time(), time.perf_counter()
        sched = _plan(chain, memory, slots, lower_bound)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        peak = None
        if trace_memory:
            gc.collect()
            tracemalloc.start()
            _plan(chain, memory, slots, lower_bound)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        stats = revolve.simulate(sched, chain)
        predicted = sched.params["predicted_time"]
        gap = sched.params.get("certified_gap")
        rows.append(dict(
            L=length, cpu_s=cpu, wall_s=wall, peak_bytes=peak, method=sched.params["method"],
            slots=sched.params["slots"], certified_gap=None if gap is None or not predicted else gap / predicted,
            simulated_ok=bool(stats.peak_memory <= memory and predicted is not None
                              and math.isclose(stats.time, predicted, rel_tol=1e-9)),
        ))
    return rows


def growth_exponent(rows: list[dict], key: str = "cpu_s") -> float | None:
    """Least-squares slope of log(row[key]) against log(L), over the rows planned in rounded units."""
    pts = [(math.log(r["L"]), math.log(r[key])) for r in rows if r["method"] == "units" and r.get(key)]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def format_table(rows: list[dict]) -> str:
    """The rows as a Markdown table, with the fitted growth exponents below it."""
    lines = ["| steps L | CPU time | wall time | peak memory (tracemalloc) | method | slots | certified gap | simulated |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peak = "-" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 2**20:,.0f} MiB"
        gap = "-" if r["certified_gap"] is None else f"{r['certified_gap']:.2%}"
        lines.append(f"| {r['L']} | {r['cpu_s']:.2f} s | {r['wall_s']:.2f} s | {peak} | {r['method']} | {r['slots']} | "
                     f"{gap} | {'ok' if r['simulated_ok'] else 'FAILED'} |")
    t = growth_exponent(rows)
    m = growth_exponent(rows, "peak_bytes")
    lines.append("")
    lines.append(f"growth exponent (rounded-unit rows): time L^{t:.2f}" if t is not None else "growth exponent: too few rows")
    if m is not None:
        lines[-1] += f", memory L^{m:.2f}"
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    ap.add_argument("--slots", type=int, default=revolve.optimal.__kwdefaults__["slots"])
    ap.add_argument("--no-lower-bound", action="store_true", help="skip the relaxed pass (the certified gap)")
    ap.add_argument("--no-memory", action="store_true", help="skip the traced second run")
    args = ap.parse_args()
    print(f"revolve.optimal at slots = {args.slots}, budget = 0.3 x the tapes' total, lower bound "
          f"{'off' if args.no_lower_bound else 'on'}")
    rows = []
    for length in args.lengths:  # one at a time, so a long run shows its progress
        rows += dp_scale([length], slots=args.slots, lower_bound=not args.no_lower_bound,
                         trace_memory=not args.no_memory)
        print(f"  L = {length}: {rows[-1]['cpu_s']:.2f} s CPU", flush=True)
    print(format_table(rows))
    return 0 if all(r["simulated_ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
