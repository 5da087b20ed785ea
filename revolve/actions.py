"""The one action vocabulary of revolve.

Every planner yields these actions, the simulator replays them, the executor and the PyTorch adapter
run them, and JSON stores them. Steps are numbered 0..n-1 and states 0..n; step ``i`` maps state
``x_i`` to ``x_{i+1}``.

NOTE [ Schedule invariants ]
  1. The working state starts as x_0; nothing is stored and no tape is live.
  2. ``Advance(a, b)`` needs the working state to be x_a, with 0 <= a < b <= n; it becomes x_b.
  3. ``Snapshot(i)`` needs the working state to be x_i and x_i not already stored.
  4. ``Restore(i)`` and ``Discard(i)`` need x_i to be stored.
  5. ``Record(i)`` needs the working state to be x_i, step i not yet reversed and not already taped;
     the working state becomes x_{i+1} and the tape of step i stays live until ``Reverse(i)``.
  6. ``Reverse(i)`` needs the tape of step i and must come in the order n-1, n-2, ..., 0. After a
     reverse the working state is unknown until a ``Restore``: a state kept only as the working state
     across a reverse would be memory that nothing counts.
  7. A complete schedule reverses every step exactly once. Snapshots still stored at the end are
     freed by whoever runs it.
  8. Memory counted by the simulator (and by ``revolve.optimal``) is the bytes of the stored states
     plus the bytes of the live tapes. A state that a live tape keeps (``Chain.tape_holds_input`` /
     ``tape_holds_output``) is held too, and a state is counted once however many of snapshots and
     tapes hold it. Unless the chain models working memory (``forward_overhead``, ``backward_overhead``,
     ``adjoint_bytes``), the working state, the adjoint and temporaries are not counted; when it does,
     the adjoint in flight is held, and while a step runs its overhead and its input (unless held) count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from ._check import check_int

__all__ = [
    "Advance",
    "Snapshot",
    "Restore",
    "Discard",
    "Record",
    "Reverse",
    "Action",
    "action_from_json",
]


@dataclass(frozen=True, slots=True)
class Advance:
    """Run steps ``start .. stop-1`` without recording; the working state goes from x_start to x_stop."""

    start: int
    stop: int

    def __post_init__(self):
        check_int("revolve.Advance", "start", self.start, minimum=0)
        check_int("revolve.Advance", "stop", self.stop, minimum=0)

    def to_json(self) -> dict:
        return {"op": "advance", "start": self.start, "stop": self.stop}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Store a copy of the working state, which must be x_index, in the storage level ``storage``."""

    index: int
    storage: str = "ram"

    def __post_init__(self):
        check_int("revolve.Snapshot", "index", self.index, minimum=0)
        if not isinstance(self.storage, str) or not self.storage:
            error = ValueError if isinstance(self.storage, str) else TypeError
            raise error(f"revolve.Snapshot: storage must be a non-empty string naming a storage level "
                        f"('ram', or a key of gradient's storage=), got {self.storage!r}")

    def to_json(self) -> dict:
        return {"op": "snapshot", "index": self.index, "storage": self.storage}


@dataclass(frozen=True, slots=True)
class Restore:
    """Make the stored x_index the working state; it stays stored."""

    index: int

    def __post_init__(self):
        check_int("revolve.Restore", "index", self.index, minimum=0)

    def to_json(self) -> dict:
        return {"op": "restore", "index": self.index}


@dataclass(frozen=True, slots=True)
class Discard:
    """Free the stored x_index."""

    index: int

    def __post_init__(self):
        check_int("revolve.Discard", "index", self.index, minimum=0)

    def to_json(self) -> dict:
        return {"op": "discard", "index": self.index}


@dataclass(frozen=True, slots=True)
class Record:
    """Run step ``step`` while recording its tape; the working state goes from x_step to x_{step+1}."""

    step: int

    def __post_init__(self):
        check_int("revolve.Record", "step", self.step, minimum=0)

    def to_json(self) -> dict:
        return {"op": "record", "step": self.step}


