"""What the layer-MIP solvers return."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["MIPResult", "relative_gap"]


def relative_gap(upper: float, lower: float) -> float:
    """``(upper - lower) / max(|upper|, 1e-12)``, clipped at 0 (never negative from round-off)."""
    if not np.isfinite(upper) or not np.isfinite(lower):
        return np.inf
    return max(upper - lower, 0.0) / max(abs(upper), 1e-12)


@dataclass(frozen=True, eq=False)
class MIPResult:
    """A solution with its certificate.

    Attributes:
        keep: (n_groups,) bool, the kept groups (z).
        weight: (out, d) weights, zero on dropped groups.
        objective: the MIP objective at (weight, keep), an upper bound on the optimum.
        bound: a proven lower bound on the optimum.
        gap: ``(objective - bound) / |objective|``.
        status: ``"optimal"`` (gap <= the requested gap), ``"time_limit"`` or ``"infeasible"``.
        iterations: master problems solved (outer approximation) or supports evaluated.
        seconds: wall time.
        history: per iteration ``{"iteration", "lower", "upper", "seconds"}``.
        supports_evaluated: supports whose best weights were computed (exact solvers).
    """

    keep: NDArray[np.bool_]
    weight: NDArray[np.float64]
    objective: float
    bound: float
    gap: float
    status: str
    iterations: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    supports_evaluated: int = 0
