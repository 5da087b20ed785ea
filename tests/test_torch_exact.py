"""The PyTorch adapter where real training code differs from a plain nn.Sequential call: autocast, tensors
reached outside a layer's own parameters, double backward and retained graphs. The oracle is plain autograd
on a deep copy of the same model, compared bitwise (torch.equal)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import revolve
from revolve.integrations.torch import CheckpointedSequential, profile

STRATEGIES = ["optimal", "binomial", "periodic", "store_all"]




class BasicBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.b2(self.c2(F.relu(self.b1(self.c1(x))))))


def resnet_like(c=8, blocks=4, classes=5):
    torch.manual_seed(0)
    return nn.Sequential(nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()),
                         *[BasicBlock(c) for _ in range(blocks)],
                         nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)))


class GPTBlock(nn.Module):
    def __init__(self, d, heads, p=0.1):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(p))
        self.heads, self.drop = heads, nn.Dropout(p)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / (C // self.heads) ** 0.5
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
        y = (self.drop(att.softmax(-1)) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


def gpt_like(d=32, heads=4, layers=4):
    torch.manual_seed(0)
    return nn.Sequential(*[GPTBlock(d, heads) for _ in range(layers)], nn.LayerNorm(d), nn.Linear(d, 11))


def recomputing_budgets(chain, strategy):
    """Budgets from the smallest feasible one to a third of the way to store-all's (plans that recompute)."""
    top = revolve.simulate(revolve.store_all(chain.n_steps), chain).peak_memory
    low = revolve.min_memory(chain) if strategy == "optimal" else None
    if low is None:
        try:
            revolve.integrations.torch.plan(chain, memory=1.0, strategy=strategy)
            low = 1.0
        except revolve.InfeasibleBudget as e:
            low = e.minimum
    return sorted({low, low + (top - low) / 3})


def step(model, x, seed, *, autocast):
    """One training step under ``torch.autocast("cpu", bfloat16)`` (or not): forward, a float32 loss, backward."""
    torch.manual_seed(seed)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(x)
    out.float().square().sum().backward()
    return out


def assert_grads_equal(plain, ours):
    for (name, a), b in zip(plain.named_parameters(), ours.parameters()):
        assert b.grad is not None, name
        assert torch.equal(a.grad, b.grad), (name, (a.grad - b.grad).abs().max())
    for a, b in zip(plain.buffers(), ours.buffers()):
        assert torch.equal(a, b)


# ---- autocast --------------------------------------------------------------------------------------------

MODELS = {"resnet": (resnet_like, lambda: torch.randn(4, 3, 12, 12)), "gpt": (gpt_like, lambda: torch.randn(3, 10, 32))}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_autocast_bf16_with_recomputation_is_bitwise_plain(name, strategy):
    build, make_x = MODELS[name]
    base = build()
    x = make_x().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        chain = profile(base, x)
    budgets = recomputing_budgets(chain, strategy) if strategy != "store_all" else [float(2**40)]
    for k, memory in enumerate(budgets):
        plain, ours = copy.deepcopy(base), copy.deepcopy(base)
        xp, xo = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
        out_p = step(plain, xp, 5 + k, autocast=True)
        net = CheckpointedSequential(ours, memory=memory, strategy=strategy)
        out_o = step(net, xo, 5 + k, autocast=True)
        assert out_o.dtype == torch.bfloat16 and torch.equal(out_p, out_o)
        assert torch.equal(xp.grad, xo.grad)
        assert_grads_equal(plain, ours)
        if strategy != "store_all":
            assert net.last_stats.forward_evaluations > chain.n_steps  # the plan recomputed


def test_plans_are_cached_per_autocast_state_and_backward_ignores_the_callers():
    """A float32 step after a bf16 step plans again (the profile's sizes differ) and is bitwise plain float32;
    a backward called inside an autocast region re-enters the forward's state (here: autocast off)."""
    base = gpt_like()
    x = torch.randn(3, 10, 32)
    chain = profile(base, x)
    net_model, plain = copy.deepcopy(base), copy.deepcopy(base)
    net = CheckpointedSequential(net_model, memory=revolve.min_memory(chain))
    step(net, x, 1, autocast=True)
    for m in (net_model, plain):
        m.zero_grad(set_to_none=True)
    for model in (plain, net):
        torch.manual_seed(2)
        out = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out.square().sum().backward()
    assert len(net._plans) == 2
    assert net.last_stats.forward_evaluations > chain.n_steps
    assert_grads_equal(plain, net_model)


