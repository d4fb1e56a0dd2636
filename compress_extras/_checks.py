"""Argument checks shared by the quantizers' settings."""

from __future__ import annotations

import numbers


def check_int(name: str, value: object, least: int) -> None:
    """ValueError unless ``value`` is an integer (not a bool; numpy integers too) ``>= least``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{name} must be an int >= {least}; got {value!r}")
