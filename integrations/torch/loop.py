"""Checkpointed time stepping for PyTorch: ``x_{i+1} = step(x_i, params, i)`` for 10^4..10^6 steps in bounded memory.

    from revolve.integrations.torch import checkpointed_loop, gradient
    y = checkpointed_loop(step, x0, n_steps=100_000, params=params, memory="2GiB")  # an autograd node
    loss_fn(y).backward()                                                           # grads in .grad

    r = gradient(step, x0, n_steps=100_000, loss=loss_fn, params=params, memory="2GiB")
    r.value, r.grad_x0, r.grad_params, r.stats

Both run revolve's one executor (``revolve.executor``) with ``TorchEngine``, the torch side of the engine
protocol (NOTE [ The engine protocol ] in revolve/engine.py):

- an advance runs the step under ``no_grad``; a record runs it under ``enable_grad`` on detached inputs,
  and its pullback is one ``torch.autograd.grad`` (the step's graph is freed as it is applied);
- the RNG streams (CPU, and the CUDA devices of the state) are captured with every snapshot and re-entered
  on restore, so a step recomputed from a snapshot draws what it drew the first time (SDE noise,
  dropout): the gradient is bitwise plain autograd's over the unrolled loop, and the caller's stream
  after the call is the plain loop's;
- states stay on their device; a snapshot in "ram" is the state's tensors themselves (a step never
  changes a tensor in place: the version counters are checked on restore), ``HostStorage`` copies them to
  host memory (pinned for CUDA states), a directory keeps them on disk as raw bytes with a SHA-256 check,
  removed on success, failure, SIGINT and SIGTERM; so the multi-level planners can use device -> host ->
  disk (``revolve.multilevel`` with ``storage={"host": HostStorage(), "disk": "/scratch"}``);
- ``checkpointed_loop`` re-enters the forward's autocast state for the recomputations of its backward.

NOTE [ Working memory ]: ``memory=`` bounds the allocator's peak over the whole call (the CPU allocator's
bytes as torch.profiler's memory events count them; ``torch.cuda.max_memory_allocated`` on CUDA), not only
what a plan counts (stored states and live tapes). Before planning, ``TorchEngine.measure_working`` records
step 0 and applies its pullback once to an adjoint of ones, counting the storages created at every
operation's boundary. This recording is the run's evaluation of step 0 (handed to the executor, the RNG
streams rewound in between), so the step runs exactly as often as the schedule says. One step's working
memory beyond the plan is then the larger of
  (a) a recomputing advance during the reverse sweep: the adjoint, the working state, the step's own peak;
  (b) a reverse: its peak less the tape's saved storages (the plan counts those), which covers the adjoint,
      the step's output that the executor still holds, the backward's temporaries and gradients, plus the
      state the last advance produced (the executor holds it until its next advance);
plus the parameters' gradient sum (NOTE [ Parameter gradients ]) and the RNG state the fronts keep to give
the caller's stream back after the backward, less x_0 (a plan counts it as stored, but it is the caller's
tensor); ``checkpointed_loop`` adds one state, the gradient autograd hands its backward and holds until it
returns. A schedule that never advances after its first reverse (periodic, store-all) holds neither (a) nor
the state of an advance beside a reverse, and a periodic one counts each segment's first input twice (as a
snapshot and in the first tape, which keeps it): with n_steps the front plans within ``memory`` less that
lighter working memory (less one state more for periodic) and keeps the plan if it is of that kind;
otherwise the executor plans within ``memory`` less the working memory of any schedule.
Not covered: what the loss computes beyond its adjoint, and temporaries a kernel allocates and frees inside
one operation (convolution workspace: on CPU, where the profiler cannot be started inside a caller's
profile, these are invisible at operation boundaries).

NOTE [ Parameter gradients ]: ``apply`` adds each reverse's parameter gradients into the engine's own sum, in
place (the first contribution becomes the sum unless it shares memory with an adjoint), and returns None for
them, so the executor holds no second copy; the fronts take the sum (``params_grad``) at the end. The sum runs
in the order of the reverses (n-1 first) and each addition is the one autograd's ``.grad`` accumulation does,
so the result is plain autograd's, bitwise.

Across processes: a step that exchanges halos or reduces across ranks with ``torch.distributed.nn``'s
differentiable collectives runs the same way on every rank; give every rank the same ``schedule`` (a
``memory=`` plan depends on the sizes of the state, the tape and one step's working memory alone, and when
step 0 runs a collective the ranks of the default process group agree on the largest working memory measured,
so ranks holding equal shards plan the same one: NOTE [ Plans across ranks ]); each rank keeps its own
snapshots.

Parameters: a dict (or tuple/list) of tensors, whose gradients are returned in that structure, or an
``nn.Module``, passed to the step as it is, whose trainable parameters are differentiated (gradients as a
dict name -> tensor). Tensors the step reaches otherwise (a closure over a tensor that requires grad)
would get no gradient: the first recording finds them and raises, naming them.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.autograd.graph import get_gradient_edge

from revolve.ad import tree_flatten as _tree_flatten
from revolve.ad import tree_unflatten as _tree_unflatten
from revolve._check import check_int
from revolve.errors import InfeasibleBudget, RevolveInternalError
from revolve.actions import Advance, Reverse
from revolve.executor import (GradientResult, StepMeasurement, _check_slots, _note, _run_gradient, _start,
                               plan_for_memory)
from revolve.storage import TerminationGuard

from ._meters import PeakStorages
from ._state import _autocast_state, _get_rng, _reenter_autocast

__all__ = ["TorchEngine", "HostStorage", "gradient", "checkpointed_loop"]


_TENSOR = object()  # the structure of a state that is one tensor


def tree_flatten(x):
    """``revolve.ad.tree_flatten``, with a state that is one tensor taken at once (every step flattens states)."""
    if isinstance(x, torch.Tensor):
        return [x], _TENSOR
    return _tree_flatten(x)


def tree_unflatten(tree, leaves):
    """The inverse of ``tree_flatten``."""
    if tree is _TENSOR:
        return leaves[0]
    return _tree_unflatten(tree, leaves)


_run_backward = getattr(torch.autograd.graph, "_engine_run_backward", None)


def _grad(outputs, inputs, grads, *, retain_graph=False):
    """``torch.autograd.grad(outputs, inputs, grads, allow_unused=True)``; for plain tensors straight into the
    autograd engine, without the Python argument checks (their shapes and dtypes are the outputs', as the
    executor's adjoints are), which cost about 30 us a call: as much as a small step."""
    if _run_backward is not None and all(type(g) is torch.Tensor for g in grads) and all(
            type(t) is torch.Tensor or type(t) is nn.Parameter for t in inputs):
        return _run_backward(tuple(outputs), tuple(grads), retain_graph, False, tuple(inputs), True,
                             accumulate_grad=False)
    return torch.autograd.grad(outputs, inputs, grads, retain_graph=retain_graph, allow_unused=True)


def _nbytes(t: torch.Tensor) -> int:
    return t.element_size() * t.numel()


class _Params:
    """The parameters as the step sees them and the flat list of tensors differentiated.

    ``only_requiring_grad``: differentiate only the tensors that require grad (the autograd front); the
    gradient front differentiates every floating tensor of a dict, as ``revolve.gradient`` does.
    """

    def __init__(self, params, where: str, only_requiring_grad: bool):
        self.params = params
        self.module = isinstance(params, nn.Module)
        self._aliased = None
        if params is None:
            self.leaves, self.tree, self.names, self.diff = [], None, [], []
        elif self.module:
            named = [(k, p) for k, p in params.named_parameters() if p.requires_grad]
            self.names = [k for k, _ in named]
            self.leaves, self.tree = [p for _, p in named], None
            self.diff = list(range(len(named)))
            if params.training and any(b.is_floating_point() for b in params.buffers()):
                warnings.warn(f"{where}: params is a module in training mode with buffers (BatchNorm running "
                              f"statistics?); a recomputed step updates them again: call .eval() or keep "
                              f"buffers out of the step", stacklevel=3)
        else:
            self.leaves, self.tree = tree_flatten(params)
            self.names = []
            for v in self.leaves:
                if not isinstance(v, torch.Tensor):
                    raise TypeError(f"{where}: params must hold tensors (or be an nn.Module), got a "
                                    f"{type(v).__name__}")
            self.diff = [k for k, v in enumerate(self.leaves) if v.is_floating_point() or v.is_complex()]
            if only_requiring_grad:
                self.diff = [k for k in self.diff if self.leaves[k].requires_grad]

    def for_record(self):
        """``(argument for the step, tensors differentiated)``: detached aliases of a dict's tensors (so the
        recorded graph ends at them; made once, every recording's graph ends at the same leaves), a module's
        own leaf parameters."""
        if self.params is None:
            return None, []
        if self.module:
            return self.params, list(self.leaves)
        if self._aliased is None:
            aliases = [v.detach() for v in self.leaves]
            for k in self.diff:
                aliases[k].requires_grad_(True)
            self._aliased = (tree_unflatten(self.tree, aliases), [aliases[k] for k in self.diff])
        return self._aliased

    def structured(self, flat):
        """The flat gradients in the parameters' structure (None for tensors not differentiated)."""
        if self.params is None:
            return None
        if self.module:
            return dict(zip(self.names, flat))
        out: list = [None] * len(self.leaves)
        for k, g in zip(self.diff, flat):
            out[k] = g
        return tree_unflatten(self.tree, out)


class _Pullback:
    """One recorded step: the gradient edges of its outputs (the graph, not the outputs' storage), the
    detached inputs and the tensors differentiated."""

    __slots__ = ("outputs", "inputs", "n_x", "nbytes")

    def __init__(self, outputs, inputs, n_x, nbytes):
        self.outputs, self.inputs, self.n_x, self.nbytes = outputs, inputs, n_x, nbytes


def _outside_leaves(roots, inputs) -> list[torch.Tensor]:
    """Leaves that require grad reached by the graph of ``roots`` other than ``inputs`` (closures)."""
    known = {id(t) for t in inputs}
    seen, found, todo = set(), [], [r for r in roots if r is not None]
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        var = getattr(node, "variable", None)
        if var is not None and id(var) not in known:
            found.append(var)
        todo.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
    return found


class TorchEngine:
    """The PyTorch engine of revolve's executor (NOTE [ The engine protocol ] in revolve/engine.py).

    Arguments:
        preserve_rng_state: capture the RNG streams with every snapshot and re-enter them on restore
            (default), so stochastic steps recompute the same values; False for deterministic steps.

    Example:
        >>> e = TorchEngine()
        >>> x = e.own(torch.tensor([3.0]), "example")
        >>> y, pull = e.record(lambda x, p, i: x * x, x, None, 0)
        >>> y, e.apply(pull, torch.tensor([1.0]))[0]
        (tensor([9.]), tensor([6.]))
    """

    name = "torch"

    def __init__(self, *, preserve_rng_state: bool = True, only_requiring_grad: bool = False):
        self.preserve_rng_state = bool(preserve_rng_state)
        self.only_requiring_grad = only_requiring_grad
        self._params = None
        self._params_obj = None
        self._tape_bytes = None
        self._device_leaf = None
        self._tree = None
        self._where = "revolve.integrations.torch"
        self._sum = None  # the parameters' gradient, summed in place by apply (NOTE [ Parameter gradients ])
        self._stash = None  # a measured recording of step 0, kept for the executor's (measure_working)
        self._ambient_bytes = None

    # -- the state ---------------------------------------------------------------------------------------
    def own(self, x0, where: str):
        self._where = where
        leaves, tree = tree_flatten(x0)
        if not leaves:
            raise ValueError(f"{where}: x0 holds no tensors")
        for v in leaves:
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"{where}: x0 must be a tensor or a tuple/list/dict of tensors, got a {type(v).__name__}")
            if not (v.is_floating_point() or v.is_complex()):
                raise TypeError(f"{where}: x0 must hold floating point tensors, got dtype {v.dtype}")
        cuda = [v for v in leaves if v.device.type == "cuda"]
        self._device_leaf = cuda[0] if cuda else leaves[0]
        self._tree = tree
        return tree_unflatten(tree, [v.detach() for v in leaves])

    def _bind(self, params):
        if self._params is None or self._params_obj is not params:
            self._params = _Params(params, self._where, self.only_requiring_grad)
            self._params_obj = params
        return self._params

    def state_bytes(self, x) -> int:
        return int(sum(_nbytes(v) for v in tree_flatten(x)[0]))

    # -- steps ---------------------------------------------------------------------------------------------
    def advance(self, step, x, params, i):
        with torch.no_grad():
            return step(x, params, i)

    def record(self, step, x, params, i):
        if self._stash is not None:
            stash, self._stash = self._stash, None
            if i == 0 and step is stash[0] and params is stash[1] and _same_storages(x, stash[2]):
                # the recording measure_working made: this is the run's evaluation of step 0, not another one
                _set_rng(self._device_leaf, stash[5])
                return stash[3], stash[4]
        p = self._bind(params)
        leaves, tree = tree_flatten(x)
        xd = [v.detach().requires_grad_(True) for v in leaves]
        arg, pd = p.for_record()
        measuring = self._tape_bytes is None
        with torch.enable_grad():
            if measuring:
                saved = _SavedMeter()
                with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
                    y = step(tree_unflatten(tree, xd), arg, i)
            else:
                y = step(tree_unflatten(tree, xd), arg, i)
        y_leaves, y_tree = tree_flatten(y)
        for v in y_leaves:
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"{self._where}: step {i} returned a {type(v).__name__} in its state; it must "
                                f"return tensors, as x0 holds")
        inputs = xd + pd
        if measuring:
            outside = _outside_leaves([v.grad_fn for v in y_leaves], inputs)
            if outside:
                shapes = ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in outside[:4])
                raise ValueError(
                    f"{self._where}: step {i} uses {len(outside)} tensor(s) that require grad but are neither in x "
                    f"nor in params ({shapes}); their gradient would be lost: pass them in params")
            # what the tape keeps: the storages autograd saved, and the inputs (the graph's leaf nodes hold
            # them); not the output, which the tape reaches through its gradient edge only: once the working
            # state moves on, it lives on only where a later tape saved it (and is counted there)
            owned = {t.untyped_storage().data_ptr() for t in p.leaves}
            sizes = dict(saved.sizes)
            for t in xd:
                sizes[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            self._tape_bytes = int(sum(v for k, v in sizes.items() if k not in owned))
        edges = [get_gradient_edge(v) if v.requires_grad else None for v in y_leaves]
        pull = _Pullback(edges, inputs, len(xd), self._tape_bytes)
        return tree_unflatten(y_tree, [v.detach() for v in y_leaves]), pull

    def apply(self, pull, adj):
        adj_leaves = tree_flatten(adj)[0]
        pairs = [(e, g) for e, g in zip(pull.outputs, adj_leaves) if g is not None and e is not None]
        inputs = pull.inputs
        pull.outputs = pull.inputs = None  # the graph is freed by the grad below
        if pairs:
            grads = _grad([y for y, _ in pairs], inputs, [g for _, g in pairs])
        else:
            grads = [None] * len(inputs)
        del pairs
        n_x = pull.n_x
        x_grads = [torch.zeros_like(t) if g is None else g for t, g in zip(inputs[:n_x], grads[:n_x])]
        self._fold(inputs[n_x:], grads[n_x:], x_grads + [g for g in adj_leaves if g is not None])
        return tree_unflatten(self._tree, x_grads), None

    def _fold(self, inputs, grads, keep) -> None:
        """Add one reverse's parameter gradients into the sum (NOTE [ Parameter gradients ])."""
        if not inputs:
            return
        if self._sum is None:
            # the first contribution becomes the sum unless it shares memory with an adjoint (y = x + b: the
            # gradients of x and b can be one tensor) or another gradient: the sum is written in place later
            taken = {t.untyped_storage().data_ptr() for t in keep}
            out = []
            for t, g in zip(inputs, grads):
                if g is None:
                    g = torch.zeros_like(t)
                elif g.untyped_storage().data_ptr() in taken:
                    g = g.clone()
                taken.add(g.untyped_storage().data_ptr())
                out.append(g)
            self._sum = out
            return
        for acc, g in zip(self._sum, grads):
            if g is not None:
                acc.add_(g)

    def params_grad(self):
        """The parameters' gradient summed over the reverses run so far (a tuple in the order of the tensors
        differentiated), or None without parameters; the sum is handed over and the engine forgets it."""
        if self._params is None or self._params.params is None:
            return None
        out, self._sum = self._sum, None
        if out is None:  # no reverse ran
            out = [torch.zeros_like(t) for t in self._params.for_record()[1]]
        return tuple(out)

    def tape_bytes(self, pull, params) -> int:
        return pull.nbytes

    def measure_working(self, step, x0, params, where: str) -> int:
        """One step's working memory beyond what a plan counts (NOTE [ Working memory ]), in bytes.

        Records step 0 from x0 and applies its pullback once to an adjoint of ones (the graph retained),
        counting the storages created at every operation's boundary (``PeakStorages``' count). The recording is kept
        and handed to the executor as its measuring recording of step 0, with the RNG streams rewound in
        between, so the step runs no extra time and draws what it would have drawn.
        """
        x = self.own(x0, where)
        leaf = self._device_leaf
        before = _get_rng(leaf)
        meter = _StepMeter()
        with meter:
            y, pull = self.record(step, x, params, 0)
            after = _get_rng(leaf)
            rec_peak = meter.peak
            meter.peak = meter.cur
            outs = tree_flatten(y)[0]
            pairs = [(e, torch.ones_like(v)) for e, v in zip(pull.outputs, outs) if e is not None]
            if pairs:
                _grad([e for e, _ in pairs], pull.inputs, [g for _, g in pairs], retain_graph=True)
            del pairs
            pull_peak = meter.peak
        _set_rng(leaf, before)
        self._stash = (step, params, tree_flatten(x)[0], y, pull, after)
        p = self._bind(params)
        x_bytes = _storage_bytes(tree_flatten(x)[0])
        saved_new = max(self._tape_bytes - x_bytes, 0)  # the tape's own storages: its saved ones
        grad_sum = _storage_bytes(pull.inputs[pull.n_x:]) if p.params is not None else 0
        state = self.state_bytes(x)
        # (a) a recomputing advance: the adjoint, its input, the step's peak; (b) a reverse: its peak less the
        # tape's saved storages, and the state of the last advance (the executor holds it until the next one);
        # a plan counts x_0 as stored (a snapshot or tape 0's input), but its storage is the caller's: the run
        # never allocates it ("ram" keeps the tensors themselves). Without advances after the first reverse
        # (periodic, store-all), neither (a) nor the state of an advance is held beside a reverse.
        base = grad_sum + self.ambient_bytes() - x_bytes
        light = int(max(base + max(state + rec_peak, pull_peak - saved_new), 0))
        work = int(max(base + max(2 * state + rec_peak, pull_peak - saved_new + state), 0))
        if meter.collective:
            light, work = _largest_over_ranks([light, work])
        self._working_no_readvance = light
        return work

    # -- snapshots ---------------------------------------------------------------------------------------
    def snapshot(self, x):
        leaves, tree = tree_flatten(x)
        return tree, leaves, [v._version for v in leaves]

    def restore(self, s):
        tree, leaves, versions = s
        for v, ver in zip(leaves, versions):
            if v._version != ver:
                raise RuntimeError(
                    f"{self._where}: a stored state was modified in place after it was stored (a step updated its "
                    f"input, or x0 was changed during the run); write the step out of place (x = x + dx, not x += dx)")
        return tree_unflatten(tree, leaves)

    def to_bytes(self, leaf):
        t = leaf.detach()
        spec = [str(t.dtype).removeprefix("torch."), list(t.shape), str(t.device)]
        host = t.contiguous().cpu().reshape(-1)
        return spec, host.view(torch.uint8).numpy().data if host.numel() else b""

    def from_bytes(self, spec, blob, offset):
        import numpy as np

        dtype, shape, device = getattr(torch, spec[0]), spec[1], spec[2]
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        raw = np.frombuffer(blob, dtype=np.uint8, count=nbytes, offset=offset).copy()
        t = torch.from_numpy(raw).view(dtype).reshape(shape)
        return t.to(device), nbytes

    def checksum(self, x) -> str:
        from revolve.engine import checksum

        return checksum(self, x)

    # -- loss, sums, checks -------------------------------------------------------------------------------
    def value_and_grad(self, loss, x):
        leaves, tree = tree_flatten(x)
        xd = [v.detach().requires_grad_(True) for v in leaves]
        with torch.enable_grad():
            value = loss(tree_unflatten(tree, xd))
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise TypeError(f"{self._where}: loss must return a scalar tensor, got "
                            f"{type(value).__name__}{tuple(value.shape) if isinstance(value, torch.Tensor) else ''}")
        grads = torch.autograd.grad(value, xd, allow_unused=True) if value.requires_grad else [None] * len(xd)
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(xd, grads)]
        return float(value.detach()), tree_unflatten(tree, grads)

    def add(self, a, b):
        return tuple(x + y for x, y in zip(a, b))

    def finite(self, x) -> bool:
        return all(bool(torch.isfinite(v).all()) for v in tree_flatten(x)[0])

    # -- ambient state: the RNG streams ------------------------------------------------------------------
    def ambient(self):
        if not self.preserve_rng_state or self._device_leaf is None:
            return None
        return _get_rng(self._device_leaf)

    def reenter(self, ambient) -> None:
        if ambient is None:
            return
        torch.set_rng_state(ambient[0])
        if ambient[1] is not None:
            torch.cuda.set_rng_state(ambient[1], self._device_leaf.device)

    def ambient_bytes(self) -> int:
        if self._ambient_bytes is None:  # a generator's state has one size: taken once, not at every snapshot
            a = self.ambient()
            self._ambient_bytes = 0 if a is None else sum(_nbytes(s) for s in a if s is not None)
        return self._ambient_bytes