# ---- tensors reached outside a layer's own parameters ----------------------------------------------------

class ClosureScale(nn.Module):
    """tanh(lin(x) * scale + bias): ``scale`` a closure over an nn.Parameter, ``bias`` a tensor attribute that
    requires grad; neither is in this module's ``parameters()``."""

    def __init__(self, scale, bias, d):
        super().__init__()
        self.lin = nn.Linear(d, d)
        self.get_scale = lambda: scale
        self.bias = bias

    def forward(self, x):
        return torch.tanh(self.lin(x) * self.get_scale() + self.bias)


def closure_model():
    torch.manual_seed(0)
    scale = nn.Parameter(torch.randn(16))  # shared by every block
    layers = [ClosureScale(scale, torch.randn(16).requires_grad_(), 16) for _ in range(5)]
    return nn.Sequential(*layers, nn.Dropout(0.2), nn.Linear(16, 3)), scale, [m.bias for m in layers]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("x_grad", [False, True])
def test_closure_parameters_get_their_exact_gradient(strategy, x_grad):
    plain, sp, bp = closure_model()
    ours, so, bo = closure_model()
    x = torch.randn(256, 16)
    chain = profile(ours, x)
    memory = revolve.min_memory(chain) if strategy == "optimal" else float(2**40)
    if strategy in ("binomial", "periodic"):
        memory = recomputing_budgets(chain, strategy)[0]
    xp, xo = x.clone().requires_grad_(x_grad), x.clone().requires_grad_(x_grad)
    torch.manual_seed(3)
    plain(xp).square().sum().backward()
    net = CheckpointedSequential(ours, memory=memory, strategy=strategy)
    torch.manual_seed(3)
    net(xo).square().sum().backward()
    if strategy != "store_all":
        assert net.last_stats.forward_evaluations > chain.n_steps
    for a, b in [(sp, so), *zip(bp, bo)]:
        assert b.grad is not None and torch.equal(a.grad, b.grad)
    assert_grads_equal(plain, ours)
    if x_grad:
        assert torch.equal(xp.grad, xo.grad)


def test_a_tensor_computed_outside_the_layer_is_refused_naming_it():
    """A non-leaf tensor requiring grad made outside the layer (here: from a parameter, before the step) cannot
    get its gradient exactly: the call raises, naming the layer, the tensor's shape and the fix."""
    torch.manual_seed(0)
    source = nn.Parameter(torch.randn(16))
    derived = source * 2
    model = nn.Sequential(nn.Linear(16, 16), ClosureScale(derived, torch.zeros(16), 16), nn.Linear(16, 2))
    with pytest.raises(RuntimeError, match=r"layer 1 \(ClosureScale\) uses a tensor that requires grad and was "
                                           r"computed outside the layer \(shape \(16,\), torch.float32"):
        CheckpointedSequential(model, memory="1MiB")(torch.randn(4, 16)).sum().backward()


class BiasedGPTBlock(GPTBlock):
    """A GPT block adding a learned attention bias that all blocks share, reached as a closure."""

    def __init__(self, d, heads, bias):
        super().__init__(d, heads, p=0.0)
        self.attn_bias = lambda: bias

    def forward(self, x):
        return super().forward(x + self.attn_bias())


def test_learned_bias_shared_by_blocks_under_autocast():
    def build():
        torch.manual_seed(0)
        bias = nn.Parameter(torch.randn(10, 32) * 0.1)
        return nn.Sequential(*[BiasedGPTBlock(32, 4, bias) for _ in range(4)], nn.Linear(32, 5)), bias

    (plain, bp), (ours, bo) = build(), build()
    x = torch.randn(16, 10, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        chain = profile(ours, x)
    net = CheckpointedSequential(ours, memory=revolve.min_memory(chain))
    step(plain, x, 0, autocast=True)
    step(net, x, 0, autocast=True)
    assert net.last_stats.forward_evaluations > chain.n_steps
    assert bo.grad is not None and torch.equal(bp.grad, bo.grad)
    assert_grads_equal(plain, ours)


# ---- double backward and retained graphs -----------------------------------------------------------------

def critic():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 64), nn.Tanh(), nn.Linear(64, 64), nn.GELU(), nn.Dropout(0.1),
                         nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)).double()


