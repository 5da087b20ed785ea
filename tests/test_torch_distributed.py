"""A halo-exchange stencil split across 2 gloo processes under the executor: the gradient equals one process's.

Each rank holds half of a periodic 1-D grid and exchanges its edge values every step with
torch.distributed.nn's differentiable all_gather; every rank runs the same schedule and keeps its own
snapshots. The oracle is plain autograd over the unrolled loop on the whole grid in this process.
"""

import json

import pytest

from .ranks import run_ranks

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

N_GLOBAL, N_STEPS, DT = 48, 60, 0.1

# the step shared by the worker and the oracle: nonlinear diffusion with a forcing and a halo on each side
STEP = r"""
import torch
def local_step(u, left, right, p):
    padded = torch.cat([left, u, right])
    lap = padded[:-2] - 2 * padded[1:-1] + padded[2:]
    return u + DT * (p["nu"] * lap - 0.5 * torch.tanh(u) ** 3 + p["f"])
"""

WORKER = STEP + r"""
import datetime, json, sys, warnings
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather
import revolve
from revolve.integrations.torch import checkpointed_loop, gradient

warnings.filterwarnings("ignore", category=FutureWarning)
rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                        timeout=datetime.timedelta(seconds=60))
data = torch.load(out + ".in.pt")
m = N_GLOBAL // world
sl = slice(rank * m, (rank + 1) * m)
u0 = data["u0"][sl].clone()
params = {"nu": data["nu"].clone(), "f": data["f"][sl].clone()}
calls = [0]
extra = int(sys.argv[6]) if len(sys.argv) > 6 else 0  # bytes of a temporary only rank 1's step allocates

def step(u, p, i):
    calls[0] += 1
    if extra and rank == 1:
        torch.zeros(extra, dtype=torch.uint8)
    edges = all_gather(torch.stack([u[0], u[-1]]))  # differentiable: its backward sends the halo adjoints back
    left = edges[(rank - 1) % world][1:2]
    right = edges[(rank + 1) % world][0:1]
    return local_step(u, left, right, p)

loss = lambda u: (u ** 2).sum() + u.sum()  # each rank's share of the global loss
res = {}
r = gradient(step, u0, n_steps=N_STEPS, loss=loss, params=params, memory=int(sys.argv[5]))
res["gradient"] = {"value": r.value, "x0": r.grad_x0.tolist(), "nu": r.grad_params["nu"].item(),
                   "f": r.grad_params["f"].tolist(), "evals": r.stats.forward_evaluations, "calls": calls[0],
                   "schedule": r.stats.schedule}
calls[0] = 0
p = {k: v.clone().requires_grad_() for k, v in params.items()}
u0 = u0.clone().requires_grad_()
sched = revolve.binomial(N_STEPS, snapshots=3)
y = checkpointed_loop(step, u0, n_steps=N_STEPS, params=p, schedule=sched)
loss(y).backward()
res["checkpointed_loop"] = {"x0": u0.grad.tolist(), "nu": p["nu"].grad.item(), "f": p["f"].grad.tolist(),
                            "calls": calls[0], "evals": revolve.simulate(sched, n_steps=N_STEPS).forward_evaluations}
with open(out + f".{rank}.json", "w") as fh:
    json.dump(res, fh)
dist.destroy_process_group()
"""


def _oracle(u0, nu, f):
    ns = {"DT": DT}
    exec(STEP, ns)
    u0 = u0.clone().requires_grad_()
    p = {"nu": nu.clone().requires_grad_(), "f": f.clone().requires_grad_()}
    u = u0
    for _ in range(N_STEPS):
        u = ns["local_step"](u, u[-1:], u[:1], p)
    loss = (u ** 2).sum() + u.sum()
    loss.backward()
    return loss.item(), u0.grad, p["nu"].grad, p["f"].grad


def _run_ranks(tmp_path, extra=()):
    world = 2
    out = str(tmp_path / "run")
    g = torch.Generator().manual_seed(0)
    data = {"u0": torch.randn(N_GLOBAL, generator=g, dtype=torch.float64),
            "nu": torch.tensor(0.3, dtype=torch.float64), "f": 0.1 * torch.randn(N_GLOBAL, generator=g, dtype=torch.float64)}
    torch.save(data, out + ".in.pt")
    script = tmp_path / "worker.py"
    script.write_text(f"N_GLOBAL, N_STEPS, DT = {N_GLOBAL}, {N_STEPS}, {DT}\n" + WORKER)
    run_ranks(script, world, out, extra)
    results = []
    for r in range(world):
        with open(f"{out}.{r}.json") as fh:
            results.append(json.load(fh))
    return data, results


def test_two_gloo_ranks_halo_exchange_gradient_equals_one_process(tmp_path):
    # revolve.gradient plans within about 13 KB (2 snapshots with their RNG states, tapes) beside one step's
    # working memory (about 7 KB, the RNG state kept through the backward included): a recomputing plan, the
    # same on both ranks (under 200 evaluations: each costs an all_gather); checkpointed_loop runs
    # binomial(60, snapshots=3)
    data, runs = _run_ranks(tmp_path, (str(4 * 8 * N_GLOBAL // 2 + 19000),))
    value, gx, gnu, gf = _oracle(data["u0"], data["nu"], data["f"])
    for mode in ("gradient", "checkpointed_loop"):
        results = [run[mode] for run in runs]
        x0 = torch.tensor(results[0]["x0"] + results[1]["x0"], dtype=torch.float64)
        f = torch.tensor(results[0]["f"] + results[1]["f"], dtype=torch.float64)
        torch.testing.assert_close(x0, gx, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(f, gf, rtol=1e-12, atol=1e-13)
        # nu is shared: each rank holds its share of the gradient, their sum is the whole
        assert abs(results[0]["nu"] + results[1]["nu"] - gnu.item()) <= 1e-11 * abs(gnu.item())
        for res in results:
            assert res["calls"] == res["evals"] > N_STEPS  # recomputation ran, exactly the schedule's evaluations
    g = [run["gradient"] for run in runs]
    assert g[0]["schedule"] == g[1]["schedule"]  # planned alike on both ranks
    assert abs(g[0]["value"] + g[1]["value"] - value) <= 1e-12 * abs(value)


def test_ranks_measuring_different_working_memory_plan_the_same_schedule(tmp_path):
    # rank 1's step allocates a 4 KB temporary that rank 0's does not: alone, rank 1 would plan within 4 KB
    # less (another schedule, and mismatched all_gathers); the ranks agree on the larger working memory
    data, runs = _run_ranks(tmp_path, (str(4 * 8 * N_GLOBAL // 2 + 19000), "4096"))
    g = [run["gradient"] for run in runs]
    assert g[0]["schedule"] == g[1]["schedule"]
    value, gx, _, _ = _oracle(data["u0"], data["nu"], data["f"])
    x0 = torch.tensor(g[0]["x0"] + g[1]["x0"], dtype=torch.float64)
    torch.testing.assert_close(x0, gx, rtol=1e-12, atol=1e-13)
