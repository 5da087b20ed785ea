"""The PyTorch adapter against plain autograd: bitwise equal outputs, gradients, buffers and RNG stream."""

import copy

import pytest
import torch
from torch import nn

import revolve
from revolve import InfeasibleBudget
from revolve.integrations.torch import CheckpointedSequential, checkpoint_sequential, plan, profile

from .oracles import step_peak as measured_step

STRATEGIES = ["optimal", "binomial", "periodic", "store_all"]


def mixed(dtype, dropout=True, bn=True):
    torch.manual_seed(0)
    shared = nn.Linear(24, 24)
    layers = [nn.Linear(8, 64), nn.Tanh(), nn.Linear(64, 24)]
    if bn:
        layers.append(nn.BatchNorm1d(24))
    layers += [nn.ReLU(), shared, nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(0.3))
    layers += [shared, nn.GELU(), nn.Linear(24, 128), nn.Tanh(), nn.Linear(128, 4)]
    return nn.Sequential(*layers).to(dtype)


def run_plain(model, x, seed):
    torch.manual_seed(seed)
    out = model(x)
    out.pow(2).sum().backward()
    return out, torch.get_rng_state()


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


def assert_same(plain, ours, x_plain, x_ours, out_p, out_o, rng_p, rng_o):
    assert torch.equal(out_p, out_o)
    if x_plain.grad is not None or x_ours.grad is not None:
        assert torch.equal(x_plain.grad, x_ours.grad)
    for a, b in zip(plain.parameters(), ours.parameters()):
        assert torch.equal(a.grad, b.grad)
    for a, b in zip(plain.buffers(), ours.buffers()):
        assert torch.equal(a, b)
    assert torch.equal(rng_p, rng_o)


def budgets(chain, strategy):
    """From the smallest feasible budget to store-all's, for this strategy."""
    top = revolve.simulate(revolve.store_all(chain.n_steps), chain).peak_memory
    try:
        plan(chain, memory=1.0, strategy=strategy)
        low = 1.0
    except InfeasibleBudget as e:
        low = e.minimum
    if strategy == "store_all":
        return [top]
    top = max(top, low)  # a strategy's least peak can exceed store-all's (binomial keeps states and tapes)
    return sorted({low, low + (top - low) * 0.3, low + (top - low) * 0.7, top})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bitwise_equal_to_plain_autograd(dtype, strategy):
    base = mixed(dtype)
    x0 = torch.randn(16, 8, dtype=dtype, generator=torch.Generator().manual_seed(1))
    chain = profile(base, x0)
    for k, memory in enumerate(budgets(chain, strategy)):
        plain, ours_model = copy.deepcopy(base), copy.deepcopy(base)
        xp = x0.clone().requires_grad_()
        xo = x0.clone().requires_grad_()
        out_p, rng_p = run_plain(plain, xp, seed=10 + k)
        ours = CheckpointedSequential(ours_model, memory=memory, strategy=strategy)
        out_o, rng_o = run_plain(ours, xo, seed=10 + k)
        assert_same(plain, ours_model, xp, xo, out_p, out_o, rng_p, rng_o)
        stats = ours.last_stats
        assert stats.peak_bytes <= memory, (strategy, memory, stats)
        assert stats.peak_bytes <= stats.predicted_bytes


def test_recomputation_really_happens_and_bn_updates_once():
    base = mixed(torch.float64)
    x0 = torch.randn(16, 8, dtype=torch.float64)
    chain = profile(base, x0)
    low = revolve.min_memory(chain)
    ours_model, plain = copy.deepcopy(base), copy.deepcopy(base)
    ours = CheckpointedSequential(ours_model, memory=low, strategy="optimal")
    out_o, _ = run_plain(ours, x0, seed=3)
    assert ours.last_stats.forward_evaluations > chain.n_steps  # layers were recomputed
    run_plain(plain, x0, seed=3)
    bn_p = [m for m in plain if isinstance(m, nn.BatchNorm1d)][0]
    bn_o = [m for m in ours_model if isinstance(m, nn.BatchNorm1d)][0]
    assert int(bn_o.num_batches_tracked) == int(bn_p.num_batches_tracked) == 1
    assert torch.equal(bn_o.running_mean, bn_p.running_mean)