def wgan_gp_step(D, G, z, real, seed):
    """A WGAN-GP critic step: the penalty differentiates D's input gradient (create_graph=True); the fake
    batch is not detached, so the penalty's gradient reaches the generator through D's input too."""
    torch.manual_seed(seed)
    fake = G(z)
    alpha = torch.rand(real.shape[0], 1, dtype=real.dtype)
    mixed_in = alpha * real + (1 - alpha) * fake
    g, = torch.autograd.grad(D(mixed_in).sum(), mixed_in, create_graph=True)
    penalty = ((g.norm(2, dim=1) - 1) ** 2).mean()
    loss = D(fake).mean() - D(real).mean() + 10 * penalty
    loss.backward()


@pytest.mark.parametrize("strategy", ["optimal", "store_all"])
def test_gradient_penalty_with_create_graph_equals_plain(strategy):
    Dp, Do = critic(), critic()
    torch.manual_seed(1)
    G = nn.Sequential(nn.Linear(4, 8), nn.Tanh()).double()
    Gp, Go = copy.deepcopy(G), copy.deepcopy(G)
    z, real = torch.randn(128, 4, dtype=torch.float64), torch.randn(128, 8, dtype=torch.float64)
    chain = profile(Do, real)
    net = CheckpointedSequential(Do, memory=revolve.min_memory(chain) if strategy == "optimal" else 2.0**40,
                                 strategy=strategy)
    wgan_gp_step(Dp, Gp, z, real, seed=2)
    wgan_gp_step(net, Go, z, real, seed=2)
    assert_grads_equal(Dp, Do)
    assert_grads_equal(Gp, Go)


@pytest.mark.parametrize("strategy", ["optimal", "binomial", "store_all"])
def test_second_backward_through_a_retained_graph_equals_plain(strategy):
    """Plain autograd accumulates both backwards; so does the adapter, which runs its schedule again (dropout
    replays its masks, BatchNorm statistics are updated once, by the forward)."""
    from tests.test_torch import mixed

    base = mixed(torch.float64)
    x = torch.randn(64, 8, dtype=torch.float64)
    chain = profile(base, x)
    memory = {"optimal": revolve.min_memory(chain), "binomial": recomputing_budgets(chain, "binomial")[0],
              "store_all": 2.0**40}[strategy]
    plain, ours = copy.deepcopy(base), copy.deepcopy(base)
    net = CheckpointedSequential(ours, memory=memory, strategy=strategy)
    xs = []
    for model in (plain, net):
        torch.manual_seed(4)
        xs.append(x.clone().requires_grad_())
        loss = model(xs[-1]).square().sum()
        loss.backward(retain_graph=True)
        loss.backward()
        xs.append(torch.get_rng_state())
    if strategy != "store_all":
        assert net.last_stats.forward_evaluations > chain.n_steps
    assert torch.equal(xs[0].grad, xs[2].grad) and torch.equal(xs[1], xs[3])
    assert_grads_equal(plain, ours)


def test_second_backward_without_retain_graph_raises_torchs_error():
    net = CheckpointedSequential(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), memory="1MiB")
    loss = net(torch.randn(3, 4)).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()


# ---- the wrapper as a drop-in ----------------------------------------------------------------------------

