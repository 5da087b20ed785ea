"""Profiling a stack of layers into a revolve Chain: times, activation and tape sizes, working memory, leaves reached from outside."""

from __future__ import annotations


import torch
from torch import nn
from torch.autograd.graph import get_gradient_edge

from revolve import Chain

from ._meters import _AllocatorPhases, _SavedStorages, _Timer, _owned_keys, _storage_key
from ._state import _autocast_on, _autocast_state, _get_rng, _rng_bytes, _rng_devices, _rng_drawn
from ._graph import _IN_PLACE, _grad_releasing, _graph_input, _hooks_suspended, _no_in_place


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


_NOT_A_TENSOR = (
    "revolve.integrations.torch: layer {i} ({layer}) returned a {kind}, not a tensor; profile() chains one "
    "tensor from layer to layer. CheckpointedSequential takes tuple and dict states (it packs them)"
)


class _NotATensorState(TypeError):
    """A layer returned a tuple or dict where the chain expected one tensor (the front then packs states)."""


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

    Measured once with the allocator (``_AllocatorPhases``: kernel workspace included): the bytes the
    no-grad forward allocates (output, temporaries); those a recording allocates beyond ``held_by_tape``
    (what the chain charges to its tape); and, during the backward, everything alive beyond
    ``held_by_tape`` and the incoming gradient: the input's gradient, parameter gradients and
    temporaries, less the saved tensors autograd frees as it goes. The incoming gradient is counted apart
    (``adjoint_bytes``), but it is alive only until the layer's first node has run, as in the runner: a
    layer of several nodes can peak after it is gone.
    """
    x_in = _graph_input(x) if x.is_floating_point() else x.detach()
    with _AllocatorPhases(x.device) as m:
        with m.phase("forward"), torch.no_grad():
            y = layer(x, *side)
        del y
        with m.phase("record"), torch.enable_grad():
            out = layer(x_in, *side)
        if out.requires_grad and out is not x_in:
            edge = get_gradient_edge(out)
            inputs = _grad_inputs(layer, x_in, extra + _side_leaves(side))
            adjoint = [torch.ones_like(out)]
            incoming = _storage_key(adjoint[0])[1]
            del out  # the runner drops the working state before a reverse
            with m.phase("backward"), _hooks_suspended(inputs):
                _grad_releasing(edge, inputs, adjoint)  # its results count until freed
        else:
            del out
    record = max(0, m.peaks["record"] - held_by_tape)
    backward = max(0, m.peaks["backward"] - held_by_tape - incoming) if "backward" in m.peaks else 0
    return float(m.peaks["forward"]), float(record), float(backward)


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
             where: str = "revolve.integrations.torch.profile", side: tuple = (),
             times: tuple | None = None) -> tuple[Chain, list]:
    """``profile``, and per layer the leaf tensors requiring grad it reaches beyond its parameters and input.

    ``side``: arguments every layer takes after the state (``layer(x, *side)``), the same for all layers.
    ``times``: (forward, backward) costs per layer from a profile at another shape: then nothing is timed
    (each layer runs once for its sizes and once for its working memory). Only the costs' ratios steer
    the planners, and those change little with the batch size or sequence length; sizes are measured.
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
    random: list = []  # per layer: whether it draws random numbers (dropout)
    rng_bytes = _rng_bytes(x)  # one RNG state as the runner reads it
    extras: list = []  # per layer: leaves requiring grad reached from outside (_reached_from_outside)
    try:
        with torch.random.fork_rng(devices=_rng_devices(x)):
            for li, layer in enumerate(layers):
                ft, bt, tape, y = [], [], 0, None
                runs = 1 if times is not None else max(1, repeats) + 1
                for rep in range(runs):  # the first run only warms up
                    version = x._version
                    rng = _get_rng(x) if rep == 0 else None
                    with torch.no_grad(), _Timer(x.device) as timer:
                        y = layer(x, *side)
                    if not isinstance(y, torch.Tensor):
                        raise _NotATensorState(_NOT_A_TENSOR.format(i=li, layer=type(layer).__name__,
                                                                    kind=type(y).__name__))
                    if rep == 0:  # a layer that draws random numbers: the runner keeps its RNG state
                        random.append(_rng_drawn(rng, _get_rng(x)))
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
                            with _hooks_suspended(inputs):
                                torch.autograd.grad([out], inputs, [torch.ones_like(out)], allow_unused=True)
                    bt.append(max(timer.seconds - ft[-1], 0.0))
                    # the input or output the layer saves is a state: flag it rather than count it twice
                    keys = saved.sizes
                    in_key = _storage_key(x_in)[0]
                    out_key = _storage_key(out)[0]
                    keeps_in = in_key in keys
                    keeps_out = out_key in keys and out_key != in_key
                    tape = sum(v for k, v in keys.items() if k not in (in_key, out_key))
                if times is None:
                    ft, bt = ft[1:], bt[1:]
                    fwd.append(sorted(ft)[len(ft) // 2])
                    bwd.append(sorted(bt)[len(bt) // 2])
                tapes.append(float(tape))
                holds_in.append(keeps_in)
                holds_out.append(keeps_out)
                if working_memory:
                    kept_out = keys[out_key] if keeps_out else 0
                    fo, ro, bo = _working_memory(layer, x, int(tape) + kept_out, extras[li], side)
                    # the runner's own bytes at this layer's evaluations: two RNG states read around a first
                    # evaluation, and a recomputation's copies of the layer's buffers (restored after it)
                    runner = 2 * rng_bytes + sum(b.numel() * b.element_size() for b in layer.buffers())
                    fo, ro = fo + runner, ro + runner
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
        # and the RNG state of every layer that draws random numbers, which the runner keeps for replays
        output += sum(random) * rng_bytes
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
    if times is not None:
        fwd, bwd = list(times[0]), list(times[1])
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

