"""Online checkpointing against the offline optimum: forward evaluations of revolve.online for n up to 10^6.

For each number of slots s and a grid of n (with beta(s, 2) and beta(s, 3), where the guarantees change), the
forward evaluations (advances + n) of

* offline Revolve, t(n, s) + n (``revolve.binomial_cost``), the best any schedule does when n is known;
* ``revolve.online`` (auto: Stumm-Walther, then Wang-Moin) with the last step known before it runs;
* the same when the stop is seen after the step (its offline best is t(n + 1, s) + n);
* Wang-Moin alone (last step known);
* checkpoint_schedules' TwoLevel (periodic checkpoints, binomial within a period) at equal memory: the best
  period and binomial slot count for that n with ceil(n / period) + slots <= s (chosen knowing n, which favours
  it), counted in closed form and checked against its own action stream where checkpoint_schedules is installed.

Online counts come from ``revolve.online_cost`` (the placement decisions only, plus Revolve's closed form per
segment); the tests check that count against the simulator for every n <= 200, s <= 8, and this script replays
the full action stream through ``revolve.simulate`` at a few smaller n as well.

    python3 experiments/_bench_online.py            # table, docs/logs/bench_online.txt, docs/figures/online_tradeoff.png
    python3 experiments/_bench_online.py --quick    # n up to 10^4, printed only
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from revolve import beta, binomial_cost, online, online_cost, simulate  # noqa: E402

S_VALUES = (5, 10, 20, 50)
HEADER = ["s", "n", "offline", "online", "online_ratio", "stop_after", "stop_after_ratio", "wang_moin",
          "wang_moin_ratio", "twolevel", "twolevel_ratio"]


def _grid(s: int, n_max: int) -> list[int]:
    """About 4 points per decade from 2 to n_max, plus beta(s, 2), beta(s, 3) and their neighbours."""
    ns = {int(round(10 ** (k / 4))) for k in range(1, int(4 * math.log10(n_max)) + 1)}
    for r in (2, 3):
        b = beta(s, r)
        ns |= {b, b + 1}
    ns.add(n_max)
    return sorted(n for n in ns if 2 <= n <= n_max)


def _twolevel_cost(n: int, s: int) -> tuple[int, int, int] | None:
    """(forward evaluations, period, binomial slots) of the best TwoLevel schedule with ceil(n / period) + slots <= s.

    Its stream: the forward advances all n steps writing x_0, x_period, ...; each period of length P is then
    reversed from its stored start with ``slots`` more snapshots: t(P, slots + 1) advances and P records.
    """
    best = None
    for b in range(0, s):
        periods_max = s - b  # stored period starts
        period = -(-n // periods_max)
        full, last = divmod(n, period)
        cost = n + full * (binomial_cost(period, snapshots=b + 1) + period)
        if last:
            cost += binomial_cost(last, snapshots=b + 1) + last
        if best is None or cost < best[0]:
            best = (cost, period, b)
    return best


def _twolevel_counted(n: int, period: int, slots: int) -> int | None:
    """Forward evaluations of checkpoint_schedules' TwoLevel on its own action stream (None if not installed)."""
    try:
        import checkpoint_schedules as cs
    except ImportError:
        return None
    sched = cs.TwoLevelCheckpointSchedule(period, slots)
    total = 0
    for a in sched:
        if isinstance(a, cs.Forward):
            if sched.max_n is None and a.n1 >= n:  # the online forward ends at n
                total += n - a.n0
                sched.finalize(n)
                continue
            total += a.n1 - a.n0
        elif isinstance(a, cs.EndReverse):
            break
    return total


def online_vs_offline(s_values=S_VALUES, n_max: int = 10**6) -> list[dict]:
    """One row per (s, n): forward evaluations of each schedule and their ratio to the offline optimum's."""
    rows = []
    for s in s_values:
        ns = _grid(s, n_max)
        known = online_cost(ns, snapshots=s)
        after = online_cost(ns, snapshots=s, last_step_known=False)
        wm = online_cost(ns, snapshots=s, algorithm="wang-moin")
        for n, a, b, w in zip(ns, known, after, wm):
            off = binomial_cost(n, snapshots=s) + n
            two = _twolevel_cost(n, s)
            rows.append({
                "s": s, "n": n, "offline": off,
                "online": a + n, "online_ratio": (a + n) / off,
                "stop_after": b + n, "stop_after_ratio": (b + n) / off,
                "wang_moin": w + n, "wang_moin_ratio": (w + n) / off,
                "twolevel": two[0], "twolevel_ratio": two[0] / off,
            })
    return rows


