"""The chain model: the cost in time and the size in bytes of each step of a computation."""

from __future__ import annotations

import json
import math
from fractions import Fraction
import numbers
import os
from typing import Sequence, Union

import numpy as np

from ._check import check_int

__all__ = ["Chain"]

Number = Union[int, float]

_FIELDS = ("forward_cost", "backward_cost", "state_bytes", "tape_bytes")
_OPTIONAL = ("forward_overhead", "record_overhead", "backward_overhead", "adjoint_bytes")  # default 0: not modelled
_NUMERIC = _FIELDS + _OPTIONAL
_PER_STATE = ("state_bytes", "adjoint_bytes")  # n + 1 values
_FLAGS = ("tape_holds_input", "tape_holds_output")


def _as_flags(where: str, name: str, value, n: int) -> np.ndarray | None:
    """Validate a per-step boolean argument; None when it is False everywhere."""
    if isinstance(value, (bool, np.bool_)):
        return np.full(n, True) if value else None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{where}: {name} must be a bool or a sequence of n_steps bools, got {value!r}")
    items = list(value)
    if len(items) != n:
        raise ValueError(f"{where}: {name} has {len(items)} values but the chain has n_steps={n}")
    for k, item in enumerate(items):
        if not isinstance(item, (bool, np.bool_)):
            raise TypeError(f"{where}: {name}[{k}] must be a bool, got {item!r}")
    arr = np.asarray(items, dtype=bool)
    return arr if arr.any() else None


