"""The module and functional fronts: CheckpointedSequential, checkpoint_sequential, run_blocks."""

from __future__ import annotations


import torch
from torch import nn

import revolve
from revolve import Chain, InfeasibleBudget, Schedule

from ._state import _autocast_state
from .profiling import _check_input, _layers, _profile, _side_aliases, _side_key, _side_leaves
from .planning import Strategy, _STRATEGIES, _parse_memory, plan
from .runner import RunStats, _Runner, _ScheduledChain


class CheckpointedSequential(nn.Module):
    """Runs a sequential model under a memory budget; training code changes by one line.

    Arguments:
        model: an ``nn.Sequential`` or a list of modules applied one after the other.
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
        self.last_stats: RunStats | None = None

    @property
    def layers(self) -> list[nn.Module]:
        """The layers, in order (registered as children ``"0"``, ``"1"``, ... like ``nn.Sequential``'s)."""
        return list(self._modules.values())

    def plan_for(self, x: torch.Tensor) -> tuple[Schedule, Chain]:
        """The (cached) schedule and profiled chain for inputs shaped like ``x``."""
        schedule, chain, _, _ = self._plan_entry(x)
        return schedule, chain

    def _plan_entry(self, x: torch.Tensor, side: tuple = ()) -> tuple[Schedule, Chain, float, list]:
        """Schedule, chain, predicted peak bytes and each layer's tensors reached from outside (see
        ``_reached_from_outside``), planned once per shape, dtype, device, mode and autocast state."""
        key = (tuple(x.shape), x.dtype, x.device, self.training, _autocast_state(x.device), _side_key(side))
        if key not in self._plans:
            # the first profile times the layers; one at another shape or mode reuses its times and
            # measures only sizes (each layer runs twice instead of eight times)
            times = next(((c.values("forward_cost"), c.values("backward_cost")) for _, c, _, _ in self._plans.values()),
                         None)
            chain, extras = _profile(list(self.layers), x, repeats=3, working_memory=self.working_memory, times=times,
                                     where="revolve.integrations.torch.CheckpointedSequential", side=side)
            try:
                schedule = plan(chain, memory=self.memory - self.outside, strategy=self.strategy, slots=self.slots)
            except InfeasibleBudget as e:
                if not self.outside:
                    raise
                least = e.minimum + self.outside
                raise InfeasibleBudget(
                    f"revolve.integrations.torch.CheckpointedSequential: memory={self.memory:.0f} bytes less "
                    f"outside={self.outside:.0f} leaves {e.budget:.0f} for the model, which needs at least "
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
        where = "revolve.integrations.torch.CheckpointedSequential"
        layers = list(self.layers)
        # each layer's parameters and buffers, listed once per step (module traversals are not free)
        layer_params = [list(layer.parameters()) for layer in layers]
        _check_input(layers, x, where, layer_params)
        params = list({id(p): p for ps in layer_params for p in ps if p.requires_grad}.values())  # shared: once
        side_grad = [t for t in side if isinstance(t, torch.Tensor) and t.requires_grad]
        if not torch.is_grad_enabled() or not (x.requires_grad or params or side_grad):
            for layer in self.layers:
                x = layer(x, *side)
            return x
        schedule, _, predicted, extras = self._plan_entry(x, side)
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
