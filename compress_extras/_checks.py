"""Argument checks shared by the quantizers' settings."""

from __future__ import annotations


def check_int(name: str, value: object, least: int) -> None:
    """ValueError unless ``value`` is an int (not a bool) ``>= least``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an int >= {least}; got {value!r}")