def test_input_without_grad_still_gives_parameter_grads():
    base = mixed(torch.float64, dropout=False)
    x0 = torch.randn(4, 8, dtype=torch.float64)  # requires_grad False
    plain, ours_model = copy.deepcopy(base), copy.deepcopy(base)
    run_plain(plain, x0, seed=0)
    chain = profile(base, x0)
    run_plain(CheckpointedSequential(ours_model, memory=revolve.min_memory(chain) * 1.2), x0, seed=0)
    for a, b in zip(plain.parameters(), ours_model.parameters()):
        assert b.grad is not None and torch.equal(a.grad, b.grad)


def test_works_with_autograd_grad_and_functional_form():
    base = mixed(torch.float64, dropout=False, bn=False)
    x = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    ref = torch.autograd.grad(base(x).sum(), [x, *base.parameters()])
    got = torch.autograd.grad(checkpoint_sequential(base, x, memory="64KiB").sum(), [x, *base.parameters()])
    for a, b in zip(ref, got):
        assert torch.equal(a, b)


def test_replans_when_shape_changes():
    net = CheckpointedSequential(mixed(torch.float32, dropout=False), memory="1MiB")
    net(torch.randn(8, 8)).sum().backward()
    net(torch.randn(32, 8)).sum().backward()
    net(torch.randn(8, 8)).sum().backward()
    assert len(net._plans) == 2


def test_no_grad_runs_plainly():
    base = mixed(torch.float32, dropout=False)
    base.eval()
    x = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.equal(CheckpointedSequential(base, memory="1MiB")(x), base(x))


def test_budget_below_minimum_names_it():
    base = mixed(torch.float32)
    x = torch.randn(16, 8)
    chain = profile(base, x)
    need = revolve.min_memory(chain)
    with pytest.raises(InfeasibleBudget, match="smallest budget with which one exists is") as info:
        CheckpointedSequential(base, memory=need * 0.5)(x.requires_grad_()).sum().backward()
    assert info.value.minimum == need


def test_errors():
    class Branchy(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="must be an nn.Sequential or a list of modules"):
        CheckpointedSequential(Branchy(), memory="1MiB")
    with pytest.raises(ValueError, match="strategy must be one of"):
        CheckpointedSequential(nn.Sequential(nn.Tanh()), memory="1MiB", strategy="fast")
    net = CheckpointedSequential(nn.Sequential(nn.Linear(4, 4)), memory="1MiB")
    with pytest.raises(ValueError, match="dtype torch.float64 but the model's parameters have torch.float32"):
        net(torch.randn(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="memory must be a size"):
        CheckpointedSequential(nn.Sequential(nn.Tanh()), memory="plenty")


def test_in_place_layer_is_refused_with_the_fix():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 4))
    x = torch.randn(3, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"layer 3 \(ReLU\(inplace=True\)\) modifies its input in place.*nn.ReLU\(\)"):
        CheckpointedSequential(model, memory="1MiB")(x).sum().backward()


def test_profile_leaves_model_untouched():
    base = mixed(torch.float64)
    before = copy.deepcopy(base.state_dict())
    x = torch.randn(16, 8, dtype=torch.float64)
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    chain = profile(base, x)
    assert torch.equal(rng, torch.get_rng_state())
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in base.parameters())
    # x_0 is the caller's input (costs the plan nothing); x_1 is the first layer's 16 x 64 output
    assert chain.n_steps == len(base) and chain.state(0) == 0 and chain.state(1) == 16 * 64 * 8


def test_grouped_blocks_are_steps():
    torch.manual_seed(0)
    blocks = nn.Sequential(*[nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Dropout(0.1)) for _ in range(5)])
    x = torch.randn(8, 16, dtype=torch.float32)
    chain = profile(blocks, x)
    assert chain.n_steps == 5
    plain, ours_model = copy.deepcopy(blocks), copy.deepcopy(blocks)
    xp, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_p, rng_p = run_plain(plain, xp, seed=4)
    out_o, rng_o = run_plain(CheckpointedSequential(ours_model, memory=revolve.min_memory(chain)), xo, seed=4)
    assert_same(plain, ours_model, xp, xo, out_p, out_o, rng_p, rng_o)


