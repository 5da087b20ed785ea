"""Schedules: lazy, re-iterable sequences of actions."""

from __future__ import annotations

import itertools
import json
import os
from typing import Callable, Iterable, Iterator

from ._check import check_int
from ._io import atomic_file
from .actions import (
    Action,
    Advance,
    Record,
    Restore,
    Reverse,
    Snapshot,
    _advance,
    _discard,
    _record,
    _restore,
    _reverse,
    _snapshot,
    action_from_json,
)

__all__ = ["Schedule"]

FORMAT = "revolve-schedule"
VERSION = 1  # an action list
PLANNER_VERSION = 2  # a planner's name and parameters, regenerated on load


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
    def _header(self, version: int) -> dict:
        return {"format": FORMAT, "version": version, "n_steps": self.n_steps, "kind": self.kind, "params": self.params}

    def _regenerable(self) -> bool:
        """True when ``kind`` and ``params`` name a planner that rebuilds this schedule (checked on its first actions)."""
        if self.kind not in _PLANNERS:
            return False
        try:
            again = _regenerate(self.kind, self.n_steps, self.params, where="revolve.Schedule.save")
        except (TypeError, ValueError):
            return False
        return again.head(_SAME_HEAD) == self.head(_SAME_HEAD)

    def _compact(self, expand: bool | None) -> bool:
        if expand is None:
            return self._regenerable()
        if not isinstance(expand, bool):
            raise TypeError(f"revolve.Schedule.save: expand must be True, False or None, got {expand!r}")
        if not expand and not self._regenerable():
            raise ValueError(
                f"revolve.Schedule.save: expand=False needs a planner's schedule ({', '.join(sorted(_PLANNERS))}), "
                f"got kind={self.kind!r} params={self.params!r}; use expand=True or None"
            )
        return not expand

    def to_json(self, *, expand: bool | None = None) -> str:
        """The schedule as a JSON document.

        A planner's schedule (binomial, periodic, store_all, multilevel, online) is written compactly, as what regenerates it:
        ``{"format": "revolve-schedule", "version": 2, "n_steps": n, "kind": ..., "params": ..., "revolve": ...}``
        (a few hundred bytes whatever n). Any other schedule, or ``expand=True``, is written as its action list:
        ``{"format": "revolve-schedule", "version": 1, "n_steps": n, "kind": ..., "params": ..., "actions": [...]}``,
        the format for hand-made and third-party schedules.

        Arguments:
            expand: None (default) compact where possible; True always the action list; False compact or raise.
        """
        if self._compact(expand):
            doc = self._header(PLANNER_VERSION)
            doc["revolve"] = _version()
            return json.dumps(doc)
        doc = self._header(VERSION)
        doc["actions"] = [a.to_json() for a in self]
        return json.dumps(doc)

    def save(self, path: str | os.PathLike, *, expand: bool | None = None) -> None:
        """Write the JSON document of ``to_json`` to ``path``; the file appears only when complete.

        An action list is streamed; the document is written to a temporary file beside ``path`` and renamed
        over it, so an error or an interrupt leaves no half-written file behind. The file gets the usual
        mode (0666 less the umask).

        Example:
            >>> import os, tempfile
            >>> from revolve import binomial
            >>> path = os.path.join(tempfile.mkdtemp(), "s.json")
            >>> binomial(10**6, snapshots=20).save(path)
            >>> os.path.getsize(path) < 200
            True
        """
        if self._compact(expand):
            with atomic_file(path, "w", encoding="utf-8") as f:
                f.write(self.to_json(expand=False) + "\n")
            return
        with atomic_file(path, "w", encoding="utf-8") as f:
            head = json.dumps(self._header(VERSION))
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
    def from_json(cls, source: str | bytes | dict, *, n_steps: int | None = None) -> "Schedule":
        """Build a schedule from a JSON string or an already parsed document (either format of ``to_json``).

        A compact document is regenerated by its planner lazily (nothing is expanded until iterated).

        Arguments:
            source: the document.
            n_steps: if given, the number of steps the schedule must have; checked before the actions are read.

        Raises:
            ValueError: malformed JSON (or nested too deep), a wrong format or version, a bad ``n_steps``, an
                unknown planner, or a bad action (naming its position).
        """
        where = "revolve.Schedule.from_json"
        if isinstance(source, (str, bytes)):
            try:
                source = json.loads(source)
            except RecursionError:
                raise ValueError(f"{where}: the JSON document is nested too deeply to be a schedule") from None
            except ValueError as e:  # JSONDecodeError, undecodable bytes, or integers past Python's digit limit
                raise ValueError(f"{where}: not valid JSON ({_short(e)})") from None
        if not isinstance(source, dict):
            raise ValueError(f"{where}: a schedule document must be a JSON object, got {type(source).__name__}")
        if source.get("format") != FORMAT:
            raise ValueError(f"{where}: 'format' must be {FORMAT!r}, got {_short(source.get('format'))}")
        version = source.get("version")
        if version not in (VERSION, PLANNER_VERSION) or isinstance(version, bool):
            raise ValueError(f"{where}: unsupported version {_short(version)}; this revolve reads versions "
                             f"{VERSION} (an action list) and {PLANNER_VERSION} (a planner and its parameters)")
        n = source.get("n_steps")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{where}: 'n_steps' must be an integer >= 1, got {_short(n)}")
        if n_steps is not None and n != n_steps:
            raise ValueError(f"{where}: the schedule has n_steps={n} but n_steps={n_steps} is expected")
        kind = source.get("kind", "custom")
        params = source.get("params") or {}
        if not isinstance(kind, str) or not isinstance(params, dict):
            raise ValueError(f"{where}: 'kind' must be a string and 'params' an object")
        if version == PLANNER_VERSION:
            return _regenerate(kind, n, params, where=where)
        actions = source.get("actions")
        if not isinstance(actions, list):
            raise ValueError(f"{where}: 'actions' must be a list, got {type(actions).__name__}")
        parsed = []
        for k, obj in enumerate(actions):
            parsed.append(action_from_json(obj, where=f"{where}: action #{k}"))
        return cls.from_actions(parsed, n_steps=n, kind=kind, params=params)

    @classmethod
    def load(cls, path: str | os.PathLike, *, n_steps: int | None = None) -> "Schedule":
        """Read a schedule saved with ``save`` (or any revolve-schedule JSON file); see ``from_json``."""
        where = "revolve.Schedule.load"
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ValueError(f"{where}: cannot read schedule file {os.fspath(path)!r}: {e.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{where}: {os.fspath(path)!r} is not a schedule: not UTF-8 text (byte {e.start} is "
                             f"{data[e.start:e.start + 1]!r}); a schedule file is JSON written by Schedule.save") from None
        try:
            return cls.from_json(text, n_steps=n_steps)
        except ValueError as e:
            raise ValueError(f"{e} (in {os.fspath(path)!r})") from None


