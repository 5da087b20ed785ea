"""revolve schedules in checkpoint_schedules' vocabulary, for pyadjoint and tlm_adjoint.

pyadjoint and tlm_adjoint (Firedrake's adjoints) drive their checkpointing with a
``checkpoint_schedules.CheckpointSchedule``: an iterator of ``Forward``, ``Reverse``, ``Copy``, ``Move``,
``EndForward`` and ``EndReverse`` actions over the storage types RAM, DISK and WORK.
``as_checkpoint_schedule(schedule)`` wraps any revolve schedule (binomial, optimal, periodic, store-all, online,
multi-level with ``Snapshot(storage="disk")``) as such an object, a subclass of the peer's base class, so
those codes run our plans unchanged::

    from revolve.integrations.checkpoint_schedules import as_checkpoint_schedule
    cp_schedule = as_checkpoint_schedule(revolve.binomial(n, snapshots=s))   # wherever a schedule is taken

checkpoint_schedules is optional (``pip install checkpoint-schedules``); without it ``as_checkpoint_schedule``
raises ImportError saying so, while ``translate`` (the same actions as plain tuples) needs nothing.

How revolve's actions map (NOTE [ Schedule invariants ] in revolve/actions.py):

1. ``Snapshot(i, level)`` then ``Advance(i, j)``: ``Forward(i, j, write_ics=True, write_adj_deps=False,
   level)``, the checkpoint keyed by i, as the peer keys it by the forward's start.
2. ``Advance(i, j)`` alone: ``Forward(i, j, False, False, WORK)``.
3. ``Record(i)``: the taped step, ``Forward(i, i + 1, False, True, ...)``: in WORK when ``Reverse(i)`` comes
   next (the peer's working data holds one step's tape), else in RAM under key i (the tape outlives
   later forwards, which clear WORK), loaded back by ``Move(i, RAM, WORK)`` right before its reverse.
4. ``Restore(i)``: ``Copy(i, level, WORK)``, or ``Move`` at the last restore before ``Discard(i)``
   (the peer has no delete: a moved checkpoint is gone), after which that ``Discard`` says nothing more.
5. ``Reverse(i)``: ``Reverse(i + 1, i, clear_adj_deps=True)``; ``EndForward`` comes right before the first
   reverse or restore (the forward has reached n) and ``EndReverse`` after the last.
6. A snapshot never restored (an online forward drops snapshots as steps arrive) is not written, and the
   advances around it join into one ``Forward``: in the peer's model a checkpoint's restart data covers only
   the forward it was written with, so each checkpoint that is read is written over the whole forward up to
   the next one (``_readable``). Online schedules (``revolve.online(...).schedule(n)``) therefore translate
   once n is known; a forward whose n is still unknown cannot drop a checkpoint that way.

The stream is translated once, when iteration starts, since rule 4 needs to know which restore is the
last (a list of the schedule's actions: O(n log n) for binomial).
"""

from __future__ import annotations

from typing import Iterable, Iterator

from revolve.actions import Advance, Discard, Record, Restore, Reverse, Snapshot

__all__ = ["translate", "as_checkpoint_schedule", "RevolveCheckpointSchedule"]

_INSTALL = "pip install checkpoint-schedules"
_DEFAULT_LEVELS = {"ram": "RAM", "disk": "DISK"}


def _level(where: str, storage: str, levels: dict) -> str:
    try:
        return levels[storage]
    except KeyError:
        raise ValueError(f"{where}: Snapshot storage {storage!r} has no checkpoint_schedules storage type; pass "
                         f"levels={{{storage!r}: 'RAM' or 'DISK', ...}} (known: {sorted(levels)})") from None