def _storage_bytes(tensors) -> int:
    """Bytes of the storages of ``tensors``, each storage once."""
    seen = {}
    for t in tensors:
        st = t.untyped_storage()
        seen[(t.device, st.data_ptr())] = st.nbytes()
    return int(sum(seen.values()))


def _same_storages(x, leaves) -> bool:
    """Whether the state x holds the storages, shapes and strides of ``leaves`` (a state's tensors)."""
    xs = tree_flatten(x)[0]
    return len(xs) == len(leaves) and all(
        a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and a.shape == b.shape
        and a.stride() == b.stride() and a.storage_offset() == b.storage_offset() and a.dtype == b.dtype
        for a, b in zip(xs, leaves))


def _set_rng(leaf, state) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], leaf.device)


class _StepMeter(PeakStorages):
    """``PeakStorages`` without Dynamo's guard around its dispatch, which imports torch._dynamo on first use
    (1.3 s): the measured step runs eagerly, nothing here is compiled."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    _count = getattr(PeakStorages.__torch_dispatch__, "__wrapped__", PeakStorages.__torch_dispatch__)
    collective = False  # whether the step ran a torch.distributed collective (NOTE [ Plans across ranks ])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace in ("c10d", "_c10d_functional"):
            self.collective = True
        return self._count(func, types, args, kwargs)


def _largest_over_ranks(values: list) -> list:
    """Each of ``values`` replaced by its largest value over the ranks of the default process group.

    NOTE [ Plans across ranks ]: a step with collectives must run the same schedule on every rank, or the ranks'
    collectives stop matching (a hang, or halos from the wrong step). A ``memory=`` plan depends on the sizes
    of the state and the tape, the same on ranks holding equal shards, and on the measured working memory,
    which is not: a collective's buffers are released by the backend's thread, sometimes after the next
    operation's boundary (48 B more on one of two gloo ranks, one run in four, gave it another schedule). So
    when step 0 ran a collective, the ranks agree on the largest measurement before planning; every rank of
    the default group must then call the front, as its step's collectives already require.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return values
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [int(v) for v in t.tolist()]


