"""Benchmark: revolve.ad beside torch.autograd (CPU, float64, one thread each): tape memory, gradient cost, per-op overhead.

    python3 experiments/bench_ad.py [--rounds 7] [--quick]

1. Tape memory: the bytes a tape keeps, its arrays alone and everything (``tape_bytes``: arrays, nodes, shape
   records, scalars), against the bytes torch saves for the same computation, counted with
   ``torch.autograd.graph.saved_tensors_hooks`` (each storage once), for the RK2 stencil step, an MLP and an
   elementwise mix.
2. Gradient cost: time(gradient) / time(function) for the RK2 stencil step at 10^4, 10^5 and 10^6 points, an
   MLP and a product of matrices, for revolve.ad and torch.autograd; the gradient includes the recorded forward
   pass. Every setting (function x engine x function-or-gradient) is timed once per round, in a fresh shuffled
   order each round; times are process CPU time per call, medians over the rounds; "spread" is (max - min) /
   median of one setting's per-round times. Flop ratios are the engine's own counts.
3. Per-op overhead: a chain of scalar operations (x = x * c + d on a 0-d array): microseconds per operation of
   plain numpy, of the recorded forward pass, and of the whole gradient, beside torch's gradient.
4. revolve.gradient's memory against its plan: the Lorenz example (RK4 steps of a 3-vector, a tape of about 24 KB
   of small objects) under Revolve with 10 snapshots, tracemalloc's peak for the whole call beside the plan's
   peak (``stats.predicted.peak_memory``: the snapshots and the live tapes), with CPython's free lists emptied
   once before the call, and emptied between the schedule's actions (NOTE [ Measuring with tracemalloc ] in
   tests/test_ad_tape.py: tracemalloc counts memory on a free list as allocated).

Writes docs/logs/bench_ad.txt (not with --quick).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread for both engines
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, free_lists_emptied  # noqa: E402

from revolve import ad, tune_allocator  # noqa: E402

try:
    import torch
except ImportError:  # the tables then show revolve.ad alone
    torch = None


# ---- the functions, written once for both engines ----------------------------------------------------

def stencil(n):
    """One explicit RK2 (Heun) step of viscous Burgers on n periodic points; loss = sum of squares."""
    dx, dt, nu = 1.0 / n, 1e-4, 0.01

    def make(lib, roll):
        def rhs(u):
            up, um = roll(u, -1), roll(u, 1)
            return -u * (up - um) / (2 * dx) + nu * (up - 2 * u + um) / (dx * dx)

        def f(u):
            k1 = rhs(u)
            k2 = rhs(u + dt * k1)
            return lib.sum((u + 0.5 * dt * (k1 + k2)) ** 2)

        return f

    x = np.sin(np.linspace(0, 2 * np.pi, n, endpoint=False))
    return make(ad, ad.roll), make(torch, torch.roll) if torch else None, [x], None


def mlp(batch=256, width=256, depth=4):
    """tanh layers h = tanh(h W + b); loss = mean(h^2); gradient with respect to every W and b."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, width))
    params = [rng.standard_normal((width, width)) / np.sqrt(width) for _ in range(depth)]
    params += [np.zeros(width) for _ in range(depth)]

    def make(lib, xx):
        def f(*p):
            h = xx
            for w, b in zip(p[:depth], p[depth:]):
                h = lib.tanh(h @ w + b)
            return lib.mean(h ** 2)

        return f

    return make(ad, x), make(torch, torch.tensor(x)) if torch else None, params, None


def matrix_chain(n=200, k=8):
    """p = M_1 M_2 ... M_k; loss = sum(p * p); gradient with respect to every matrix."""
    rng = np.random.default_rng(1)
    mats = [rng.standard_normal((n, n)) / np.sqrt(n) for _ in range(k)]

    def make(lib):
        def f(*ms):
            p = ms[0]
            for m in ms[1:]:
                p = p @ m
            return lib.sum(p * p)

        return f

    return make(ad), make(torch) if torch else None, mats, None


def elementwise_mix(n=100_000):
    """sum(sin(x) x + exp(x)^2 - roll(x, 1) / (1 + x^2))."""
    x = np.random.default_rng(2).standard_normal(n)

    def make(lib, roll):
        return lambda x: lib.sum(lib.sin(x) * x + lib.exp(x) ** 2 - roll(x, 1) / (1.0 + x * x))

    return make(ad, ad.roll), make(torch, lambda u, s: torch.roll(u, s)) if torch else None, [x], None


# ---- 1. tape memory ----------------------------------------------------------------------------------