def _readable(acts: list) -> list:
    """Rule 6: the actions without the snapshots that are never restored (and their discards), with the
    advances that follow each other joined into one.

    An online forward writes snapshots it later drops unread; in the peer's model a checkpoint's restart data
    covers the forward it was written with (``Forward(n0, n1, write_ics=True)``: steps n0..n1-1), and a restore
    must reach the adjoint from there, so a held checkpoint's forward has to run on to the next one that is read.
    """
    unread: set[int] = set()  # positions of snapshots with no restore before their discard (or the end)
    open_at: dict[int, int] = {}
    for pos, a in enumerate(acts):
        if isinstance(a, Snapshot):
            open_at[a.index] = pos
            unread.add(pos)
        elif isinstance(a, Restore) and a.index in open_at:
            unread.discard(open_at[a.index])
        elif isinstance(a, Discard) and a.index in open_at:
            if open_at[a.index] in unread:
                unread.add(pos)
            del open_at[a.index]
    out: list = []
    for pos, a in enumerate(acts):
        if pos in unread:
            continue
        if isinstance(a, Advance) and out and isinstance(out[-1], Advance) and out[-1].stop == a.start:
            out[-1] = Advance(out[-1].start, a.stop)
        else:
            out.append(a)
    return out


def translate(actions: Iterable, *, levels: dict | None = None) -> Iterator[tuple]:
    """revolve actions as checkpoint_schedules actions, each a tuple ``(name, *args)``.

    ``name`` is "Forward" (n0, n1, write_ics, write_adj_deps, storage), "Reverse" (n1, n0, clear_adj_deps),
    "Copy" or "Move" (n, from_storage, to_storage), "EndForward" or "EndReverse"; storages are the names
    "RAM", "DISK", "WORK". ``levels`` maps revolve storage levels to "RAM" or "DISK" (default: ram, disk).

    Raises:
        ValueError: an action sequence the peer's vocabulary cannot say (a snapshot not followed by an
            advance from it, an unknown storage level).

    Example:
        >>> import revolve
        >>> list(translate(revolve.binomial(2, snapshots=1)))[:3]
        [('Forward', 0, 1, True, False, 'RAM'), ('Forward', 1, 2, False, True, 'WORK'), ('EndForward',)]
    """
    where = "revolve.integrations.checkpoint_schedules.translate"
    levels = dict(_DEFAULT_LEVELS if levels is None else levels)
    for k, v in levels.items():
        if v not in ("RAM", "DISK"):
            raise ValueError(f"{where}: levels[{k!r}] must be 'RAM' or 'DISK', got {v!r}")
    acts = _readable(list(actions))
    # rule 4: the restore of a snapshot's lifetime that the next Discard of that index follows
    last_restore: set[int] = set()
    pending: dict[int, int] = {}
    for pos, a in enumerate(acts):
        if isinstance(a, Restore):
            pending[a.index] = pos
        elif isinstance(a, Discard):
            last_restore.add(pending.pop(a.index))  # every snapshot left is restored (``_readable``)
        elif isinstance(a, Snapshot):
            pending.pop(a.index, None)
    stored: dict[int, str] = {}  # index -> storage type of the checkpoint written at it
    tapes: set[int] = set()  # tapes parked in RAM
    started = False
    pos = 0
    while pos < len(acts):
        a = acts[pos]
        nxt = acts[pos + 1] if pos + 1 < len(acts) else None
        if not started and isinstance(a, (Reverse, Restore)):  # the forward is over (rule 5)
            started = True
            yield ("EndForward",)
        if isinstance(a, Snapshot):
            if not (isinstance(nxt, Advance) and nxt.start == a.index):
                raise ValueError(f"{where}: {a!r} at position {pos} is followed by {nxt!r}; checkpoint_schedules "
                                 f"writes a checkpoint only with a forward advance from it")
            st = _level(where, a.storage, levels)
            stored[a.index] = st
            yield ("Forward", a.index, nxt.stop, True, False, st)
            pos += 2
            continue
        if isinstance(a, Advance):
            yield ("Forward", a.start, a.stop, False, False, "WORK")
        elif isinstance(a, Record):
            if isinstance(nxt, Reverse) and nxt.step == a.step:
                yield ("Forward", a.step, a.step + 1, False, True, "WORK")
            else:
                if stored.get(a.step) == "RAM":
                    raise ValueError(f"{where}: the tape of step {a.step} is kept while the checkpoint of x_{a.step} "
                                     f"is still stored in RAM; both would take key {a.step}")
                tapes.add(a.step)
                yield ("Forward", a.step, a.step + 1, False, True, "RAM")
        elif isinstance(a, Reverse):
            if a.step in tapes:
                tapes.discard(a.step)
                yield ("Move", a.step, "RAM", "WORK")
            yield ("Reverse", a.step + 1, a.step, True)
        elif isinstance(a, Restore):
            st = stored[a.index]
            if pos in last_restore:
                del stored[a.index]
                yield ("Move", a.index, st, "WORK")
            else:
                yield ("Copy", a.index, st, "WORK")
        elif isinstance(a, Discard):
            pass  # its checkpoint was moved out at the last restore (rule 4)
        else:
            raise TypeError(f"{where}: unexpected action {a!r}")
        pos += 1
    if not started:
        yield ("EndForward",)
    yield ("EndReverse",)


