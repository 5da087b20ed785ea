"""Checkpointed time stepping in PyTorch: revolve's executor against plain autograd and torch.utils.checkpoint.

    python3 experiments/bench_torch_loop.py [--quick] [--device cpu|cuda] [--rounds R] [--out DIR]

A recurrent step x <- x + dt * tanh(x @ W + b) on a (192, 512) float32 state (about 1.5 ms on one CPU
thread), 400 steps, loss sum(x_n^2). Settings, timed in interleaved rounds whose order is shuffled every round:

  plain        plain autograd over the unrolled loop (stores every step's tape)
  ckpt_sqrt    torch.utils.checkpoint over sqrt(n) segments (use_reentrant=False), the hand-picked baseline
  loop         revolve.integrations.torch.checkpointed_loop with memory= ckpt_sqrt's measured allocator peak
               (memory= bounds the allocator's peak: the plan gets what one step's measured working memory
               leaves), then .backward()
  gradient     revolve.integrations.torch.gradient, same budget
  loop_eq      checkpointed_loop at equal measured memory: memory= raised one state at a time while its
  gradient_eq  measured peak stays at most ckpt_sqrt's (memory= is a bound, and a conservative one); gradient too

Equal memory: each revolve setting's measured peak is checked to be at most ckpt_sqrt's; were it above, its
budget would be lowered by the excess and measured again (the log says how many times: 0 when memory= holds).

Reported per setting: the median wall and process CPU time of a forward + backward, the spread of the
identical setting over rounds ((max - min) / median), the allocator's measured peak (torch.profiler memory
events on CPU, torch.cuda.max_memory_allocated on CUDA; one separate run, since profiling slows it), the
ratios to plain and to ckpt_sqrt measured in this run, and for the revolve settings the executor overhead:
the run's time over the raw step time it spent, i.e. (advances * t_step + records * t_record + n * t_pullback)
with t_step, t_record, t_pullback measured by the script alone on one step (goal <= 1.05 for steps >= 1 ms).
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402  (puts the repository root on sys.path)
import torch  # noqa: E402
from torch.utils.checkpoint import checkpoint  # noqa: E402

from revolve.integrations.torch import checkpointed_loop, gradient  # noqa: E402


def make_problem(batch, width, device, dtype):
    g = torch.Generator().manual_seed(0)
    W = (torch.randn(width, width, generator=g, dtype=dtype) / math.sqrt(width)).to(device).requires_grad_()
    b = (0.1 * torch.randn(width, generator=g, dtype=dtype)).to(device).requires_grad_()
    x0 = torch.randn(batch, width, generator=g, dtype=dtype).to(device)
    return x0, {"W": W, "b": b}


def step(x, p, i):
    return x + 0.05 * torch.tanh(x @ p["W"] + p["b"])


def loss_fn(x):
    return (x * x).sum()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_plain(x0, p, n):
    x = x0
    for i in range(n):
        x = step(x, p, i)
    loss_fn(x).backward()


def run_ckpt(x0, p, n, k):
    def segment(x, a, b_):
        for i in range(a, b_):
            x = step(x, p, i)
        return x

    x = x0
    for a in range(0, n, k):
        x = checkpoint(segment, x, a, min(a + k, n), use_reentrant=False)
    loss_fn(x).backward()


def run_loop(x0, p, n, memory, out):
    y = checkpointed_loop(step, x0, n_steps=n, params=p, memory=memory, stats=out.append)
    loss_fn(y).backward()


def run_gradient(x0, p, n, memory, out):
    r = gradient(step, x0, n_steps=n, loss=loss_fn, params=p, memory=memory)
    out.append(r.stats)


def raw_step_times(x0, p, device, repeats=30):
    """Median seconds of one step without recording, one recording, and one pullback (torch.autograd.grad):
    process CPU time on the CPU (the machine may be shared), wall time on CUDA."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time

    def timed(fn):
        ts = []
        for _ in range(repeats):
            _sync(device)
            t = clock()
            fn()
            _sync(device)
            ts.append(clock() - t)
        return statistics.median(ts)

    with torch.no_grad():
        t_step = timed(lambda: step(x0, p, 0))
    state = {}

    def record():
        xd = x0.detach().requires_grad_()
        state["y"], state["x"] = step(xd, p, 0), xd

    t_record = timed(record)
    ys = []
    for _ in range(repeats):
        record()
        ys.append((state["y"], state["x"]))
    grads = [torch.ones_like(x0)] * repeats
    it = iter(range(repeats))

    def pull():
        j = next(it)
        y, xd = ys[j]
        torch.autograd.grad(y, [xd, p["W"], p["b"]], grads[j])

    t_pull = timed(pull)
    return t_step, t_record, t_pull


