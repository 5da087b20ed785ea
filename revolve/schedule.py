"""Schedules: lazy, re-iterable sequences of actions."""

from __future__ import annotations

import itertools
import json
import os
from typing import Callable, Iterable, Iterator

from ._check import check_int
from ._io import atomic_file
from .actions import Action, action_from_json

__all__ = ["Schedule"]

FORMAT = "revolve-schedule"
VERSION = 1


class Schedule:
    """A lazy iterable of actions for a chain of ``n_steps`` steps.

    Planners return schedules whose actions are generated afresh on each iteration, so a schedule of
    10^6 steps never holds a list of its actions. ``Schedule.from_actions`` wraps a list (hand-written
    or loaded from JSON).

    Arguments:
        factory: a callable returning a new iterator of actions each time it is called.
        n_steps: the number of steps the schedule differentiates.
        kind: a short name of the planner ("binomial", "periodic", ...).
        params: the planner's parameters, shown in the repr and kept in JSON.

    Example:
        >>> from revolve import binomial
        >>> s = binomial(4, snapshots=2)
        >>> s
        Schedule(kind='binomial', n_steps=4, snapshots=2)
        >>> list(s)[:3]
        [Snapshot(index=0, storage='ram'), Advance(start=0, stop=1), Snapshot(index=1, storage='ram')]
    """

    __slots__ = ("_factory", "n_steps", "kind", "params")

    def __init__(self, factory: Callable[[], Iterator[Action]], *, n_steps: int, kind: str = "custom", params: dict | None = None):
        self._factory = factory
        self.n_steps = check_int("revolve.Schedule", "n_steps", n_steps, minimum=1)
        self.kind = kind
        self.params = dict(params or {})

    @classmethod
    def from_actions(cls, actions: Iterable[Action], *, n_steps: int, kind: str = "custom", params: dict | None = None) -> "Schedule":
        """A schedule over a fixed list of actions (kept as a tuple)."""
        frozen = tuple(actions)
        return cls(lambda: iter(frozen), n_steps=n_steps, kind=kind, params=params)

    def __iter__(self) -> Iterator[Action]:
        return iter(self._factory())

    def head(self, k: int) -> list[Action]:
        """The first ``k`` actions, generating no more than those."""
        return list(itertools.islice(self, check_int("revolve.Schedule.head", "k", k, minimum=0)))

    def stats(self, chain=None):
        """Replay the schedule in the simulator and return its ``SimulationStats``."""
        from .simulator import simulate

        return simulate(self, chain)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"Schedule(kind={self.kind!r}, n_steps={self.n_steps}{extra})"

    # -- JSON -----------------------------------------------------------------------------------
    def _header(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "n_steps": self.n_steps, "kind": self.kind, "params": self.params}

    def to_json(self) -> str:
        """The document ``{"format": "revolve-schedule", "version": 1, "n_steps": n, "actions": [...]}``."""
        doc = self._header()
        doc["actions"] = [a.to_json() for a in self]
        return json.dumps(doc)

    def save(self, path: str | os.PathLike) -> None:
        """Write the JSON document to ``path``, streaming the actions; the file appears only when complete.

        The document is written to a temporary file beside ``path`` and renamed over it, so an error or an
        interrupt leaves no half-written file behind.
        """
        with atomic_file(path, "w", encoding="utf-8") as f:
            head = json.dumps(self._header())
            f.write(head[:-1] + ', "actions": [')
            dumps = json.dumps
            first = True
            for a in self:
                if not first:
                    f.write(",\n")
                f.write(dumps(a.to_json()))
                first = False
            f.write("]}\n")

    @classmethod
    def from_json(cls, source: str | bytes | dict) -> "Schedule":
        """Build a schedule from a JSON string or an already parsed document.

        Raises:
            ValueError: malformed JSON, a wrong format or version, a bad ``n_steps``, or a bad action
                (naming its position).
        """
        where = "revolve.Schedule.from_json"
        if isinstance(source, (str, bytes)):
            try:
                source = json.loads(source)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(source, dict):
            raise ValueError(f"{where}: a schedule document must be a JSON object, got {type(source).__name__}")
        if source.get("format") != FORMAT:
            raise ValueError(f"{where}: 'format' must be {FORMAT!r}, got {source.get('format')!r}")
        if source.get("version") != VERSION:
            raise ValueError(f"{where}: unsupported version {source.get('version')!r}; this revolve reads version {VERSION}")
        n = source.get("n_steps")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{where}: 'n_steps' must be an integer >= 1, got {n!r}")
        actions = source.get("actions")
        if not isinstance(actions, list):
            raise ValueError(f"{where}: 'actions' must be a list, got {type(actions).__name__}")
        parsed = []
        for k, obj in enumerate(actions):
            parsed.append(action_from_json(obj, where=f"{where}: action #{k}"))
        kind = source.get("kind", "custom")
        params = source.get("params") or {}
        if not isinstance(kind, str) or not isinstance(params, dict):
            raise ValueError(f"{where}: 'kind' must be a string and 'params' an object")
        return cls.from_actions(parsed, n_steps=n, kind=kind, params=params)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Schedule":
        """Read a schedule saved with ``save`` (or any revolve-schedule JSON file)."""
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"revolve.Schedule.load: cannot read schedule file {os.fspath(path)!r}: {e.strerror}") from None
        return cls.from_json(text)
