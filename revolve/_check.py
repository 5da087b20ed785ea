"""Argument checks shared by the public functions: each error names the API, argument, value and what is allowed."""

from __future__ import annotations

import math
import numbers


def check_int(where: str, name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer (not a bool, not a float) within the bounds, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an integer, got {_short(value)} of type {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {_short(value)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{where}: {name} must be <= {maximum}, got {_short(value)}")
    return value


def check_real(where: str, name: str, value, *, minimum: float | None = None, positive: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real number (not a bool) within the bounds, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a real number, got {value!r} of type {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an integer past the float range (its repr may exceed Python's digit limit)
        raise ValueError(f"{where}: {name} must be finite (at most 1.8e308), got an integer of about "
                         f"{int(int(value).bit_length() * math.log10(2)) + 1} digits") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{where}: {name} must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value}")
    return value


def _short(value) -> str:
    """repr of a value for a message, cut to 80 characters; a huge integer is given by its number of digits."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