class _SavedMeter:
    """Storages autograd saves while the first step is recorded, each once (pack returns a detached alias, so
    a saved output holds no reference back to its own graph)."""

    def __init__(self):
        self.sizes: dict = {}

    def pack(self, t):
        s = t.untyped_storage()
        self.sizes[s.data_ptr()] = s.nbytes()
        return t.detach()

    @staticmethod
    def unpack(t):
        return t


class HostStorage:
    """Snapshots in host memory (pinned for CUDA states, so copies overlap compute), restored to their device.

    Use it as a storage level beside the device's "ram": ``storage={"host": HostStorage()}`` for a schedule
    whose ``Snapshot(storage="host")`` actions a multi-level planner chose.

    Example:
        >>> s = HostStorage()
        >>> s.put(3, {"u": torch.ones(4)})
        16
        >>> s.get(3)["u"].sum().item()
        4.0
    """

    def __init__(self, *, pin_memory: bool | None = None):
        self.pin_memory = pin_memory
        self._data: dict[int, Any] = {}
        self.engine = False  # needs none: it stores tensors as they are

    def put(self, index: int, state) -> int:
        leaves, tree = tree_flatten(state)
        copies = []
        for t in leaves:
            pin = t.device.type == "cuda" if self.pin_memory is None else self.pin_memory
            c = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=pin and torch.cuda.is_available())
            c.copy_(t.detach(), non_blocking=pin)
            copies.append((c, t.device))
        self._data[index] = (tree, copies)
        return int(sum(_nbytes(c) for c, _ in copies))

    def get(self, index: int):
        tree, copies = self._data[index]
        return tree_unflatten(tree, [c.to(d, non_blocking=True) if d.type != "cpu" else c.clone() for c, d in copies])

    def delete(self, index: int) -> None:
        del self._data[index]

    def close(self) -> None:
        self._data.clear()


