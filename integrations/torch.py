"""PyTorch adapter: run an ``nn.Sequential`` under a memory budget in bytes, with exact gradients.

    from revolve.integrations.torch import CheckpointedSequential
    model = CheckpointedSequential(nn.Sequential(...), memory="512MiB")   # the one line that changes
    loss = criterion(model(x), y); loss.backward()

The model is profiled per layer (times, the size of each activation, the bytes autograd saves), a
schedule is planned within the budget (the heterogeneous DP by default) and executed with autograd:

- recomputation runs under ``enable_grad`` on detached inputs, inside ``fork_rng`` with the RNG state the
  layer saw the first time, so dropout draws the same masks and the RNG stream after the step is the
  plain model's;
- a layer's buffers (BatchNorm running statistics) are saved before and restored after every
  recomputation, so they are updated exactly once per training step (unlike torch.utils.checkpoint,
  pytorch issue #96136);
- parameters are inputs of the autograd Function, so their gradients flow even when the input does not
  require grad, work with ``torch.autograd.grad``, and accumulate over layers that share them; so are
  leaves a layer reaches outside its ``parameters()`` (closures, found at profile time) and side inputs
  that require grad (``layer(x, *side)``, ``run_blocks``);
- recomputation re-enters the forward's autocast state; ``create_graph=True`` differentiates a full
  recomputation (exact, store-all memory in that backward); a retained graph's next backward runs the
  schedule again.

What the budget covers (``working_memory=True``, the default): the training step's whole memory, i.e.
every storage the forward, the loss and the backward create: the stored layer inputs, what autograd saves
for the layers whose tapes are live (a saved input or output is the activation itself and counts once),
the activation being computed, layer temporaries, the gradients of activations, the parameters'
gradients, and the output, which the caller holds through the backward. With ``working_memory=False``:
only the stored inputs and live tapes.
Consecutive recorded layers form one autograd graph, as in the plain model, and a recording that starts
a segment takes its input as a view of x through an identity autograd node rather than as a leaf, so
nothing else is held. Gradients live no longer than in plain autograd: the output's gradient is taken
from the engine (which would keep it for the whole backward of the one Function) and freed at the first
reverse, and a reverse of several layers does not hold the gradient it starts from. Never covered:
parameters, optimizer state, the input you pass (it is yours, alive anyway: keeping it costs the plan
nothing), and what the loss computes beyond the output's gradient.

Only this module imports torch.
"""

from __future__ import annotations

import contextlib
import math
import time
import weakref
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.autograd.graph import get_gradient_edge
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import revolve
from revolve import Advance, Chain, Discard, InfeasibleBudget, Record, Restore, Reverse, Schedule, Snapshot

__all__ = ["profile", "CheckpointedSequential", "checkpoint_sequential", "run_blocks", "plan", "RunStats",
           "PeakStorages"]

Strategy = Literal["optimal", "binomial", "periodic", "store_all"]
_STRATEGIES = ("optimal", "binomial", "periodic", "store_all")


# ---- helpers -----------------------------------------------------------------------------------------

def _layers(model, where: str) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        layers = list(model)
    elif isinstance(model, (list, tuple, nn.ModuleList)) and all(isinstance(m, nn.Module) for m in model):
        layers = list(model)
    else:
        kind = type(model).__name__
        raise TypeError(
            f"{where}: model must be an nn.Sequential or a list of modules applied one after the other, got {kind}; "
            f"a model with branches or several inputs is not a chain: wrap its sequential part in nn.Sequential"
        )
    if not layers:
        raise ValueError(f"{where}: the model has no layers")
    return layers


def _storage_key(t: torch.Tensor):
    s = t.untyped_storage()
    return (t.device, s.data_ptr()), s.nbytes()


def _owned_keys(tensors) -> set:
    """Storages of parameters and buffers: they live anyway and are never counted as activations."""
    return {_storage_key(t)[0] for t in tensors}


