"""Atomic file writes: a temporary file beside the target, renamed over it only when complete."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(where: str, name: str, path: str | os.PathLike) -> str:
    """Raise ValueError unless ``path`` can be created: its folder exists and it is not itself a folder.

    Cheap, so callers run it before any slow work (a plan, a frontier) whose result goes to ``path``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        what = "is not a folder" if os.path.exists(directory) else "does not exist"
        raise ValueError(f"{where}: {name} {path!r} cannot be written: its folder {directory!r} {what}; "
                         f"give a file in an existing folder")
    if os.path.isdir(path):
        raise ValueError(f"{where}: {name} {path!r} is a folder; give a file name")
    return path


def check_folder(where: str, name: str, path: str | os.PathLike) -> str:
    """Raise ValueError unless ``path`` is an existing folder."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        what = "is a file, not a folder" if os.path.exists(path) else "does not exist"
        raise ValueError(f"{where}: {name} {path!r} {what}; give an existing folder")
    return path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs):
    """Open a temporary file beside ``path``; on success rename it to ``path``, on any error remove it.

    The file gets the mode an ordinary ``open`` would give it (0666 less the umask), or the mode of the
    file it replaces; the temporary file itself is private (0600) while it is written.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        final_mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        final_mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=".revolve-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
        os.chmod(tmp, final_mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
