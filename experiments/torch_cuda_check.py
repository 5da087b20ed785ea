"""The PyTorch adapter on a GPU: exactness checks and the benchmark, in one go.

    python3 experiments/torch_cuda_check.py [--out DIR]

Runs, on CUDA (exits with status 2 and a message where none is available):
  1. exactness: a mixed model with dropout, BatchNorm and shared parameters, float32 and float64, every
     strategy, budgets from the smallest feasible to store-all: outputs, input and parameter gradients,
     BatchNorm buffers and the CUDA RNG state after the step must equal the plain model's bitwise;
  2. memory: the allocator's peak of each of those steps (above the step's start) must stay within the
     budget; then ResNet18, VGG11, MobileNetV2 and a GPT-2 stack (experiments/torch_models.py) at the
     smallest, a middle and the store-all budget, the same check (real_models);
  3. autocast: the same model (no shared layer) under torch.autocast(device, bfloat16), plans that recompute (the smallest
     budget and one halfway to store-all) and store-all: gradients, buffers and the RNG state bitwise
     equal to plain autocast autograd (recomputation re-enters the forward's autocast state);
  4. the benchmark of experiments/bench_torch.py with --device cuda (CSV and PNG into --out);
  5. time stepping (revolve.integrations.torch.checkpointed_loop and gradient, loop_check): a stochastic
     step (dropout, randn) on the device, float32 and float64, under binomial, memory= and a device ->
     host -> disk schedule: gradients and the RNG state after the call bitwise equal to the plain unrolled
     loop's; then 10^4 steps of a 10^6-element state with memory= 26 states (about 20 snapshots beside
     one step's working memory): the CUDA allocator's peak within memory= and within the plan plus one
     step's working memory, beside what plain autograd would need; then experiments/bench_torch_loop.py
     with --device cuda. loop_check(device) runs on the CPU too (smaller sizes, the allocator's peak from
     torch.profiler's memory events).
exactness(device) also runs on the CPU (the allocator's peak is then 0): tests/test_experiments.py runs it
there, so that this script's code is exercised without a GPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import revolve  # noqa: E402
import bench_torch  # noqa: E402  (this folder: sys.path[0] when run as a script)
import _common  # noqa: E402
import torch_models  # noqa: E402
from revolve.integrations.torch import CheckpointedSequential, plan, profile  # noqa: E402


def model(dtype, device, shared=True):
    """The mixed model; ``shared``: layers 5 and 7 are one nn.Linear (else two of the same shape)."""
    torch.manual_seed(0)
    first = nn.Linear(256, 256)
    second = first if shared else nn.Linear(256, 256)
    return nn.Sequential(nn.Linear(64, 512), nn.Tanh(), nn.Linear(512, 256), nn.BatchNorm1d(256), nn.ReLU(),
                         first, nn.Dropout(0.2), second, nn.GELU(), nn.Linear(256, 1024), nn.Tanh(),
                         nn.Linear(1024, 8)).to(device=device, dtype=dtype)


def step(net, x, weight, seed):
    """One training step; the loss (out * weight).sum() creates the output's gradient and nothing else."""
    torch.manual_seed(seed)
    out = net(x)
    (out * weight).sum().backward()
    return out, torch.cuda.get_rng_state() if x.is_cuda else torch.get_rng_state()


def exactness(device) -> int:
    failures = 0
    for dtype in (torch.float32, torch.float64):
        base = model(dtype, device)
        x0 = torch.randn(128, 64, device=device, dtype=dtype)
        weight = torch.randn(128, 8, device=device, dtype=dtype)
        chain = profile(base, x0)
        top = revolve.simulate(revolve.store_all(chain.n_steps), chain).peak_memory
        for strategy in ("optimal", "binomial", "periodic", "store_all"):
            try:
                plan(chain, memory=1.0, strategy=strategy)
                low = 1.0
            except revolve.InfeasibleBudget as e:
                low = e.minimum
            for memory in sorted({low, (low + top) / 2, top}) if strategy != "store_all" else [top]:
                plain, mine = copy.deepcopy(base), copy.deepcopy(base)
                xp, xo = x0.clone().requires_grad_(), x0.clone().requires_grad_()
                out_p, rng_p = step(plain, xp, weight, 5)
                net = CheckpointedSequential(mine, memory=memory, strategy=strategy)
                net.plan_for(xo)
                result = {}

                def measured_step():
                    result["out"], result["rng"] = step(net, xo, weight, 5)

                peak = _allocator_peak(measured_step, device)
                out_o, rng_o = result["out"], result["rng"]
                ok = torch.equal(out_p, out_o) and torch.equal(xp.grad, xo.grad) and torch.equal(rng_p, rng_o)
                ok &= all(torch.equal(a.grad, b.grad) for a, b in zip(plain.parameters(), mine.parameters()))
                ok &= all(torch.equal(a, b) for a, b in zip(plain.buffers(), mine.buffers()))
                ok &= net.last_stats.peak_bytes <= memory and peak <= memory  # the allocator's peak of the whole step
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {str(dtype):<14} {strategy:<9} budget {revolve.format_bytes(memory):>11}  "
                      f"held {revolve.format_bytes(net.last_stats.peak_bytes):>11}  predicted "
                      f"{revolve.format_bytes(net.last_stats.predicted_bytes):>11}  allocator peak "
                      f"{revolve.format_bytes(peak):>11}")
                if not ok:  # what the run planned with, to tell a profile that measured less from a model error
                    schedule, net_chain = net.plan_for(xo)
                    print(f"     schedule {schedule!r}\n     its chain {json.dumps(net_chain.to_dict())}\n"
                          f"     the check's chain {json.dumps(chain.to_dict())}")
    return failures


