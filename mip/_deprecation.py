"""The one deprecation message of renamed public names (kept for one release): mip, spr and
compress_extras all warn through it."""

from __future__ import annotations

import warnings

__all__ = ["warn_deprecated"]


def warn_deprecated(old: str, new: str) -> None:
    """``DeprecationWarning("<old> is deprecated; use <new>")``, pointing at the caller's caller
    (the code that called the deprecated alias)."""
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=3)