def test_state_dict_round_trips_with_the_plain_model():
    from tests.test_torch import mixed

    plain = mixed(torch.float32)
    net = CheckpointedSequential(copy.deepcopy(plain), memory="1MiB")
    assert list(net.state_dict()) == list(plain.state_dict())
    other = mixed(torch.float32)
    for p in other.parameters():
        p.data.add_(1.0)
    net.load_state_dict(other.state_dict())  # a checkpoint saved from the plain model loads
    for a, b in zip(net.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    plain.load_state_dict(net.state_dict())  # and the other way round
    assert torch.equal(plain[0].weight, other[0].weight)


def test_infinite_memory_means_store_all():
    from tests.test_torch import mixed

    base = mixed(torch.float64)
    x = torch.randn(16, 8, dtype=torch.float64)
    chain = profile(base, x)
    for strategy in STRATEGIES:
        assert list(revolve.integrations.torch.plan(chain, memory=float("inf"), strategy=strategy)) == \
            list(revolve.store_all(chain.n_steps))
    plain, ours = copy.deepcopy(base), copy.deepcopy(base)
    torch.manual_seed(0)
    plain(x).sum().backward()
    net = CheckpointedSequential(ours, memory=float("inf"))
    torch.manual_seed(0)
    net(x).sum().backward()
    assert net.last_stats.forward_evaluations == chain.n_steps
    assert_grads_equal(plain, ours)


# ---- side inputs and the functional form -----------------------------------------------------------------

class MaskedBlock(GPTBlock):
    """A GPT block called as ``block(x, pad, bias)``: a padding mask (bool, no grad) and a learned additive
    attention bias (heads x T x T, requires grad), both the same for every block."""

    def forward(self, x, pad, bias):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / (C // self.heads) ** 0.5 + bias
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(causal | pad[:, None, None, :], float("-inf"))
        y = (self.drop(att.softmax(-1)) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, memory=None, d=32, heads=4, layers=4, T=12):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(MaskedBlock(d, heads) for _ in range(layers))
        self.rel = nn.Parameter(torch.randn(heads, T, T) * 0.1)
        self.head = nn.Linear(d, 7)
        self.memory = memory

    def forward(self, x, pad):
        bias = self.rel * 2.0  # a non-leaf side input: its gradient must reach self.rel through it
        if self.memory is None:
            for block in self.blocks:
                x = block(x, pad, bias)
        else:
            x = revolve.integrations.torch.run_blocks(self.blocks, x, pad, bias, memory=self.memory)
        return self.head(x)


def test_gpt_with_padding_mask_dropout_and_learned_bias_through_run_blocks_is_bitwise_plain():
    x = torch.randn(8, 12, 32)
    pad = torch.zeros(8, 12, dtype=torch.bool)
    pad[:3, -4:] = True
    plain = TinyGPT()
    bias = (plain.rel * 2.0).detach().requires_grad_()
    chain = profile(plain.blocks, x, torch.zeros(8, 12, dtype=torch.bool), bias)
    ours = TinyGPT(memory=revolve.min_memory(chain))
    for model in (plain, ours):
        torch.manual_seed(5)
        model(x, pad).square().sum().backward()
        torch.manual_seed(6)
        model(x, pad).square().sum().backward()  # the second step runs the cached plan
    net = next(iter(ours.blocks.__dict__["_revolve_runs"].values()))
    assert len(net._plans) == 1 and net.last_stats.forward_evaluations > chain.n_steps
    assert ours.rel.grad is not None and torch.equal(plain.rel.grad, ours.rel.grad)
    assert_grads_equal(plain, ours)


def test_side_inputs_double_backward_and_errors():
    """A leaf side input's gradient under create_graph=True, against plain autograd; run_blocks refuses a list."""
    torch.manual_seed(0)

    class Shift(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 6)

        def forward(self, x, shift):
            return torch.tanh(self.lin(x) + shift)

    blocks = nn.Sequential(*[Shift() for _ in range(4)]).double()
    shift = torch.randn(6, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    net = CheckpointedSequential(copy.deepcopy(blocks), memory=float("inf"))
    got, ref = [], []
    def plain(h, shift):
        for block in blocks:
            h = block(h, shift)
        return h

    for run, out in ((plain, ref), (net, got)):
        g, = torch.autograd.grad(run(x, shift).sum(), x, create_graph=True)
        out.extend(torch.autograd.grad(g.square().sum(), [x, shift]))
    assert all(torch.equal(a, b) for a, b in zip(ref, got))
    with pytest.raises(TypeError, match="blocks must be an nn.ModuleList or nn.Sequential"):
        revolve.integrations.torch.run_blocks(list(blocks), x, shift, memory="1MiB")


class Coupling(nn.Module):
    """A RevNet-style additive coupling: the state is a pair (a, b), returned as a pair."""

    def __init__(self, d, p=0.1):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Dropout(p))
        self.g = nn.Linear(d, d)

    def forward(self, state):
        a, b = state
        a = a + self.f(b)
        return (a, b + torch.tanh(self.g(a)))


class DictBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, state):
        return {"h": torch.tanh(self.lin(state["h"])) + state["skip"], "skip": state["skip"] * 0.5}


@pytest.mark.parametrize("strategy", ["optimal", "binomial", "periodic"])
def test_tuple_and_dict_states_are_bitwise_plain_with_recomputation(strategy):
    from .oracles import allocator_peak

    torch.manual_seed(0)
    for base, make in ((nn.Sequential(*[Coupling(16) for _ in range(6)]),
                        lambda g: (torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g))),
                       (nn.Sequential(*[DictBlock(16) for _ in range(5)]),
                        lambda g: {"h": torch.randn(8, 16, generator=g), "skip": torch.randn(8, 16, generator=g)})):
        state0 = make(torch.Generator().manual_seed(1))

        def loss(out):
            leaves = list(out.values()) if isinstance(out, dict) else list(out)
            return sum((k + 1) * t.square().sum() for k, t in enumerate(leaves))

        plain, ours = copy.deepcopy(base), copy.deepcopy(base)
        leaves_p = [t.clone().requires_grad_() for t in (state0.values() if isinstance(state0, dict) else state0)]
        leaves_o = [t.detach().clone().requires_grad_() for t in leaves_p]

        def rebuild(leaves):
            return dict(zip(state0.keys(), leaves)) if isinstance(state0, dict) else tuple(leaves)

        torch.manual_seed(5)
        loss(plain(rebuild(leaves_p))).backward()
        rng_p = torch.get_rng_state()
        # a budget that forces recomputation: the least the strategy can do
        probe = CheckpointedSequential(copy.deepcopy(base), memory=1.0, strategy=strategy)
        try:
            probe(rebuild([t.detach().clone().requires_grad_() for t in leaves_p]))
            raise AssertionError("a 1-byte budget was accepted")
        except revolve.InfeasibleBudget as e:
            memory = e.minimum
        net = CheckpointedSequential(ours, memory=memory, strategy=strategy)
        torch.manual_seed(5)
        out = net(rebuild(leaves_o))
        assert type(out) is type(state0)
        loss(out).backward()
        assert torch.equal(rng_p, torch.get_rng_state())
        assert net.last_stats.forward_evaluations > len(base)
        for a, b in zip(leaves_p, leaves_o):
            assert torch.equal(a.grad, b.grad)
        for a, b in zip(plain.parameters(), ours.parameters()):
            assert torch.equal(a.grad, b.grad)
        # the budget holds, the packed input's copy included
        for p in ours.parameters():
            p.grad = None
        inputs = rebuild([t.detach().clone().requires_grad_() for t in leaves_p])
        assert allocator_peak(lambda: loss(net(inputs)).backward()) <= memory


