"""Snapshot storage backends for the executor: RAM and disk.

A backend stores a state (a pytree of numpy arrays) under a step index and gives it back. The disk
backend writes each snapshot atomically (a temporary file renamed into place), checks a SHA-256 of its
bytes on every restore, and removes its run folder when closed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np

from ._io import atomic_file

__all__ = ["RAMStorage", "DiskStorage", "SnapshotCorrupted", "make_backend"]


class SnapshotCorrupted(RuntimeError):
    """A stored snapshot no longer matches what was written (checksum or format mismatch)."""


def _leaves(state) -> tuple[list[np.ndarray], Any]:
    from .ad import tree_flatten

    leaves, tree = tree_flatten(state)
    return [np.asarray(x) for x in leaves], tree


def state_nbytes(state) -> int:
    """Bytes of the arrays in a state."""
    return int(sum(x.nbytes for x in _leaves(state)[0]))


class RAMStorage:
    """Keeps read-only copies of the states in memory, so a step that updates its input cannot alter them."""

    def __init__(self):
        self._data: dict[int, Any] = {}

    def put(self, index: int, state) -> int:
        from .ad import tree_unflatten

        leaves, tree = _leaves(state)
        copy = [x.copy() for x in leaves]
        for x in copy:  # read-only: the executor copies a restored state before a step may change it in place
            x.flags.writeable = False
        self._data[index] = tree_unflatten(tree, copy)
        return int(sum(x.nbytes for x in copy))

    def get(self, index: int):
        return self._data[index]

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

    def __init__(self, directory: str | os.PathLike):
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise ValueError(f"revolve.DiskStorage: directory {directory!r} does not exist or is not a directory")
        self.root = tempfile.mkdtemp(prefix="revolve-run-", dir=directory)
        self._meta: dict[int, tuple[str, str, Any]] = {}  # index -> (path, sha256, tree)

    def _path(self, index: int) -> str:
        return os.path.join(self.root, f"x{index}.state")

    def put(self, index: int, state) -> int:
        leaves, tree = _leaves(state)
        header = json.dumps([[x.dtype.str, list(x.shape)] for x in leaves]).encode() + b"\n"
        h = hashlib.sha256(header)
        path = self._path(index)
        with atomic_file(path, "wb") as f:
            f.write(header)
            for x in leaves:
                data = np.ascontiguousarray(x).data
                h.update(data)
                f.write(data)
        self._meta[index] = (path, h.hexdigest(), tree)
        return int(sum(x.nbytes for x in leaves))

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
        for dtype, shape in spec:
            dt = np.dtype(dtype)
            count = int(np.prod(shape, dtype=np.int64))
            out.append(np.frombuffer(blob, dtype=dt, count=count, offset=offset).reshape(shape).copy())
            offset += count * dt.itemsize
        return tree_unflatten(tree, out)

    def delete(self, index: int) -> None:
        path = self._meta.pop(index)[0]
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        self._meta.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def make_backend(level: str, spec) -> RAMStorage | DiskStorage:
    """A backend for a storage level from the user's ``storage=`` mapping value (None, a path, or a backend)."""
    if spec is None:
        if level == "ram":
            return RAMStorage()
        raise ValueError(
            f"revolve.gradient: the schedule stores snapshots in {level!r} but storage= names no backend for it; "
            f"pass storage={{{level!r}: '/some/directory'}}"
        )
    if isinstance(spec, (str, os.PathLike)):
        return DiskStorage(spec)
    if all(hasattr(spec, m) for m in ("put", "get", "delete", "close")):
        return spec
    raise TypeError(f"revolve.gradient: storage[{level!r}] must be a directory path or a storage backend, got {spec!r}")
