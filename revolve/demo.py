"""The built-in demo (``revolve demo``)."""

from __future__ import annotations


def run_demo(*, steps: int | None = None, points: int | None = None, memory: str | None = None) -> int:
    """Plan a 10^4-step chain with Revolve, periodic checkpointing and store-all, and compare them."""
    from . import binomial, min_snapshots, periodic, simulate, store_all

    n = steps or 10_000
    s = min_snapshots(n, max_ratio=3.0)
    k = max(1, round(n ** 0.5))
    print(f"Checkpointing a chain of {n:,} steps")
    for name, sched in (("binomial (Revolve)", binomial(n, snapshots=s)), (f"periodic every {k}", periodic(n, every=k)),
                        ("store-all", store_all(n))):
        st = simulate(sched)
        print(f"  {name:<22} states held {st.peak_snapshots + st.peak_tapes:>7,}   recomputation ratio {st.recomputation_ratio:.3f}")
    return 0