@dataclass(frozen=True, slots=True)
class Reverse:
    """Run the backward of step ``step`` from its tape (adjoint of x_{step+1} -> adjoint of x_step)."""

    step: int

    def __post_init__(self):
        check_int("revolve.Reverse", "step", self.step, minimum=0)

    def to_json(self) -> dict:
        return {"op": "reverse", "step": self.step}


Action = Union[Advance, Snapshot, Restore, Discard, Record, Reverse]

# op name -> (class, the fields its JSON object carries, the fields that may be omitted)
_JSON_FORMS: dict[str, tuple[type, tuple[str, ...], tuple[str, ...]]] = {
    "advance": (Advance, ("start", "stop"), ()),
    "snapshot": (Snapshot, ("index", "storage"), ("storage",)),
    "restore": (Restore, ("index",), ()),
    "discard": (Discard, ("index",), ()),
    "record": (Record, ("step",), ()),
    "reverse": (Reverse, ("step",), ()),
}


def action_from_json(obj: Any, *, where: str = "revolve.action_from_json") -> Action:
    """Build an action from its JSON object, e.g. ``{"op": "advance", "start": 0, "stop": 4}``.

    Raises:
        ValueError: unknown op, missing or unexpected fields, or a field of the wrong type.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: an action must be a JSON object, got {obj!r}")
    op = obj.get("op")
    form = _JSON_FORMS.get(op) if isinstance(op, str) else None
    if form is None:
        raise ValueError(
            f"{where}: unknown action op {op!r} in {obj!r}; allowed: {', '.join(sorted(_JSON_FORMS))}"
        )
    cls, fields, optional = form
    extra = set(obj) - set(fields) - {"op"}
    if extra:
        raise ValueError(f"{where}: unexpected field(s) {sorted(extra)} in {obj!r}; {op} takes {list(fields)}")
    kwargs = {}
    for name in fields:
        if name not in obj:
            if name in optional:
                continue
            raise ValueError(f"{where}: field {name!r} missing in {obj!r}")
        value = obj[name]
        if name == "storage":
            if not isinstance(value, str) or not value:
                raise ValueError(f"{where}: field 'storage' must be a non-empty string, got {value!r}")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{where}: field {name!r} must be a non-negative integer, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


# Fast constructors for the planners' hot loops. A frozen dataclass's generated __init__ sets each
# field through object.__setattr__, which costs about as much as the rest of a planner step; these
# set the slots directly and build objects equal to what the public constructors build.
_new = object.__new__
_set_start = Advance.__dict__["start"].__set__
_set_stop = Advance.__dict__["stop"].__set__
_set_record_step = Record.__dict__["step"].__set__
_set_reverse_step = Reverse.__dict__["step"].__set__
_set_restore_index = Restore.__dict__["index"].__set__
_set_snapshot_index = Snapshot.__dict__["index"].__set__
_set_snapshot_storage = Snapshot.__dict__["storage"].__set__
_set_discard_index = Discard.__dict__["index"].__set__


def _advance(start: int, stop: int) -> Advance:
    """Advance(start, stop), built without the dataclass __init__."""
    a = _new(Advance)
    _set_start(a, start)
    _set_stop(a, stop)
    return a


def _record(step: int) -> Record:
    """Record(step), built without the dataclass __init__."""
    a = _new(Record)
    _set_record_step(a, step)
    return a


def _reverse(step: int) -> Reverse:
    """Reverse(step), built without the dataclass __init__."""
    a = _new(Reverse)
    _set_reverse_step(a, step)
    return a


def _restore(index: int) -> Restore:
    """Restore(index), built without the dataclass __init__."""
    a = _new(Restore)
    _set_restore_index(a, index)
    return a


def _snapshot(index: int, storage: str = "ram") -> Snapshot:
    """Snapshot(index, storage), built without the dataclass __init__."""
    a = _new(Snapshot)
    _set_snapshot_index(a, index)
    _set_snapshot_storage(a, storage)
    return a


def _discard(index: int) -> Discard:
    """Discard(index), built without the dataclass __init__."""
    a = _new(Discard)
    _set_discard_index(a, index)
    return a
