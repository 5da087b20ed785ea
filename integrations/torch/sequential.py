"""The module and functional fronts: CheckpointedSequential, checkpoint_sequential, run_blocks."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

import revolve
from revolve import Chain, InfeasibleBudget, Schedule

from ._meters import _storage_key
from ._state import _autocast_state
from .profiling import (_NotATensorState, _check_input, _layers, _profile, _side_aliases, _side_key,
                        _side_leaves)
from .planning import Strategy, _STRATEGIES, _parse_memory, plan
from .runner import RunStats, _Runner, _ScheduledChain


class CheckpointedSequential(nn.Module):
    """Runs a sequential model under a memory budget; training code changes by one line.

    Arguments:
        model: an ``nn.Sequential`` or a list of modules applied one after the other. The state passed
            between them is a tensor, or a tuple/list/dict of tensors of one floating dtype (packed
            into one flat tensor between layers: see docs/pytorch.md).
        memory: budget in bytes (or "512MiB") for the training step's memory: with ``working_memory``
            (default) everything the forward and backward create (stored inputs, tapes, the working
            activation, gradients of activations and parameters, layer temporaries); without it only
            what is kept between forward and backward (stored inputs and tapes). ``float("inf")``: no
            budget, store-all (every strategy).
        strategy: "optimal" (default, the DP), "binomial", "periodic" or "store_all".
        slots: memory discretization of the DP (default 500).
        working_memory: plan for the whole working memory (see ``profile``), not only what is kept.
        outside: bytes (or "3MiB") the rest of the training step holds while this model runs, taken out
            of ``memory`` before planning: the layers before it whose graph is alive, a head and a loss
            after it, their parameters' gradients. Measure it once with ``allocator_peak`` on the rest
            of the step (example below); default 0 (the model is the whole step).

    Plans are made on the first call for each input shape, dtype, device and autocast state and cached
    (train and eval mode plan separately). The first profiles the model: each layer runs 10 times (timed
    runs and one measured by the allocator); a later one at another shape or mode reuses those times and
    runs each layer twice for its sizes, so a budget too small for a new batch size fails fast. Under ``torch.no_grad``, or when
    nothing needs a gradient, the model runs plainly. ``last_stats`` holds the last backward's
    ``RunStats``. The layers are registered as ``nn.Sequential`` registers them (children ``"0"``,
    ``"1"``, ...), so ``state_dict`` keys are the plain model's and checkpoints load either way.

    Raises:
        TypeError: the model is not sequential. ValueError: bad strategy, or an input on another device or
        of another dtype than the parameters. InfeasibleBudget: the budget is below what the strategy
        needs (the message gives the minimum).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = CheckpointedSequential(nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)), memory="64KiB")
        >>> net(torch.randn(8, 16)).sum().backward()

        Inside a larger model, the head's and the loss's bytes measured with the allocator and left out:

        >>> from revolve.integrations.torch import allocator_peak
        >>> head = nn.Linear(1, 3)
        >>> y = torch.randn(8, 1, requires_grad=True)   # shaped like the stack's output
        >>> rest = allocator_peak(lambda: head(y).logsumexp(1).sum().backward())
        >>> net = CheckpointedSequential([nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)], memory="64KiB",
        ...                              outside=rest)
        >>> head(net(torch.randn(8, 16))).logsumexp(1).sum().backward()
    """

    def __init__(self, model, *, memory: float | str, strategy: Strategy = "optimal", slots: int = 500,
                 working_memory: bool = True, outside: float | str = 0):
        super().__init__()
        where = "revolve.integrations.torch.CheckpointedSequential"
        layers = _layers(model, where)
        for i, layer in enumerate(layers):  # named as nn.Sequential names them: state_dict keys are the model's
            self.add_module(str(i), layer)
        self.memory = _parse_memory(memory, where)
        self.outside = float(revolve.parse_bytes(outside, where=where, name="outside")) if outside else 0.0
        if self.outside >= self.memory:
            raise ValueError(f"{where}: outside={self.outside:.0f} bytes leaves nothing of memory={self.memory:.0f} "
                             f"bytes for the model; the budget must exceed what the rest of the step holds")
        if strategy not in _STRATEGIES:
            raise ValueError(f"{where}: strategy must be one of {', '.join(_STRATEGIES)}, got {strategy!r}")
        self.strategy = strategy
        self.slots = slots
        self.working_memory = working_memory
        self._plans: dict = {}
        self._packed: dict = {}  # per tuple-state structure: its specs and the packed layers (_Packed)
        self._tree_state = False  # a layer returned a tuple for a tensor input: states are packed
        self.last_stats: RunStats | None = None

    @property
    def layers(self) -> list[nn.Module]:
        """The layers, in order (registered as children ``"0"``, ``"1"``, ... like ``nn.Sequential``'s)."""
        return list(self._modules.values())

    def plan_for(self, x: torch.Tensor) -> tuple[Schedule, Chain]:
        """The (cached) schedule and profiled chain for inputs shaped like ``x``."""
        schedule, chain, _, _ = self._plan_entry(x)
        return schedule, chain

    def _plan_entry(self, x: torch.Tensor, side: tuple = (), layers: list | None = None, tree_key=None,
                    reserve: float = 0.0) -> tuple[Schedule, Chain, float, list]:
        """Schedule, chain, predicted peak bytes and each layer's tensors reached from outside (see
        ``_reached_from_outside``), planned once per shape, dtype, device, mode and autocast state.

        ``layers``: the callables to profile (packed wrappers for a tuple state, ``_Packed``); ``tree_key``:
        the state's structure; ``reserve``: bytes taken from the budget besides ``outside``."""
        key = (tuple(x.shape), x.dtype, x.device, self.training, _autocast_state(x.device), _side_key(side), tree_key)
        layers = list(self.layers) if layers is None else layers
        if key not in self._plans:
            # the first profile times the layers; one at another shape or mode reuses its times and
            # measures only sizes (each layer runs twice instead of eight times)
            times = next(((c.values("forward_cost"), c.values("backward_cost")) for _, c, _, _ in self._plans.values()),
                         None)
            chain, extras = _profile(layers, x, repeats=3, working_memory=self.working_memory, times=times,
                                     where="revolve.integrations.torch.CheckpointedSequential", side=side)
            budget = self.memory - self.outside - reserve
            try:
                schedule = plan(chain, memory=max(budget, 1.0), strategy=self.strategy, slots=self.slots)
                if budget < 1.0:  # what the rest holds leaves nothing for the model
                    raise InfeasibleBudget("", budget=budget, minimum=1.0)
            except InfeasibleBudget as e:
                if not self.outside and not reserve:
                    raise
                least = e.minimum + self.outside + reserve
                raise InfeasibleBudget(
                    f"revolve.integrations.torch.CheckpointedSequential: memory={self.memory:.0f} bytes less "
                    f"outside={self.outside:.0f}{f' and the packed input state ({reserve:.0f})' if reserve else ''} "
                    f"leaves {e.budget:.0f} for the model, which needs at least "
                    f"{e.minimum:.0f} ({self.strategy}); the smallest memory that works is {least:.0f} bytes "
                    f"({revolve.format_bytes(least)})", budget=self.memory, minimum=least) from None
            self._plans[key] = (schedule, chain, revolve.simulate(schedule, chain).peak_memory, extras)
        return self._plans[key]

    @torch.compiler.disable
    def forward(self, x: torch.Tensor, *side) -> torch.Tensor:
        """Run the layers on ``x``; ``side`` arguments (a mask, positions) go to every layer: ``layer(x, *side)``.

        Under ``torch.compile`` of an enclosing model this runs eagerly (the compiler stops at it and
        compiles what comes before and after): profiling, the planner and the runner's bookkeeping
        (version counters, RNG states, storages) are Python that a compiled graph cannot hold.
        """
        if isinstance(x, torch.Tensor) and not self._tree_state:
            try:
                return self._run(x, side, list(self.layers))
            except _NotATensorState:  # a layer returns a tuple: the state is packed from here on
                self._tree_state = True
        return self._forward_tree(x, side)

    def _forward_tree(self, state, side: tuple):
        """A state of several tensors (a tuple, list, dict or namedtuple, nested): packed into one flat tensor
        between layers (``_Packed``), so the chain carries one tensor; unpacked for each layer and at the end."""
        leaves, tree = tree_flatten(state)
        _check_leaves(leaves, "the input state")
        if not torch.is_grad_enabled():
            for layer in self.layers:
                state = layer(state, *side)
            return state
        spec = _spec(leaves, tree)
        if spec not in self._packed:
            specs: list = [spec] + [None] * len(self.layers)
            self._packed[spec] = (specs, [_Packed(layer, specs, i) for i, layer in enumerate(self.layers)])
        specs, packed = self._packed[spec]
        flat = _pack(leaves)
        copied = len(leaves) > 1  # the packed input is a copy: the plan's x_0 is then not the caller's
        y = self._run(flat, side, packed, tree_key=spec, reserve=float(_storage_key(flat)[1]) if copied else 0.0)
        return _unpack(y, specs[-1])

    def _run(self, x: torch.Tensor, side: tuple, layers: list, tree_key=None, reserve: float = 0.0) -> torch.Tensor:
        where = "revolve.integrations.torch.CheckpointedSequential"
        # each layer's parameters and buffers, listed once per step (module traversals are not free)
        layer_params = [list(layer.parameters()) for layer in layers]
        _check_input(layers, x, where, layer_params)
        params = list({id(p): p for ps in layer_params for p in ps if p.requires_grad}.values())  # shared: once
        side_grad = [t for t in side if isinstance(t, torch.Tensor) and t.requires_grad]
        if not torch.is_grad_enabled() or not (x.requires_grad or params or side_grad):
            for layer in layers:
                x = layer(x, *side)
            return x
        schedule, _, predicted, extras = self._plan_entry(x, side, layers, tree_key, reserve)
        aliases = _side_aliases(side)
        if any(extras) or side_grad:
            # tensors a layer reaches outside its parameters, and side inputs that need grad, are inputs of
            # the Function too: they get their gradient (the layers read the side inputs' aliases)
            layer_params = [ps + extra + _side_leaves(aliases) for ps, extra in zip(layer_params, extras)]
            params = list({id(p): p for ps in layer_params for p in ps if p.requires_grad}.values())
            params = [p for p in params if not any(p is a for a in aliases)]
            params += list({id(t): t for t in side_grad}.values())
        runner = _Runner(layers, schedule, layer_params, [list(layer.buffers()) for layer in layers], params,
                         side=side, side_aliases=aliases)

        def done():
            self.last_stats = RunStats(forward_evaluations=runner.evaluations, peak_bytes=runner.peak,
                                       predicted_bytes=predicted, schedule=runner.schedule)

        runner.on_done = done
        y = _ScheduledChain.apply(runner, x, *params)
        if y.grad_fn is not None:
            y.grad_fn.register_prehook(runner.take_output_grad)
        return y


def _check_leaves(leaves: list, what: str):
    """The tensors of a tuple state: all floating tensors of one dtype on one device (they are packed into one)."""
    where = "revolve.integrations.torch.CheckpointedSequential"
    if not leaves or not all(isinstance(t, torch.Tensor) for t in leaves):
        kinds = sorted({type(t).__name__ for t in leaves if not isinstance(t, torch.Tensor)}) or ["nothing"]
        raise TypeError(f"{where}: {what} must hold tensors only, got {', '.join(kinds)}; pass other values as "
                        f"side inputs (layer(state, *side))")
    kinds = {(t.dtype, t.device) for t in leaves}
    if len(kinds) > 1 or not leaves[0].is_floating_point():
        found = ", ".join(f"{d} on {v}" for d, v in sorted(kinds, key=str))
        raise TypeError(f"{where}: the tensors of {what} must be floating point, of one dtype on one device (the "
                        f"chain packs them into one tensor between layers), got {found}; cast them to one dtype, or "
                        f"pass the odd ones (masks, indices) as side inputs")


def _spec(leaves: list, tree) -> tuple:
    """A tuple state's structure: its tree, each tensor's shape, and their dtype and device."""
    return (tree, tuple(tuple(t.shape) for t in leaves), leaves[0].dtype, leaves[0].device)


def _pack(leaves: list) -> torch.Tensor:
    """The tensors of a state as one flat tensor: a view of a single tensor, else one copy of them all."""
    if len(leaves) == 1:
        return leaves[0].reshape(-1)
    return torch.cat([t.reshape(-1) for t in leaves])


def _unpack(flat: torch.Tensor, spec: tuple):
    """The state ``_pack`` packed, as views of ``flat`` (differentiable: gradients flow back into it)."""
    tree, shapes = spec[0], spec[1]
    sizes = [math.prod(shape) for shape in shapes]
    parts = flat.split(sizes) if len(shapes) > 1 else [flat]
    return tree_unflatten([p.view(shape) for p, shape in zip(parts, shapes)], tree)


class _Packed(nn.Module):
    """A layer whose state is a tuple (or dict, nested), seen by the chain as flat tensor -> flat tensor.

    Unpacks its input into views with the structure recorded for step ``i`` (``specs[i]``), runs the layer,
    and packs what it returns; the first call records the output's structure as ``specs[i + 1]``, and a
    later call that returns another structure raises (a recomputation must match the first run). Its
    parameters and buffers are the layer's. Not registered with the front: state_dict keys stay the model's.
    """

    def __init__(self, layer: nn.Module, specs: list, i: int):
        super().__init__()
        self.inner, self.specs, self.i = layer, specs, i

    def forward(self, flat: torch.Tensor, *side) -> torch.Tensor:
        out = self.inner(_unpack(flat, self.specs[self.i]), *side)
        leaves, tree = tree_flatten(out)
        _check_leaves(leaves, f"the state layer {self.i} ({type(self.inner).__name__}) returned")
        spec = _spec(leaves, tree)
        if self.specs[self.i + 1] is None:
            self.specs[self.i + 1] = spec
        elif self.specs[self.i + 1] != spec:
            raise RuntimeError(
                f"revolve.integrations.torch.CheckpointedSequential: layer {self.i} ({type(self.inner).__name__}) "
                f"returned a state of another structure or shape than on its first call for this input; a "
                f"recomputation must reproduce the first run")
        return _pack(leaves)

    def __repr__(self):
        return f"_Packed({self.inner!r})"


def checkpoint_sequential(model, x: torch.Tensor, *, memory: float | str, strategy: Strategy = "optimal",
                          working_memory: bool = True, outside: float | str = 0) -> torch.Tensor:
    """Functional form: ``CheckpointedSequential(model, memory=..., strategy=...)(x)``; the plan is cached on
    ``model`` (an ``nn.Sequential``), so a call at a shape seen before profiles nothing (see ``run_blocks``)."""
    if isinstance(model, nn.Sequential):
        return run_blocks(model, x, memory=memory, strategy=strategy, working_memory=working_memory,
                          outside=outside)
    return CheckpointedSequential(model, memory=memory, strategy=strategy, working_memory=working_memory,
                                  outside=outside)(x)


_RUNS_ATTR = "_revolve_runs"


def run_blocks(blocks: nn.Module, x: torch.Tensor, *side, memory: float | str, strategy: Strategy = "optimal",
               slots: int = 500, working_memory: bool = True, outside: float | str = 0) -> torch.Tensor:
    """``for block in blocks: x = block(x, *side)`` under a memory budget: the loop inside a custom forward.

    The plan is cached as ``CheckpointedSequential`` caches it (per shape, dtype, device, mode, autocast
    state and side inputs' shapes), on ``blocks`` itself, per (memory, strategy, slots, working_memory,
    outside);
    gradients are exact, side inputs that require grad (a learned bias) included.

    Arguments:
        blocks: an ``nn.ModuleList`` or ``nn.Sequential`` of blocks (it holds the cache).
        x: the state entering the first block. side: passed to every block after the state.
        memory, strategy, slots, working_memory, outside: as for ``CheckpointedSequential``.

    Raises:
        TypeError: ``blocks`` is not an ``nn.ModuleList`` or ``nn.Sequential``. Otherwise as
        ``CheckpointedSequential``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(4))
        >>> y = run_blocks(blocks, torch.randn(2, 8), memory="1MiB")
        >>> y.sum().backward()
    """
    where = "revolve.integrations.torch.run_blocks"
    if not isinstance(blocks, (nn.ModuleList, nn.Sequential)):
        raise TypeError(f"{where}: blocks must be an nn.ModuleList or nn.Sequential (it holds the plan cache), "
                        f"got {type(blocks).__name__}; wrap a list of blocks in nn.ModuleList(...)")
    runs = blocks.__dict__.setdefault(_RUNS_ATTR, {})
    key = (memory, strategy, slots, working_memory, outside)
    if key not in runs:
        runs[key] = CheckpointedSequential(list(blocks), memory=memory, strategy=strategy, slots=slots,
                                           working_memory=working_memory, outside=outside)
    net = runs[key]
    net.training = blocks.training  # plans are per mode, the blocks' own
    return net(x, *side)