def autocast_exactness(device) -> int:
    """Check 3: bf16 autocast on ``device``'s kind, every strategy's recomputing plans, bitwise against plain."""
    failures = 0
    # not shared: under autocast a shared parameter's per-use gradients are summed in float32 by the adapter
    # but in bfloat16 (at the one cached cast) by plain autograd, which is not bitwise (docs/pytorch.md)
    base = model(torch.float32, device, shared=False)
    x0 = torch.randn(128, 64, device=device)
    weight = torch.randn(128, 8, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        chain = profile(base, x0)
    top = revolve.simulate(revolve.store_all(chain.n_steps), chain).peak_memory
    for memory in sorted({revolve.min_memory(chain), (revolve.min_memory(chain) + top) / 2, float("inf")}):
        plain, mine = copy.deepcopy(base), copy.deepcopy(base)
        net = CheckpointedSequential(mine, memory=memory)
        results = []
        for run in (plain, net):
            xs = x0.clone().requires_grad_()
            torch.manual_seed(5)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = run(xs)
            (out.float() * weight).sum().backward()
            results.append((out, xs.grad, torch.cuda.get_rng_state() if xs.is_cuda else torch.get_rng_state()))
        ok = all(torch.equal(a, b) for a, b in zip(*results))
        ok &= all(torch.equal(a.grad, b.grad) for a, b in zip(plain.parameters(), mine.parameters()))
        ok &= all(torch.equal(a, b) for a, b in zip(plain.buffers(), mine.buffers()))
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} autocast bf16 optimal budget {revolve.format_bytes(memory):>11}  "
              f"forward evaluations {net.last_stats.forward_evaluations} (steps {chain.n_steps})")
    return failures


def _allocator_peak(fn, device) -> int:
    """The allocator's peak over fn() above its start (``_common.allocator_peak``)."""
    return _common.allocator_peak(fn, device)


def real_models(device) -> int:
    """ResNet18, VGG11, MobileNetV2 and a GPT-2 stack (experiments/torch_models.py) at the smallest, a middle
    and the store-all budget: the allocator's peak of the whole training step within the budget."""
    sizes = {"resnet18": dict(width=64, image=64, batch=16), "vgg11": dict(width=64, image=64, batch=16),
             "mobilenet_v2": dict(width=1.0, image=64, batch=16), "gpt": dict(d=256, heads=8, blocks=6, seq=256, batch=8)}
    if device.type == "cpu":  # exercised by the tests: small
        sizes = {"resnet18": dict(width=8, image=32, batch=2), "gpt": dict(d=32, heads=4, blocks=2, seq=16, batch=2)}
    failures = 0
    for name, kw in sizes.items():
        base, shape = torch_models.MODELS[name](**kw)
        base = base.to(device)
        x = torch.randn(*shape, device=device)
        weight = torch.randn_like(base(x)).detach()
        chain = profile(base, x, repeats=1)
        low = revolve.min_memory(chain)
        top = revolve.simulate(revolve.store_all(chain.n_steps), chain).peak_memory
        for memory in sorted({low, (low + top) / 2, top}):
            net = CheckpointedSequential(base, memory=memory)
            step(net, x, weight, 0)  # plans
            for p in base.parameters():
                p.grad = None
            peak = _allocator_peak(lambda: step(net, x, weight, 0), device)
            ok = peak <= memory
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name:<13} budget {revolve.format_bytes(memory):>11}  allocator peak "
                  f"{revolve.format_bytes(peak):>11}  evaluations {net.last_stats.forward_evaluations}")
    return failures


