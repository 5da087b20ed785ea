"""CheckpointedSequential under DistributedDataParallel (2 gloo processes on 127.0.0.1): gradients bitwise plain
DDP's, and DDP's buckets all-reduced during the backward, as each layer's gradients become complete, rather
than all at its end (which left DDP nothing to overlap)."""

import json

import pytest

from .ranks import run_ranks

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

WORKER = r"""
import datetime, json, sys, warnings
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
import revolve
from revolve.integrations.torch import CheckpointedSequential, profile

warnings.filterwarnings("ignore")
rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                        timeout=datetime.timedelta(seconds=60))

def build():
    torch.manual_seed(0)
    return nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(32, 32), nn.Tanh())])

x = torch.randn(64, 32, generator=torch.Generator().manual_seed(10 + rank))  # each rank's own batch
evals = [0]  # layer forward calls so far: recomputations in the backward advance it

def count(module, args, output):
    evals[0] += 1

def run(wrap, **ddp):
    base = build()
    for layer in base:
        layer.register_forward_hook(count)
    net = DDP(wrap(base), bucket_cap_mb=0.004, **ddp)  # about one layer's parameters per bucket
    fired = []

    def hook(state, bucket):  # the default all-reduce (sum, then / world), recording when each bucket goes
        fired.append(evals[0])
        fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
        return fut.then(lambda f: f.value()[0] / world)

    net.register_comm_hook(None, hook)
    for _ in range(2):  # the first step plans (revolve profiles the layers); the second is measured
        net.zero_grad(set_to_none=True)
        evals[0] = 0
        fired.clear()
        net(x).square().mean().backward()
    return [p.grad.tolist() for p in base.parameters()], list(fired), evals[0]

chain = profile(build(), x, repeats=1)
memory = revolve.simulate(revolve.binomial(chain.n_steps, snapshots=2), chain).peak_memory
res = {}
for name, ddp in (("", {}), ("find_unused", {"find_unused_parameters": True}),
                  ("bucket_view", {"gradient_as_bucket_view": True})):
    res["plain" + name] = run(lambda m: m, **ddp)
    res["revolve" + name] = run(lambda m: CheckpointedSequential(m, memory=memory, strategy="binomial"), **ddp)
with open(out + f".{rank}.json", "w") as fh:
    json.dump(res, fh)
dist.destroy_process_group()
"""


def test_ddp_gradients_bitwise_plain_and_buckets_reduced_during_the_backward(tmp_path):
    world, out = 2, str(tmp_path / "run")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    run_ranks(script, world, out)
    for r in range(world):
        with open(f"{out}.{r}.json") as fh:
            res = json.load(fh)
        for name in ("find_unused", "bucket_view"):  # DDP's options: the same gradients as plain DDP
            assert res["revolve" + name][0] == res["plain" + name][0] == res["plain"][0], name
            assert res["revolve" + name][1][0] < res["revolve" + name][2] - 4, name
        plain_grads, plain_fired, plain_evals = res["plain"]
        grads, fired, evals = res["revolve"]
        assert grads == plain_grads  # bitwise: the same all-reduced gradients
        assert plain_evals == 16 and evals > 16  # the plan recomputes in the backward
        assert len(fired) == len(plain_fired) >= 4
        # every bucket but the last goes out before the backward's last recomputation: overlap is possible
        assert sum(f < evals for f in fired) >= len(fired) - 1, (fired, evals)
        assert fired[0] < evals - 4, (fired, evals)
        print(f"\nrank {r}: buckets went out after {fired} of {evals} layer evaluations (plain DDP: {plain_fired} "
              f"of {plain_evals})")