class _SavedStorages:
    """Collects the storages autograd saves while recording a layer (each storage once, views skipped)."""

    def __init__(self, owned: set):
        self.owned = owned
        self.sizes: dict = {}

    def pack(self, t):
        if isinstance(t, torch.Tensor):
            key, size = _storage_key(t)
            if key not in self.owned:
                self.sizes[key] = size
        return t

    @staticmethod
    def unpack(t):
        return t

    def add(self, t: torch.Tensor):
        key, size = _storage_key(t)
        if key not in self.owned:
            self.sizes[key] = size


class PeakStorages(TorchDispatchMode):
    """Peak bytes of the tensor storages created inside the block and still alive (each storage once).

    Used by ``profile`` to measure a layer's working memory and by the benchmark to measure a training
    step the same way on every device; ``peak`` is relative to the moment the block was entered.

    Example:
        >>> with PeakStorages() as m:
        ...     y = torch.ones(1000).exp()
        >>> m.peak
        8000
    """

    def __init__(self):
        super().__init__()
        self.live: dict = {}
        self.cur = self.peak = 0

    def _free(self, key):
        self.cur -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # an output sharing an argument's storage is a view or an in-place result: not new memory
        given = {(t.device, t.untyped_storage().data_ptr()) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                s = t.untyped_storage()
                key = (t.device, s.data_ptr())
                if s.data_ptr() and key not in self.live and key not in given and s.nbytes():
                    self.live[key] = s.nbytes()
                    self.cur += s.nbytes()
                    self.peak = max(self.peak, self.cur)
                    weakref.finalize(s, self._free, key)
        return out


def _autocast_state(device: torch.device) -> tuple:
    """The ambient autocast state, as torch.utils.checkpoint captures it: per device kind (the input's, and
    the CPU) whether it is enabled and its dtype, then the cache flag. Hashable: plans are cached on it."""
    kinds = [device.type] if device.type != "cpu" and torch.amp.is_autocast_available(device.type) else []
    kinds.append("cpu")
    return tuple((k, torch.is_autocast_enabled(k), torch.get_autocast_dtype(k)) for k in kinds) + (
        torch.is_autocast_cache_enabled(),)


def _autocast_on(state: tuple) -> bool:
    """Whether autocast is enabled for any device kind in ``state`` (from ``_autocast_state``)."""
    return any(enabled for _, enabled, _ in state[:-1])


@contextlib.contextmanager
def _reenter_autocast(state: tuple):
    """Re-enter the autocast state the forward ran under (``_autocast_state``), as torch.utils.checkpoint does.

    The backward runs under whatever autocast state surrounds the ``backward()`` call, not the forward's: a
    recomputation outside it would compute in another precision (wrong gradients, or a dtype error).
    """
    with contextlib.ExitStack() as stack:
        for kind, enabled, dtype in state[:-1]:
            stack.enter_context(torch.autocast(kind, dtype=dtype, enabled=enabled, cache_enabled=state[-1]))
        yield


def _rng_devices(x: torch.Tensor):
    return [x.device] if x.device.type == "cuda" else []


def _get_rng(x: torch.Tensor):
    cuda = torch.cuda.get_rng_state(x.device) if x.device.type == "cuda" else None
    return torch.get_rng_state(), cuda


@contextlib.contextmanager
def _replay(buffers: list, rng_state, x: torch.Tensor):
    """Run a recomputation: the first run's RNG state, the caller's stream untouched, ``buffers`` restored."""
    saved = [(b, b.detach().clone()) for b in buffers]
    with torch.random.fork_rng(devices=_rng_devices(x), enabled=rng_state is not None):
        if rng_state is not None:
            torch.set_rng_state(rng_state[0])
            if rng_state[1] is not None:
                torch.cuda.set_rng_state(rng_state[1], x.device)
        try:
            yield
        finally:
            with torch.no_grad():
                for b, v in saved:
                    b.copy_(v)


_IN_PLACE = (
    "revolve.integrations.torch: layer {i} ({layer}) modifies its input in place, which checkpointing cannot "
    "allow (a stored input would change); use the out-of-place form, e.g. nn.ReLU() instead of nn.ReLU(inplace=True)"
)


@contextlib.contextmanager
def _no_in_place(i: int, layer: nn.Module):
    """Turn autograd's in-place error on a recorded layer into one that names the layer and the fix."""
    try:
        yield
    except RuntimeError as e:
        if "in-place operation" in str(e) or "inplace" in str(e):
            raise RuntimeError(_IN_PLACE.format(i=i, layer=layer)) from e
        raise


class _Boundary(torch.autograd.Function):
    """Identity that starts a fresh graph: a view of x (no copy) that requires grad through a scalar anchor."""

    @staticmethod
    def forward(ctx, anchor, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return None, None  # never run: gradients are captured at this node's edge


_ZEROS: dict = {}


def _zero(like: torch.Tensor, anchor: bool = False) -> torch.Tensor:
    """A scalar zero of ``like``'s dtype and device, made once per process (a training step then creates none).

    ``anchor``: one that requires grad, the anchor of ``_graph_input`` (no gradient ever reaches it); else
    the one element that gradients' stand-ins broadcast (never written: a broadcast tensor refuses writes).
    """
    key = (like.dtype, like.device, anchor)
    if key not in _ZEROS:
        _ZEROS[key] = torch.zeros((), dtype=like.dtype, device=like.device, requires_grad=anchor)
    return _ZEROS[key]


def _stand_in(grad: torch.Tensor) -> torch.Tensor:
    """Zeros shaped like ``grad`` that take no memory: the one-element ``_zero``, broadcast."""
    return _zero(grad).expand(grad.shape)


def _grad_releasing(out_edge, wrt: list, adjoint: list) -> list:
    """``autograd.grad`` from ``out_edge`` with the gradient ``adjoint[0]``, which lives no longer than in plain autograd.

    The engine keeps a call's ``grad_outputs`` until the call returns, so a reverse of several nodes would
    hold the gradient it starts from to the end. The call gets a stand-in instead (zeros of the same shape,
    broadcast from one element: no memory); a pre-hook on the edge's node swaps the real gradient in, taking
    it out of ``adjoint`` (the caller keeps no other reference), and the engine frees it as soon as that
    node has run, as it does in plain autograd.
    """
    index = out_edge.output_nr

    def swap(grad_outputs):
        grad_outputs = list(grad_outputs)
        grad_outputs[index] = adjoint.pop()
        return tuple(grad_outputs)

    stand_in = _stand_in(adjoint[0])
    handle = out_edge.node.register_prehook(swap)
    try:
        return list(torch.autograd.grad([out_edge], wrt, [stand_in], allow_unused=True))
    finally:
        handle.remove()


def _graph_input(x: torch.Tensor) -> torch.Tensor:
    """x as the differentiable input of a recording that starts a segment, holding nothing itself.

    A leaf would be kept alive by its gradient accumulator and ``x + 0`` would copy x; this view shares x's
    storage (bitwise x), and its gradient edge, the boundary node, saves nothing. The node hangs off a
    scalar anchor that requires grad (one per process, see ``_zero``); no gradient ever reaches it.
    """
    with torch.enable_grad():
        return _Boundary.apply(_zero(x, anchor=True), x.detach())


class _Timer:
    """Seconds spent in a block: CUDA events on a GPU (device time), perf_counter on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.seconds = 0.0

    def __enter__(self):
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1000.0
        else:
            self.seconds = time.perf_counter() - self.t
        return False


# ---- side inputs -------------------------------------------------------------------------------------

def _side_aliases(side: tuple) -> tuple:
    """Side inputs as the layers see them: a tensor that requires grad becomes a detached alias that does (no
    copy), so every layer's gradient for it is taken at its own reverse and summed by the runner."""
    return tuple(t.detach().requires_grad_() if isinstance(t, torch.Tensor) and t.requires_grad else t for t in side)


def _side_leaves(side: tuple) -> list:
    """The side inputs (aliases) that a backward differentiates for."""
    return [t for t in side if isinstance(t, torch.Tensor) and t.requires_grad]


def _side_key(side: tuple) -> tuple:
    """What a plan depends on in the side inputs: tensors' shape, dtype, device and whether they need grad."""
    return tuple((tuple(t.shape), t.dtype, t.device, t.requires_grad) if isinstance(t, torch.Tensor) else repr(t)
                 for t in side)


# ---- profiling ---------------------------------------------------------------------------------------

def _grad_inputs(layer: nn.Module, x_in: torch.Tensor, extra: list = ()) -> list:
    """What a layer's backward differentiates for: its input's gradient edge (if any), its parameters and the
    tensors it reaches from outside (``_reached_from_outside``)."""
    own = [p for p in layer.parameters() if p.requires_grad]
    return ([get_gradient_edge(x_in)] if x_in.requires_grad else []) + own + list(extra)


_MARK: list = []


def _sequence_mark() -> int:
    """The sequence number of a fresh autograd node: every node created later on this thread has a larger one."""
    if not _MARK:
        _MARK.append(torch.zeros((), requires_grad=True))
    with torch.enable_grad():
        return _MARK[0].view(()).grad_fn._sequence_nr()


_OUTSIDE = (
    "revolve.integrations.torch: layer {i} ({layer}) uses a tensor that requires grad and was computed outside "
    "the layer ({what}, reached through {node}); checkpointing cannot give it its gradient (the graph that "
    "made it is not the layer's to recompute or free). Compute it inside the layer, or keep its source as an "
    "nn.Parameter that the layer reads directly"
)


def _cached_cast(node) -> bool:
    """Whether an autograd node is a cast of leaves (what autocast's cache keeps across layers: older, but part
    of the leaf's use, so the walk goes on to the leaf)."""
    return node.name() == "ToCopyBackward0" and all(
        n is not None and getattr(n, "variable", None) is not None for n, _ in node.next_functions)


def _reached_from_outside(i: int, layer: nn.Module, x_in: torch.Tensor, out: torch.Tensor, mark: int,
                          side: tuple = ()) -> list:
    """Leaf tensors requiring grad that layer ``i``'s recorded graph reaches beyond its own parameters and input.

    A closure over an ``nn.Parameter``, or a learned bias the layer holds without registering it, is not in
    ``layer.parameters()``; made an input of the autograd Function, it gets its exact gradient. The walk
    goes from the output to the input's node (``x_in``'s), stopping at leaves. A node created before the
    layer ran (its sequence number is below ``mark``) other than the input's and autocast's cached casts of
    leaves is a non-leaf tensor computed outside the layer: its gradient cannot be given exactly, so this
    raises, naming it.
    """
    if not out.requires_grad or out.grad_fn is None:
        return []
    own = {id(p) for p in layer.parameters()} | {id(t) for t in side}  # side inputs are inputs already
    start = get_gradient_edge(x_in).node if x_in.requires_grad else None
    found, seen, stack = {}, {}, [(out.grad_fn, 0)]
    while stack:
        node, nr = stack.pop()
        if node is None or id(node) in seen or node is start:
            continue
        seen[id(node)] = node  # kept alive, so that ids are not reused during the walk
        variable = getattr(node, "variable", None)
        if variable is not None:  # AccumulateGrad: a leaf
            if id(variable) not in own:
                found[id(variable)] = variable
            continue
        if node._sequence_nr() < mark and not _cached_cast(node):
            try:
                meta = node._input_metadata[nr]
                what = f"shape {tuple(meta.shape)}, {meta.dtype}"
            except (AttributeError, IndexError):
                what = "shape unknown"
            raise RuntimeError(_OUTSIDE.format(i=i, layer=type(layer).__name__, what=what, node=node.name()))
        stack.extend(node.next_functions)
    return list(found.values())


def _working_memory(layer: nn.Module, x: torch.Tensor, held_by_tape: int, extra: list,
                    side: tuple = ()) -> tuple[float, float, float]:
    """A layer's moment peaks beyond what is held, its input aside: (forward, record, backward) overheads.

    Measured once with ``PeakStorages``: the storages the no-grad forward creates (output, temporaries);
    those a recording creates beyond ``held_by_tape`` (what the chain charges to its tape); and, during
    the backward, everything alive beyond ``held_by_tape`` and the incoming gradient: the input's
    gradient, parameter gradients and temporaries, less the saved tensors autograd frees as it goes. The
    incoming gradient is counted apart (``adjoint_bytes``), but it is alive only until the layer's first
    node has run, as in the runner: a layer of several nodes can peak after it is gone.
    """
    with torch.no_grad(), PeakStorages() as m:
        y = layer(x, *side)
    forward = m.peak
    del y
    x_in = _graph_input(x) if x.is_floating_point() else x.detach()
    backward = 0
    with PeakStorages() as m:
        with torch.enable_grad():
            out = layer(x_in, *side)
        record = max(0, m.peak - held_by_tape)
        if out.requires_grad and out is not x_in:
            edge = get_gradient_edge(out)
            inputs = _grad_inputs(layer, x_in, extra + _side_leaves(side))
            adjoint = [torch.ones_like(out)]
            incoming = _storage_key(adjoint[0])[1]
            del out  # the runner drops the working state before a reverse
            m.peak = m.cur
            _grad_releasing(edge, inputs, adjoint)  # its results count until freed
            backward = max(0, m.peak - held_by_tape - incoming)
    return float(forward), float(record), float(backward)


def profile(model, example_input: torch.Tensor, *side, repeats: int = 5, working_memory: bool = True) -> Chain:
    """Measure each layer and return the ``revolve.Chain`` the planners need.

    Each child of the model is one step; ``side`` arguments (an attention mask, positions: the same for
    every layer) are passed to each layer after the state, ``layer(x, *side)``. To plan per block rather
    than per layer, group layers into
    nested ``nn.Sequential`` blocks (e.g. one per transformer block): a block is recomputed or stored whole.

    Per layer: forward time (no grad), backward time (record + reverse minus forward), the size of its
    output (x_0, the input you pass, is yours and alive through the step: it is given size 0, as keeping
    it costs nothing), and the bytes autograd saves for its backward (storages counted once, views
    skipped, parameters and buffers excluded: exactly what a recording keeps until its reverse). When
    the saved tensors include the layer's input (a linear layer) or its output (tanh), the chain flags
    it (``tape_holds_input`` / ``tape_holds_output``) instead of counting that state twice. With
    ``working_memory`` (the default) the chain also models what a layer needs for a moment: what its
    forward creates (``forward_overhead``; ``record_overhead`` when recording, beyond its tape; its input
    counts too unless held), what its backward creates
    (``backward_overhead``: the input's gradient, parameter gradients, temporaries), and the gradient of
    each activation with the parameter gradients made by then (``adjoint_bytes``), so that a plan's
    budget covers the step's whole memory rather than only what is kept between forward and backward.
    The model's output is then counted on every moment, as training code holds it through the backward,
    and its state size is 0 (a tape that keeps it costs nothing more). Times are medians
    of ``repeats`` runs after a warm-up run (CUDA events on a GPU). Profiling leaves the model as it found it: buffers such
    as BatchNorm statistics are restored, the caller's RNG stream is untouched, no ``.grad`` is written.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> chain = profile(nn.Sequential(nn.Linear(8, 8), nn.Tanh()), torch.randn(4, 8))
        >>> chain.n_steps, chain.state(0), chain.state(1)
        (2, 0.0, 128.0)
    """
    return _profile(model, example_input, repeats=repeats, working_memory=working_memory, side=side)[0]


def _profile(model, example_input: torch.Tensor, *, repeats: int, working_memory: bool,
             where: str = "revolve.integrations.torch.profile", side: tuple = ()) -> tuple[Chain, list]:
    """``profile``, and per layer the leaf tensors requiring grad it reaches beyond its parameters and input.

    ``side``: arguments every layer takes after the state (``layer(x, *side)``), the same for all layers.
    """
    side = _side_aliases(side)
    layers = _layers(model, where)
    x = _check_input(layers, example_input, where)
    owned = _owned_keys(t for m in layers for t in [*m.parameters(), *m.buffers()])
    owned |= _owned_keys(t for t in side if isinstance(t, torch.Tensor))  # the caller's: alive anyway
    # x_0 is the caller's input, alive through the step anyway: keeping it costs the plan nothing
    fwd, bwd, states, tapes, holds_in, holds_out = [], [], [0.0], [], [], []
    f_over, r_over, b_over, adjoints = [], [], [], [float(_storage_key(x)[1]) if x.is_floating_point() else 0.0]
    saved_buffers = [(b, b.detach().clone()) for m in layers for b in m.buffers()]
    extras: list = []  # per layer: leaves requiring grad reached from outside (_reached_from_outside)
    try:
        with torch.random.fork_rng(devices=_rng_devices(x)):
            for li, layer in enumerate(layers):
                ft, bt, tape, y = [], [], 0, None
                for rep in range(max(1, repeats) + 1):  # the first run only warms up
                    version = x._version
                    with torch.no_grad(), _Timer(x.device) as timer:
                        y = layer(x, *side)
                    if x._version != version:
                        raise RuntimeError(_IN_PLACE.format(i=li, layer=layer))
                    ft.append(timer.seconds)
                    saved = _SavedStorages(owned)
                    x_in = _graph_input(x) if x.is_floating_point() else x.detach()
                    mark = _sequence_mark()
                    with _Timer(x.device) as timer:
                        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack), \
                                _no_in_place(li, layer):
                            out = layer(x_in, *side)
                        if rep == 0:  # the warm-up finds what the layer reaches from outside (not timed later)
                            extras.append(_reached_from_outside(li, layer, x_in, out, mark, _side_leaves(side)))
                            owned |= _owned_keys(extras[-1])
                        inputs = _grad_inputs(layer, x_in, extras[li] + _side_leaves(side))
                        if out.requires_grad and out is not x_in:
                            torch.autograd.grad([out], inputs, [torch.ones_like(out)], allow_unused=True)
                    bt.append(max(timer.seconds - ft[-1], 0.0))
                    # the input or output the layer saves is a state: flag it rather than count it twice
                    keys = saved.sizes
                    in_key = _storage_key(x_in)[0]
                    out_key = _storage_key(out)[0]
                    keeps_in = in_key in keys
                    keeps_out = out_key in keys and out_key != in_key
                    tape = sum(v for k, v in keys.items() if k not in (in_key, out_key))
                ft, bt = ft[1:], bt[1:]
                fwd.append(sorted(ft)[len(ft) // 2])
                bwd.append(sorted(bt)[len(bt) // 2])
                tapes.append(float(tape))
                holds_in.append(keeps_in)
                holds_out.append(keeps_out)
                if working_memory:
                    kept_out = keys[out_key] if keeps_out else 0
                    fo, ro, bo = _working_memory(layer, x, int(tape) + kept_out, extras[li], side)
                    f_over.append(fo)  # the input counts while the layer runs unless held: the simulator adds it
                    r_over.append(ro)
                    b_over.append(bo)
                fresh_out = out_key != in_key  # the layer allocates its output (not a view of its input)
                x = y.detach()
                states.append(float(_storage_key(x)[1]))
                adjoints.append(states[-1] if x.is_floating_point() else 0.0)
    finally:
        with torch.no_grad():
            for b, v in saved_buffers:
                b.copy_(v)
    if working_memory:
        # the output is the caller's, who holds it through the backward (``out = net(x); loss = f(out);
        # loss.backward()``): a constant on every moment, so keeping it as a state costs nothing more;
        # with it, the scalar loss and the loss's gradient (one element each)
        output = states[-1] + (2 * x.element_size() if x.is_floating_point() else 0)
        if fresh_out:  # the last layer's overheads include making the output: counted by the constant now
            f_over[-1] = max(0.0, f_over[-1] - states[-1])
            if not holds_out[-1]:  # (a kept output is the tape's, already left out of record_overhead)
                r_over[-1] = max(0.0, r_over[-1] - states[-1])
        states[-1] = 0.0
        f_over = [f + output for f in f_over]
        r_over = [r + output for r in r_over]
        b_over = [b + output for b in b_over]
        # parameter gradients appear at their layer's reverse and stay: once steps k.. are reversed, theirs
        # are held beside the adjoint of x_k (a parameter shared by layers counts at the last of them)
        owner: dict[int, tuple[int, int]] = {}
        for li, layer in enumerate(layers):
            for p in [*layer.parameters(), *extras[li]]:
                if p.requires_grad:
                    owner[id(p)] = (li, p.numel() * p.element_size())
        grads = [0.0] * (len(layers) + 1)
        for li, size in owner.values():
            grads[li] += size
        held = 0.0
        for k in range(len(layers), -1, -1):
            held += grads[k]
            adjoints[k] += held
    work = dict(forward_overhead=f_over, record_overhead=r_over, backward_overhead=b_over,
                adjoint_bytes=adjoints) if working_memory else {}
    chain = Chain(forward_cost=fwd, backward_cost=bwd, state_bytes=states, tape_bytes=tapes,
                  tape_holds_input=holds_in, tape_holds_output=holds_out, **work)
    return chain, extras


def _check_input(layers, x, where, layer_params=None):
    """x must be a tensor on the parameters' device, of their dtype (``layer_params``: each layer's, if listed)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: the input must be a torch.Tensor, got {type(x).__name__}")
    autocast = _autocast_on(_autocast_state(x.device))  # under autocast, activations have autocast's dtype
    for ps in layer_params if layer_params is not None else (m.parameters() for m in layers):
        for p in ps:
            if p.device != x.device:
                raise ValueError(f"{where}: the input is on {x.device} but the model's parameters are on {p.device}; "
                                 f"move one of them (model.to(x.device))")
            if p.is_floating_point() and x.is_floating_point() and p.dtype != x.dtype and not autocast:
                raise ValueError(f"{where}: the input has dtype {x.dtype} but the model's parameters have {p.dtype}; "
                                 f"cast one of them (x.to({p.dtype}))")
            break
    return x


# ---- planning ----------------------------------------------------------------------------------------

def _parse_memory(memory, where: str) -> float:
    """A budget in bytes (see ``revolve.parse_bytes``), or ``float("inf")``: no budget, store-all."""
    if isinstance(memory, float) and memory == math.inf:
        return math.inf
    return revolve.parse_bytes(memory, where=where, name="memory")


def plan(chain: Chain, *, memory: float, strategy: Strategy = "optimal", slots: int = 500) -> Schedule:
    """A schedule for a profiled chain whose simulated peak is within ``memory`` bytes.

    The peak is the chain's: stored activations and live tapes, plus the working memory when the chain
    models it (``profile(..., working_memory=True)``). ``memory=float("inf")`` means no budget: store-all,
    whatever the strategy (the fastest schedule: nothing is recomputed).

    Strategies: "optimal" (the heterogeneous DP), "binomial" (Revolve with the most snapshots that fit),
    "periodic" (the fastest segment length that fits: torch's checkpoint_sequential), "store_all".

    Raises:
        InfeasibleBudget: no schedule of the strategy fits; the message gives the smallest budget that does.
    """
    where = "revolve.integrations.torch.plan"
    memory = _parse_memory(memory, where)
    n = chain.n_steps
    if memory == math.inf:  # no budget: store-all, the fastest schedule (nothing is recomputed)
        return revolve.store_all(n)
    if strategy == "optimal":
        return revolve.optimal(chain, memory=memory, slots=slots, lower_bound=False)
    if strategy == "store_all":
        candidates = [revolve.store_all(n)]
    elif strategy == "binomial":
        candidates = [revolve.binomial(n, snapshots=s) for s in range(n, 0, -1)]
    elif strategy == "periodic":
        candidates = [revolve.periodic(n, every=k) for k in range(1, n + 1)]
    else:
        raise ValueError(f"{where}: strategy must be one of {', '.join(_STRATEGIES)}, got {strategy!r}")
    best, best_time, least = None, float("inf"), float("inf")
    for sched in candidates:
        st = revolve.simulate(sched, chain)
        least = min(least, st.peak_memory)
        if st.peak_memory <= memory and st.time < best_time:
            best, best_time = sched, st.time
    if best is None:
        raise InfeasibleBudget(
            f"{where}: no {strategy} schedule fits in memory={memory:.0f} bytes ({revolve.format_bytes(memory)}); "
            f"the smallest budget with which one exists is {least:.0f} bytes ({revolve.format_bytes(least)})",
            budget=memory, minimum=least,
        )
    return best


# ---- execution ---------------------------------------------------------------------------------------

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
            if not (torch.equal(before[0], after[0]) and (before[1] is None or torch.equal(before[1], after[1]))):
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
                with _reenter_autocast(self.backward_autocast):
                    grads = _grad_releasing(out_edge, wrt, adjoint)
            else:
                grads = [None] * len(wrt)
            self.adj = grads.pop(0) if in_edge is not None else None
            for p, g in zip(layer_params, grads):
                if g is None:
                    continue
                k = self.param_index[id(p)]
                self.param_grads[k] = g if self.param_grads[k] is None else self.param_grads[k] + g
        for tape in tapes:
            self._release(tape[3])

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

    Plans are made on the first call for each input shape, dtype, device and autocast state (profiling
    the model once) and cached (train and eval mode plan separately). Under ``torch.no_grad``, or when
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
    """

    def __init__(self, model, *, memory: float | str, strategy: Strategy = "optimal", slots: int = 500,
                 working_memory: bool = True):
        super().__init__()
        where = "revolve.integrations.torch.CheckpointedSequential"
        layers = _layers(model, where)
        for i, layer in enumerate(layers):  # named as nn.Sequential names them: state_dict keys are the model's
            self.add_module(str(i), layer)
        self.memory = _parse_memory(memory, where)
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
            chain, extras = _profile(list(self.layers), x, repeats=5, working_memory=self.working_memory,
                                     where="revolve.integrations.torch.CheckpointedSequential", side=side)
            schedule = plan(chain, memory=self.memory, strategy=self.strategy, slots=self.slots)
            self._plans[key] = (schedule, chain, revolve.simulate(schedule, chain).peak_memory, extras)
        return self._plans[key]

    def forward(self, x: torch.Tensor, *side) -> torch.Tensor:
        """Run the layers on ``x``; ``side`` arguments (a mask, positions) go to every layer: ``layer(x, *side)``."""
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
                          working_memory: bool = True) -> torch.Tensor:
    """Functional form: ``CheckpointedSequential(model, memory=..., strategy=...)(x)`` (plans are not cached;
    ``run_blocks`` caches them)."""
    return CheckpointedSequential(model, memory=memory, strategy=strategy, working_memory=working_memory)(x)


_RUNS_ATTR = "_revolve_runs"


def run_blocks(blocks: nn.Module, x: torch.Tensor, *side, memory: float | str, strategy: Strategy = "optimal",
               slots: int = 500, working_memory: bool = True) -> torch.Tensor:
    """``for block in blocks: x = block(x, *side)`` under a memory budget: the loop inside a custom forward.

    The plan is cached as ``CheckpointedSequential`` caches it (per shape, dtype, device, mode, autocast
    state and side inputs' shapes), on ``blocks`` itself, per (memory, strategy, slots, working_memory);
    gradients are exact, side inputs that require grad (a learned bias) included.

    Arguments:
        blocks: an ``nn.ModuleList`` or ``nn.Sequential`` of blocks (it holds the cache).
        x: the state entering the first block. side: passed to every block after the state.
        memory, strategy, slots, working_memory: as for ``CheckpointedSequential``.

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
    key = (memory, strategy, slots, working_memory)
    if key not in runs:
        runs[key] = CheckpointedSequential(list(blocks), memory=memory, strategy=strategy, slots=slots,
                                           working_memory=working_memory)
    net = runs[key]
    net.training = blocks.training  # plans are per mode, the blocks' own
    return net(x, *side)
