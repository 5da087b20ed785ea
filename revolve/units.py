"""Human-readable byte sizes: ``parse_bytes("512MiB")`` and ``format_bytes(536870912)``."""

from __future__ import annotations

import math
import re

__all__ = ["parse_bytes", "format_bytes"]

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(text: str | int | float, *, where: str = "revolve.parse_bytes", name: str = "memory") -> float:
    """Parse a size such as ``"512MiB"``, ``"1.5 GB"``, ``"2e9"`` or a number of bytes.

    Decimal units (kB, MB, GB, TB) are powers of 1000; binary units (KiB, MiB, GiB, TiB) powers of 1024.

    Raises:
        ValueError: not a size, an unknown unit, or a size that is not positive and finite.

    Example:
        >>> parse_bytes("512MiB")
        536870912.0
    """
    if isinstance(text, bool):
        raise TypeError(f"{where}: {name} must be a size in bytes, got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _PATTERN.match(str(text))
        unit = m.group(2).lower() if m else None
        if not m or unit not in _UNITS:
            raise ValueError(
                f"{where}: {name} must be a size like '512MiB', '1.5GB' or a number of bytes, got {text!r} "
                f"(units: B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            )
        value = float(m.group(1)) * _UNITS[unit]
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: {name} must be a positive, finite number of bytes, got {text!r}")
    return value


def format_bytes(n: float) -> str:
    """Format a byte count with a binary unit, e.g. ``format_bytes(3 * 2**20) == '3.00 MiB'``."""
    n = float(n)
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"
