"""Benchmark: planning speed of revolve against checkpoint_schedules and pyrevolve, in one run.

    python3 -m pip install checkpoint-schedules pyrevolve   # peers, for this benchmark only
    python3 experiments/bench_planner.py [--quick] [--peer-timeout 150]

Measures (median of --repeats runs, same process, same machine):
  1. iterating the full binomial schedule for n = 10^6, s = 10 (revolve.binomial vs checkpoint_schedules'
     MultistageCheckpointSchedule vs pyrevolve's CRevolve);
  2. planning + iterating n = 1000 and n = 10^4, s = 10 (revolve.binomial vs checkpoint_schedules.Revolve,
     whose construction runs a DP);
  3. the peak Python memory of iterating revolve's schedule for n = 10^4 .. 10^6 (tracemalloc);
  4. simulating the n = 10^6, s = 20 schedule;
  5. storage hierarchies (issue 15's table): the cost forward steps + n + wd x disk writes + rd x disk reads of
     revolve.multilevel beside checkpoint_schedules' Revolve (RAM only), Multistage, TwoLevel (best period that
     fits the disk slots), HRevolve, DiskRevolve and PeriodicDiskRevolve, each peer's own action stream replayed
     by a validator here that counts its cost and the RAM and disk states it holds (a peer holding more than its
     slots is listed but not "respects"), and revolve's planning time (process CPU time) with the exact tables'
     cost beside the fast ones where they differ in method;
  6. online checkpointing against the offline optimum (experiments/_bench_online.py, when present);
  7. the optimal DP's scale table (experiments/_bench_dp_scale.py, when present).

    python3 experiments/bench_planner.py --only multilevel [--peer-timeout 150]   # section 5 alone
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import revolve  # noqa: E402


def _count(iterable) -> int:
    k = 0
    for _ in iterable:
        k += 1
    return k


def ours(n: int, s: int) -> tuple[float, int]:
    t = time.perf_counter()
    k = _count(revolve.binomial(n, snapshots=s))
    return time.perf_counter() - t, k


def multistage(n: int, s: int) -> tuple[float, int]:
    from checkpoint_schedules import MultistageCheckpointSchedule

    t = time.perf_counter()
    sched = MultistageCheckpointSchedule(n, s, 0)
    k = 0
    for _ in sched:
        k += 1
        if sched.is_exhausted:
            break
    return time.perf_counter() - t, k


def cs_revolve(n: int, s: int) -> tuple[float, int]:
    from checkpoint_schedules import Revolve

    t = time.perf_counter()
    sched = Revolve(n, s)
    k = 0
    for _ in sched:
        k += 1
        if sched.is_exhausted:
            break
    return time.perf_counter() - t, k


def pyrevolve_crevolve(n: int, s: int) -> tuple[float, int]:
    from pyrevolve.crevolve import Action, CRevolve

    t = time.perf_counter()
    r = CRevolve(s, n)
    k = 0
    while True:
        a = r.revolve()
        k += 1
        if a == Action.terminate or a == Action.error:
            break
    return time.perf_counter() - t, k


# -- 5. storage hierarchies ---------------------------------------------------------------------------------
# (n, RAM slots, disk slots, write cost, read cost): issue 15's table
MULTILEVEL_ROWS = [
    (1000, 5, 10, 2, 2),
    (1000, 20, 10, 2, 2),
    (1000, 20, 100, 10, 10),
    (3000, 20, 10, 2, 2),
    (10000, 5, 100, 2, 2),
    (10000, 20, 100, 2, 10),
]


def peer_stream_cost(sched, n: int, wd: float, rd: float) -> dict:
    """Replay a checkpoint_schedules schedule, checking it, and count its cost and the states it holds.

    Forward(n0, n1, write_ics, write_adj_deps, storage) advances from the current step (an online schedule's
    forward is cut at n, where it is told n); write_ics stores x_n0 in storage (a disk write when that is
    DISK); Copy/Move(n, from, WORK) make x_n the current state (a disk read when from is DISK), Move also frees
    it; Reverse(n1, n0) runs steps n1-1..n0 backward, in order. Cost = forward steps + n + wd x disk writes +
    rd x disk reads.
    """
    from checkpoint_schedules import Copy, EndForward, EndReverse, Forward, Move, Reverse, StorageType

    cur, r = 0, 0  # current forward step; adjoint steps done
    held = {StorageType.RAM: set(), StorageType.DISK: set()}
    peak = {StorageType.RAM: 0, StorageType.DISK: 0}
    fwd = writes = reads = 0
    finalized = sched.max_n is not None
    for act in sched:
        if isinstance(act, Forward):
            if act.n0 != cur:
                raise AssertionError(f"{act} does not start at the current step {cur}")
            n1 = min(act.n1, n)
            fwd += n1 - act.n0
            if act.write_ics and act.storage in held:
                held[act.storage].add(act.n0)
                peak[act.storage] = max(peak[act.storage], len(held[act.storage]))
                writes += act.storage == StorageType.DISK
            cur = n1
            if cur == n and not finalized:
                sched.finalize(n)
                finalized = True
        elif isinstance(act, Reverse):
            if act.n1 != n - r or act.n0 >= act.n1:
                raise AssertionError(f"{act} out of order (next adjoint step {n - r - 1})")
            r += act.n1 - act.n0
        elif isinstance(act, (Copy, Move)):
            if act.from_storage in held:
                if act.n not in held[act.from_storage]:
                    raise AssertionError(f"{act}: x_{act.n} is not stored there")
                reads += act.from_storage == StorageType.DISK
                if isinstance(act, Move):
                    held[act.from_storage].discard(act.n)
            cur = act.n
        elif isinstance(act, EndForward):
            if cur != n:
                raise AssertionError(f"EndForward at step {cur}, not {n}")
        elif isinstance(act, EndReverse):
            break
    if r != n:
        raise AssertionError(f"{r} of {n} adjoint steps done")
    return {"cost": fwd + n + wd * writes + rd * reads, "forward": fwd, "disk_writes": writes,
            "disk_reads": reads, "ram_held": peak[StorageType.RAM], "disk_held": peak[StorageType.DISK]}


def _peer_schedules(n, ram, disk, wd, rd):
    """name -> a function building that peer's schedule (or a list of them, the best fitting one kept)."""
    import checkpoint_schedules as cs

    def twolevel():
        # periodic disk checkpoints + binomial in RAM between them; periods that fit the disk slots
        lo = -(-n // disk)
        periods = sorted({lo, lo + 1, 2 * lo, 4 * lo, max(lo, n // 2), n})
        return [cs.TwoLevelCheckpointSchedule(p, ram, binomial_storage=cs.StorageType.RAM) for p in periods if p >= lo]

    return {
        "Revolve (RAM only)": lambda: cs.Revolve(n, ram),
        "Multistage": lambda: cs.MultistageCheckpointSchedule(n, ram, disk),
        "TwoLevel": twolevel,
        "HRevolve": lambda: cs.HRevolve(n, ram, disk, wd=wd, rd=rd),
        "DiskRevolve": lambda: cs.DiskRevolve(n, ram, wd=wd, rd=rd),
        "PeriodicDiskRevolve": lambda: cs.PeriodicDiskRevolve(n, ram, wd=wd, rd=rd),
    }


def _peer_child(name, row, q):
    n, ram, disk, wd, rd = row
    t = time.process_time()
    built = _peer_schedules(*row)[name]()
    results = [peer_stream_cost(s, n, wd, rd) for s in (built if isinstance(built, list) else [built])]
    fits = [x for x in results if x["disk_held"] <= disk and x["ram_held"] <= ram]
    best = min(fits or results, key=lambda x: x["cost"])
    best["seconds"] = time.process_time() - t
    q.put(best)


def _in_child(target, args, timeout, on_no_result):
    """Run target(*args, queue) in a forked child; what it put on the queue, None past ``timeout`` seconds, or
    on_no_result(exit code) when it ended without a result."""
    q = mp.get_context("fork").Queue()
    p = mp.get_context("fork").Process(target=target, args=(*args, q))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.terminate()
        p.join()
        return None
    return q.get() if not q.empty() else on_no_result(p.exitcode)


def _peer_row(name, row, timeout):
    """A peer's counted stream for one table row in a child process; None past ``timeout`` seconds."""
    return _in_child(_peer_child, (name, row), timeout, lambda code: {"error": f"exit code {code}"})


def multilevel_table(peer_timeout: float, log=print, exact_check: bool = True) -> list[dict]:
    """Section 5: revolve.multilevel's row beside the peers' for each setting of MULTILEVEL_ROWS."""
    try:
        import checkpoint_schedules  # noqa: F401
        peers = list(_peer_schedules(1000, 5, 10, 2, 2))
    except ImportError:
        peers = []
        log("   checkpoint_schedules not installed (python3 -m pip install checkpoint-schedules): revolve's rows only")
    out = []
    for row in MULTILEVEL_ROWS:
        n, ram, disk, wd, rd = row
        slots, io = {"ram": ram, "disk": disk}, {"disk": (wd, rd)}
        times = []
        for _ in range(3):
            t = time.process_time()
            plan_cost = revolve.multilevel_cost(n, slots=slots, io_cost=io)
            times.append(time.process_time() - t)
        sched = revolve.multilevel(n, slots=slots, io_cost=io)
        st = revolve.simulate(sched, slots=slots, io_cost=io)  # validates, checks the slots, charges the I/O
        assert st.cost == plan_cost
        exact = None
        if exact_check and sched.params["method"] == "fast":
            t = time.process_time()
            exact = revolve.multilevel_cost(n, slots=slots, io_cost=io, method="exact")
            exact_s = time.process_time() - t
        ram_only = revolve.binomial_cost(n, snapshots=ram) + 2 * n
        bound = revolve.binomial_cost(n, snapshots=ram + disk) + 2 * n
        log(f"   n={n:,} RAM/disk slots {ram}/{disk}, wd/rd {wd}/{rd}: RAM-only binomial {ram_only:,}; "
            f"lower bound (free I/O) {bound:,}")
        line = (f"     {'revolve.multilevel':<24} {st.cost:>9,.0f}  holds RAM {st.peak_snapshots_by_storage.get('ram', 0):>3} "
                f"disk {st.peak_snapshots_by_storage.get('disk', 0):>4}  plans in {statistics.median(times):.2f} s "
                f"({sched.params['method']})")
        if exact is not None:
            line += f"; exact tables {exact:,.0f} in {exact_s:.1f} s"
        log(line)
        entry = {"row": row, "revolve": st.cost, "revolve_s": statistics.median(times), "method": sched.params["method"],
                 "exact": exact, "ram_only": ram_only, "bound": bound, "peers": {}}
        for name in peers:
            res = _peer_row(name, row, peer_timeout)
            entry["peers"][name] = res
            if res is None:
                log(f"     {name:<24} > {peer_timeout:.0f} s to plan (stopped)")
            elif "error" in res:
                log(f"     {name:<24} failed ({res['error']})")
            else:
                fits = res["disk_held"] <= disk and res["ram_held"] <= ram
                log(f"     {name:<24} {res['cost']:>9,.0f}  holds RAM {res['ram_held']:>3} disk {res['disk_held']:>4}  "
                    f"{res['seconds']:.2f} s{'' if fits else '   EXCEEDS its slots'}")
        ok = [r["cost"] for r in entry["peers"].values()
              if r and "error" not in r and r["disk_held"] <= disk and r["ram_held"] <= ram]
        if ok:
            log(f"     best peer within its slots {min(ok):,.0f}; revolve {st.cost / min(ok):.3f}x of it")
        out.append(entry)
    return out


def _figure(path: Path) -> None:
    """docs/figures/multilevel_tradeoff.png: cost / n against disk slots for RAM-only, revolve and the bound."""
    from revolve.plotting import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    n = 1000
    disks = [0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200]
    for ax, wr in zip(axes, [(2, 2), (10, 10)]):
        for ram, color in ((5, "C0"), (20, "C1")):
            ys = [revolve.multilevel_cost(n, slots={"ram": ram, "disk": d}, io_cost={"disk": wr}) / n for d in disks]
            lb = [(revolve.binomial_cost(n, snapshots=ram + d) + 2 * n) / n for d in disks]
            ax.plot(disks, ys, "-o", ms=3, color=color, label=f"revolve.multilevel, {ram} RAM slots")
            ax.plot(disks, lb, ":", color=color, lw=1, label=f"free I/O bound t(n, {ram}+d)")
            ax.axhline((revolve.binomial_cost(n, snapshots=ram) + 2 * n) / n, color=color, ls="--", lw=0.8,
                       label=f"RAM-only Revolve, {ram} slots")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, disks[-1] * 1.1)
        ax.set_xlabel("disk slots d")
        ax.set_ylabel("cost / n (forward + backward + I/O)")
        ax.set_title(f"n = {n}, disk write/read cost {wr[0]}/{wr[1]}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _optional_section(title: str, module: str, argv: list[str]) -> None:
    """Run another bench module's main(argv) if that module is present."""
    print(title)
    try:
        mod = __import__(module)
    except ImportError as e:
        print(f"   {module}.py not available ({e})")
        return
    main_fn = getattr(mod, "main", None)
    if main_fn is None:
        print(f"   {module}.py has no main()")
        return
    import inspect

    takes_argv = bool(inspect.signature(main_fn).parameters)
    main_fn(argv) if takes_argv else main_fn()  # main(argv) as _bench_online has it, or main()


def _child(fn, n, s, q):
    q.put(fn(n, s))


def timed(fn, n, s, timeout):
    """Run fn(n, s) in a child process; None if it does not finish within ``timeout`` seconds."""
    return _in_child(_child, (fn, n, s), timeout, lambda code: None)


def median_time(fn, n, s, repeats, timeout):
    runs = [timed(fn, n, s, timeout) for _ in range(repeats)]
    if any(r is None for r in runs):
        return None, None
    return statistics.median(r[0] for r in runs), runs[0][1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-timeout", type=float, default=150.0)
    ap.add_argument("--quick", action="store_true", help="n = 10^5 instead of 10^6, no slow peers")
    ap.add_argument("--only", choices=["planner", "multilevel", "online", "dp_scale"], default=None,
                    help="run one section (planner: sections 1-4)")
    ap.add_argument("--no-exact-check", action="store_true", help="section 5 without the exact tables' cost")
    args = ap.parse_args()
    big = 10**5 if args.quick else 10**6
    sections = {args.only} if args.only else {"planner", "multilevel", "online", "dp_scale"}
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if "planner" in sections:
        _planner_sections(args, big)
    if "multilevel" in sections:
        lines = []

        def log(text):
            print(text, flush=True)
            lines.append(text)

        root = Path(__file__).resolve().parents[1]
        log("5. storage hierarchies: cost = forward steps + n + wd x disk writes + rd x disk reads")
        multilevel_table(args.peer_timeout, log=log, exact_check=not args.no_exact_check)
        fig = root / "docs" / "figures" / "multilevel_tradeoff.png"
        _figure(fig)
        log(f"   figure: {fig.relative_to(root)}")
        out = root / "docs" / "logs" / "bench_multilevel.txt"
        out.write_text(f"python3 experiments/bench_planner.py --only multilevel --peer-timeout {args.peer_timeout:g}\n"
                       + "\n".join(lines) + "\n")
        print(f"   wrote {out.relative_to(root)}")
    if "online" in sections:
        _optional_section("6. online checkpointing against the offline optimum", "_bench_online",
                          ["--quick"] if args.quick else [])
    if "dp_scale" in sections:
        _optional_section("7. the optimal DP's scale", "_bench_dp_scale", ["--quick"] if args.quick else [])
    return 0


def _planner_sections(args, big: int) -> None:
    """Sections 1-4."""

    print(f"1. iterate the binomial schedule, n = {big:,}, s = 10 (median of {args.repeats})")
    t_ours, k_ours = median_time(ours, big, 10, args.repeats, args.peer_timeout)
    print(f"   revolve.binomial                     {t_ours:8.2f} s  {k_ours:,} actions")
    rows = [("checkpoint_schedules Multistage", multistage, args.repeats)]
    if not args.quick:
        rows.append(("pyrevolve CRevolve", pyrevolve_crevolve, 1))
    for name, fn, reps in rows:
        try:
            t, k = median_time(fn, big, 10, reps, args.peer_timeout)
        except ImportError:
            print(f"   {name:<36} not installed")
            continue
        if t is None:
            print(f"   {name:<36} > {args.peer_timeout:.0f} s (stopped)")
        else:
            print(f"   {name:<36} {t:8.2f} s  {k:,} actions   revolve takes {t_ours / t:.2f}x its time")

    print("2. plan and iterate, s = 10")
    for n in ((1000,) if args.quick else (1000, 10**4)):
        t_ours, _ = median_time(ours, n, 10, args.repeats, args.peer_timeout)
        try:
            t_peer, _ = median_time(cs_revolve, n, 10, 1, args.peer_timeout)
        except ImportError:
            print(f"   n = {n:>6,}: revolve {t_ours * 1e3:8.1f} ms; checkpoint_schedules not installed")
            continue
        peer = f"> {args.peer_timeout:.0f} s (stopped)" if t_peer is None else f"{t_peer:8.2f} s"
        ratio = f"at least {args.peer_timeout / t_ours:,.0f}x" if t_peer is None else f"{t_peer / t_ours:,.0f}x"
        print(f"   n = {n:>6,}: revolve {t_ours * 1e3:8.1f} ms; checkpoint_schedules.Revolve {peer}; revolve {ratio} faster")

    print("3. peak Python memory while iterating revolve.binomial(n, snapshots=10)")
    for n in (10**4, 10**5, big):
        tracemalloc.start()
        _count(revolve.binomial(n, snapshots=10))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"   n = {n:>9,}: {peak / 1024:8.1f} KiB")

    print(f"4. simulate revolve.binomial({big:,}, snapshots=20)")
    t = time.perf_counter()
    stats = revolve.simulate(revolve.binomial(big, snapshots=20))
    print(f"   {time.perf_counter() - t:.2f} s, {stats.forward_evaluations:,} forward evaluations "
          f"(closed form {revolve.binomial_cost(big, snapshots=20) + big:,})")


if __name__ == "__main__":
    sys.exit(main())