def _advances_after_reverse(schedule) -> bool:
    """Whether the schedule advances after its first reverse (periodic and store-all never do)."""
    if schedule.kind in ("periodic", "store_all"):
        return False
    reversed_ = False
    for action in schedule:
        if isinstance(action, Reverse):
            reversed_ = True
        elif reversed_ and isinstance(action, Advance):
            return True
    return False


def _plan_memory(where, engine, step, x0, params, n_steps, stop, schedule, snapshots, memory, *, held=0):
    """``(memory for the executor's plan, schedule, one step's working memory)`` for ``memory=``: the caller's
    budget less what ``engine.measure_working`` measured (NOTE [ Working memory ]) and ``held`` states more.
    With n_steps, the plan within the budget less the working memory of a schedule that never advances after
    its first reverse is kept if it is one (memory None then); else the executor plans within the budget less
    the working memory of any schedule. ``(memory, schedule, 0)`` as given when there is nothing to measure (no
    memory=, or arguments the executor refuses: it names them), the schedule given passed on."""
    if memory is None or schedule is not None or snapshots is not None or (n_steps is None) == (stop is None):
        return memory, schedule, 0
    if n_steps is not None:
        check_int(where, "n_steps", n_steps, minimum=1)
    if not callable(step):
        raise TypeError(f"{where}: step must be a callable, got {type(step).__name__}")
    _, memory = _check_slots(where, None, memory)
    try:
        working = engine.measure_working(step, x0, params, where)
    except Exception as e:
        _note(e, f"{where}: raised in step 0 (recording it from x_0 to measure its working memory)")
        raise
    x_state = engine.state_bytes(engine._stash[2])
    working += held * x_state
    if n_steps is not None:
        light = engine._working_no_readvance + held * x_state
        unit = StepMeasurement(state_bytes=x_state + engine.ambient_bytes(), tape_bytes=engine._tape_bytes,
                               forward_time=1.0, backward_time=1.0)  # as the executor plans memory=
        # periodic: each segment's first tape keeps the snapshot it was restored from as its input, which
        # the plan counts twice while the segment's tapes live (its peak): the plan may hold one state more
        for work, fits in ((light - x_state, lambda s: s.kind == "periodic"),
                           (light, lambda s: not _advances_after_reverse(s))):
            try:
                plan = plan_for_memory(unit, n_steps, memory - work) if memory > work else None
            except InfeasibleBudget:
                plan = None
            if plan is not None and fits(plan):
                return None, plan, work
    left = memory - working
    if left <= 0:
        state = engine.state_bytes(engine._stash[2]) + engine.ambient_bytes()
        need = working + state + engine._tape_bytes
        raise InfeasibleBudget(
            f"{where}: memory={memory:.0f} bytes does not cover one step's working memory ({working} bytes, "
            f"measured on step 0); the smallest budget with which a schedule exists is {need} bytes",
            budget=memory, minimum=need)
    return left, None, working


