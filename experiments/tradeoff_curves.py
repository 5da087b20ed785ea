"""The tradeoff figures: recomputation against memory for uniform chains (n = 10^2 .. 10^6), and the
heterogeneous DP's time/memory frontier against periodic, binomial and store-all.

    python3 experiments/tradeoff_curves.py [--quick] [--chain CHAIN.json] [--profile [--save-chain PATH]]

Without --chain, the heterogeneous chain is docs/chains/mixed_width.json: the mixed-width network of
bench_torch.py (batch 2048) as profiled once and shipped, so the README's frontier figure is redrawn from
the same numbers on any machine, torch or not (``revolve plot frontier --chain docs/chains/mixed_width.json``
draws it too). ``--profile`` profiles that network on this machine instead (needs torch; ``--save-chain``
writes the profile as chain JSON); without torch it falls back to a seeded random chain of 24 steps.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from _common import parser

import revolve
from revolve.plotting import plot_frontier, plot_tradeoff


SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "docs", "chains", "mixed_width.json")


def profiled_chain(quick):
    try:
        import torch

        import bench_torch
        from revolve.integrations.torch import profile
    except ImportError:
        torch = None
    if torch is not None:
        model, shape = bench_torch.mixed()
        if quick:
            shape = (64, shape[1])
        return profile(model, torch.randn(*shape)), "profiled mixed-width network (bench_torch.py)"
    else:
        rng = np.random.default_rng(0)
        L = 12 if quick else 24
        chain = revolve.Chain(forward_cost=rng.uniform(1, 4, L), backward_cost=rng.uniform(2, 8, L),
                              state_bytes=rng.choice([1, 4, 16], L + 1) * 2**20, tape_bytes=rng.uniform(2, 30, L) * 2**20)
        return chain, "random chain"


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--chain", help="chain JSON file for the frontier (default: docs/chains/mixed_width.json)")
    ap.add_argument("--profile", action="store_true", help="profile the mixed-width network on this machine")
    ap.add_argument("--save-chain", metavar="PATH", help="with --profile: write the profiled chain as JSON")
    args = ap.parse_args(argv)
    if args.save_chain and not args.profile:
        ap.error("--save-chain needs --profile (it writes the chain that --profile measures)")
    ns = [100, 1000, 10_000] if args.quick else [100, 1000, 10_000, 100_000, 1_000_000]
    print("wrote", *plot_tradeoff(ns, args.out))
    if args.chain:
        chain, title = revolve.Chain.from_json(args.chain), args.chain
    elif args.profile:
        chain, title = profiled_chain(args.quick)
        if args.save_chain:
            with open(args.save_chain, "w") as f:
                f.write(chain.to_json())
            print("wrote", args.save_chain)
    else:
        chain, title = revolve.Chain.from_json(SHIPPED), "profiled mixed-width network (docs/chains/mixed_width.json)"
    print("wrote", *plot_frontier(chain, args.out, slots=100 if args.quick else 500, title=title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
