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
