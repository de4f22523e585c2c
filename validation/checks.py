"""Argument checks shared by the config dataclasses: errors start with the argument's name."""

from __future__ import annotations

import math
import numbers


def check_int(name: str, value: object, low: int, high: int) -> int:
    """``value`` as an int in ``low..high``, else ``ValueError("<name>: ...")`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    number = int(value)
    if not low <= number <= high:
        raise ValueError(f"{name}: must be between {low} and {high}, got {number}")
    return number


def check_float(name: str, value: object, low: float, high: float) -> float:
    """``value`` as a finite float in ``low..high``, else ``ValueError("<name>: ...")``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"{name}: must be between {low:g} and {high:g}, got {value!r}")
    return number


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool, else ``ValueError("<name>: ...")`` (no 0/1 or strings)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}: must be true or false, got {value!r}")
    return value
