"""Planning a schedule for a profiled chain under a memory budget."""

from __future__ import annotations

import math
from typing import Literal


import revolve
from revolve import Chain, InfeasibleBudget, Schedule


Strategy = Literal["optimal", "binomial", "periodic", "store_all"]
_STRATEGIES = ("optimal", "binomial", "periodic", "store_all")
def _parse_memory(memory, where: str) -> float:
    """A budget in bytes (see ``revolve.parse_bytes``), or ``float("inf")``: no budget, store-all."""
    if isinstance(memory, float) and memory == math.inf:
        return math.inf
    return revolve.parse_bytes(memory, where=where, name="memory")


def plan(chain: Chain, *, memory: float, strategy: Strategy = "optimal", slots: int = 500) -> Schedule:
    """A schedule for a profiled chain whose simulated peak is within ``memory`` bytes.

    The peak is the chain's: stored activations and live tapes, plus the working memory when the chain
    models it (``profile(..., working_memory=True)``). ``memory=float("inf")`` means no budget: store-all,
    whatever the strategy (the fastest schedule: nothing is recomputed).

    Strategies: "optimal" (the heterogeneous DP), "binomial" (Revolve with the most snapshots that fit),
    "periodic" (the fastest segment length that fits: torch's checkpoint_sequential), "store_all".

    Raises:
        InfeasibleBudget: no schedule of the strategy fits; the message gives the smallest budget that does.
    """
    where = "revolve.integrations.torch.plan"
    memory = _parse_memory(memory, where)
    n = chain.n_steps
    if memory == math.inf:  # no budget: store-all, the fastest schedule (nothing is recomputed)
        return revolve.store_all(n)
    if strategy == "optimal":
        return revolve.optimal(chain, memory=memory, slots=slots, lower_bound=False)
    if strategy == "store_all":
        candidates = [revolve.store_all(n)]
    elif strategy == "binomial":
        candidates = [revolve.binomial(n, snapshots=s) for s in range(n, 0, -1)]
    elif strategy == "periodic":
        candidates = [revolve.periodic(n, every=k) for k in range(1, n + 1)]
    else:
        raise ValueError(f"{where}: strategy must be one of {', '.join(_STRATEGIES)}, got {strategy!r}")
    best, best_time, least = None, float("inf"), float("inf")
    for sched in candidates:
        st = revolve.simulate(sched, chain)
        least = min(least, st.peak_memory)
        if st.peak_memory <= memory and st.time < best_time:
            best, best_time = sched, st.time
    if best is None:
        raise InfeasibleBudget(
            f"{where}: no {strategy} schedule fits in memory={memory:.0f} bytes ({revolve.format_bytes(memory)}); "
            f"the smallest budget with which one exists is {least:.0f} bytes ({revolve.format_bytes(least)})",
            budget=memory, minimum=least,
        )
    return best

