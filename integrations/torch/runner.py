"""The runner: executes a revolve schedule over layers with autograd, as one autograd Function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.graph import get_gradient_edge

import revolve
from revolve import Advance, Discard, Record, Restore, Reverse, Schedule, Snapshot

from ._meters import _SavedStorages, _owned_keys, _storage_key
from ._state import _autocast_state, _get_rng, _reenter_autocast, _replay, _rng_drawn
from ._graph import _IN_PLACE, _grad_releasing, _graph_input, _hooks_suspended, _no_in_place, _stand_in


def _ddp_active() -> bool:
    """Whether this forward runs inside DistributedDataParallel's (its reducer waits on gradient hooks)."""
    if not torch.distributed.is_available():
        return False
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel._get_active_ddp_module() is not None


@dataclass(frozen=True)
class RunStats:
    """One training step's execution: forward evaluations and the activation memory actually kept.

    ``peak_bytes`` counts each storage once across the stored inputs and the live tapes (parameters,
    buffers and the caller's input excluded); ``predicted_bytes`` is the simulator's peak for the same schedule and chain, which
    includes the working memory when the chain models it (then it bounds the whole step's peak).
    """

    forward_evaluations: int
    peak_bytes: int
    predicted_bytes: float
    schedule: str


class _Runner:
    """Executes one schedule over the layers: the forward part inside Function.forward, the rest in backward."""

    def __init__(self, layers, schedule: Schedule, layer_params: list, layer_buffers: list, params: list,
                 side: tuple = (), side_aliases: tuple = ()):
        self.layers = layers
        self.actions = iter(schedule)
        self.n = schedule.n_steps
        self.params = params
        self.param_index = {id(p): k for k, p in enumerate(params)}
        # side inputs: layers read the aliases; gradients for an alias go to its side input's slot
        self.side, self.side_real = side_aliases, side
        for real, alias in zip(side, side_aliases):
            if alias is not real:
                self.param_index[id(alias)] = self.param_index[id(real)]
        # each layer's parameters and buffers, listed once per step (module traversals are not free)
        self.layer_params = layer_params
        self.layer_buffers = layer_buffers
        users: dict[int, set] = {}
        for i, ps in enumerate(self.layer_params):
            for p in ps:
                users.setdefault(id(p), set()).add(i)
        self.shared = {i for us in users.values() if len(us) > 1 for i in us}  # layers sharing a parameter
        # a parameter's gradient is complete once the lowest-index layer using it is reversed
        self.last_user = {pid: min(us) for pid, us in users.items()}
        self.early: set = set()  # indices (into params) whose gradients go to .grad as soon as complete
        # storages of parameters and buffers live anyway and are never counted as activations
        self.owned = _owned_keys(t for ts in self.layer_params + self.layer_buffers for t in ts)
        self.schedule = repr(schedule)
        self.plan = schedule
        self.spent = False  # a backward ran: another one (a retained graph) replays the whole schedule
        self.snapshots: dict[int, tuple[torch.Tensor, int]] = {}
        self.tapes: dict[int, tuple] = {}
        self.rng: dict[int, Any] = {}
        self.first_unseen = 0  # steps below this were evaluated once already: later runs are recomputations
        self.refs: dict = {}  # storage key -> [size, count] over snapshots and live tapes
        self.held = self.peak = 0
        self.evaluations = 0
        self.x = None
        self.x_in_graph = False  # the working state is the output of a step recorded just before
        self.cur = 0
        self.x0_needs_grad = False
        self.output_grad = None  # the output's gradient, taken from the engine by take_output_grad

    # storage accounting: each storage once
    def _hold(self, sizes: dict):
        for key, size in sizes.items():
            entry = self.refs.get(key)
            if entry is None:
                self.refs[key] = [size, 1]
                self.held += size
            else:
                entry[1] += 1
        self.peak = max(self.peak, self.held)

    def _release(self, sizes: dict):
        for key in sizes:
            entry = self.refs[key]
            entry[1] -= 1
            if entry[1] == 0:
                self.held -= entry[0]
                del self.refs[key]

    def _run_layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        version = x._version
        y = self._evaluate(i, x)
        if x._version != version:  # an in-place layer: it would alter stored inputs on recomputation
            raise RuntimeError(_IN_PLACE.format(i=i, layer=self.layers[i]))
        return y

    def _evaluate(self, i: int, x: torch.Tensor) -> torch.Tensor:
        layer = self.layers[i]
        self.evaluations += 1
        if i >= self.first_unseen:  # first evaluation: the plain model's RNG draws and buffer updates
            before = _get_rng(x)
            y = layer(x, *self.side)
            after = _get_rng(x)
            # keep the state only for layers that drew random numbers (dropout): a replay needs it
            if _rng_drawn(before, after):
                self.rng[i] = before
            self.first_unseen = i + 1
            return y
        if i not in self.rng:  # deterministic layer: only its buffers need protecting
            if not self.layer_buffers[i]:
                return layer(x, *self.side)
            with _replay(self.layer_buffers[i], None, x):
                return layer(x, *self.side)
        with _replay(self.layer_buffers[i], self.rng[i], x):
            return layer(x, *self.side)

    def _step(self, action) -> bool:
        """Run one action; True once the output x_n has been reached for the first time."""
        match action:
            case Advance(start=a, stop=b):
                x = self.x.detach()
                with torch.no_grad():
                    for i in range(a, b):
                        x = self._run_layer(i, x)
                self.x, self.cur, self.x_in_graph = x, b, False
            case Record(step=i):
                layer = self.layers[i]
                x = self.x
                if self.x_in_graph and x.requires_grad and i not in self.shared and i - 1 not in self.shared:
                    # the previous step was recorded just now: continue its graph, as plain autograd does, so
                    # that only what the layers save stays alive (no tensor is held at the boundary). Layers
                    # sharing parameters are cut off on both sides: a reverse must not reach another layer's
                    # use of a parameter through the graph
                    x_in = x
                elif i > 0 or self.x0_needs_grad:
                    x_in = _graph_input(x)  # a segment starts: a differentiable input that holds nothing
                else:
                    x_in = x.detach()
                saved = _SavedStorages(self.owned)
                with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack), \
                        _no_in_place(i, layer):
                    y = self._run_layer(i, x_in)
                identity = y is x_in
                in_edge = get_gradient_edge(x_in) if x_in.requires_grad else None
                out_edge = get_gradient_edge(y) if y.requires_grad and not identity else None
                self.tapes[i] = (out_edge, in_edge, identity, saved.sizes, x_in is x)
                self._hold(saved.sizes)
                self.x, self.cur, self.x_in_graph = y, i + 1, True
            case Reverse(step=i):
                self._reverse([i])
            case Snapshot(index=k):
                t = self.x.detach()
                key, size = _storage_key(t)
                self.snapshots[k] = (t, t._version)
                self._hold({key: size} if key not in self.owned else {})
            case Restore(index=k):
                t, version = self.snapshots[k]
                if t._version != version:
                    raise RuntimeError(_IN_PLACE.format(i=k, layer=self.layers[k]) + " (its stored input changed)")
                self.x, self.cur, self.x_in_graph = t, k, False
            case Discard(index=k):
                t, _ = self.snapshots.pop(k)
                key, size = _storage_key(t)
                self._release({key: size} if key not in self.owned else {})
            case _:
                raise revolve.RevolveInternalError(f"torch adapter: unknown action {action!r}")
        return self.cur == self.n and not self.reached

    def forward(self, x: torch.Tensor, x0_needs_grad: bool) -> torch.Tensor:
        self.x0_needs_grad = x0_needs_grad
        self.under_ddp = _ddp_active()
        self.autocast = _autocast_state(x.device)  # re-entered by the backward's recomputations
        self.owned = self.owned | {_storage_key(x)[0]}  # the caller's input: not the plan's memory (x_0 costs 0)
        self.x, self.reached = x.detach(), False
        for action in self.actions:
            if self._step(action):
                self.reached = True
                return self.x.detach()
        raise revolve.RevolveInternalError("torch adapter: the schedule never reached the output")

    def _reverse(self, steps: list[int]):
        """Reverse steps i, i-1, ..., j (``steps``, descending) with one autograd call.

        Several steps go together only when each was recorded straight after the one before it (one
        graph) and none is an identity: autograd then frees each layer's saved tensors as it passes, as
        the steps' separate reverses would, with one call's overhead instead of one per layer.
        """
        self.x = None  # NOTE [ Schedule invariants ] 6: the working state ends here; drop it first
        tapes = [self.tapes.pop(i) for i in steps]
        out_edge, in_edge, identity = tapes[0][0], tapes[-1][1], tapes[0][2]
        if not identity:
            layer_params = [p for i in steps for p in self.layer_params[i] if p.requires_grad]
            wrt = ([in_edge] if in_edge is not None else []) + layer_params
            if out_edge is not None and wrt:
                adjoint = [self.adj]
                self.adj = None  # the call frees it after the first node, as plain autograd does
                with _reenter_autocast(self.backward_autocast), _hooks_suspended(layer_params):
                    grads = _grad_releasing(out_edge, wrt, adjoint)
            else:
                grads = [None] * len(wrt)
            self.adj = grads.pop(0) if in_edge is not None else None
            for p, g in zip(layer_params, grads):
                if g is None:
                    continue
                k = self.param_index[id(p)]
                self.param_grads[k] = g if self.param_grads[k] is None else self.param_grads[k] + g
            if self.early:
                self._accumulate_early(steps[-1], layer_params)
        for tape in tapes:
            self._release(tape[3])

    def _accumulate_early(self, lowest: int, layer_params: list):
        """Put the complete gradients of these layers' parameters into ``.grad`` now, as plain autograd does.

        One nested ``autograd.backward`` on the leaves runs their gradient accumulators (and the hooks on
        them: DDP's reducer starts the all-reduce of a bucket once all its gradients are there), so a data
        parallel step overlaps communication with the rest of the backward instead of waiting for the one
        Function's backward to return. A parameter is complete once its lowest-index user is reversed
        (``lowest``: the lowest step of this reverse, which covers a contiguous range of steps).
        """
        leaves, grads = [], []
        for p in layer_params:
            k = self.param_index[id(p)]
            if k in self.early and self.last_user.get(id(p), -1) >= lowest and self.param_grads[k] is not None:
                leaves.append(self.params[k])
                grads.append(self.param_grads[k])
                self.param_grads[k] = None
        if leaves:
            torch.autograd.backward(leaves, grads)

    def _early_leaves(self) -> set:
        """The parameters the running ``.backward()`` will accumulate into ``.grad`` (its ``inputs=`` or all
        leaves); none under ``autograd.grad``, which returns gradients instead of accumulating them."""
        early = set()
        for k, p in enumerate(self.params):
            if p.grad_fn is not None or not p.requires_grad:
                continue  # a side input computed by the caller: its gradient flows on through the graph
            if p._backward_hooks or getattr(p, "_post_accumulate_grad_hooks", None):
                continue  # the engine would run the user's hooks again at the end (with no gradient)
            try:
                if torch._C._will_engine_execute_node(get_gradient_edge(p).node):
                    early.add(k)
            except RuntimeError:  # raised for leaves during autograd.grad: nothing accumulates
                return set()
        return early

    def take_output_grad(self, grad_outputs):
        """Pre-hook on the output's node: keep the output's gradient here, hand the engine a stand-in.

        The engine keeps a node's incoming gradients until its backward returns, which for this node is the
        whole schedule's backward; plain autograd frees the output's gradient after the last layer's
        backward. Holding it here, the runner lets it go at the first reverse, as plain autograd does.
        """
        if grad_outputs[0] is None:
            return None
        self.output_grad = grad_outputs[0]
        return (_stand_in(grad_outputs[0]),) + tuple(grad_outputs[1:])

    def _joins(self, i: int) -> bool:
        """Whether Reverse(i - 1) can join the reverse of step i (both taped in one graph, no identity)."""
        tape, before = self.tapes.get(i), self.tapes.get(i - 1)
        return tape is not None and before is not None and tape[4] and not tape[2] and not before[2]

    def backward(self, grad_out: torch.Tensor):
        self.adj = grad_out if self.output_grad is None else self.output_grad
        self.output_grad = grad_out = None
        self.param_grads: list = [None] * len(self.params)
        self.early = self._early_leaves() if self.under_ddp else set()
        group: list[int] = []  # consecutive reverses of one graph, run together
        # recomputations run under the forward's autocast state, reverses under the caller's (plain autograd
        # runs backward kernels under the state around ``backward()``)
        self.backward_autocast = _autocast_state(self.adj.device)
        with torch.enable_grad(), _reenter_autocast(self.autocast):
            for action in self.actions:
                if isinstance(action, Reverse):
                    if group and action.step == group[-1] - 1 and self._joins(group[-1]):
                        group.append(action.step)
                        continue
                    if group:
                        self._reverse(group)
                    group = [action.step]
                    continue
                if group:
                    self._reverse(group)
                    group = []
                self._step(action)
            if group:
                self._reverse(group)
        self.snapshots.clear()
        self.spent = True
        # hand the gradients over without keeping references: autograd then adopts them instead of copying
        adj, grads = self.adj, self.param_grads
        self.adj = self.param_grads = None
        return adj, grads


    def restart(self, x: torch.Tensor):
        """Run the schedule's forward part again, for another backward through a retained graph.

        Every evaluation is now a recomputation (``first_unseen`` stays n): dropout replays the first run's
        RNG state, buffers are restored, and the forward's autocast state is re-entered.
        """
        self.actions = iter(self.plan)
        self.snapshots.clear()
        self.tapes.clear()
        self.refs.clear()
        self.held = self.peak = self.evaluations = self.cur = 0
        self.x_in_graph = False
        with _reenter_autocast(self.autocast):
            self.forward(x, self.x0_needs_grad)

    def differentiable_backward(self, x: torch.Tensor, grad_out: torch.Tensor, x_needs_grad: bool):
        """The backward when autograd differentiates it (``create_graph=True``, e.g. a gradient penalty).

        The gradients must be functions of x (with x's own graph) and the parameters, so the chain is
        recomputed whole from x with a graph (dropout replays its RNG state, buffers are restored, the
        forward's autocast state is re-entered) and differentiated with ``create_graph=True``: exact, as
        plain autograd, but this backward holds what store-all holds, not the budget.
        """
        self.snapshots.clear()  # what the plan kept is not used: the chain is recomputed from x
        self.tapes.clear()
        self.refs.clear()
        self.held = 0
        adj = grad_out if self.output_grad is None else self.output_grad
        self.output_grad = grad_out = None
        self.side, aliases = self.side_real, self.side  # differentiated for the caller's tensors themselves
        try:
            with _reenter_autocast(self.autocast):
                h = x
                for i in range(self.n):
                    h = self._run_layer(i, h)
        finally:
            self.side = aliases
        wrt = ([x] if x_needs_grad else []) + self.params
        if not h.requires_grad:
            grads = [None] * len(wrt)
        else:
            with _hooks_suspended(self.params):  # they run once, when the engine receives these gradients
                grads = list(torch.autograd.grad([h], wrt, [adj], create_graph=True, allow_unused=True))
        self.spent = True
        return (grads.pop(0) if x_needs_grad else None), grads


class _ScheduledChain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, runner: _Runner, x: torch.Tensor, *params):
        ctx.runner = runner
        ctx.save_for_backward(x)  # the caller's (no copy); a second backward without retain_graph then raises
        return runner.forward(x, x0_needs_grad=ctx.needs_input_grad[1])

    @staticmethod
    def backward(ctx, grad_out):
        runner = ctx.runner
        (x,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: this backward is differentiated in turn
            gx, gparams = runner.differentiable_backward(x, grad_out, ctx.needs_input_grad[1])
        else:
            if runner.spent:  # a further backward through a retained graph: run the schedule again
                runner.restart(x)
            gx, gparams = runner.backward(grad_out)
        runner.on_done()
        out = (None, gx if ctx.needs_input_grad[1] else None, *gparams)
        del gx, gparams
        return out