def _peer():
    try:
        import checkpoint_schedules
        from checkpoint_schedules import schedule as sched_mod
    except ImportError as exc:
        raise ImportError(f"revolve.integrations.checkpoint_schedules needs the checkpoint_schedules package: "
                          f"{_INSTALL}") from exc
    return checkpoint_schedules, sched_mod


_CLASS = None


def _make_class():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    cs, sm = _peer()

    class RevolveCheckpointSchedule(cs.CheckpointSchedule):
        """A revolve schedule as a ``checkpoint_schedules.CheckpointSchedule`` (one forward and one reverse)."""

        def __init__(self, schedule, *, levels: dict | None = None):
            super().__init__(schedule.n_steps)
            self._schedule = schedule
            self._levels = levels
            self._exhausted = False
            self._used = {t for t in (_level("revolve.integrations.checkpoint_schedules", a.storage,
                                                dict(_DEFAULT_LEVELS if levels is None else levels))
                                      for a in schedule if isinstance(a, Snapshot))}
            if any(isinstance(a, Record) for a in schedule):
                self._used.add("WORK")
            if self._uses_ram_tapes():
                self._used.add("RAM")

        def _uses_ram_tapes(self) -> bool:
            prev = None
            for a in self._schedule:
                if isinstance(prev, Record) and not (isinstance(a, Reverse) and a.step == prev.step):
                    return True
                prev = a
            return False

        def _iterator(self):
            S = sm.StorageType
            for name, *args in translate(self._schedule, levels=self._levels):
                if name == "Forward":
                    n0, n1, ics, adj, st = args
                    self._n = n1
                    yield sm.Forward(n0, n1, ics, adj, S[st])
                elif name == "Reverse":
                    n1, n0, clear = args
                    self._r += n1 - n0
                    yield sm.Reverse(n1, n0, clear)
                elif name in ("Copy", "Move"):
                    n, fr, to = args
                    if not (name == "Move" and fr == "RAM" and n not in self._checkpoints_seen):
                        self._n = n
                    yield (sm.Copy if name == "Copy" else sm.Move)(n, S[fr], S[to])
                elif name == "EndForward":
                    yield sm.EndForward()
                else:
                    self._exhausted = True
                    yield sm.EndReverse()

        @property
        def _checkpoints_seen(self):
            # indices whose checkpoint (not tape) may be moved: every Snapshot index
            if not hasattr(self, "_snap_idx"):
                self._snap_idx = {a.index for a in self._schedule if isinstance(a, Snapshot)}
            return self._snap_idx

        @property
        def is_exhausted(self) -> bool:
            return self._exhausted

        def uses_storage_type(self, storage_type) -> bool:
            return storage_type.name in self._used

    _CLASS = RevolveCheckpointSchedule
    return _CLASS


def as_checkpoint_schedule(schedule, *, levels: dict | None = None):
    """Wrap a revolve ``Schedule`` as a ``checkpoint_schedules.CheckpointSchedule``.

    Arguments:
        schedule: any revolve schedule (its actions are translated by ``translate``).
        levels: revolve storage level -> "RAM" or "DISK" (default ram -> RAM, disk -> DISK).

    Returns:
        A ``RevolveCheckpointSchedule`` (subclass of the peer's ``CheckpointSchedule``): ``max_n`` is the
        schedule's n, ``n`` and ``r`` follow the forward and the adjoint, ``is_exhausted`` is true after
        ``EndReverse``, ``uses_storage_type`` names the storage types its actions use.

    Raises:
        ImportError: checkpoint_schedules is not installed (``pip install checkpoint-schedules``).
    """
    return _make_class()(schedule, levels=levels)


def __getattr__(name):
    if name == "RevolveCheckpointSchedule":
        return _make_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
