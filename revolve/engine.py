"""What an engine gives the executor, and the ``revolve.ad`` engine on numpy.

``revolve.gradient`` runs any schedule through an *engine*: the AD system a step is written in. The
executor owns the schedule, the snapshots (RAM, disk with checksums), cleanup, stats and progress; the
engine owns everything that touches the numbers. ``revolve.ad`` on numpy is ``NumpyEngine`` (this file);
PyTorch is ``revolve.integrations.torch.TorchEngine``. There is one executor for both.

NOTE [ The engine protocol ]
  1. ``own(x0, where)`` checks the caller's initial state and returns the executor's own working state
     (numpy: a private copy, so an in-place step never changes the caller's x0; torch: detached aliases).
  2. ``advance(step, x, params, i)`` runs step i without recording: x_{i+1}.
  3. ``record(step, x, params, i)`` runs step i recording it: ``(x_{i+1}, pullback)``. The executor
     never looks inside a pullback.
  4. ``apply(pullback, adj)``: the adjoint of x_i and the step's contribution to the parameters'
     gradient (None without parameters); a pullback is applied once and then dropped.
  5. ``tape_bytes(pullback, params)``: what a live pullback keeps (parameters excepted, they live
     anyway); ``state_bytes(x)``: the bytes of a state.
  6. ``snapshot(x)`` / ``restore(s)``: a state kept in memory that stays valid whatever later steps do
     (numpy: a read-only copy; torch: the tensors themselves with their version counters checked on
     restore); ``to_bytes(leaf)`` / ``from_bytes(spec, blob, offset)``: one leaf as raw bytes for disk
     snapshots, bitwise; ``checksum(x)``: SHA-256 of those bytes.
  7. ``value_and_grad(loss, x_n)``: the loss and its adjoint at x_n; ``add(a, b)``: gradients summed
     in the order of the reverses (n-1 first, as plain reverse mode sums them); ``finite(x)``.
  8. ``ambient()`` / ``reenter(a)``, ``ambient_bytes()``: state outside x that a step reads and that
     recomputation must see again (torch: the RNG streams). The executor keeps one per snapshot and
     re-enters it on restore, so step i always sees what it saw the first time; ``None`` when none.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

__all__ = ["Engine", "NumpyEngine"]


@runtime_checkable
class Engine(Protocol):
    """What the executor needs from an AD engine (NOTE [ The engine protocol ] in revolve/engine.py)."""

    name: str

    def own(self, x0, where: str): ...
    def advance(self, step: Callable, x, params, i: int): ...
    def record(self, step: Callable, x, params, i: int) -> tuple[Any, Any]: ...
    def apply(self, pullback, adj) -> tuple[Any, Any]: ...
    def tape_bytes(self, pullback, params) -> int: ...
    def state_bytes(self, x) -> int: ...
    def snapshot(self, x): ...
    def restore(self, s): ...
    def to_bytes(self, leaf) -> tuple[Any, Any]: ...
    def from_bytes(self, spec, blob: bytes, offset: int) -> tuple[Any, int]: ...
    def checksum(self, x) -> str: ...
    def value_and_grad(self, loss: Callable, x) -> tuple[float, Any]: ...
    def add(self, a, b): ...
    def finite(self, x) -> bool: ...
    def ambient(self): ...
    def reenter(self, ambient) -> None: ...
    def ambient_bytes(self) -> int: ...


def checksum(engine, x) -> str:
    """SHA-256 over a state's leaves as ``engine.to_bytes`` writes them (header of dtypes/shapes, then data)."""
    from .ad import tree_flatten

    specs, buffers = zip(*[engine.to_bytes(leaf) for leaf in tree_flatten(x)[0]]) if tree_flatten(x)[0] else ((), ())
    h = hashlib.sha256(json.dumps(list(specs)).encode() + b"\n")
    for b in buffers:
        h.update(b)
    return h.hexdigest()


