"""Benchmark: time per training step against measured peak memory, revolve vs torch.utils.checkpoint.

    python3 experiments/bench_torch.py [--device cpu|cuda] [--repeats 15] [--quick] [--models resnet18,gpt]
                                       [--out docs/figures] [--overhead]

For a uniform 16-layer MLP, a mixed-width network, a stack of transformer blocks and (built in code by
experiments/torch_models.py, at sizes for a CPU) ResNet18, VGG11, MobileNetV2 and a GPT-2 stack, measures one training
step (forward, loss, backward; the output is held through the backward, as training code holds it) of
the following. The loss is a fixed linear functional, (y * w).sum(): its backward creates the output's
gradient and nothing else. A loss's own temporaries depend on the loss
(y.square().mean() adds two of the output's size at the start of the backward, measured on the MLP); every
method would pay them on top, and no method's plan can see them.

(--overhead instead measures profiling's cost: the first call, a new batch size and eval mode, in plain steps.)

  - the plain model (store everything);
  - torch.utils.checkpoint.checkpoint_sequential at every segment count (use_reentrant=False);
  - revolve's CheckpointedSequential with strategies "optimal", "binomial" and "periodic" on a grid of
    budgets from the smallest feasible to store-all (budgets cover the step's whole activation memory),
    and "optimal" also at each torch setting's measured memory.
Time: --repeats rounds, each running every setting once in a shuffled order; a setting's time is its
fastest step (drift of a shared machine then hits every setting alike). Memory: one step per setting,
measured apart from the timed ones (tracking slows every op).
Memory is measured the same way for every method, with the allocator: on CPU, the running sum of
torch.profiler's memory events (kernel workspace included); on CUDA, torch.cuda.max_memory_allocated above
the memory allocated before the step (experiments/_common.allocator_peak, written apart from the adapter).
Time is process CPU time on the CPU (steadier than wall time on a shared machine), CUDA events' wall time on
a GPU. Parameter gradients are freed
before each step, so every method is charged for them alike (revolve's budget covers them too). Writes a CSV and a PNG per model and prints
the comparison the goal asks for: at equal or lower memory, revolve's fastest step against
checkpoint_sequential's, and the budgets where checkpoint_sequential has no setting.
"""

from __future__ import annotations

import argparse
import copy
import csv
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import revolve  # noqa: E402
from revolve.integrations.torch import CheckpointedSequential, profile  # noqa: E402
from _common import allocator_peak  # noqa: E402
import torch_models  # noqa: E402
from revolve.plotting import _pyplot  # noqa: E402


# Shapes are chosen so that activations, not parameters, dominate memory (batch x width >> width^2),
# which is the regime checkpointing is for.
def mlp(width=256, depth=16, batch=2048):
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers), (batch, width)


def mixed():
    torch.manual_seed(0)
    widths = [64, 1024, 32, 512, 16, 1024, 64, 256, 24, 768, 64]
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.GELU()]
    return nn.Sequential(*layers), (2048, widths[0])


def transformer(blocks=8, d=64, seq=256, batch=8):
    torch.manual_seed(0)
    layers = [nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=4 * d, dropout=0.1, batch_first=True)
              for _ in range(blocks)]
    return nn.Sequential(*layers), (batch, seq, d)


def peak_memory(step_fn, model, device) -> int:
    """Peak bytes of one step as the allocator sees them (parameter gradients freed first)."""
    for p in model.parameters():
        p.grad = None
    return allocator_peak(step_fn, device)


def seconds(step_fn, model, device) -> float:
    """Time of one step: process CPU time on the CPU, wall time around CUDA synchronization on a GPU."""
    for p in model.parameters():
        p.grad = None
    if device.type == "cuda":
        torch.cuda.synchronize()
        t = time.perf_counter()
        step_fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t
    t = time.process_time()
    step_fn()
    return time.process_time() - t


