"""The perspective relaxation of one group's on/off decision, with ``y`` projected out (numpy).

For a group ``w`` (a vector of ``n`` weights) the MIP of docs/mathematics.md §1 charges
``a*||w||^2 + b*y`` with ``y in {0, 1}`` and ``||w||_inf <= M*y``. Its perspective relaxation
replaces ``a*||w||^2`` by ``a*||w||^2 / y`` and lets ``y`` range over ``[||w||_inf / M, 1]``.
Minimising over ``y`` in closed form gives, with ``a = alpha``, ``b = 1 - alpha``,
``r = ||w||_2``, ``m = ||w||_inf`` and ``c = sqrt(a/b)``::

    y*(w)  = min(1, max(m/M, c*r))
    SPR(w) = a*r^2 + b                if max(m/M, c*r) >= 1
           = 2*sqrt(a*b)*r            if m/M <= c*r < 1
           = a*M*r^2/m + b*m/M        if c*r < m/M < 1
    SPR(0) = 0

This module is the numpy twin of :mod:`spr._closed_form` (the torch version, with gradients);
the tests compare the two. It imports no torch.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mip._checks import check_alpha

__all__ = ["spr_penalty", "spr_indicator"]


def _check_groups(W: ArrayLike) -> NDArray[np.floating]:
    W = np.asarray(W)
    if W.ndim != 2 or W.shape[1] == 0:
        raise ValueError(
            f"W must have shape (G, n) with one group per row and n >= 1; got shape {W.shape}"
        )
    if not np.issubdtype(W.dtype, np.floating):
        W = W.astype(np.float64)
    if not np.all(np.isfinite(W)):
        raise ValueError("W contains NaN or infinite entries; SPR is defined for finite weights")
    return W


def _check_M(M: float | ArrayLike, G: int, dtype: np.dtype) -> NDArray[np.floating]:
    M_arr = np.asarray(M, dtype=dtype)
    if np.any(np.isnan(M_arr)) or np.any(M_arr <= 0):
        raise ValueError(f"M must be positive (inf allowed) and not NaN; got {M!r}")
    try:
        return np.broadcast_to(M_arr, (G,))
    except ValueError as err:
        raise ValueError(
            f"M must be a scalar or broadcastable to (G,) = ({G},); got shape {M_arr.shape}"
        ) from err


def _norms(W: NDArray[np.floating]) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """(m, r) = (||w||_inf, ||w||_2) per row, with r computed as m*||w/m|| so it neither
    underflows nor overflows before the final product."""
    m = np.max(np.abs(W), axis=1)
    safe_m = np.where(m > 0, m, 1.0)
    r = m * np.sqrt(np.sum((W / safe_m[:, None]) ** 2, axis=1))
    return m, r


def spr_indicator(W: ArrayLike, alpha: float, M: float | ArrayLike = np.inf) -> NDArray:
    """The minimising ``y*(w) = min(1, max(||w||_inf/M, sqrt(a/b)*||w||_2))`` for each row of ``W``.

    Shapes: ``W`` (G, n); ``M`` a scalar or (G,); returns (G,).

    >>> spr_indicator([[0.1, 0.0], [3.0, 4.0]], alpha=0.5, M=10.0)
    array([0.1, 1. ])
    """
    W = _check_groups(W)
    a = check_alpha(alpha)
    b = 1.0 - a
    M = _check_M(M, W.shape[0], W.dtype)
    m, r = _norms(W)
    return np.minimum(1.0, np.maximum(m / M, np.sqrt(a / b) * r))


def spr_penalty(W: ArrayLike, alpha: float, M: float | ArrayLike = np.inf) -> NDArray:
    """SPR value of each row of ``W`` by the three-case formula (module docstring).

    Shapes: ``W`` (G, n); ``M`` a scalar (``np.inf`` allowed) or (G,); returns (G,).

    >>> spr_penalty([[0.0, 0.0], [0.3, 0.4]], alpha=0.5, M=np.inf)   # SPR(0) = 0; 2*sqrt(ab)*r
    array([0. , 0.5])
    """
    W = _check_groups(W)
    a = check_alpha(alpha)
    b = 1.0 - a
    M = _check_M(M, W.shape[0], W.dtype)
    m, r = _norms(W)
    c = np.sqrt(a / b)
    box = m / M  # the lower end of y's interval
    safe_m = np.where(m > 0, m, 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        full = a * r * r + b
        linear = 2.0 * np.sqrt(a * b) * r
        boxed = a * M * r * (r / safe_m) + b * box
    value = np.select(
        [m == 0, np.maximum(box, c * r) >= 1.0, box <= c * r],
        [np.zeros_like(r), full, linear],
        default=boxed,
    )
    return value