def _with_working(where, memory, working, e: InfeasibleBudget) -> InfeasibleBudget:
    """The executor's refusal of the budget left after the working memory, in the caller's terms."""
    return InfeasibleBudget(
        f"{where}: memory={memory:.0f} bytes less one step's working memory ({working} bytes, measured on step 0) "
        f"leaves {memory - working:.0f} bytes for snapshots and tapes, which is too little ({e}); the smallest "
        f"budget with which a schedule exists is {e.minimum + working:.0f} bytes",
        budget=memory, minimum=e.minimum + working)


def gradient(
    step: Callable,
    x0,
    *,
    n_steps: int | None = None,
    loss: Callable,
    params=None,
    schedule=None,
    snapshots: int | None = None,
    memory: float | str | None = None,
    storage: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    check_finite: bool = False,
    preserve_rng_state: bool = True,
    stop: Callable | None = None,
) -> GradientResult:
    """The gradient of ``loss(x_n)`` where x_{i+1} = step(x_i, params, i), torch steps under a checkpointing schedule.

    The torch twin of ``revolve.gradient`` (same arguments, same result, the same executor).

    Arguments:
        step: ``step(x, params, i) -> x_next`` with torch operations; x is a tensor or a tuple/list/dict of
            tensors (on any device), params as given below.
        x0: the initial state (not changed; its own gradient is returned, whether or not it requires grad).
        n_steps: number of steps, >= 1.
        loss: ``loss(x_n) -> scalar tensor``.
        params: a dict/tuple/list of tensors shared by all steps (gradients for every floating tensor), or an
            ``nn.Module`` passed to the step as it is (gradients of its trainable parameters, by name); None.
        schedule, snapshots, memory, storage, progress, check_finite: as ``revolve.gradient``; a storage
            level may also be a ``HostStorage()``. "ram" keeps snapshots on the state's device. ``memory``
            bounds the allocator's peak over the call: the plan gets what one step's working memory,
            measured on step 0, leaves (NOTE [ Working memory ]).
        preserve_rng_state: re-enter each snapshot's RNG state on restore (stochastic steps recompute what
            they drew); the caller's stream after the call is the plain loop's.
        stop: instead of n_steps, ``stop(x_i, i) -> bool``: the loop ends at the first x_n where it is true,
            snapshots decided online (as ``revolve.gradient``'s stop; give snapshots= or memory=).

    Returns:
        ``GradientResult(value, grad_x0, grad_params, stats)``: grad_x0 in x0's structure, grad_params in
        params' (a dict name -> tensor for a module), stats as ``revolve.gradient``'s. The step runs exactly
        ``stats.forward_evaluations`` times.

    Raises:
        As ``revolve.gradient``; ValueError when the step uses tensors requiring grad outside x and params;
        InfeasibleBudget when ``memory`` does not cover one step's working memory and the smallest plan.

    Example:
        >>> import torch
        >>> step = lambda x, p, i: x + 0.01 * torch.sin(x) * p["a"]
        >>> r = gradient(step, torch.ones(3, dtype=torch.float64), n_steps=100, loss=lambda x: (x ** 2).sum(),
        ...              params={"a": torch.tensor(2.0, dtype=torch.float64)}, snapshots=4)
        >>> r.stats.forward_evaluations, tuple(r.grad_x0.shape), r.grad_params["a"].dtype
        (474, (3,), torch.float64)
    """
    where = "revolve.integrations.torch.gradient"
    if not callable(step) or not callable(loss):
        raise TypeError(f"{where}: step and loss must be callables, got {type(step).__name__} and {type(loss).__name__}")
    engine = TorchEngine(preserve_rng_state=preserve_rng_state, only_requiring_grad=False)
    given = memory
    memory, schedule, working = _plan_memory(where, engine, step, x0, params, n_steps, stop, schedule, snapshots,
                                             memory)
    try:
        r = _run_gradient(where, engine, step, x0, n_steps=n_steps, loss=loss, params=params, schedule=schedule,
                          snapshots=snapshots, memory=memory, storage=storage, progress=progress,
                          check_finite=check_finite, stop=stop)
    except InfeasibleBudget as e:
        if not working:
            raise
        raise _with_working(where, _check_slots(where, None, given)[1], working, e) from e
    grad_params = engine._bind(params).structured(engine.params_grad()) if params is not None else None
    return GradientResult(value=r.value, grad_x0=r.grad_x0, grad_params=grad_params, stats=r.stats)