def test_profile_counts_saved_states_once_and_measures_working_memory():
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4), nn.GELU())
    x = torch.randn(16, 8)
    chain = profile(model, x)
    S = [16 * 8 * 4, 16 * 32 * 4, 16 * 32 * 4, 16 * 4 * 4, 16 * 4 * 4]
    # the input and the output are the caller's: the input costs nothing, the output is held throughout
    assert chain.values("state_bytes").tolist() == [0] + S[1:4] + [0]
    # linear and GELU save their input, tanh its output: flagged, not counted again in tape_bytes
    assert chain.holds("tape_holds_input").tolist() == [True, False, True, True]
    assert chain.holds("tape_holds_output").tolist() == [False, True, False, False]
    assert chain.values("tape_bytes").tolist() == [0, 0, 0, 0]
    # a layer's forward creates its output (its input is counted by the simulator unless held), its
    # backward the input's and parameters' gradients; on top, the model's output (S[4]), which the caller
    # holds, and the scalar loss with its gradient
    # and the runner's: two RNG states read around a layer's first evaluation
    out = S[4] + 2 * 4
    rng = 2 * torch.get_rng_state().numel()
    assert chain.values("forward_overhead").tolist()[:3] == [S[1] + out + rng, S[2] + out + rng, S[3] + out + rng]
    assert chain.values("backward_overhead")[0] == S[0] + (32 * 8 + 32) * 4 + out
    assert chain.values("backward_overhead")[1] == S[1] + out
    # the adjoint of x_k is held with the parameter gradients of the layers from k on (reversed already)
    g0, g2 = (8 * 32 + 32) * 4, (32 * 4 + 4) * 4
    assert chain.values("adjoint_bytes").tolist() == [S[0] + g0 + g2, S[1] + g2, S[2] + g2, S[3], S[4]]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_whole_step_peak_within_budget(strategy):
    """The budget covers the step's whole memory, measured as every tensor storage the step creates
    (forward, loss, backward, parameter gradients)."""
    torch.manual_seed(0)
    deep = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(32, 32), nn.Tanh())])
    for base, x in ((mixed(torch.float32), torch.randn(64, 8)), (deep, torch.randn(128, 32))):
        chain = profile(base, x)
        weight = torch.randn_like(base(x)).detach()
        for memory in budgets(chain, strategy):
            net = CheckpointedSequential(base, memory=memory, strategy=strategy)
            net(x).backward(weight)  # plans; the measured step below runs the cached plan
            peak = measured_step(net, base, x, weight)
            assert peak <= memory, (strategy, memory, peak)
            assert net.last_stats.peak_bytes <= net.last_stats.predicted_bytes <= memory


def test_consecutive_reverses_of_one_graph_run_as_one_autograd_call(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(16, 16), nn.Tanh())])
    x = torch.randn(8, 16, requires_grad=True)
    calls = []
    real = torch.autograd.grad

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    net = CheckpointedSequential(copy.deepcopy(model), memory=1e9, strategy="store_all")
    net(x).sum().backward()  # plans (profiling calls autograd itself)
    monkeypatch.setattr(torch.autograd, "grad", counting)
    x.grad = None
    net(x).sum().backward()
    assert len(calls) == 1  # store-all: one graph, one call
    ref = x.detach().clone().requires_grad_()
    model(ref).sum().backward()
    assert torch.equal(ref.grad, x.grad)