def _as_values(where: str, name: str, value, length: int | None) -> tuple[np.ndarray | None, float | None, int | None]:
    """Validate one chain argument; return (array or None, uniform scalar or None, its own length or None)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be a number or a sequence of numbers, got {value!r}")
    if isinstance(value, numbers.Real):
        try:
            v = float(value)
        except OverflowError:  # an integer past the float range
            raise ValueError(f"{where}: {name} must be finite and >= 0 (at most 1.8e308), got an integer of about "
                             f"{int(abs(int(value)).bit_length() * math.log10(2)) + 1} digits") from None
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{where}: {name} must be finite and >= 0, got {value!r}")
        return None, v, None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{where}: {name} must be a number or a sequence of numbers, got {value!r}")
    items = list(value)
    for k, item in enumerate(items):
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Real):
            raise TypeError(f"{where}: {name}[{k}] must be a real number, got {item!r}")
    try:
        arr = np.asarray(items, dtype=np.float64)
    except OverflowError:  # an integer past the float range: report the first as not finite
        k = next(k for k, item in enumerate(items) if abs(item) > 1.7976931348623157e308)
        raise ValueError(f"{where}: {name}[{k}] must be finite and >= 0 (at most 1.8e308), got an integer of "
                         f"about {int(abs(int(items[k])).bit_length() * math.log10(2)) + 1} digits") from None
    if arr.ndim != 1:
        raise ValueError(f"{where}: {name} must be one-dimensional, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"{where}: {name}[{k}] must be finite and >= 0, got {items[k]!r}")
    return arr, None, len(items)


# NOTE [ Exact sizes ]
# Every finite float is a dyadic rational p / 2^k, so the sizes of a chain are exactly integers over one
# common power-of-two denominator (``Chain.exact_sizes``). The simulator, ``min_memory`` and the DP of
# ``revolve.optimal`` add and compare sizes as those integers, never as floats, so they agree to the
# byte on every peak. A peak is reported as the float nearest its exact value (one rounding), and it
# fits a budget when that reported float is at most the budget (``budget_limit`` in DP units): the
# budget check is the same comparison everywhere, with no tolerance to tune.


def budget_limit(budget: float, unit: Fraction) -> int:
    """The largest integer p with ``p * unit`` fitting ``budget`` (NOTE [ Exact sizes ]); -1 when none does.

    p * unit rounds to at most ``budget`` exactly when it lies below the midpoint between ``budget`` and
    the next float, or on it when rounding to even picks ``budget``.
    """
    if not math.isfinite(budget):
        raise ValueError(f"revolve.chain.budget_limit: budget must be finite, got {budget!r}")
    if budget < 0:
        return -1
    mid = Fraction(budget) + Fraction(math.ulp(budget)) / 2
    p = math.floor(mid / unit)
    if p >= 0 and (p * unit).numerator / (p * unit).denominator > budget:
        p -= 1  # exactly on the midpoint, and rounding to even goes up
    return p


class Chain:
    """Costs and sizes of a chain of ``n`` steps mapping states x_0 .. x_n.

    Arguments (keyword-only), each a non-negative finite number (the same for every step) or a sequence:
        forward_cost: time of one evaluation of each step (n values).
        backward_cost: time of the backward of each step, from its tape (n values).
        state_bytes: size of each state x_0 .. x_n (n + 1 values).
        tape_bytes: bytes a recorded step keeps until it is reversed (n values), besides the states
            named by the two flags below.
        n_steps: the number of steps; required when every argument is a number.
        tape_holds_input: whether the tape of step i keeps its input x_i itself (a bool for every step,
            or n bools; default False). Then x_i is held while that tape is live, and a snapshot of x_i
            shares those bytes instead of adding to them (NOTE [ Schedule invariants ] 8).
        tape_holds_output: likewise for the output x_{i+1} (an activation that saves its result).
        forward_overhead: bytes that evaluating step i needs for a moment beyond what is held and beyond
            its input (its output, temporaries; n values, default 0). When the chain models working
            memory, the input x_i also counts while step i runs unless it is held (stored or kept by a tape).
        record_overhead: the same for recording step i, beyond what is held once its tape is (taped
            temporaries are part of the tape; default: ``forward_overhead``).
        backward_overhead: the same while step i is reversed (the new adjoint, temporaries; default 0).
        adjoint_bytes: size of the adjoint of x_k (n + 1 values, default 0). The adjoint of x_k is held
            from the reverse of step k until that of step k - 1, and the output's from the start.

    Autograd frameworks save a layer's input or output as part of its backward's data; counting those
    tensors in ``tape_bytes`` as well as in ``state_bytes`` would charge them twice.

    Raises:
        TypeError, ValueError: an argument that is not a number or sequence of numbers, a negative or
            non-finite value, or lengths that do not agree.

    Example:
        >>> chain = Chain(forward_cost=1.0, backward_cost=2.0, state_bytes=8e6, tape_bytes=24e6, n_steps=100)
        >>> chain.n_steps, chain.state(0), chain.tape(99)
        (100, 8000000.0, 24000000.0)
    """

    __slots__ = ("n_steps", "_arrays", "_uniform", "_flags", "_exact")

    def __init__(
        self,
        *,
        forward_cost: Number | Sequence[Number],
        backward_cost: Number | Sequence[Number],
        state_bytes: Number | Sequence[Number],
        tape_bytes: Number | Sequence[Number],
        n_steps: int | None = None,
        tape_holds_input: bool | Sequence[bool] = False,
        tape_holds_output: bool | Sequence[bool] = False,
        forward_overhead: Number | Sequence[Number] = 0,
        backward_overhead: Number | Sequence[Number] = 0,
        adjoint_bytes: Number | Sequence[Number] = 0,
        record_overhead: Number | Sequence[Number] | None = None,
    ):
        where = "revolve.Chain"
        if n_steps is not None:
            n_steps = check_int(where, "n_steps", n_steps, minimum=1)
        given = dict(forward_cost=forward_cost, backward_cost=backward_cost, state_bytes=state_bytes, tape_bytes=tape_bytes,
                     forward_overhead=forward_overhead, backward_overhead=backward_overhead, adjoint_bytes=adjoint_bytes,
                     record_overhead=forward_overhead if record_overhead is None else record_overhead)
        arrays, uniform, implied = {}, {}, {}
        for name, value in given.items():
            arr, scalar, length = _as_values(where, name, value, n_steps)
            arrays[name], uniform[name] = arr, scalar
            if length is not None:
                # states are x_0..x_n, so their sequence is one longer than the others
                implied[name] = length - 1 if name in _PER_STATE else length
        if implied:
            ns = set(implied.values())
            if len(ns) > 1 or (n_steps is not None and ns != {n_steps}):
                detail = ", ".join(f"{k} has {len(given[k])} values" for k in implied)
                expect = f"n_steps={n_steps}" if n_steps is not None else "one n"
                raise ValueError(
                    f"{where}: lengths disagree ({detail}); with {expect} the costs, tape_bytes and overheads need "
                    f"n values and state_bytes and adjoint_bytes need n + 1"
                )
            n_steps = ns.pop()
        if n_steps is None:
            raise ValueError(f"{where}: n_steps is required when every argument is a single number")
        if n_steps < 1:
            raise ValueError(f"{where}: a chain needs at least one step, got {n_steps} (state_bytes must have n + 1 >= 2 values)")
        self.n_steps = n_steps
        self._arrays = arrays
        self._uniform = uniform
        self._flags = {
            "tape_holds_input": _as_flags(where, "tape_holds_input", tape_holds_input, n_steps),
            "tape_holds_output": _as_flags(where, "tape_holds_output", tape_holds_output, n_steps),
        }
        self._exact = None

    # -- access ---------------------------------------------------------------------------------
    def values(self, name: str) -> np.ndarray:
        """The full array of one field (n values, n + 1 for ``state_bytes`` and ``adjoint_bytes``)."""
        if name not in _NUMERIC:
            raise ValueError(f"revolve.Chain.values: unknown field {name!r}; allowed: {', '.join(_NUMERIC)}")
        arr = self._arrays[name]
        if arr is None:
            length = self.n_steps + 1 if name in _PER_STATE else self.n_steps
            arr = np.full(length, self._uniform[name])
        return arr

    def uniform(self, name: str) -> float | None:
        """The common value of a field given as one number, else None."""
        return self._uniform[name]

    def forward(self, i: int) -> float:
        """Forward cost of step i."""
        u = self._uniform["forward_cost"]
        return u if u is not None else float(self._arrays["forward_cost"][i])

    def backward(self, i: int) -> float:
        """Backward cost of step i."""
        u = self._uniform["backward_cost"]
        return u if u is not None else float(self._arrays["backward_cost"][i])

    def state(self, i: int) -> float:
        """Size in bytes of state x_i."""
        u = self._uniform["state_bytes"]
        return u if u is not None else float(self._arrays["state_bytes"][i])

    def tape(self, i: int) -> float:
        """Size in bytes of the tape of step i."""
        u = self._uniform["tape_bytes"]
        return u if u is not None else float(self._arrays["tape_bytes"][i])

    def holds(self, name: str) -> np.ndarray:
        """The n booleans of ``tape_holds_input`` or ``tape_holds_output``."""
        if name not in _FLAGS:
            raise ValueError(f"revolve.Chain.holds: unknown flag {name!r}; allowed: {', '.join(_FLAGS)}")
        arr = self._flags[name]
        return arr.copy() if arr is not None else np.zeros(self.n_steps, dtype=bool)

    def exact_sizes(self) -> tuple[dict[str, list[int]], int]:
        """Every size field as exact integers over one common denominator (NOTE [ Exact sizes ]).

        Returns ``(sizes, den)``: ``sizes[name][k] / den`` equals ``values(name)[k]`` exactly, for
        ``state_bytes``, ``tape_bytes``, the overheads and ``adjoint_bytes``; ``den`` is a power of two
        (1 when every size is a whole number of bytes).

        Example:
            >>> Chain(forward_cost=1, backward_cost=1, state_bytes=[0.5, 2, 1.25], tape_bytes=3).exact_sizes()[1]
            4
        """
        if self._exact is None:
            names = ("state_bytes", "tape_bytes", *_OPTIONAL)
            ratios = {name: [float(v).as_integer_ratio() for v in self.values(name).tolist()] for name in names}
            den = max((q for rs in ratios.values() for _, q in rs), default=1)  # every q is a power of two
            self._exact = ({name: [p * (den // q) for p, q in rs] for name, rs in ratios.items()}, den)
        sizes, den = self._exact
        return {name: list(v) for name, v in sizes.items()}, den

    @property
    def has_overheads(self) -> bool:
        """True when the chain models the working memory (overheads or adjoints), not only what is held."""
        return any(self._arrays[k] is not None or self._uniform[k] != 0 for k in _OPTIONAL)

    @property
    def has_shared_states(self) -> bool:
        """True when some tape keeps its step's input or output (states shared with tapes)."""
        return any(v is not None for v in self._flags.values())

    @property
    def is_uniform(self) -> bool:
        """True when every field was given as a single number."""
        return all(self._uniform[k] is not None for k in _FIELDS)

    # -- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The JSON document of this chain (uniform fields stay single numbers)."""
        doc = {"format": "revolve-chain", "version": 1, "n_steps": self.n_steps}
        for name in _FIELDS:
            u = self._uniform[name]
            doc[name] = u if u is not None else self._arrays[name].tolist()
        for name in _OPTIONAL:  # written only when modelled (record_overhead: when it differs)
            u = self._uniform[name]
            if name == "record_overhead" and np.array_equal(self.values(name), self.values("forward_overhead")):
                continue
            if u != 0:
                doc[name] = u if u is not None else self._arrays[name].tolist()
        for name in _FLAGS:  # written only when set, so chains without them read as before
            arr = self._flags[name]
            if arr is not None:
                doc[name] = bool(arr[0]) if arr.all() else arr.tolist()
        return doc

    def to_json(self) -> str:
        """The chain as a JSON string."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, source: str | bytes | dict | os.PathLike) -> "Chain":
        """Build a chain from a JSON string, a parsed dict, or a path to a JSON file.

        Raises:
            ValueError: the document is not a revolve-chain document or a field is invalid.
        """
        where = "revolve.Chain.from_json"
        if isinstance(source, os.PathLike) or (isinstance(source, str) and not source.lstrip().startswith("{")):
            try:
                with open(source, encoding="utf-8") as f:
                    source = f.read()
            except OSError as e:
                raise ValueError(f"{where}: cannot read chain file {os.fspath(source)!r}: {e.strerror}") from None
        if isinstance(source, (str, bytes)):
            try:
                source = json.loads(source)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(source, dict):
            raise ValueError(f"{where}: a chain document must be a JSON object, got {type(source).__name__}")
        if source.get("format") != "revolve-chain":
            raise ValueError(f"{where}: 'format' must be 'revolve-chain', got {source.get('format')!r}")
        if source.get("version") != 1:
            raise ValueError(f"{where}: unsupported version {source.get('version')!r}; this revolve reads version 1")
        missing = [k for k in _FIELDS if k not in source]
        if missing:
            raise ValueError(f"{where}: missing field(s) {missing}")
        flags = {k: source[k] for k in _FLAGS + _OPTIONAL if k in source}
        return cls(n_steps=source.get("n_steps"), **{k: source[k] for k in _FIELDS}, **flags)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Chain):
            return NotImplemented
        return self.n_steps == other.n_steps and all(
            np.array_equal(self.values(k), other.values(k)) for k in _NUMERIC
        ) and all(np.array_equal(self.holds(k), other.holds(k)) for k in _FLAGS)

    __hash__ = None  # mutable-free but array-valued; equality is by value

    def __repr__(self) -> str:
        parts = []
        for name in _FIELDS:
            u = self._uniform[name]
            parts.append(f"{name}={u!r}" if u is not None else f"{name}=[{len(self._arrays[name])} values]")
        for name in _OPTIONAL:
            u = self._uniform[name]
            if name == "record_overhead" and np.array_equal(self.values(name), self.values("forward_overhead")):
                continue
            if u != 0:
                parts.append(f"{name}={u!r}" if u is not None else f"{name}=[{len(self._arrays[name])} values]")
        for name in _FLAGS:
            arr = self._flags[name]
            if arr is not None:
                parts.append(f"{name}=True" if arr.all() else f"{name}=[{int(arr.sum())} of {len(arr)} steps]")
        return f"Chain(n_steps={self.n_steps}, {', '.join(parts)})"
