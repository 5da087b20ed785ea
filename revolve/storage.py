"""Snapshot storage backends for the executor: RAM and disk.

A backend stores a state (a pytree of arrays or tensors) under a step index and gives it back. What a
state's leaves are, and how they become bytes, is the engine's (NOTE [ The engine protocol ] in
revolve/engine.py): a backend made without one uses the ``revolve.ad`` engine, and the executor hands its
own engine to a backend that has none yet. The disk
backend writes each snapshot atomically (a temporary file renamed into place), checks a SHA-256 of its
bytes on every restore, and removes its run folder when closed. A run killed before it could close its
folder (SIGKILL, a power cut) leaves the folder behind; each run folder names its process in a file
``owner``, and the next ``DiskStorage`` in the same directory removes the folders of processes that are
gone (``remove_stale_runs``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import warnings
from typing import Any

import numpy as np

from ._io import atomic_file

__all__ = ["RAMStorage", "DiskStorage", "SnapshotCorrupted", "make_backend", "remove_stale_runs", "Terminated"]

_RUN_PREFIX = "revolve-run-"
_OWNER = "owner"  # file in a run folder: {"pid": ..., "host": ...} of the process writing it


class SnapshotCorrupted(RuntimeError):
    """A stored snapshot no longer matches what was written (checksum or format mismatch)."""


def _engine(engine):
    if engine is not None:
        return engine
    from .engine import NumpyEngine

    return NumpyEngine()


def state_nbytes(state) -> int:
    """Bytes of the arrays in a state."""
    from .ad import tree_flatten

    return int(sum(np.asarray(x).nbytes for x in tree_flatten(state)[0]))


class RAMStorage:
    """Keeps states in memory as the engine's snapshots, which a later step cannot alter (numpy: read-only
    copies; torch: the tensors themselves, their version counters checked when restored)."""

    def __init__(self, engine=None):
        self.engine = engine
        self._data: dict[int, Any] = {}

    def put(self, index: int, state) -> int:
        self.engine = _engine(self.engine)
        self._data[index] = self.engine.snapshot(state)
        return self.engine.state_bytes(state)

    def get(self, index: int):
        return self.engine.restore(self._data[index])

    def delete(self, index: int) -> None:
        del self._data[index]

    def close(self) -> None:
        self._data.clear()


class DiskStorage:
    """Writes states to files in a private folder under ``directory``; the folder is removed on ``close``.

    Each file holds a JSON header (dtypes and shapes) and the raw bytes of the arrays. It is written to a
    temporary name and renamed, so a crash never leaves a half-written snapshot under a valid name, and
    its SHA-256 (kept in memory) is checked when it is read back.
    """

    def __init__(self, directory: str | os.PathLike, engine=None):
        self.engine = engine
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise ValueError(f"revolve.DiskStorage: directory {directory!r} does not exist or is not a directory")
        removed = remove_stale_runs(directory)
        if removed:
            warnings.warn(f"revolve.DiskStorage: removed {len(removed)} run folder(s) left in {directory!r} by "
                          f"processes that no longer run: {', '.join(map(os.path.basename, removed[:3]))}"
                          f"{', ...' if len(removed) > 3 else ''}", stacklevel=2)
        try:
            self.root = tempfile.mkdtemp(prefix=_RUN_PREFIX, dir=directory)
            with open(os.path.join(self.root, _OWNER), "w", encoding="utf-8") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)
        except OSError as e:
            if getattr(self, "root", None):
                shutil.rmtree(self.root, ignore_errors=True)
            raise OSError(e.errno, f"revolve.gradient: cannot create a run folder for disk snapshots in "
                                   f"{directory!r}: {e.strerror}; give storage= a writable directory") from None
        self._meta: dict[int, tuple[str, str, Any]] = {}  # index -> (path, sha256, tree)

    def _path(self, index: int) -> str:
        return os.path.join(self.root, f"x{index}.state")

    def put(self, index: int, state) -> int:
        from .ad import tree_flatten

        self.engine = _engine(self.engine)
        leaves, tree = tree_flatten(state)
        specs, buffers = [], []
        for x in leaves:
            spec, data = self.engine.to_bytes(x)
            specs.append(spec)
            buffers.append(data)
        nbytes = int(sum(memoryview(b).nbytes for b in buffers))
        header = json.dumps(specs).encode() + b"\n"
        h = hashlib.sha256(header)
        path = self._path(index)
        try:
            with atomic_file(path, "wb") as f:
                f.write(header)
                for data in buffers:
                    h.update(data)
                    f.write(data)
        except OSError as e:
            # disk full, a read-only or vanished run folder: say which state and which folder
            raise OSError(e.errno, f"revolve.gradient: cannot write the snapshot of state x_{index} "
                                   f"({nbytes:,} bytes) in the run folder {self.root!r}: "
                                   f"{e.strerror}", path) from None
        self._meta[index] = (path, h.hexdigest(), tree)
        return nbytes

    def get(self, index: int):
        from .ad import tree_unflatten

        path, digest, tree = self._meta[index]
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except OSError as e:
            raise SnapshotCorrupted(f"revolve.gradient: the snapshot of state x_{index} at {path!r} cannot be read: {e.strerror}") from None
        if hashlib.sha256(blob).hexdigest() != digest:
            raise SnapshotCorrupted(
                f"revolve.gradient: the snapshot of state x_{index} at {path!r} failed its SHA-256 check: the file "
                f"changed after it was written; refusing to compute a gradient from it"
            )
        newline = blob.index(b"\n")
        spec = json.loads(blob[:newline])
        out, offset = [], newline + 1
        for leaf_spec in spec:
            leaf, size = self.engine.from_bytes(leaf_spec, blob, offset)
            out.append(leaf)
            offset += size
        return tree_unflatten(tree, out)

    def delete(self, index: int) -> None:
        path = self._meta.pop(index)[0]
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OSError(e.errno, f"revolve.gradient: cannot remove the snapshot of state x_{index} from the run "
                                   f"folder {self.root!r}: {e.strerror}", path) from None

    def close(self) -> None:
        self._meta.clear()
        shutil.rmtree(self.root, ignore_errors=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived during a run; raised like SIGINT's KeyboardInterrupt so that the run cleans up."""