def measured_peak(fn, device) -> int:
    """The allocator's peak over fn() (``_common.allocator_peak``)."""
    return _common.allocator_peak(fn, device)


def main(argv=None) -> int:
    ap = _common.parser(__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_torch_loop: no CUDA device is available", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    if args.quick:
        n, batch, width, rounds = 36, 8, 32, 2
    else:
        n, batch, width, rounds = 400, 192, 512, args.rounds
    dtype = torch.float32
    x0, p = make_problem(batch, width, device, dtype)
    k = max(1, round(math.sqrt(n)))
    t_step, t_record, t_pull = raw_step_times(x0, p, device)
    S = x0.numel() * x0.element_size()

    runs = {"loop": [], "gradient": [], "loop_eq": [], "gradient_eq": []}
    budget = {}
    settings = {
        "plain": lambda: run_plain(x0, p, n),
        "ckpt_sqrt": lambda: run_ckpt(x0, p, n, k),
        "loop": lambda: run_loop(x0, p, n, budget["loop"], runs["loop"]),
        "gradient": lambda: run_gradient(x0, p, n, budget["gradient"], runs["gradient"]),
        "loop_eq": lambda: run_loop(x0, p, n, budget["loop_eq"], runs["loop_eq"]),
        "gradient_eq": lambda: run_gradient(x0, p, n, budget["gradient_eq"], runs["gradient_eq"]),
    }

    def zero():
        for v in p.values():
            v.grad = None

    peaks = {}
    for name in ("plain", "ckpt_sqrt"):
        zero()
        peaks[name] = measured_peak(settings[name], device)
    # revolve's budget: ckpt_sqrt's measured peak (memory= covers the allocator's peak); lowered by the excess
    # only if its own measured peak were above ckpt_sqrt's
    lowered = {}
    for name in ("loop", "gradient"):
        budget[name], lowered[name] = peaks["ckpt_sqrt"], 0
        for _ in range(5):
            zero()
            peaks[name] = measured_peak(settings[name], device)
            if peaks[name] <= peaks["ckpt_sqrt"]:
                break
            budget[name] -= peaks[name] - peaks["ckpt_sqrt"] + S
            lowered[name] += 1
    # equal measured memory: the largest budget, one state at a time above the bound's, whose measured peak
    # is still at most ckpt_sqrt's
    raised = {}
    for name in ("loop", "gradient"):
        eq = name + "_eq"
        budget[eq], peaks[eq], raised[eq] = budget[name], peaks[name], 0
        for _ in range(6):
            budget[eq] += S
            zero()
            peak = measured_peak(settings[eq], device)
            if peak > peaks["ckpt_sqrt"]:
                budget[eq] -= S
                break
            peaks[eq] = peak
            raised[eq] += 1
    # the gradients agree (bitwise for the executor's fronts against plain; checkpoint recomputes the same ops)
    grads = {}
    for name, fn in settings.items():
        zero()
        fn()
        grads[name] = p["W"].grad.clone() if p["W"].grad is not None else None
    grads["gradient"] = grads["gradient_eq"] = None  # the gradient front returns its gradients, not .grad
    for name in ("ckpt_sqrt", "loop", "loop_eq"):
        if not torch.equal(grads[name], grads["plain"]):
            print(f"bench_torch_loop: {name}'s gradient differs from plain autograd's (max "
                  f"{(grads[name] - grads['plain']).abs().max().item():.3g})", file=sys.stderr)

    wall = {name: [] for name in settings}
    cpu = {name: [] for name in settings}
    for r in runs.values():
        r.clear()
    rng = random.Random(0)
    for _ in range(rounds):
        order = list(settings)
        rng.shuffle(order)
        for name in order:
            zero()
            _sync(device)
            t, c = time.perf_counter(), time.process_time()
            settings[name]()
            _sync(device)
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)

    def med(xs):
        return statistics.median(xs)

    def spread(xs):
        return (max(xs) - min(xs)) / med(xs) if len(xs) > 1 else 0.0

    main_time = cpu if device.type == "cpu" else wall  # process CPU time on a (possibly shared) CPU

    raw = {"plain": n * (t_record + t_pull), "ckpt_sqrt": n * (t_step + t_record + t_pull)}
    for name, st in runs.items():
        st = st[-1]
        raw[name] = st.advances * t_step + st.records * t_record + n * t_pull
    lines = []

    def log(line=""):
        print(line)
        lines.append(line)

    log(f"bench_torch_loop: device {device}, torch {torch.__version__}, {n} steps of a ({batch}, {width}) float32 "
        f"state, threads {args.threads}, {rounds} interleaved shuffled rounds, "
        f"{'process CPU' if device.type == 'cpu' else 'wall'} time")
    log(f"  one step (medians): {t_step * 1e3:.3f} ms without recording, {t_record * 1e3:.3f} ms recording, "
        f"{t_pull * 1e3:.3f} ms pullback; state {S / 2**20:.2f} MiB")
    log(f"  ckpt_sqrt: {math.ceil(n / k)} segments of {k}, {2 * n} evaluations, measured peak "
        f"{peaks['ckpt_sqrt'] / 2**20:.2f} MiB")
    for name, st in runs.items():
        st = st[-1]
        how = f"lowered {lowered[name]} times" if name in lowered else f"raised {raised[name]} states"
        log(f"  {name}: memory={budget[name] / 2**20:.2f} MiB ({how}), plan {st.schedule}, "
            f"{st.forward_evaluations} evaluations, plan peak {st.predicted.peak_memory / 2**20:.2f} MiB, measured "
            f"peak {peaks[name] / 2**20:.2f} MiB")
    header = ["setting", "wall_s", "cpu_s", "spread_cpu", "spread_wall", "peak_MiB", "time/plain", "time/ckpt_sqrt",
              "overhead_vs_raw", "stats_overhead"]
    rows = []
    for name in settings:
        ov = med(main_time[name]) / raw[name]
        so = runs[name][-1].overhead() if name in runs else float("nan")
        rows.append([name, med(wall[name]), med(cpu[name]), spread(cpu[name]), spread(wall[name]), peaks[name] / 2**20,
                     med(main_time[name]) / med(main_time["plain"]), med(main_time[name]) / med(main_time["ckpt_sqrt"]),
                     ov, so])
    log("  " + "  ".join(f"{h:>15}" for h in header))
    for r in rows:
        log("  " + "  ".join(f"{v:>15}" if isinstance(v, str) else f"{v:>15.3f}" for v in r))
    log("  spread: (max - min) / median of the identical setting over the rounds; overhead_vs_raw: the median time "
        "over (advances * step + records * recording + n * pullback) at the one-step medians above; stats_overhead: "
        "the executor's wall time over the time inside steps (ExecutionStats.overhead)")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    _common.write_csv(out / "bench_torch_loop.csv", header, rows)
    print(f"  wrote {out / 'bench_torch_loop.csv'}")
    if not args.quick:
        # the CPU log lives with the others; a device run (torch_cuda_check) keeps its log beside its CSV
        log_path = (_common.ROOT / "docs" / "logs" if device.type == "cpu" else out) / "bench_torch_loop.txt"
        log_path.write_text("\n".join(lines) + "\n")
        print(f"  wrote {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
