"""The DP against exhaustive search over every schedule, on random small chains.

    python3 experiments/check_exhaustive.py [--quick]

For each family of random chains (integral sizes, so one-byte units discretize them exactly) a
Dijkstra search over all simulator states (tests/oracles.py, independent of the planner) finds the least
time of any valid schedule within a budget, and the least budget with which any schedule exists. Prints,
per family, how often revolve.optimal reaches the exhaustive optimum, its worst relative gap, and how
often revolve.min_memory equals the exhaustive minimum. The families: plain chains, chains whose tapes
keep their step's input or output (shared states), and shared states with working memory (overheads
and adjoints). Where the DP misses, the exhaustive schedule lies outside its class (docs/theory.md).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from _common import ROOT, parser

sys.path.insert(0, str(ROOT))

from revolve import Chain, min_memory, optimal, simulate  # noqa: E402
from tests.oracles import exhaustive_optimum  # noqa: E402


def family(rng, n, shared, working):
    F = rng.integers(1, 10, n).astype(float)
    B = rng.integers(1, 10, n).astype(float)
    S = rng.choice([1, 1, 2, 12, 20], n + 1).astype(float)
    T = rng.choice([1, 3, 6, 15] if not shared else [0, 1, 3, 6, 15], n).astype(float)
    extra = {}
    if shared:
        extra["hin"], extra["hout"] = rng.random(n) < 0.5, rng.random(n) < 0.5
    if working:
        extra.update(fo=rng.choice([0, 2, 10, 30], n), ro=rng.choice([0, 5, 30], n), bo=rng.choice([0, 3, 10, 30], n),
                     adj=rng.choice([0, 1, 5, 20], n + 1))
    kw = {}
    if shared:
        kw.update(tape_holds_input=extra["hin"].tolist(), tape_holds_output=extra["hout"].tolist())
    if working:
        kw.update(forward_overhead=extra["fo"], record_overhead=extra["ro"], backward_overhead=extra["bo"],
                  adjoint_bytes=extra["adj"])
    return (F, B, S, T), extra, Chain(forward_cost=F, backward_cost=B, state_bytes=S, tape_bytes=T, **kw)


def run(name, trials, max_steps, shared, working, seed):
    rng = np.random.default_rng(seed)
    matches = min_matches = 0
    worst = 0.0
    for _ in range(trials):
        n = int(rng.integers(1, max_steps + 1))
        arrays, extra, chain = family(rng, n, shared, working)
        F, B, S, T = arrays
        lo = min_memory(chain)
        min_matches += exhaustive_optimum(*arrays, lo - 1, **extra) == np.inf
        memory = max(1.0, float(rng.integers(int(lo), int(lo + T.sum() + S.sum()) + 1)))
        best = exhaustive_optimum(*arrays, memory, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = simulate(optimal(chain, memory=memory, slots=int(memory), lower_bound=False), chain).time
        assert got >= best - 1e-9, "the DP beat exhaustive search: an invalid schedule"
        matches += got <= best + 1e-9
        worst = max(worst, (got - best) / best)
    print(f"{name:<44} {trials:>4} chains of 1-{max_steps} steps: optimum reached {matches:>4}, worst gap "
          f"{worst:6.1%}; min_memory exact {min_matches:>4}")


def main(argv=None) -> int:
    args = parser(__doc__).parse_args(argv)
    trials = 20 if args.quick else 300
    for name, steps, shared, working, seed in (("plain chains", 5, False, False, 1),
                                               ("plain chains", 6, False, False, 2),
                                               ("shared states", 5, True, False, 3),
                                               ("shared states + working memory", 5, True, True, 4),
                                               ("shared states + working memory", 6, True, True, 5)):
        run(name, trials if steps == 5 else trials // 3, steps if not args.quick else 4, shared, working, seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
