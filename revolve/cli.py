"""The ``revolve`` command-line tool.

    revolve plan binomial --steps N --snapshots S [--chain CHAIN.json] [--json FILE] [--show [K]]
    revolve plan periodic --steps N --every K
    revolve plan store-all --steps N
    revolve plan optimal --chain CHAIN.json --memory 512MiB [--slots M]
    revolve plan online --steps N --snapshots S [--algorithm auto|stumm-walther|wang-moin] [--stop-after-last]
    revolve plan multilevel --steps N --slots ram=5,disk=10 [--io-cost disk=2:2] [--method auto|exact|fast]
    revolve frontier --chain CHAIN.json [--csv FILE]
    revolve simulate FILE [--chain CHAIN.json]
    revolve cost --steps N --snapshots S
    revolve plot tradeoff [--steps N ...] [--out DIR]
    revolve plot frontier --chain CHAIN.json [--out DIR]
    revolve demo
    revolve --version

A user error prints one line naming the problem and exits with status 2; a file that cannot be written
or read prints one line and exits with status 1. ``REVOLVE_DEBUG=1`` shows tracebacks instead.
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


# options whose value may start with '-' (a negative budget is then reported as such, not as a missing value)
_VALUE_OPTIONS = ("--memory",)

# above this many steps, a planner schedule's stats come from closed forms instead of a replay
_REPLAY_MAX_STEPS = 10**6


def _join_values(argv: list[str]) -> list[str]:
    """``["--memory", "-5MiB"]`` -> ``["--memory=-5MiB"]``, so argparse reads a value starting with '-'."""
    out, k = [], 0
    while k < len(argv):
        a = argv[k]
        if a in _VALUE_OPTIONS and k + 1 < len(argv) and argv[k + 1].startswith("-") and argv[k + 1][1:2] not in ("", "-"):
            out.append(f"{a}={argv[k + 1]}")
            k += 2
        else:
            out.append(a)
            k += 1
    return out


def _positive_int(text: str) -> int:
    text = text.strip()
    if len(text) > 40 or not text.isdigit() and not (text[:1] == "-" and text[1:].isdigit()):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise argparse.ArgumentTypeError(f"expected a positive integer (at most 40 digits), got {shown!r}")
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _nonnegative_int(text: str) -> int:
    text = text.strip()
    if len(text) > 40 or not text.isdigit():
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise argparse.ArgumentTypeError(f"expected a number of actions >= 0, got {shown!r}")
    return int(text)


def _positive_real(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text[:40]!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text[:40]!r}")
    return value


def _pairs(text: str, what: str, example: str) -> list[tuple[str, str]]:
    """``"ram=5,disk=10"`` -> ``[("ram", "5"), ("disk", "10")]``; a malformed item names itself and the format."""
    out = []
    for item in text.split(","):
        name, eq, value = item.strip().partition("=")
        name = name.strip()
        if not eq or not name or not value.strip():
            raise argparse.ArgumentTypeError(f"expected {what} as LEVEL=VALUE items separated by commas "
                                             f"(e.g. {example}), got {text[:60]!r}")
        if name in (n for n, _ in out):
            raise argparse.ArgumentTypeError(f"level {name!r} is given twice in {text[:60]!r}")
        out.append((name, value.strip()))
    return out


def _levels(text: str) -> dict[str, int]:
    """``--slots ram=5,disk=10``: slots per level, fastest first."""
    out = {}
    for name, value in _pairs(text, "slots per level", "ram=5,disk=10"):
        if not value.isdigit():
            raise argparse.ArgumentTypeError(f"the slots of level {name!r} must be an integer >= 0, got {value[:40]!r}")
        out[name] = int(value)
    return out


def _io_costs(text: str) -> dict[str, tuple[float, float]]:
    """``--io-cost disk=2:2``: a level's write and read costs."""
    out = {}
    for name, value in _pairs(text, "write:read costs per level", "disk=2:2"):
        w, colon, r = value.partition(":")
        try:
            if not colon:
                raise ValueError
            out[name] = (float(w), float(r))
        except ValueError:
            raise argparse.ArgumentTypeError(f"the cost of level {name!r} must be WRITE:READ (two numbers, "
                                             f"e.g. {name}=2:2), got {value[:40]!r}") from None
    return out