def test_gradients_live_no_longer_than_in_plain_autograd():
    """Store-all through the adapter peaks exactly where plain autograd does (the oracle), measured as every
    storage the step creates: the output's gradient is freed after the last layer's backward, and a
    multi-step reverse does not hold the gradient it starts from, though the engine keeps a call's inputs.
    The output is the widest activation here, so holding its gradient longer would show."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 512))
    x = torch.randn(64, 8)
    weight = torch.randn(64, 512)
    net = CheckpointedSequential(model, memory="1GiB", strategy="store_all")
    net(x).backward(weight)  # plans
    peaks = [measured_step(run, model, x, weight) for run in (model, net)]
    assert peaks[1] == peaks[0]  # the stand-ins broadcast one element made once per process, before this step
    assert net.last_stats.predicted_bytes == peaks[1]  # the output, held by the caller, is in the plan


def test_output_gradient_seen_by_the_caller_is_the_real_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(5, 4)
    net = CheckpointedSequential(copy.deepcopy(model), memory="1MiB")
    outs = []
    for run in (model, net):
        y = run(x)
        y.retain_grad()
        y.square().sum().backward()
        outs.append(y)
    assert torch.equal(outs[0].grad, outs[1].grad) and torch.equal(outs[1].grad, 2 * outs[1].detach())


class _SecondHalf(nn.Module):
    """The second half of the features: the layer's last autograd node (chunk) has two outputs."""

    def forward(self, x):
        return x.chunk(2, dim=1)[1]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_views_and_multi_output_nodes_match_plain_autograd(strategy):
    """Reverses start at a layer's last node through the gradient's stand-in, swapped for the real one at
    that node's output: here the node is a view (Flatten) or has several outputs (chunk, output 1)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Unflatten(1, (4, 8)), nn.Flatten(), _SecondHalf(),
                          nn.Linear(16, 16), nn.GELU(), _SecondHalf(), nn.Linear(8, 4)).double()
    x = torch.randn(6, 8, dtype=torch.float64)
    chain = profile(model, x)
    for memory in budgets(chain, strategy):
        plain, ours = copy.deepcopy(model), copy.deepcopy(model)
        xp, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_p, rng_p = run_plain(plain, xp, seed=1)
        out_o, rng_o = run_plain(CheckpointedSequential(ours, memory=memory, strategy=strategy), xo, seed=1)
        assert_same(plain, ours, xp, xo, out_p, out_o, rng_p, rng_o)


def test_prediction_is_exact_for_blocks_of_several_nodes():
    """A transformer block's backward peaks after its incoming gradient is freed (the runner frees it at the
    block's first node); profile measures it so, and the plan predicts the measured whole-step peak to the
    byte (the oracle: the allocator's peak on the real step, the output held as training code holds it)."""
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True) for _ in range(3)])
    x = torch.randn(2, 8, 16)
    weight = torch.randn(2, 8, 16)
    chain = profile(model, x)
    for memory in budgets(chain, "optimal"):
        net = CheckpointedSequential(model, memory=memory)
        net(x).backward(weight)  # plans
        peak = measured_step(net, model, x, weight)
        predicted = net.last_stats.predicted_bytes
        assert peak <= predicted <= memory, (memory, peak)
        # the first sweep is counted with the output and its gradient, which do not exist yet then, and with
        # two RNG states read around each first evaluation (the second after the layer's temporaries are
        # gone): a plan whose peak lies there is conservative by those, and by nothing else
        slack = 2 * chain.values("adjoint_bytes")[-1] + 2 * torch.get_rng_state().numel()
        assert predicted - peak <= slack, (memory, peak)


def test_import_without_torch_names_the_install_command():
    # A fresh interpreter where ``import torch`` fails: the adapter says how to install it, and the core does
    # not need torch at all.
    import subprocess
    import sys
    code = ("import sys; sys.modules['torch'] = None\n"
            "import revolve\n"
            "try:\n    import revolve.integrations.torch\nexcept ImportError as e:\n    print('MSG', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'pip install "revolve[torch]"' in out.stdout


def test_the_adapter_is_a_package_of_named_files():
    import revolve.integrations.torch as rt
    from revolve.integrations.torch import planning, profiling, runner, sequential
    assert rt.profile is profiling.profile and rt.plan is planning.plan
    assert rt.CheckpointedSequential is sequential.CheckpointedSequential and rt.RunStats is runner.RunStats


def test_a_new_shape_reuses_the_first_profiles_times_and_measures_only_sizes():
    """Profiling cost in layer calls: the first shape times each layer (a warm-up and 3 timed runs, each a
    no-grad forward and a recording) and measures its memory (2 more); a new batch size runs each layer
    twice for its sizes and memory, reusing the first profile's times. The plan at the new shape is
    checked against the allocator; the functional form profiles once per shape too (its plans are cached
    on the model)."""
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(3) for m in (nn.Linear(16, 16), nn.Tanh())])
    calls = [0] * len(model)
    for i, layer in enumerate(model):
        layer.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + 1))
    net = CheckpointedSequential(model, memory="1MiB")
    for batch, profile_calls in ((8, 2 * 4 + 2), (32, 2 + 2)):
        calls[:] = [0] * len(model)
        x = torch.randn(batch, 16)
        net(x).sum().backward()
        evaluations = net.last_stats.forward_evaluations
        assert sum(calls) == len(model) * profile_calls + evaluations, (batch, calls)
    first, second = (c for _, c, _, _ in net._plans.values())
    assert first.values("forward_cost").tolist() == second.values("forward_cost").tolist()
    assert second.values("state_bytes")[1] == 4 * first.values("state_bytes")[1]  # sizes are measured anew
    weight = torch.randn(32, 16)
    x = torch.randn(32, 16)
    assert measured_step(net, model, x, weight) <= 2**20
    for k in range(2):
        calls[:] = [0] * len(model)
        checkpoint_sequential(model, x, memory="1MiB").sum().backward()
        if k == 1:
            assert sum(calls) == len(model), calls  # no profiling: the cached plan (store-all fits) runs once
