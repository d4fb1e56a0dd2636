"""Argument checks shared across the project (spr re-uses them: mip is the lower layer)."""

from __future__ import annotations

import math

__all__ = ["check_alpha"]


def check_alpha(alpha: float) -> float:
    """alpha as a float in the open interval (0, 1), or ValueError naming it."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a float in (0, 1); got {alpha!r}") from None
    if math.isnan(value) or not 0.0 < value < 1.0:
        raise ValueError(f"alpha must lie in the open interval (0, 1); got {alpha!r}")
    return value