def _load_chain(where: str, path: str):
    """Chain.from_json on a file, with unreadable, binary and deeply nested files reported in one line."""
    import json

    from .chain import Chain

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError(f"{where}: --chain {path!r} cannot be read: {e.strerror}") from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise UsageError(f"{where}: --chain {path!r} is not a chain file: not UTF-8 text (byte {e.start}); "
                         f"write one with Chain(...).to_json()") from None
    except RecursionError:
        raise UsageError(f"{where}: --chain {path!r} is not a chain file: JSON nested too deeply") from None
    except ValueError as e:
        raise UsageError(f"{where}: --chain {path!r} is not valid JSON ({str(e)[:120]}); "
                         f"write one with Chain(...).to_json()") from None
    return Chain.from_json(doc)


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="revolve", description="Memory-optimal checkpointing schedules for reverse-mode AD.")
    p.add_argument("--version", action="version", version=f"revolve {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    plan = sub.add_parser("plan", help="plan a schedule and print its stats")
    kinds = plan.add_subparsers(dest="kind", required=True, parser_class=_Parser)

    def outputs(q):
        q.add_argument("--chain", help="chain JSON file: adds time and memory to the stats")
        q.add_argument("--json", metavar="FILE", help="write the schedule as JSON to FILE")
        q.add_argument("--show", nargs="?", type=_nonnegative_int, const=20, default=None, metavar="K",
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
    q.add_argument("--show", nargs="?", type=_nonnegative_int, const=20, default=None, metavar="K")

    q = kinds.add_parser("online", help="snapshots decided as steps arrive (n unknown until the end), "
                                        "replayed for a forward that stops after N steps")
    q.add_argument("--steps", type=_positive_int, required=True, help="the step count the forward stops at")
    q.add_argument("--snapshots", type=_positive_int, required=True, help="slots, counting the one holding x_0")
    q.add_argument("--algorithm", choices=("auto", "stumm-walther", "wang-moin"), default="auto")
    q.add_argument("--stop-after-last", action="store_true",
                   help="the stop is seen on x_N, after step N-1 ran (default: known before it runs)")
    outputs(q)
    q = kinds.add_parser("multilevel", help="storage levels with their own slots and write/read costs (RAM, disk)")
    q.add_argument("--steps", type=_positive_int, required=True)
    q.add_argument("--slots", type=_levels, required=True, metavar="LEVEL=K[,LEVEL=K...]",
                   help="slots per level, fastest first, e.g. ram=5,disk=10")
    q.add_argument("--io-cost", type=_io_costs, default=None, metavar="LEVEL=W:R[,...]",
                   help="write and read cost of a level in forward steps, e.g. disk=2:2 (default: free)")
    q.add_argument("--forward-cost", type=_positive_real, default=1.0, help="cost of one forward step (default 1)")
    q.add_argument("--backward-cost", type=_positive_real, default=1.0, help="cost of one backward step (default 1)")
    q.add_argument("--method", choices=("auto", "exact", "fast"), default="auto")
    outputs(q)

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


def _stats(schedule, chain):
    """The simulator's stats, or closed forms for a long planner schedule without a chain (no replay)."""
    from .simulator import closed_form_stats, simulate

    if chain is None and schedule.n_steps > _REPLAY_MAX_STEPS:
        stats = closed_form_stats(schedule)
        if stats is not None:
            return f"{stats}\n(closed form: a schedule of more than {_REPLAY_MAX_STEPS:,} steps is not replayed)"
    progress, schedule = _with_progress(schedule)
    try:
        return simulate(schedule, chain)
    finally:
        progress.close()


def _with_progress(schedule):
    """The schedule, counting its reversed steps on a Progress line when stderr is a terminal and n > 10^4."""
    from ._io import Progress
    from .actions import Reverse
    from .schedule import Schedule

    progress = Progress(schedule.n_steps, "revolve: replaying the schedule, reversed steps",
                        enabled=None if schedule.n_steps > 10**4 else False)
    if not progress.enabled:
        return progress, schedule
    inner = schedule

    def actions():
        for a in inner:
            if a.__class__ is Reverse:
                progress.update()
            yield a

    return progress, Schedule(actions, n_steps=inner.n_steps, kind=inner.kind, params=inner.params)


def _print_schedule(schedule, args, chain, *, stats: bool = True) -> None:
    if stats:
        print(f"schedule: {schedule!r}")
        print(_stats(schedule, chain))
    if args.show is not None:
        print(f"first {args.show} actions:")
        for a in schedule.head(args.show):
            print(f"  {a!r}")
    if args.json:
        _write(args.json, "--json", schedule.save)
        print(f"wrote {args.json}")


def _write(path: str, option: str, save) -> None:
    """Call ``save(path)``, reporting an OSError as one line that names the option and the file."""
    try:
        save(path)
    except OSError as e:
        raise _FileError(f"revolve: cannot write {option} {path!r}: {e.strerror or e}") from None


class _FileError(Exception):
    """A file that cannot be read or written: one line, exit status 1."""


def _check_outputs(args) -> None:
    """Cheap checks first: every output file can be created before any slow work starts."""
    from ._io import check_folder, check_writable

    where = f"revolve {args.command}"
    if getattr(args, "json", None):
        check_writable(where, "--json", args.json)
    if getattr(args, "csv", None):
        check_writable(where, "--csv", args.csv)
    if getattr(args, "out", None):
        check_folder(where, "--out", args.out)
    path = getattr(args, "chain", None)
    if path and not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        raise UsageError(f"{where}: --chain {path!r} {what}; give an existing chain JSON file")


def _run(args) -> int:
    import revolve

    _check_outputs(args)
    if args.command == "plan":
        if args.kind == "optimal":  # the budget is checked before the chain is read
            memory = revolve.parse_bytes(args.memory, where="revolve plan optimal", name="--memory")
        chain = _load_chain("revolve plan", args.chain) if getattr(args, "chain", None) else None
        if args.kind == "binomial":
            schedule = revolve.binomial(args.steps, snapshots=args.snapshots)
        elif args.kind == "periodic":
            schedule = revolve.periodic(args.steps, every=args.every)
        elif args.kind == "store-all":
            schedule = revolve.store_all(args.steps)
        elif args.kind == "optimal":
            kw = {} if args.slots is None else {"slots": args.slots}
            schedule = revolve.optimal(chain, memory=memory, **kw)
        elif args.kind == "online":
            planner = revolve.online(snapshots=args.snapshots, algorithm=args.algorithm)
            schedule = planner.schedule(args.steps, last_step_known=not args.stop_after_last)
        elif args.kind == "multilevel":
            schedule = revolve.multilevel(args.steps, slots=args.slots, io_cost=args.io_cost,
                                          forward_cost=args.forward_cost, backward_cost=args.backward_cost,
                                          method=args.method)
        else:  # argparse restricts the choices
            raise UsageError(f"revolve plan: unknown kind {args.kind!r}")
        if chain is not None and chain.n_steps != schedule.n_steps:
            raise UsageError(f"revolve plan: the chain has {chain.n_steps} steps but --steps is {schedule.n_steps}")
        if args.kind == "multilevel":  # per-level slots checked and I/O charged by the replay
            print(f"schedule: {schedule!r}")
            stats = revolve.simulate(schedule, chain, slots=args.slots, io_cost=args.io_cost)
            print(stats)
            if chain is None and (args.forward_cost != 1.0 or args.backward_cost != 1.0):
                total = (stats.forward_evaluations * args.forward_cost + schedule.n_steps * args.backward_cost
                         + stats.io_time)
                print(f"{'cost at the given step costs':<28} {total:,.6g}")
            _print_schedule(schedule, args, chain, stats=False)
            return 0
        _print_schedule(schedule, args, chain)
        if args.kind == "online":
            t = revolve.binomial_cost(args.steps, snapshots=args.snapshots)
            print(f"offline optimum t({args.steps}, {args.snapshots}) = {t:,} advances "
                  f"(forward evaluations {t + args.steps:,})")
        return 0
    if args.command == "frontier":
        chain = _load_chain("revolve frontier", args.chain)
        kw = {} if args.slots is None else {"slots": args.slots}
        front = revolve.frontier(chain, **kw)
        print(front)
        if args.csv:
            _write(args.csv, "--csv", front.save_csv)
            print(f"wrote {args.csv}")
        return 0
    if args.command == "simulate":
        chain = _load_chain("revolve simulate", args.chain) if args.chain else None
        # the chain's n_steps is checked against the file's header before any action is read
        schedule = revolve.Schedule.load(args.file, n_steps=None if chain is None else chain.n_steps)
        print(_stats(schedule, chain))
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
            png, csv_path = plotting.plot_frontier(_load_chain("revolve plot", args.chain), args.out, slots=args.slots)
        print(f"wrote {png} and {csv_path}")
        return 0
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(steps=args.steps, points=args.points, memory=args.memory)
    raise UsageError(f"revolve: unknown command {args.command!r}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``revolve`` console script; returns the exit status."""
    parser = _build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.print_help()
        return 2
    try:
        args = parser.parse_args(_join_values(argv))
        return _run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (_FileError, OSError) as e:
        if os.environ.get("REVOLVE_DEBUG"):
            raise
        text = str(e) if isinstance(e, _FileError) else f"revolve: {e.strerror or e}" + (f": {e.filename!r}" if e.filename else "")
        print(f"error: {text}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, ImportError, OverflowError, RecursionError, MemoryError) as e:
        # revolve's own user errors name the function, argument and allowed values;
        # REVOLVE_DEBUG=1 shows the traceback instead
        if os.environ.get("REVOLVE_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
