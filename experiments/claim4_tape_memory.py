"""Claim 4, tape memory grows linearly with the computation; checkpointing bounds it.

    python3 experiments/claim4_tape_memory.py [--quick]

Measured with the executor on a Burgers simulation (2,000 points) of n steps: the peak bytes held by
store-all grow linearly with n, Revolve with 8 snapshots stays flat while its recomputation grows like
the binomial law. Also writes the table of t(n, s) counted by the simulator beside Griewank and Walther's
closed form (claim4_binomial_table.csv).
"""

from __future__ import annotations

import sys

from _common import parser, plt, save

import revolve
from revolve.examples import burgers
from revolve.plotting import write_csv


def main(argv=None) -> int:
    args = parser(__doc__).parse_args(argv)
    step, u0, p, loss = burgers(500 if args.quick else 2000)
    ns = [10, 30, 100] if args.quick else [10, 30, 100, 300, 1000, 3000]
    rows = []
    for n in ns:
        a = revolve.gradient(step, u0, n_steps=n, loss=loss, params=p)
        b = revolve.gradient(step, u0, n_steps=n, loss=loss, params=p, snapshots=8)
        rows.append((n, a.stats.peak_bytes, b.stats.peak_bytes, a.stats.forward_evaluations, b.stats.forward_evaluations))
        print(f"n = {n:>5}: store-all {revolve.format_bytes(a.stats.peak_bytes):>11}, Revolve(8) "
              f"{revolve.format_bytes(b.stats.peak_bytes):>11}, evaluations {b.stats.forward_evaluations / n:.2f} n")
    table = []
    for n in ([10, 100, 1000] if args.quick else [10, 100, 1000, 10_000]):
        for s in (1, 2, 3, 5, 10, 20):
            sim = revolve.simulate(revolve.binomial(n, snapshots=s)).advances
            table.append((n, s, revolve.repetition_number(n, snapshots=s), revolve.binomial_cost(n, snapshots=s), sim))
    write_csv(args.out / "claim4_binomial_table.csv", ["n", "snapshots", "r", "closed_form_t", "simulated_t"], table)
    assert all(r[3] == r[4] for r in table)
    fig, (ax1, ax2) = plt().subplots(1, 2, figsize=(9, 3.8))
    ax1.loglog(ns, [r[1] / 2**20 for r in rows], "o-", label="store-all")
    ax1.loglog(ns, [r[2] / 2**20 for r in rows], "s-", label="Revolve, 8 snapshots")
    ax1.set_xlabel("time steps n")
    ax1.set_ylabel("peak memory held (MiB), measured")
    ax1.legend()
    ax1.grid(alpha=0.3, which="both")
    ax2.semilogx(ns, [r[3] / r[0] for r in rows], "o-", label="store-all")
    ax2.semilogx(ns, [r[4] / r[0] for r in rows], "s-", label="Revolve, 8 snapshots")
    ax2.semilogx(ns, [(revolve.binomial_cost(n, snapshots=8) + n) / n for n in ns], "k:", label="closed form")
    ax2.set_xlabel("time steps n")
    ax2.set_ylabel("forward evaluations / n")
    ax2.legend()
    ax2.grid(alpha=0.3, which="both")
    fig.suptitle("Tape memory grows with n; checkpointing trades it for recomputation")
    save(fig, args.out, "claim4_tape_memory",
         ["n", "store_all_peak_bytes", "revolve8_peak_bytes", "store_all_evaluations", "revolve8_evaluations"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
