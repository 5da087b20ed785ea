"""Tradeoff data and plots (``revolve plot ...``). matplotlib is imported only when a plot is drawn."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Sequence

from .baselines import periodic, store_all
from .binomial import binomial, binomial_cost
from .chain import Chain
from .simulator import simulate

__all__ = ["tradeoff_rows", "plot_tradeoff", "frontier_rows", "plot_frontier", "write_csv"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("revolve plot: drawing needs matplotlib (pip install matplotlib)") from None
    return plt


def write_csv(path, header: Sequence[str], rows) -> None:
    """Write rows to a CSV file, creating its folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _log_grid(lo: int, hi: int, count: int) -> list[int]:
    if hi <= lo:
        return [lo]
    return sorted({int(round(lo * (hi / lo) ** (k / (count - 1)))) for k in range(count)})


def tradeoff_rows(ns: Sequence[int], points: int = 40, *, tape_states: float = 10.0) -> list[tuple]:
    """(n, method, memory in states, recomputation ratio) for a uniform chain whose tape is ``tape_states`` states.

    Memory counts stored states plus live tapes. Binomial with s slots holds s states and one tape;
    periodic every k holds (n - 1) // k states and k tapes; store-all holds n tapes. The ratio is forward
    evaluations / n, from the closed form for binomial and from the simulator's counting rule otherwise.
    Binomial is the optimum when a tape outweighs the states it would replace (tapes of the engine's
    Burgers step are 29 states); with tapes of one state, holding a whole segment's tapes (periodic) wins
    near sqrt(n) memory, and ``revolve.optimal`` finds the best of both.
    """
    T = float(tape_states)
    rows = []
    for n in ns:
        for s in _log_grid(1, max(1, n - 1), points):
            rows.append((n, "binomial", s + T, (binomial_cost(n, snapshots=s) + n) / n))
        for k in _log_grid(1, n, points):
            last = n - ((n - 1) // k) * k
            rows.append((n, "periodic", (n - 1) // k + k * T, (2 * n - last) / n))
        k = max(1, round(math.sqrt(n)))
        last = n - ((n - 1) // k) * k
        rows.append((n, "periodic sqrt(n)", (n - 1) // k + k * T, (2 * n - last) / n))
        rows.append((n, "store-all", n * T, 1.0))
    return rows


def plot_tradeoff(ns: Sequence[int], out_dir: str | os.PathLike, *, name: str = "tradeoff",
                  tape_states: float = 10.0) -> tuple[Path, Path]:
    """Recomputation ratio against memory for each n: binomial (the optimum), periodic, sqrt(n), store-all."""
    out = Path(out_dir)
    rows = tradeoff_rows(ns, tape_states=tape_states)
    csv_path, png_path = out / f"{name}.csv", out / f"{name}.png"
    write_csv(csv_path, ["n_steps", "method", "memory_in_states", "recomputation_ratio"], rows)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, n in zip(colors, ns):
        for method, style in (("binomial", "-"), ("periodic", ":")):
            pts = sorted((m, r) for nn, meth, m, r in rows if nn == n and meth == method)
            ax.plot(*zip(*pts), style, color=c, label=f"{method}, n = {n:,}")
        sq = [(m, r) for nn, meth, m, r in rows if nn == n and meth == "periodic sqrt(n)"][0]
        ax.plot(*sq, "s", color=c, markersize=5)
        ax.plot(n * tape_states, 1.0, "*", color=c, markersize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"memory in states (snapshots + live tapes; a tape = {tape_states:g} states)")
    ax.set_ylabel("recomputation ratio (forward evaluations / n)")
    ax.set_title("Memory against recomputation: binomial (solid) vs periodic (dotted)\nsquare: periodic every sqrt(n); star: store-all")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path, csv_path


def frontier_rows(chain: Chain, *, slots: int = 500) -> list[tuple]:
    """(method, setting, peak memory bytes, time) for the DP frontier and the baselines on ``chain``."""
    from .optimal import frontier

    n = chain.n_steps
    rows = [("optimal (DP)", f"budget={p.budget:.0f}", p.memory, p.time) for p in frontier(chain, slots=slots)]
    for k in range(1, n + 1):
        st = simulate(periodic(n, every=k), chain)
        rows.append(("periodic", f"every={k}", st.peak_memory, st.time))
    for s in range(1, n + 1):
        st = simulate(binomial(n, snapshots=s), chain)
        rows.append(("binomial", f"snapshots={s}", st.peak_memory, st.time))
    st = simulate(store_all(n), chain)
    rows.append(("store-all", "", st.peak_memory, st.time))
    return rows


def plot_frontier(chain: Chain, out_dir: str | os.PathLike, *, name: str = "frontier", slots: int = 500,
                  title: str = "heterogeneous chain") -> tuple[Path, Path]:
    """The DP's time/memory frontier against periodic checkpointing, binomial and store-all."""
    out = Path(out_dir)
    rows = frontier_rows(chain, slots=slots)
    csv_path, png_path = out / f"{name}.csv", out / f"{name}.png"
    write_csv(csv_path, ["method", "setting", "peak_memory_bytes", "time"], rows)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for method, style in (("optimal (DP)", "o-"), ("periodic", "s"), ("binomial", "^"), ("store-all", "*")):
        pts = sorted((m / 2**20, t) for meth, _, m, t in rows if meth == method)
        ax.plot(*zip(*pts), style, label=method, markersize=4 if method != "store-all" else 10,
                drawstyle="steps-post" if method.startswith("optimal") else "default")
    ax.set_xlabel("peak memory: stored states + live tapes (MiB)")
    ax.set_ylabel("time (chain units)")
    ax.set_title(f"Time against memory: {title}\n{chain.n_steps} steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path, csv_path