class TerminationGuard:
    """While a run uses snapshot storage, SIGTERM unwinds it like SIGINT (its ``finally`` removes the run folder).

    ``restore()`` puts the previous handler back and, if SIGTERM arrived, delivers it to that handler: the
    default one then ends the process as SIGTERM would have, after the cleanup. Installed only in the main
    thread (where Python runs signal handlers) and only when SIGTERM is not ignored.
    """

    def __init__(self, enabled: bool = True):
        self.previous = None
        self.received = None
        if not enabled or threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if previous is signal.SIG_IGN or previous is None:
            return
        self.previous = previous
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.received = (signum, frame)
        raise Terminated("revolve.gradient: terminated by SIGTERM; its snapshot files were removed")

    def restore(self) -> None:
        if self.previous is None:
            return
        previous, self.previous = self.previous, None
        signal.signal(signal.SIGTERM, previous)
        if self.received is not None:
            if previous is signal.SIG_DFL:
                signal.raise_signal(signal.SIGTERM)  # end the process as SIGTERM would have
            elif callable(previous):
                previous(*self.received)


def _process_gone(pid: int) -> bool:
    """True when no process has id ``pid`` (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, owned by someone else
        return False
    return False


def remove_stale_runs(directory: str | os.PathLike) -> list[str]:
    """Remove the ``revolve-run-*`` folders in ``directory`` whose process, on this host, no longer runs.

    A run removes its folder when it ends, fails, or gets SIGINT or SIGTERM; only a SIGKILL or a crash of
    the machine leaves one behind. Folders of running processes, of other hosts, or without an ``owner``
    file (written by revolve before 0.1) are left alone: remove those by hand once no run uses them.

    Returns:
        The folders removed.

    Example:
        >>> import tempfile
        >>> remove_stale_runs(tempfile.mkdtemp())
        []
    """
    directory = os.fspath(directory)
    removed = []
    host = socket.gethostname()
    try:
        names = [n for n in os.listdir(directory) if n.startswith(_RUN_PREFIX)]
    except OSError:
        return removed
    for name in names:
        folder = os.path.join(directory, name)
        try:
            with open(os.path.join(folder, _OWNER), encoding="utf-8") as f:
                owner = json.load(f)
            pid, owner_host = int(owner["pid"]), owner["host"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if owner_host == host and pid != os.getpid() and _process_gone(pid):
            shutil.rmtree(folder, ignore_errors=True)
            if not os.path.exists(folder):
                removed.append(folder)
    return removed


def make_backend(level: str, spec, engine=None) -> RAMStorage | DiskStorage:
    """A backend for a storage level from the user's ``storage=`` mapping value (None, a path, or a backend),
    storing the states of ``engine`` (None: ``revolve.ad``'s); a backend without an engine gets this one."""
    if spec is None:
        if level == "ram":
            return RAMStorage(engine)
        raise ValueError(
            f"revolve.gradient: the schedule stores snapshots in {level!r} but storage= names no backend for it; "
            f"pass storage={{{level!r}: '/some/directory'}}"
        )
    if isinstance(spec, (str, os.PathLike)):
        return DiskStorage(spec, engine)
    if all(hasattr(spec, m) for m in ("put", "get", "delete", "close")):
        if getattr(spec, "engine", False) is None:
            spec.engine = engine
        return spec
    raise TypeError(f"revolve.gradient: storage[{level!r}] must be a directory path or a storage backend, got {spec!r}")
