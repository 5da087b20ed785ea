"""Real architectures (built in code, small) under the adapter: the allocator's peak of the whole training step
within the budget at every plan, gradients bitwise plain autograd's, and a head and loss outside the stack."""

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

import revolve
from revolve.integrations.torch import CheckpointedSequential, allocator_peak as adapter_meter, profile

from .oracles import allocator_peak, step_peak

_spec = importlib.util.spec_from_file_location(
    "torch_models", Path(__file__).resolve().parents[1] / "experiments" / "torch_models.py")
torch_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(torch_models)

SMALL = {
    "resnet18": dict(width=8, image=32, batch=2, classes=10),
    "vgg11": dict(width=4, image=32, batch=2, classes=10),
    "mobilenet_v2": dict(width=0.25, image=32, batch=2, classes=10),
    "gpt": dict(d=32, heads=4, blocks=3, seq=16, batch=2),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_allocator_peak_of_the_whole_step_within_the_budget(name):
    model, shape = torch_models.MODELS[name](**SMALL[name])
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    chain = profile(model, x, repeats=1)
    low = revolve.min_memory(chain)
    top = revolve.simulate(revolve.store_all(chain.n_steps), chain).peak_memory
    weight = torch.randn_like(model(x)).detach()
    for memory in sorted({low, (low + top) / 2, top}):
        net = CheckpointedSequential(model, memory=memory)
        (net(x) * weight).sum().backward()  # plans (the measured step runs the cached plan)
        peak = step_peak(net, model, x, weight)
        assert peak <= memory, (name, memory, peak)
    # a plan that recomputes (Revolve with one snapshot) gives plain autograd's gradients, bitwise (dropout,
    # BatchNorm), within its budget too
    plain, ours = copy.deepcopy(model), copy.deepcopy(model)
    memory = revolve.simulate(revolve.binomial(chain.n_steps, snapshots=1), chain).peak_memory
    recomputing = CheckpointedSequential(ours, memory=memory, strategy="binomial")
    for m, run in ((plain, plain), (ours, recomputing)):
        torch.manual_seed(3)
        (run(x) * weight).sum().backward()
    assert run.last_stats.forward_evaluations > chain.n_steps
    for a, b in zip(plain.parameters(), ours.parameters()):
        assert torch.equal(a.grad, b.grad)
    for a, b in zip(plain.buffers(), ours.buffers()):
        assert torch.equal(a, b)
    assert step_peak(recomputing, ours, x, weight) <= memory


def test_outside_keeps_a_head_and_its_loss_within_the_budget():
    """A stack inside a larger model: the head's and the loss's bytes, measured once and passed as ``outside``,
    keep the whole step's allocator peak within ``memory``; without them the same budget is exceeded."""
    torch.manual_seed(0)
    stack = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(64, 64), nn.Tanh())])
    head = nn.Sequential(nn.Linear(64, 512), nn.GELU(), nn.Linear(512, 10))
    x = torch.randn(256, 64)
    target = torch.randint(0, 10, (256,))
    loss_fn = nn.CrossEntropyLoss()

    y = torch.randn(256, 64, requires_grad=True)  # shaped like the stack's output
    rest = adapter_meter(lambda: loss_fn(head(y), target).backward())
    chain = profile(stack, x, repeats=1)
    memory = revolve.min_memory(chain) + rest
    peaks = {}
    for outside in (rest, 0):
        net = CheckpointedSequential(stack, memory=memory, outside=outside)
        loss_fn(head(net(x)), target).backward()  # plans
        for p in [*stack.parameters(), *head.parameters()]:
            p.grad = None
        peaks[outside] = allocator_peak(lambda: loss_fn(head(net(x)), target).backward())
    assert peaks[rest] <= memory, (peaks, memory)
    assert peaks[0] > memory, (peaks, memory)  # the stack alone used the whole budget


def test_outside_errors_name_the_argument_and_the_minimum():
    stack = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    with pytest.raises(ValueError, match="outside=.*leaves nothing"):
        CheckpointedSequential(stack, memory=1000, outside=1000)
    with pytest.raises(ValueError, match="outside"):
        CheckpointedSequential(stack, memory=1000, outside=-5)
    net = CheckpointedSequential(stack, memory=2000, outside=1999)
    with pytest.raises(revolve.InfeasibleBudget, match="less outside=1999") as e:
        net(torch.randn(4, 8, requires_grad=True))
    assert e.value.minimum > 1999


def test_profiling_under_a_running_profiler_warns_that_workspace_is_not_counted():
    """Two profilers cannot nest (the inner one would empty the outer one's events): inside the caller's,
    layers are measured by the storages they create, and the adapter says so."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True):
        with pytest.warns(RuntimeWarning, match="kernels is not counted"):
            chain = profile(model, torch.randn(4, 8), repeats=1)
    assert chain.values("forward_overhead")[0] > 0  # measured all the same, by storages
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        profile(model, torch.randn(4, 8), repeats=1)  # outside it: the allocator, no warning