def bench_model(name, build, device, repeats, budgets_n, out_dir):
    """Every setting's memory (one tracked step) and time: ``repeats`` rounds that run every setting once,
    in a shuffled order, keeping each setting's fastest step, so that drift of the machine hits all alike."""
    model, shape = build()
    model = model.to(device).train()
    x = torch.randn(*shape, device=device)
    with torch.no_grad():
        weight = torch.randn_like(model(x))

    def train_step(run):
        y = run(x)  # the output stays alive through the backward, as in training code
        (y * weight).sum().backward()  # a fixed linear functional: its backward creates only the output's gradient

    settings = [("plain (store all)", lambda: "", lambda: train_step(model))]
    for seg in range(1, len(model) + 1):
        settings.append(("torch checkpoint_sequential", lambda seg=seg: f"segments={seg}",
                         lambda seg=seg: train_step(lambda x: checkpoint_sequential(model, seg, x, use_reentrant=False))))
    memory = []
    for _, _, step in settings:
        seconds(step, model, device)  # warm-up
        memory.append(peak_memory(step, model, device))
    chain = profile(model, x)
    low = revolve.min_memory(chain)
    high = revolve.simulate(revolve.store_all(chain.n_steps), chain).peak_memory
    grid = [low + (high - low) * k / (budgets_n - 1) for k in range(budgets_n)]
    # and the memory each torch setting measured (revolve's budget covers the whole step, as measured)
    matched = sorted({m for (method, _, _), m in zip(settings, memory) if method.startswith("torch")} - set(grid))
    for strategy in ("optimal", "binomial", "periodic"):
        for budget in sorted(grid + matched) if strategy == "optimal" else grid:
            try:
                net = CheckpointedSequential(model, memory=budget, strategy=strategy)
                net.plan_for(x)
            except revolve.InfeasibleBudget:
                continue

            def label(net=net, budget=budget):
                st = net.last_stats
                return f"budget={budget:.0f} predicted={st.predicted_bytes:.0f} held={st.peak_bytes}"

            settings.append((f"revolve {strategy}", label, lambda net=net: train_step(net)))
    for _, _, step in settings[len(memory):]:
        seconds(step, model, device)  # warm-up (and planning)
        memory.append(peak_memory(step, model, device))
    times: list[list[float]] = [[] for _ in settings]
    for r in range(repeats):
        order = list(range(len(settings)))
        random.Random(r).shuffle(order)
        for k in order:
            times[k].append(seconds(settings[k][2], model, device))
    rows = [(method, label(), min(ts), m) for (method, label, _), ts, m in zip(settings, times, memory)]
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / f"torch_{name}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "setting", "seconds_per_step", "peak_bytes"])
        w.writerows(rows)
    return rows