_SAME_HEAD = 256  # actions compared before a schedule is written as its planner's parameters


def _shifted(actions: Iterable[Action], off: int, storage: str | None = None) -> Iterator[Action]:
    """The actions with every step and state index moved by ``off`` (a sub-schedule placed at x_off), their
    snapshots into ``storage`` when given (else each keeps its own); used by the online and multilevel planners."""
    for a in actions:
        cls = a.__class__
        if cls is Advance:
            yield _advance(a.start + off, a.stop + off)
        elif cls is Record:
            yield _record(a.step + off)
        elif cls is Reverse:
            yield _reverse(a.step + off)
        elif cls is Restore:
            yield _restore(a.index + off)
        elif cls is Snapshot:
            yield _snapshot(a.index + off, a.storage if storage is None else storage)
        else:
            yield _discard(a.index + off)


def _short(value, limit: int = 80) -> str:
    """repr of ``value`` cut to ``limit`` characters (a hostile document may hold huge values)."""
    text = repr(value) if not isinstance(value, BaseException) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _version() -> str:
    from . import __version__

    return __version__


def _binomial(n: int, params: dict) -> "Schedule":
    from .binomial import binomial

    return binomial(n, **params)


def _periodic(n: int, params: dict) -> "Schedule":
    from .baselines import periodic

    return periodic(n, **params)


def _store_all(n: int, params: dict) -> "Schedule":
    from .baselines import store_all

    if params:
        raise TypeError(f"store_all takes no parameters, got {sorted(params)}")
    return store_all(n)


def _multilevel(n: int, params: dict) -> "Schedule":
    from .multilevel import multilevel

    kw = dict(params)
    io = kw.pop("io_cost")
    if not isinstance(io, dict):
        raise TypeError(f"io_cost must be an object of level -> [write, read], got {_short(io)}")
    # JSON has no tuples: a level's [write, read] list is the (write, read) pair multilevel takes
    return multilevel(n, io_cost={k: tuple(v) if isinstance(v, list) else v for k, v in io.items()}, **kw)


def _online(n: int, params: dict) -> "Schedule":
    from .online import online

    kw = dict(params)
    last = kw.pop("last_step_known")
    return online(**kw).schedule(n, last_step_known=last)


# kind -> (the planner's parameter names, those it may leave out, the function rebuilding the schedule)
_PLANNERS: dict[str, tuple[tuple[str, ...], tuple[str, ...], Callable[[int, dict], "Schedule"]]] = {
    "binomial": (("snapshots",), (), _binomial),
    "periodic": (("every",), (), _periodic),
    "store_all": ((), (), _store_all),
    "multilevel": (("slots", "io_cost", "method"), ("forward_cost", "backward_cost"), _multilevel),
    "online": (("snapshots", "algorithm", "last_step_known"), (), _online),
}


def _regenerate(kind: str, n: int, params: dict, *, where: str) -> "Schedule":
    """The planner schedule that ``kind`` and ``params`` describe, with argument errors naming ``where``."""
    if kind not in _PLANNERS:
        raise ValueError(f"{where}: kind {_short(kind)} names no planner; a version {PLANNER_VERSION} document needs "
                         f"one of {', '.join(sorted(_PLANNERS))} (other schedules are saved as version {VERSION}, "
                         f"an action list)")
    names, optional, build = _PLANNERS[kind]
    if not set(names) <= set(params) <= set(names) | set(optional):
        extra = f" (and optionally {list(optional)})" if optional else ""
        raise ValueError(f"{where}: the {kind} planner takes params {list(names)}{extra}, got {sorted(params)}")
    try:
        return build(n, params)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: bad {kind} params {_short(params)}: {e}") from None