def test_tuple_state_errors_name_the_problem():
    class Split(nn.Module):  # a tensor in, a pair out
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(x), x

    class Join(nn.Module):  # a pair in, a tensor out
        def forward(self, state):
            return state[0] * torch.tanh(state[1])

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), Split(), Coupling(4, p=0.0), Join(), nn.Linear(4, 2))
    with pytest.raises(TypeError, match=r"layer 1 \(Split\) returned a tuple, not a tensor"):
        profile(model, torch.randn(2, 4))  # profile() chains tensors; the front packs
    plain, ours = copy.deepcopy(model), copy.deepcopy(model)
    x = torch.randn(3, 4)
    plain(x).square().sum().backward()
    chain_free = CheckpointedSequential(ours, memory="1MiB")
    chain_free(x).square().sum().backward()
    for a, b in zip(plain.parameters(), ours.parameters()):
        assert torch.equal(a.grad, b.grad)
    pair = CheckpointedSequential([Coupling(4)], memory="1MiB")
    with pytest.raises(TypeError, match="one dtype on one device"):
        pair((torch.randn(2, 4, requires_grad=True), torch.randn(2, 4, dtype=torch.float64)))
    with pytest.raises(TypeError, match="tensors only, got int"):
        pair((torch.randn(2, 4, requires_grad=True), 3))
    with torch.no_grad():  # plainly, the tuple as it is
        a, b = pair((torch.randn(2, 4), torch.randn(2, 4)))
    assert a.shape == b.shape == (2, 4)