def torch_saved_bytes(f, args) -> int:
    """Bytes of the distinct storages torch.autograd saves for the backward of f(*args)."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    leaves = [torch.tensor(a, requires_grad=True) for a in args]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        f(*leaves)
    return sum(storages.values())


def kept_array_bytes(pb) -> int:
    """Data bytes of the distinct arrays a tape keeps (a view counts its base once)."""
    bases = {}
    for node in pb._tape.nodes:
        if node is not None:
            for v in (*node.args, node.out):
                if isinstance(v, np.ndarray):
                    while isinstance(v.base, np.ndarray):
                        v = v.base
                    bases[id(v)] = v.nbytes
    return sum(bases.values())


def memory_table(cases, log):
    log("1. Tape memory: bytes kept for the backward pass (torch: saved tensors, each storage once)")
    log(f"{'function':<34} {'state':>9} {'arrays':>10} {'tape_bytes':>11} {'torch saved':>12} "
        f"{'arrays/torch':>13} {'tape/torch':>11}")
    for name, (f, ft, args, _) in cases.items():
        _, pb = ad.vjp(f, *args)
        arrays, total = kept_array_bytes(pb), pb.tape_bytes()
        state = sum(a.nbytes for a in args)
        if ft is not None:
            tb = torch_saved_bytes(ft, args)
            log(f"{name:<34} {_mib(state):>9} {_mib(arrays):>10} {_mib(total):>11} {_mib(tb):>12} "
                f"{arrays / tb:>13.3f} {total / tb:>11.4f}")
        else:
            log(f"{name:<34} {_mib(state):>9} {_mib(arrays):>10} {_mib(total):>11} {'-':>12}")
    log("")


def _mib(b) -> str:
    return f"{b / 2**20:.2f}MiB"


# ---- 2. gradient cost, interleaved shuffled rounds ---------------------------------------------------

def _settings(cases):
    """(function, engine, kind) -> a callable running it once."""
    out = {}
    for name, (f, ft, args, _) in cases.items():
        nums = tuple(range(len(args)))
        out[(name, "revolve.ad", "f")] = lambda f=f, args=args: f(*args)
        out[(name, "revolve.ad", "grad")] = lambda f=f, args=args, nums=nums: ad.grad(f, argnums=nums)(*args)
        if ft is not None:
            targs = [torch.tensor(a) for a in args]

            def tf(ft=ft, targs=targs):
                with torch.no_grad():
                    ft(*targs)

            def tg(ft=ft, targs=targs):
                leaves = [t.detach().requires_grad_() for t in targs]
                torch.autograd.grad(ft(*leaves), leaves)

            out[(name, "torch", "f")] = tf
            out[(name, "torch", "grad")] = tg
    return out


def _calls_for(fn, target: float) -> int:
    """How many calls of fn take about ``target`` seconds of CPU time (after one warm-up call)."""
    fn()
    t = time.process_time()
    fn()
    one = max(time.process_time() - t, 1e-6)
    return max(1, min(1000, int(target / one)))


def timing_table(cases, rounds: int, target: float, log):
    settings = _settings(cases)
    calls = {k: _calls_for(fn, target) for k, fn in settings.items()}
    times: dict = {k: [] for k in settings}
    order = list(settings)
    rnd = random.Random(0)
    for _ in range(rounds):
        rnd.shuffle(order)
        for k in order:
            fn, c = settings[k], calls[k]
            t = time.process_time()
            for _ in range(c):
                fn()
            times[k].append((time.process_time() - t) / c)
    med = {k: statistics.median(v) for k, v in times.items()}
    spread = {k: (max(v) - min(v)) / med[k] if med[k] > 0 else 0.0 for k, v in times.items()}
    log(f"2. Gradient cost: time(gradient) / time(function), process CPU time, medians of {rounds} interleaved "
        "shuffled rounds")
    log(f"{'function':<34} {'flop ratio':>10} {'time f':>10} {'ratio':>7} {'torch f':>10} {'torch ratio':>11} "
        f"{'grad vs torch':>13} {'max spread':>10}")
    for name, (f, ft, args, _) in cases.items():
        c = ad.grad_cost(f, *args, argnums=tuple(range(len(args))))
        tf, tg = med[(name, "revolve.ad", "f")], med[(name, "revolve.ad", "grad")]
        keys = [(name, "revolve.ad", "f"), (name, "revolve.ad", "grad")]
        if ft is not None:
            qf, qg = med[(name, "torch", "f")], med[(name, "torch", "grad")]
            keys += [(name, "torch", "f"), (name, "torch", "grad")]
            rest = f"{qf * 1e3:>8.3f}ms {qg / qf:>11.2f} {tg / qg:>13.2f}"
        else:
            rest = f"{'-':>10} {'-':>11} {'-':>13}"
        sp = max(spread[k] for k in keys)
        log(f"{name:<34} {c.flop_ratio:>10.2f} {tf * 1e3:>8.3f}ms {tg / tf:>7.2f} {rest} {sp:>10.1%}")
    log("")
    return med


# ---- 3. per-op overhead ------------------------------------------------------------------------------

def per_op_table(n_ops: int, rounds: int, log):
    def chain(x):
        for _ in range(n_ops // 2):
            x = x * 1.0001 + 0.5
        return x

    x0 = np.array(1.0)
    runs = {
        "numpy": lambda: chain(x0),
        "recorded forward": lambda: ad.vjp(chain, x0),
        "gradient": lambda: ad.grad(chain)(x0),
    }
    if torch is not None:
        t0 = torch.tensor(1.0, dtype=torch.float64)

        def torch_grad():
            leaf = t0.detach().requires_grad_()
            torch.autograd.grad(chain(leaf), leaf)

        runs["torch gradient"] = torch_grad
    times = {k: [] for k in runs}
    order = list(runs)
    rnd = random.Random(1)
    for fn in runs.values():
        fn()
    for _ in range(rounds):
        rnd.shuffle(order)
        for k in order:
            t = time.process_time()
            runs[k]()
            times[k].append((time.process_time() - t) / n_ops)
    log(f"3. Per-op overhead: a chain of {n_ops:,} scalar operations (x = x * c + d, 0-d array), microseconds per "
        f"operation, medians of {rounds} interleaved shuffled rounds")
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        log(f"   {k:<18} {med[k] * 1e6:>7.2f} us   spread {(max(v) - min(v)) / med[k]:.1%}")
    log(f"   recording overhead (recorded forward - numpy): {(med['recorded forward'] - med['numpy']) * 1e6:.2f} us "
        f"per op; gradient - numpy: {(med['gradient'] - med['numpy']) * 1e6:.2f} us per op")
    log("")


# ---- 4. revolve.gradient's memory against its plan ---------------------------------------------------

def gradient_memory_table(steps, log):
    import gc
    import tracemalloc

    import revolve
    from revolve.examples import lorenz

    step, s0, params, loss = lorenz()

    def peak(n, between):
        plan = revolve.binomial(n, snapshots=10)
        run = lambda sc: revolve.gradient(step, s0, n_steps=n, loss=loss, params=params, schedule=sc)
        run(plan)  # warm
        gc.collect()
        gc.freeze()  # the collections between actions then only look at the run's objects
        try:
            tracemalloc.start()
            try:
                base, _ = tracemalloc.get_traced_memory()
                r = run(free_lists_emptied(plan) if between else plan)
                _, top = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        finally:
            gc.unfreeze()
        return top - base, r.stats

    log("4. revolve.gradient's memory against its plan: Lorenz (RK4, 3-vector), Revolve with 10 snapshots, "
        "tracemalloc's peak of the whole call")
    log(f"{'steps':>6} {'plan':>9} {'one tape':>9} {'peak, free lists emptied once':>30} "
        f"{'peak, emptied between actions':>30}")
    for n in steps:
        once, stats = peak(n, False)
        between, _ = peak(n, True)
        plan = stats.predicted.peak_memory
        log(f"{n:>6} {plan / 1024:>7.1f}KB {stats.tape_bytes / 1024:>7.1f}KB {once / 1024:>20.1f}KB ({once / plan:.2f}x) "
            f"{between / 1024:>20.1f}KB ({between / plan:.2f}x)")
    log("")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved shuffled rounds (default 7)")
    ap.add_argument("--quick", action="store_true", help="small sizes, few rounds, nothing written (for the tests)")
    args = ap.parse_args(argv)
    # Arrays of 10^5 doubles exceed glibc's first mmap threshold: every temporary would be a fresh mmap whose
    # page faults (expensive in a VM) dominate the timings. Keep freed memory for reuse, for both engines.
    tune_allocator()
    if torch is not None:
        torch.set_num_threads(1)
    lines: list[str] = []

    def log(s=""):
        print(s, flush=True)
        lines.append(s)

    if args.quick:
        mem = {"stencil RK2 step, 10^3 points": stencil(1000), "MLP 2 x 32, batch 16": mlp(16, 32, 2),
               "elementwise mix, 10^3 points": elementwise_mix(1000)}
        timed = {"stencil RK2 step, 10^3 points": stencil(1000), "MLP 2 x 32, batch 16": mlp(16, 32, 2),
                 "product of 3 matrices 20 x 20": matrix_chain(20, 3)}
        rounds, target, n_ops = 2, 0.002, 200
    else:
        mem = {"stencil RK2 step, 10^5 points": stencil(100_000), "MLP 4 x 256, batch 256": mlp(),
               "elementwise mix, 10^5 points": elementwise_mix()}
        timed = {"stencil RK2 step, 10^4 points": stencil(10_000), "stencil RK2 step, 10^5 points": stencil(100_000),
                 "stencil RK2 step, 10^6 points": stencil(1_000_000), "MLP 4 x 256, batch 256": mlp(),
                 "product of 8 matrices 200 x 200": matrix_chain()}
        rounds, target, n_ops = args.rounds, 0.05, 20_000
    log(f"revolve.ad beside torch.autograd {torch.__version__ if torch else '(not installed)'}, CPU float64, one thread; "
        f"numpy {np.__version__}")
    log("")
    wall = time.perf_counter()
    memory_table(mem, log)
    timing_table(timed, rounds, target, log)
    per_op_table(n_ops, rounds, log)
    gradient_memory_table((30, 100) if args.quick else (100, 300, 1000), log)
    log(f"took {time.perf_counter() - wall:.0f} s")
    if not args.quick:
        out = ROOT / "docs" / "logs" / "bench_ad.txt"
        out.write_text("\n".join(lines) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
