"""Human-readable byte sizes: ``parse_bytes("512MiB")`` and ``format_bytes(536870912)``."""

from __future__ import annotations

import math
import numbers
import re

__all__ = ["parse_bytes", "format_bytes"]

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
# one way to match each number (digits, then an optional fraction, or a bare fraction): no backtracking blow-up
_PATTERN = re.compile(r"\s*([+-]?)((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*")
_MAX_CHARS = 100  # longer text is no size anyone means


def parse_bytes(text: str | int | float, *, where: str = "revolve.parse_bytes", name: str = "memory") -> float:
    """Parse a size such as ``"512MiB"``, ``"1.5 GB"``, ``"2e9"`` or a number of bytes.

    Decimal units (kB, MB, GB, TB) are powers of 1000; binary units (KiB, MiB, GiB, TiB) powers of 1024.

    Raises:
        ValueError: not a size, an unknown unit, more than 100 characters, or a size that is not positive
            and finite (10^400 included).
        TypeError: a bool, or neither a number nor a string.

    Example:
        >>> parse_bytes("512MiB")
        536870912.0
    """
    if isinstance(text, bool):
        raise TypeError(f"{where}: {name} must be a size in bytes, got {text!r}")
    allowed = "a positive, finite number of bytes"
    if isinstance(text, numbers.Real):
        try:
            value = float(text)
        except OverflowError:  # an integer past 1.8e308 (its str() may exceed Python's digit limit)
            digits = int(int(text).bit_length() * math.log10(2)) + 1
            raise ValueError(f"{where}: {name} must be {allowed} (at most 1.8e308), got an integer of about "
                             f"{digits} digits") from None
    elif isinstance(text, str):
        if len(text) > _MAX_CHARS:
            raise ValueError(f"{where}: {name} must be a size like '512MiB' of at most {_MAX_CHARS} characters, "
                             f"got {len(text)} characters ({text[:20]!r}...)")
        m = _PATTERN.fullmatch(text)
        unit = m.group(3).lower() if m else None
        if not m or unit not in _UNITS:
            raise ValueError(
                f"{where}: {name} must be a size like '512MiB', '1.5GB' or a number of bytes, got {text!r} "
                f"(units: B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            )
        if m.group(1) == "-":
            raise ValueError(f"{where}: {name} must be {allowed}, got {text!r} (negative)")
        value = float(m.group(2)) * _UNITS[unit]
    else:
        raise TypeError(f"{where}: {name} must be a size in bytes (a number or a string like '512MiB'), "
                        f"got {type(text).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: {name} must be {allowed}, got {text!r}")
    return value


def format_bytes(n: float) -> str:
    """Format a byte count with a binary unit, e.g. ``format_bytes(3 * 2**20) == '3.00 MiB'``."""
    n = float(n)
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"