def _checks(log) -> None:
    """Full action streams replayed at smaller n: simulated counts equal online_cost; TwoLevel's closed form equals its stream."""
    for s in (5, 10):
        for n in (beta(s, 2), beta(s, 3), 3000):
            sim = simulate(online(snapshots=s).schedule(n)).advances
            assert sim == online_cost(n, snapshots=s), (s, n)
            log(f"check: s={s} n={n}: simulated advances {sim:,} = online_cost")
    for n, s in ((100, 5), (1000, 10), (3000, 20)):
        cost, period, slots = _twolevel_cost(n, s)
        counted = _twolevel_counted(n, period, slots)
        if counted is None:
            log("check: checkpoint_schedules not installed; TwoLevel from its closed form only")
            break
        assert counted == cost, (n, s, counted, cost)
        log(f"check: TwoLevel(period={period}, binomial_snapshots={slots}) at n={n}: its stream {counted:,} "
            f"forward steps = closed form")


def _figure(rows, path: Path) -> None:
    from revolve.plotting import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, s in enumerate(sorted({r["s"] for r in rows})):
        sub = [r for r in rows if r["s"] == s]
        ns = [r["n"] for r in sub]
        c = colors[k % len(colors)]
        ax.plot(ns, [r["online"] / r["n"] for r in sub], "-", color=c, label=f"online, s={s}")
        ax.plot(ns, [r["offline"] / r["n"] for r in sub], "--", color=c, lw=1, label=f"offline t(n,s), s={s}")
        ax.plot(ns, [r["twolevel"] / r["n"] for r in sub], ":", color=c, lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("steps n (known only when the forward ends)")
    ax.set_ylabel("forward evaluations / n")
    ax.set_title("revolve.online vs offline Revolve (dotted: TwoLevel, equal memory)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="n up to 10^4")
    args = ap.parse_args(argv)
    n_max = 10**4 if args.quick else 10**6
    lines = []

    def log(text=""):
        print(text)
        lines.append(text)

    t0 = time.process_time()
    rows = online_vs_offline(n_max=n_max)
    elapsed = time.process_time() - t0
    log(f"Online checkpointing vs the offline optimum: forward evaluations (advances + n), n <= {n_max:,}")
    log("online: revolve.online(algorithm='auto'), last step known; stop after: the stop seen on x_n;")
    log("wang-moin: algorithm='wang-moin'; twolevel: checkpoint_schedules TwoLevel, best period for that n at equal memory")
    log("")
    head = f"{'s':>3} {'n':>9} {'offline':>12} {'online':>12} {'ratio':>7} {'stop after':>12} {'ratio':>7} " \
           f"{'wang-moin':>12} {'ratio':>7} {'twolevel':>12} {'ratio':>7}"
    log(head)
    for r in rows:
        tag = ""
        for k in (2, 3):
            if r["n"] == beta(r["s"], k):
                tag = f"  = beta(s, {k})"
        log(f"{r['s']:>3} {r['n']:>9,} {r['offline']:>12,} {r['online']:>12,} {r['online_ratio']:>7.4f} "
            f"{r['stop_after']:>12,} {r['stop_after_ratio']:>7.4f} {r['wang_moin']:>12,} {r['wang_moin_ratio']:>7.4f} "
            f"{r['twolevel']:>12,} {r['twolevel_ratio']:>7.4f}{tag}")
    log("")
    for s in sorted({r["s"] for r in rows}):
        sub = [r for r in rows if r["s"] == s]
        b2 = [r for r in sub if r["n"] <= beta(s, 2)]
        log(f"s={s}: n <= beta(s,2)={beta(s, 2):,}: online = offline at every point: "
            f"{all(r['online'] == r['offline'] for r in b2)}; worst online ratio {max(r['online_ratio'] for r in sub):.4f}; "
            f"at n={sub[-1]['n']:,}: online {sub[-1]['online_ratio']:.4f}, wang-moin {sub[-1]['wang_moin_ratio']:.4f}, "
            f"twolevel {sub[-1]['twolevel_ratio']:.4f}")
    log(f"counting took {elapsed:.1f} s of process CPU time")
    _checks(log)
    if not args.quick:  # a quick run writes nothing into docs/
        fig = ROOT / "docs" / "figures" / "online_tradeoff.png"
        _figure(rows, fig)
        log(f"figure: {fig.relative_to(ROOT)}")
        out = ROOT / "docs" / "logs" / "bench_online.txt"
        out.write_text("\n".join(lines) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