@pytest.mark.parametrize("strategy", ["optimal", "binomial", "store_all"])
def test_a_gradient_hook_on_a_parameter_runs_once_on_the_total_as_in_plain_autograd(strategy):
    """``p.register_hook(lambda g: g * 2)`` ran on each layer's part inside the adapter and again on the total
    (gradients doubled twice, silently); profiling ran it too. Now: once per backward, on the total."""
    def build():
        torch.manual_seed(0)
        shared = nn.Linear(8, 8)
        model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), shared, nn.Tanh(), shared, nn.Tanh(), nn.Linear(8, 2))
        calls = []
        model[0].weight.register_hook(lambda g: calls.append(0) or g * 2)
        shared.weight.register_hook(lambda g: calls.append(2) or g * 3)
        return model, calls

    x = torch.randn(4, 8)
    results = []
    for wrap in (lambda m: m, lambda m: CheckpointedSequential(m, memory=float("inf") if strategy == "store_all"
                                                             else 1e9, strategy=strategy)):
        model, calls = build()
        net = wrap(model)
        if net is not model:
            chain = net.plan_for(x.requires_grad_(False))[1]
            low = revolve.simulate(revolve.binomial(chain.n_steps, snapshots=1), chain).peak_memory
            net = CheckpointedSequential(model, memory=low if strategy != "store_all" else float("inf"),
                                         strategy=strategy)
        calls.clear()  # profiling (plan_for) runs no hook either: checked below by the count
        net(x).square().sum().backward()
        first = list(calls)
        # create_graph: the gradient penalty path
        (g,) = torch.autograd.grad(net(x).square().sum(), [model[0].weight], create_graph=True)
        results.append(([p.grad.clone() for p in model.parameters()], sorted(first), g.detach()))
    (plain_grads, plain_calls, plain_g), (grads, calls, g) = results
    assert calls == plain_calls == [0, 2]
    for a, b in zip(plain_grads, grads):
        assert torch.equal(a, b)
    assert torch.equal(plain_g, g)


def test_torch_compile_of_an_enclosing_model_runs_the_stack_eagerly_and_exactly():
    """torch.compile traced into the runner (its version-counter check then misread every layer as in-place);
    the stack now runs eagerly inside the compiled model, the head compiled around it."""
    torch.manual_seed(0)
    stack = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(32, 32), nn.Tanh())])

    class Model(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.head = inner, nn.Linear(32, 1)

        def forward(self, x):
            return self.head(self.inner(x)).square().sum()

    plain = Model(copy.deepcopy(stack))
    x = torch.randn(16, 32)
    chain = profile(stack, x)
    memory = revolve.simulate(revolve.binomial(chain.n_steps, snapshots=1), chain).peak_memory
    ours = Model(CheckpointedSequential(copy.deepcopy(stack), memory=memory, strategy="binomial"))
    ours.head.load_state_dict(plain.head.state_dict())
    torch._dynamo.reset()
    compiled = torch.compile(ours, backend="aot_eager")
    for _ in range(2):  # the second call runs the cached plan and compiled code
        for p in [*plain.parameters(), *ours.parameters()]:
            p.grad = None
        compiled(x).backward()
        plain(x).backward()
        for a, b in zip(plain.parameters(), ours.parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
    assert ours.inner.last_stats.forward_evaluations > chain.n_steps


def test_compiled_layers_are_recomputed_with_their_compiled_graphs():
    """Layers compiled one by one (``layer.compile()``) run compiled in the forward and in every
    recomputation: gradients bitwise the compiled plain model's, and a second step compiles nothing new."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    base = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(32, 32), nn.Tanh())])
    plain, ours = copy.deepcopy(base), copy.deepcopy(base)
    torch._dynamo.reset()
    for model in (plain, ours):
        for layer in model:
            layer.compile(backend="aot_eager")
    x = torch.randn(16, 32)
    chain = profile(ours, x)
    memory = revolve.simulate(revolve.binomial(chain.n_steps, snapshots=1), chain).peak_memory
    net = CheckpointedSequential(ours, memory=memory, strategy="binomial")
    graphs = []
    for _ in range(2):
        for p in [*plain.parameters(), *ours.parameters()]:
            p.grad = None
        plain(x).square().sum().backward()
        net(x).square().sum().backward()
        graphs.append(counters["frames"]["ok"])
        for a, b in zip(plain.parameters(), ours.parameters()):
            assert torch.equal(a.grad, b.grad)
    assert net.last_stats.forward_evaluations > chain.n_steps
    assert graphs[1] == graphs[0] > 0  # recomputations reused the frames compiled in the first step