def report(name, rows, out_dir):
    fmt = revolve.format_bytes
    print(f"\n== {name}")
    for method, setting, t, m in rows:
        print(f"   {method:<28} {setting:<52} {t * 1e3:9.1f} ms  {fmt(m):>11}")
    torch_rows = [r for r in rows if r[0].startswith("torch")]
    least_torch = min(r[3] for r in torch_rows)
    for label, ours in (("revolve optimal", [r for r in rows if r[0] == "revolve optimal"]),
                        ("revolve, best strategy", [r for r in rows if r[0].startswith("revolve")])):
        worse, ratios = 0, []
        for _, setting, t, m in torch_rows:
            fits = [r for r in ours if r[3] <= m]
            if fits:
                best = min(fits, key=lambda r: r[2])
                worse += best[2] > t
                ratios.append(best[2] / t)
        below = sorted(r[3] for r in ours if r[3] < least_torch)
        print(f"   {label}: at equal or lower measured memory, slower than checkpoint_sequential in {worse} of "
              f"{len(torch_rows)} settings (time ratio median {statistics.median(ratios):.2f}, worst {max(ratios):.2f}); "
              f"plans below its least memory ({fmt(least_torch)}): {', '.join(fmt(b) for b in below[:4]) or 'none'}")
    # the same computation run as two settings: their time ratio shows how far this machine's timing spreads
    same: dict = {}
    for method, setting, t, m in rows:
        if method.startswith("revolve"):
            same.setdefault((method, setting.split(" ", 1)[1]), []).append(t)  # same plan: same predicted and held
        elif method.startswith("plain") or setting == "segments=1":  # one segment runs the plain model
            same.setdefault("plain", []).append(t)
    spreads = [max(ts) / min(ts) for ts in same.values() if len(ts) > 1]
    if spreads:
        print(f"   timing spread: the same computation as two or more settings ({len(spreads)} groups) differs by a time "
              f"ratio of up to {max(spreads):.2f} (median {statistics.median(spreads):.2f})")
    # the budget and the plan's prediction against the measured whole-step peak
    plans = []
    for method, setting, t, m in rows:
        if method.startswith("revolve"):
            fields = dict(item.split("=") for item in setting.split())
            plans.append((float(fields["budget"]), float(fields["predicted"]), m))
    if plans:
        over = [m - b for b, _, m in plans if m > b]
        under = [m - p for _, p, m in plans if m > p]
        errors = [(p - m) / p for _, p, m in plans]
        print(f"   budget: {len(plans)} plans, {len(over)} measured above their budget"
              f"{f' (by at most {max(over):.0f} bytes)' if over else ''}; prediction minus measured peak: "
              f"median {statistics.median(errors):.2%}, range {min(errors):.2%} to {max(errors):.2%} of the prediction"
              f"{f'; measured above the prediction in {len(under)} plans, by at most {max(under):.0f} bytes' if under else ''}")
    try:
        plt = _pyplot()
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {"torch checkpoint_sequential": ("tab:orange", "s"), "revolve optimal": ("tab:blue", "o"),
              "revolve binomial": ("tab:green", "^"), "revolve periodic": ("tab:purple", "v"),
              "plain (store all)": ("black", "*")}
    for method, (color, marker) in styles.items():
        pts = sorted((r[3] / 2**20, r[2] * 1e3) for r in rows if r[0] == method)
        if not pts:
            continue
        ax.plot(*zip(*pts), marker=marker, color=color, linestyle="none", alpha=0.35)
        envelope, best = [], float("inf")  # the fastest step at no more memory
        for m, t in pts:
            if t < best:
                best = t
                envelope.append((m, t))
        ax.plot(*zip(*envelope), marker=marker, color=color, label=method, drawstyle="steps-post",
                linestyle="-" if len(envelope) > 1 else "none")
    ax.set_xlabel("measured peak memory of a training step (MiB)")
    ax.set_ylabel("time per training step (ms)")
    ax.set_title(f"{name}: time against memory (lines: fastest at no more memory)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / f"torch_{name}.png", dpi=120)
    plt.close(fig)


def overhead(name, build, device, rounds: int = 3) -> list:
    """Profiling cost in plain steps: the first call of a fresh CheckpointedSequential (profile, plan, step),
    a cached step, the first call at twice the batch size (sizes measured, times reused) and the first in
    eval mode, each over the plain step at the same shape (measured again each round); ``rounds`` fresh
    instances, in that order (a first call can only come first). Returns (setting, median, min, max) rows."""
    model, shape = build()
    model = model.to(device).train()
    x = torch.randn(*shape, device=device)
    x2 = torch.randn(2 * shape[0], *shape[1:], device=device)

    def step(run, inp):
        return seconds(lambda: run(inp).square().mean().backward(), model, device)

    for inp in (x, x2):
        step(model, inp)  # warm-up of the plain model at both shapes
    # the allocator meter's profiler starts once per process (about a second on the CPU): not charged below
    CheckpointedSequential(copy.deepcopy(model), memory=float("inf"))(x).sum().backward()
    ratios: dict = {"first call": [], "cached step": [], "first call, 2x batch": [], "first call, eval mode": []}
    for r in range(rounds):
        plain = {k: statistics.median(step(model, inp) for _ in range(3)) for k, inp in (("x", x), ("x2", x2))}
        net = CheckpointedSequential(model, memory=float("inf"))
        ratios["first call"].append(step(net, x) / plain["x"])
        ratios["cached step"].append(step(net, x) / plain["x"])
        ratios["first call, 2x batch"].append(step(net, x2) / plain["x2"])
        net.eval()  # its layers are the model's: the plain step's modes follow
        ratios["first call, eval mode"].append(step(net, x) / plain["x"])
        net.train()
    rows = [(k, statistics.median(v), min(v), max(v)) for k, v in ratios.items()]
    print(f"\n== {name}: profiling cost in plain steps (median of {rounds} fresh instances, min-max)")
    for k, med, lo, hi in rows:
        print(f"   {k:<24} {med:6.2f}  ({lo:.2f}-{hi:.2f})")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=15, help="rounds over all settings; each keeps its fastest step")
    ap.add_argument("--budgets", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="small models, one repeat (for tests)")
    ap.add_argument("--models", default="", help="comma-separated subset of the models (default: all)")
    ap.add_argument("--overhead", action="store_true",
                    help="only the profiling cost: first call, new batch size and eval mode in plain steps")
    ap.add_argument("--replot", action="store_true", help="redraw the figures and the comparison from the CSVs in --out")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "figures")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    real = {"resnet18": lambda: torch_models.resnet18(width=16, image=64, batch=8),
            "vgg11": lambda: torch_models.vgg11(width=16, image=64, batch=8),
            "mobilenet_v2": lambda: torch_models.mobilenet_v2(width=0.5, image=64, batch=8),
            "gpt": lambda: torch_models.gpt(d=128, heads=4, blocks=6, seq=128, batch=4)}
    models = [("mlp16", mlp), ("mixed", mixed), ("transformer", transformer), *real.items()]
    if args.models:
        chosen = args.models.split(",")
        unknown = sorted(set(chosen) - {name for name, _ in models})
        if unknown:
            ap.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(name for name, _ in models)}")
        models = [(name, build) for name, build in models if name in chosen]
    if args.quick:
        models = [("mlp16", lambda: mlp(width=16, depth=4, batch=64)),
                  ("transformer", lambda: transformer(blocks=2, d=16, seq=16, batch=2))]
        args.repeats, args.budgets = 1, 4
    if args.overhead:
        for name, build in models:
            overhead(name, build, device, rounds=1 if args.quick else 3)
        return 0
    for name, build in models:
        if args.replot:
            with open(args.out / f"torch_{name}.csv", newline="") as f:
                rows = [(r["method"], r["setting"], float(r["seconds_per_step"]), float(r["peak_bytes"]))
                        for r in csv.DictReader(f)]
        else:
            rows = bench_model(name, build, device, args.repeats, args.budgets, args.out)
        report(name, rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
