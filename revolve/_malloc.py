"""Opt-in allocator tuning for large temporaries (glibc only)."""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_allocator() -> bool:
    """Keep freed memory for reuse instead of returning it to the system after each large array.

    numpy allocates every array above glibc's mmap threshold (128 KiB at first) with a fresh mmap, whose
    page faults can cost more than the arithmetic on it; a time-stepping loop makes such temporaries at
    every step. This raises the mmap threshold to glibc's maximum (32 MiB) and stops trimming the heap,
    which halved the demo's time on the development machine. It changes the whole process's allocator, so
    it is opt-in. Returns True if applied (glibc), False elsewhere.

    Example:
        >>> import revolve
        >>> revolve.tune_allocator() in (True, False)
        True
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, 32 * 2**20) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**30) == 1
    ok &= mallopt(_M_TOP_PAD, 256 * 2**20) == 1
    return bool(ok)