def loop_check(device, out: Path | None = None) -> int:
    """Check 5: checkpointed time stepping on ``device``; returns the number of failures."""
    import tempfile

    from revolve.integrations.torch import HostStorage, checkpointed_loop, gradient

    def noisy(x, p, i):
        h = torch.nn.functional.dropout(torch.tanh(x @ p["W"]), 0.2, training=True)
        return x + 0.1 * h + 0.01 * torch.randn_like(x)

    def rng():
        return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()

    failures = 0
    n = 60
    for dtype in (torch.float32, torch.float64):
        g = torch.Generator().manual_seed(1)
        W = (0.3 * torch.randn(64, 64, generator=g, dtype=dtype)).to(device)
        x0 = torch.randn(32, 64, generator=g, dtype=dtype).to(device)
        torch.manual_seed(7)
        Wp, xp = W.clone().requires_grad_(), x0.clone().requires_grad_()
        x = xp
        for i in range(n):
            x = noisy(x, {"W": Wp}, i)
        (x * x).sum().backward()
        after = rng()
        slots = {"ram": 2, "host": 2, "disk": 4}
        tiers = revolve.multilevel(n, slots=slots, io_cost={"host": (0.1, 0.1), "disk": (1.0, 1.0)})
        with tempfile.TemporaryDirectory() as folder:
            for name, kw in (("binomial", dict(schedule=revolve.binomial(n, snapshots=3))),
                             ("memory", dict(memory=14 * x0.numel() * x0.element_size() + 80_000)),
                             ("device/host/disk", dict(schedule=tiers,
                                                       storage={"host": HostStorage(), "disk": folder}))):
                torch.manual_seed(7)
                Wl, xl = W.clone().requires_grad_(), x0.clone().requires_grad_()
                y = checkpointed_loop(noisy, xl, n_steps=n, params={"W": Wl}, **kw)
                (y * y).sum().backward()
                ok = torch.equal(Wl.grad, Wp.grad) and torch.equal(xl.grad, xp.grad) and torch.equal(rng(), after)
                torch.manual_seed(7)
                r = gradient(noisy, x0, n_steps=n, loss=lambda x: (x * x).sum(), params={"W": W}, **kw)
                ok &= torch.equal(r.grad_params["W"], Wp.grad) and torch.equal(r.grad_x0, xp.grad)
                ok &= os.listdir(folder) == []
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} loop {str(dtype):>13} {name:<17} evaluations "
                      f"{r.stats.forward_evaluations} (steps {n})")
    # memory: many steps of a large state in about 20 snapshots; memory= bounds the allocator's peak (the plan
    # gets what one step's measured working memory leaves), so the peak must stay within it, and within the
    # plan plus one step's working memory measured apart (plain autograd of one step)
    n, m = (10_000, 10**6) if device.type == "cuda" else (300, 10**4)
    x0 = torch.linspace(0, 1, m, device=device)
    a = torch.tensor(0.3, device=device)
    step_ = lambda x, p, i: x + 1e-3 * torch.sin(x) * p["a"]  # noqa: E731
    state = 4 * m
    budget = 26 * state

    def one_step():
        xd = x0.clone().requires_grad_()
        torch.autograd.grad((step_(xd, {"a": a}, 0) ** 2).sum(), xd)

    held = {}

    def run():
        held["r"] = gradient(step_, x0, n_steps=n, loss=lambda x: (x * x).sum(), params={"a": a}, memory=budget,
                             preserve_rng_state=False)

    working = _allocator_peak(one_step, device)
    peak = _allocator_peak(run, device)
    r = held.pop("r")
    plan = r.stats.predicted.peak_memory
    ok = plan <= budget and peak <= budget and peak <= plan + working + 2 * state
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} loop memory: {n} steps of {m} float32 in memory={revolve.format_bytes(budget)}: "
          f"allocator peak {revolve.format_bytes(peak)}, plan {revolve.format_bytes(plan)} "
          f"({r.stats.predicted.peak_snapshots} snapshots) + one step {revolve.format_bytes(working)}; plain autograd "
          f"would need {revolve.format_bytes(n * r.stats.tape_bytes)}; {r.stats.forward_evaluations} evaluations")
    if out is not None and device.type == "cuda":
        import bench_torch_loop

        bench_torch_loop.main(["--device", "cuda", "--out", str(out)])
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/figures/cuda"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_cuda_check: no CUDA device is available", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    failures = exactness(device)
    print(f"exactness: {failures} failure(s)")
    failures += (ac := autocast_exactness(device))
    print(f"autocast exactness: {ac} failure(s)")
    failures += (rm := real_models(device))
    print(f"real models, allocator peak within the budget: {rm} failure(s)")
    bench_torch.main(["--device", "cuda", "--out", str(args.out)])
    failures += (lc := loop_check(device, args.out))
    print(f"time stepping: {lc} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
