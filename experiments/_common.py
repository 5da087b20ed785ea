"""Helpers shared by the experiment scripts: arguments, timing, CSV and figure output."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from revolve.plotting import _pyplot, write_csv  # noqa: E402

FIGURES = ROOT / "docs" / "figures"


def parser(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (for the tests)")
    ap.add_argument("--out", type=Path, default=FIGURES, help="folder for the PNG and CSV")
    return ap


def median_time(fn, repeats: int = 5) -> float:
    """Median wall time of fn() over ``repeats`` runs after one warm-up."""
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def save(fig, out: Path, name: str, header, rows) -> None:
    """Write ``name``.png and ``name``.csv into ``out`` and say so."""
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=120)
    _pyplot().close(fig)
    write_csv(out / f"{name}.csv", header, rows)
    print(f"wrote {out / name}.png and .csv")


def plt():
    return _pyplot()


def allocator_peak(fn, device) -> int:
    """The allocator's peak over ``fn()`` above what it held before: ``torch.cuda.max_memory_allocated`` on
    CUDA, the running sum of torch.profiler's memory events on the CPU (one per allocation and free).
    The benchmarks' meter, written apart from the adapter's so that it checks the adapter's plans."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def free_lists_emptied(schedule):
    """``schedule``'s actions with ``gc.collect()`` before each, which empties CPython's free lists of small
    objects, so that tracemalloc's peak is what a run holds (NOTE [ Measuring with tracemalloc ] in
    tests/test_ad_tape.py)."""
    import gc

    import revolve

    def actions():
        for action in schedule:
            gc.collect()
            yield action

    return revolve.Schedule(actions, n_steps=schedule.n_steps, kind=schedule.kind, params=schedule.params)