class _Loop(torch.autograd.Function):
    """The whole loop as one autograd node: forward runs the schedule to x_n, backward the rest of it."""

    @staticmethod
    def forward(ctx, box, *tensors):
        run = _start(**box["start"])
        box["run"] = run
        guard = TerminationGuard(enabled=box["disk"](run))
        try:
            x_n = run.forward()
        except BaseException:
            run.close()
            raise
        finally:
            guard.restore()
        ctx.box = box
        leaves, box["out_tree"] = tree_flatten(x_n)
        box["out_like"] = [(v.shape, v.dtype, v.device) for v in leaves]
        box["autocast"] = _autocast_state(leaves[0].device)
        return tuple(leaves)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        box = ctx.box
        run = box.get("run")
        if run is None:
            raise RuntimeError(f"{box['where']}: backward through the loop ran twice; its snapshots are freed after "
                               f"the first (retain_graph=True is not supported: run the loop again)")
        box["run"] = None
        engine = run.engine
        adj = tree_unflatten(box["out_tree"], [torch.zeros(shape, dtype=dtype, device=device) if g is None else g
                                               for (shape, dtype, device), g in zip(box["out_like"], grads)])
        guard = TerminationGuard(enabled=box["disk"](run))
        ambient = engine.ambient()  # backward never draws from the caller's stream
        try:
            with _reenter_autocast(box["autocast"]):
                adj_x0, _ = run.backward(adj)
            grad_params = engine.params_grad()
            stats = run.stats()
        finally:
            engine.reenter(ambient)
            run.close()
            guard.restore()
        x_grads = tree_flatten(adj_x0)[0]
        out = [None] + [g if req else None for g, req in zip(x_grads, box["x_requires"])]
        out += list(grad_params) if grad_params is not None else [None] * box["n_p"]
        if len(out) != 1 + box["n_x"] + box["n_p"]:
            raise RevolveInternalError(f"{box['where']}: {len(out)} gradients for {1 + box['n_x'] + box['n_p']} inputs")
        if box.get("on_stats") is not None:
            box["on_stats"](stats)
        return tuple(out)


