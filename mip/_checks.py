"""Argument checks shared across the project (spr re-uses them: mip is the lower layer)."""

from __future__ import annotations

import math

__all__ = ["check_alpha", "check_limits", "check_nonnegative", "check_positive"]


def check_alpha(alpha: float) -> float:
    """alpha as a float in the open interval (0, 1), or ValueError naming it."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a float in (0, 1); got {alpha!r}") from None
    if math.isnan(value) or not 0.0 < value < 1.0:
        raise ValueError(f"alpha must lie in the open interval (0, 1); got {alpha!r}")
    return value


def check_nonnegative(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite float >= 0; got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite float >= 0; got {value!r}")
    return number


def check_positive(name: str, value: float, *, allow_inf: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a float > 0; got {value!r}") from None
    if math.isnan(number) or number <= 0 or (math.isinf(number) and not allow_inf):
        allowed = "> 0 (inf allowed)" if allow_inf else "finite and > 0"
        raise ValueError(f"{name} must be {allowed}; got {value!r}")
    return number


def check_limits(time_limit: float, mip_gap: float) -> None:
    """A solver's stopping rule: ``time_limit > 0`` seconds and relative gap ``mip_gap >= 0``."""
    if not (mip_gap >= 0 and time_limit > 0):
        raise ValueError(f"need mip_gap >= 0 and time_limit > 0; got {mip_gap}, {time_limit}")
