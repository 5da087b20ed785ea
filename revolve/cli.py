"""The ``revolve`` command-line tool.

    revolve plan binomial --steps N --snapshots S [--chain CHAIN.json] [--json FILE] [--show [K]]
    revolve plan periodic --steps N --every K
    revolve plan store-all --steps N
    revolve plan optimal --chain CHAIN.json --memory 512MiB [--slots M]
    revolve frontier --chain CHAIN.json [--csv FILE]
    revolve simulate FILE [--chain CHAIN.json]
    revolve cost --steps N --snapshots S
    revolve plot tradeoff [--steps N ...] [--out DIR]
    revolve plot frontier --chain CHAIN.json [--out DIR]
    revolve demo

A user error prints one line naming the problem and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys


class UsageError(Exception):
    """A problem with the command line, reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, no usage block
        raise UsageError(f"{self.prog}: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="revolve", description="Memory-optimal checkpointing schedules for reverse-mode AD.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    plan = sub.add_parser("plan", help="plan a schedule and print its stats")
    kinds = plan.add_subparsers(dest="kind", required=True, parser_class=_Parser)

    def outputs(q):
        q.add_argument("--chain", help="chain JSON file: adds time and memory to the stats")
        q.add_argument("--json", metavar="FILE", help="write the schedule as JSON to FILE")
        q.add_argument("--show", nargs="?", type=int, const=20, default=None, metavar="K",
                       help="print the first K actions (default 20)")

    q = kinds.add_parser("binomial", help="Revolve: fewest recomputations for a number of snapshot slots")
    q.add_argument("--steps", type=_positive_int, required=True)
    q.add_argument("--snapshots", type=_positive_int, required=True, help="slots, counting the one holding x_0")
    outputs(q)
    q = kinds.add_parser("periodic", help="snapshot every K-th state (torch checkpoint_sequential)")
    q.add_argument("--steps", type=_positive_int, required=True)
    q.add_argument("--every", type=_positive_int, required=True)
    outputs(q)
    q = kinds.add_parser("store-all", help="record every step, no recomputation")
    q.add_argument("--steps", type=_positive_int, required=True)
    outputs(q)
    q = kinds.add_parser("optimal", help="fastest schedule within a memory budget (heterogeneous chains)")
    q.add_argument("--chain", required=True, help="chain JSON file")
    q.add_argument("--memory", required=True, help="budget, e.g. 512MiB, 2GB or a number of bytes")
    q.add_argument("--slots", type=_positive_int, default=None, help="memory discretization (default 500)")
    q.add_argument("--json", metavar="FILE", help="write the schedule as JSON to FILE")
    q.add_argument("--show", nargs="?", type=int, const=20, default=None, metavar="K")

    q = sub.add_parser("frontier", help="the time/memory Pareto frontier of a chain")
    q.add_argument("--chain", required=True, help="chain JSON file")
    q.add_argument("--slots", type=_positive_int, default=None, help="memory discretization (default 500)")
    q.add_argument("--csv", metavar="FILE", help="write the frontier as CSV to FILE")

    q = sub.add_parser("simulate", help="validate a schedule JSON file and print its stats")
    q.add_argument("file")
    q.add_argument("--chain", help="chain JSON file: adds time and memory to the stats")

    q = sub.add_parser("cost", help="closed-form binomial cost t(n, s) and repetition number")
    q.add_argument("--steps", type=_positive_int, required=True)
    q.add_argument("--snapshots", type=_positive_int, required=True)

    q = sub.add_parser("plot", help="draw tradeoff plots (PNG and CSV)")
    plots = q.add_subparsers(dest="plot", required=True, parser_class=_Parser)
    r = plots.add_parser("tradeoff", help="recomputation ratio against memory for uniform chains")
    r.add_argument("--steps", type=_positive_int, nargs="+", default=[100, 1000, 10_000, 100_000, 1_000_000])
    r.add_argument("--tape-states", type=float, default=10.0, help="size of a tape in states (default 10)")
    r.add_argument("--out", default=".", help="output folder (default: current)")
    r = plots.add_parser("frontier", help="time against memory for a heterogeneous chain: DP vs baselines")
    r.add_argument("--chain", required=True, help="chain JSON file")
    r.add_argument("--slots", type=_positive_int, default=500)
    r.add_argument("--out", default=".", help="output folder (default: current)")

    q = sub.add_parser("demo", help="the built-in demo")
    q.add_argument("--steps", type=_positive_int, default=None, help="time steps (default: the demo's own)")
    q.add_argument("--points", type=_positive_int, default=None, help="grid points (default: the demo's own)")
    q.add_argument("--memory", default=None, help="memory budget for the checkpoints, e.g. 64MiB")
    return p


def _print_schedule(schedule, args, chain) -> None:
    from .simulator import simulate

    print(f"schedule: {schedule!r}")
    print(simulate(schedule, chain))
    if args.show is not None:
        print(f"first {args.show} actions:")
        for a in schedule.head(args.show):
            print(f"  {a!r}")
    if args.json:
        schedule.save(args.json)
        print(f"wrote {args.json}")


def _run(args) -> int:
    import revolve

    if args.command == "plan":
        chain = revolve.Chain.from_json(args.chain) if getattr(args, "chain", None) else None
        if args.kind == "binomial":
            schedule = revolve.binomial(args.steps, snapshots=args.snapshots)
        elif args.kind == "periodic":
            schedule = revolve.periodic(args.steps, every=args.every)
        elif args.kind == "store-all":
            schedule = revolve.store_all(args.steps)
        elif args.kind == "optimal":
            memory = revolve.parse_bytes(args.memory, where="revolve plan optimal", name="--memory")
            kw = {} if args.slots is None else {"slots": args.slots}
            schedule = revolve.optimal(chain, memory=memory, **kw)
        else:  # argparse restricts the choices
            raise UsageError(f"revolve plan: unknown kind {args.kind!r}")
        if chain is not None and chain.n_steps != schedule.n_steps:
            raise UsageError(f"revolve plan: the chain has {chain.n_steps} steps but --steps is {schedule.n_steps}")
        _print_schedule(schedule, args, chain)
        return 0
    if args.command == "frontier":
        chain = revolve.Chain.from_json(args.chain)
        kw = {} if args.slots is None else {"slots": args.slots}
        front = revolve.frontier(chain, **kw)
        print(front)
        if args.csv:
            front.save_csv(args.csv)
            print(f"wrote {args.csv}")
        return 0
    if args.command == "simulate":
        schedule = revolve.Schedule.load(args.file)
        chain = revolve.Chain.from_json(args.chain) if args.chain else None
        print(revolve.simulate(schedule, chain))
        return 0
    if args.command == "cost":
        n, s = args.steps, args.snapshots
        t = revolve.binomial_cost(n, snapshots=s)
        print(f"t({n}, {s}) = {t} advances; repetition number r = {revolve.repetition_number(n, snapshots=s)}; "
              f"forward evaluations {t + n}; recomputation ratio {(t + n) / n:.4f}")
        return 0
    if args.command == "plot":
        from . import plotting

        if args.plot == "tradeoff":
            png, csv_path = plotting.plot_tradeoff(args.steps, args.out, tape_states=args.tape_states)
        else:
            png, csv_path = plotting.plot_frontier(revolve.Chain.from_json(args.chain), args.out, slots=args.slots)
        print(f"wrote {png} and {csv_path}")
        return 0
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(steps=args.steps, points=args.points, memory=args.memory)
    raise UsageError(f"revolve: unknown command {args.command!r}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``revolve`` console script; returns the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        return _run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, ImportError) as e:
        # revolve's own user errors name the function, argument and allowed values;
        # REVOLVE_DEBUG=1 shows the traceback instead
        if os.environ.get("REVOLVE_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