def checkpointed_loop(
    step: Callable,
    x0,
    *,
    n_steps: int | None = None,
    params=None,
    schedule=None,
    snapshots: int | None = None,
    memory: float | str | None = None,
    storage: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    check_finite: bool = False,
    preserve_rng_state: bool = True,
    stats: Callable | None = None,
    stop: Callable | None = None,
):
    """x_n of x_{i+1} = step(x_i, params, i), as one autograd node whose backward runs the schedule's reverse.

    The output feeds further torch code and ``.backward()`` (or ``torch.autograd.grad``); gradients reach
    the parameters that require grad (accumulated into ``.grad``) and x0 if it requires grad. Only the
    schedule's snapshots and live tapes are kept between forward and backward.

    Arguments:
        step, x0, n_steps, params, schedule, snapshots, memory, storage, progress, check_finite,
        preserve_rng_state: as ``gradient`` (params: a dict/tuple/list of tensors, differentiated where they
            require grad, or an ``nn.Module``).
        stats: called with the run's ``ExecutionStats`` once the backward has run.
        stop: instead of n_steps, ``stop(x_i, i) -> bool`` (asked on detached states under no_grad): the loop
            ends at the first x_n where it is true; snapshots decided online (give snapshots= or memory=).

    Returns:
        x_n in x0's structure (tensors on x0's devices).

    Raises:
        As ``gradient``; RuntimeError on a second backward through the same output (the snapshots are freed
        after the first; retain_graph=True is not supported) or on ``create_graph=True``.

    Example:
        >>> import torch
        >>> a = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        >>> y = checkpointed_loop(lambda x, p, i: x + 0.01 * torch.tanh(x * p["a"]), torch.ones(4, dtype=torch.float64),
        ...                       n_steps=1000, params={"a": a}, memory="200KiB")
        >>> (y ** 2).sum().backward()
        >>> a.grad.shape
        torch.Size([])
    """
    where = "revolve.integrations.torch.checkpointed_loop"
    if not callable(step):
        raise TypeError(f"{where}: step must be a callable, got {type(step).__name__}")
    engine = TorchEngine(preserve_rng_state=preserve_rng_state, only_requiring_grad=True)
    x_leaves = tree_flatten(x0)[0]
    for v in x_leaves:
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{where}: x0 must be a tensor or a tuple/list/dict of tensors, got a {type(v).__name__}")
    p = engine._bind(params)
    p_tensors = [p.leaves[k] for k in p.diff] if not p.module else list(p.leaves)
    # autograd keeps the gradient it hands the loop's backward until that backward returns: one state more
    given = memory
    memory, schedule, working = _plan_memory(where, engine, step, x0, params, n_steps, stop, schedule, snapshots,
                                             memory, held=1)
    box = {
        "start": dict(where=where, engine=engine, step=step, x0=x0, n_steps=n_steps, params=params,
                      schedule=schedule, snapshots=snapshots, memory=memory, storage=storage, progress=progress,
                      check_finite=check_finite, stop=stop),
        "disk": lambda run: run.predicted is not None and bool(set(run.predicted.peak_snapshots_by_storage) - {"ram"}),
        "where": where, "n_x": len(x_leaves), "n_p": len(p_tensors),
        "x_requires": [v.requires_grad for v in x_leaves], "on_stats": stats,
    }
    try:
        outs = _Loop.apply(box, *x_leaves, *p_tensors)
    except InfeasibleBudget as e:
        if not working:
            raise
        raise _with_working(where, _check_slots(where, None, given)[1], working, e) from e
    return tree_unflatten(box["out_tree"], list(outs))