class NumpyEngine:
    """The ``revolve.ad`` engine: states are numpy arrays (or pytrees of them), steps are traced by revolve.ad.

    Example:
        >>> import numpy as np
        >>> from revolve import ad
        >>> e = NumpyEngine()
        >>> y, pull = e.record(lambda x, p, i: x * x, np.array([3.0]), None, 0)
        >>> y, e.apply(pull, np.array([1.0]))[0]
        (array([9.]), array([6.]))
    """

    name = "revolve.ad"

    def own(self, x0, where: str):
        from .ad import tree_flatten, tree_unflatten

        leaves, tree = tree_flatten(x0)
        if not leaves:
            raise ValueError(f"{where}: x0 holds no arrays")
        for leaf in leaves:
            if np.asarray(leaf).dtype.kind not in "fc":
                raise TypeError(f"{where}: x0 must hold floating point arrays, got dtype {np.asarray(leaf).dtype}")
        # NOTE [ The caller's x0 and in-place steps ] in revolve/executor.py
        return tree_unflatten(tree, [np.array(v, copy=True) for v in leaves])

    def advance(self, step, x, params, i):
        if type(x) is np.ndarray:  # the common case, without a tree walk
            return step(x if x.flags.writeable else x.copy(), params, i)
        return step(_writeable(x), params, i)

    def record(self, step, x, params, i):
        """The tape takes the arrays of x as its own: nobody else holds them afterwards (the working state moves
        on to x_{i+1}; snapshots are copies), so the engine keeps them read-only without copying them; the
        tape keeps read-only views of the parameters, which stay the caller's (NOTE [ Arrays a tape keeps ])."""
        from .ad.transforms import _vjp

        if params is None:
            return _vjp(lambda xx: step(xx, None, i), (x,), ("own",))
        return _vjp(lambda xx, pp: step(xx, pp, i), (x, params), ("own", "view"))

    def apply(self, pullback, adj):
        cts = pullback(adj)
        return cts[0], (cts[1] if len(cts) > 1 else None)

    def tape_bytes(self, pullback, params) -> int:
        """What a tape keeps alive, parameters excepted. This includes the step's input and output: two live
        tapes of neighbouring steps can share one state, so sums of tape sizes (what the simulator adds up)
        may count that state twice: conservative, never an undercount."""
        return pullback.tape_bytes(exclude=params)

    def state_bytes(self, x) -> int:
        from .ad import tree_flatten

        return int(sum(np.asarray(v).nbytes for v in tree_flatten(x)[0]))

    def snapshot(self, x):
        from .ad import tree_flatten, tree_unflatten

        leaves, tree = tree_flatten(x)
        copy = [np.array(v, copy=True) for v in leaves]
        for v in copy:  # read-only: the engine copies a restored state before a step may change it in place
            v.setflags(write=False)
        return tree_unflatten(tree, copy)

    def restore(self, s):
        return s

    def to_bytes(self, leaf):
        a = np.ascontiguousarray(np.asarray(leaf))
        return [a.dtype.str, list(a.shape)], a.data

    def from_bytes(self, spec, blob, offset):
        dtype, shape = spec
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(blob, dtype=dt, count=count, offset=offset).reshape(shape).copy(), count * dt.itemsize

    def checksum(self, x) -> str:
        return checksum(self, x)

    def value_and_grad(self, loss, x):
        from . import ad

        value, adj = ad.value_and_grad(loss)(x)
        return float(np.asarray(value)), adj

    def add(self, a, b):
        from .ad import tree_flatten, tree_unflatten

        la, tree = tree_flatten(a)
        return tree_unflatten(tree, [x + y for x, y in zip(la, tree_flatten(b)[0])])

    def finite(self, x) -> bool:
        from .ad import tree_flatten

        return all(bool(np.all(np.isfinite(v))) for v in tree_flatten(x)[0])

    def ambient(self):
        return None

    def reenter(self, ambient) -> None:
        return None

    def ambient_bytes(self) -> int:
        return 0


def _writeable(x):
    """x ready for a step that may update its input in place: read-only arrays (a snapshot, arrays a tape
    keeps) are replaced by copies, the others are the executor's own already."""
    from .ad import tree_flatten, tree_unflatten

    leaves, tree = tree_flatten(x)
    if all(not isinstance(v, np.ndarray) or v.flags.writeable for v in leaves):
        return x
    return tree_unflatten(tree, [v.copy() if isinstance(v, np.ndarray) and not v.flags.writeable else v for v in leaves])
