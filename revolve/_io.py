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


class Progress:
    """Progress of ``total`` units on stderr: a tqdm bar where tqdm is installed, else a plain line.

    ``enabled=None`` shows it only when stderr is a terminal; True always; False never. The plain line is
    rewritten in place (``\\r``) at most twice a second and ends with a newline on ``close``.

    Example:
        >>> p = Progress(3, "steps", enabled=False)
        >>> for _ in range(3):
        ...     p.update()
        >>> p.close()
    """

    def __init__(self, total: int, desc: str, *, enabled: bool | None = None, unit: str = "step", stream=None):
        import sys

        self.total, self.desc, self.unit = total, desc, unit
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = bool(enabled)
        self.count = 0
        self._bar = None
        self._last = 0.0
        self._shown = False
        if self.enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=self.stream)

    def update(self, k: int = 1) -> None:
        self.count += k
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(k)
            return
        import time

        now = time.monotonic()
        if now - self._last >= 0.5 or self.count >= self.total:
            self._last = now
            pct = 100.0 * self.count / self.total if self.total else 100.0
            self.stream.write(f"\r{self.desc}: {self.count:,}/{self.total:,} {self.unit}s ({pct:.0f}%)")
            self.stream.flush()
            self._shown = True

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
