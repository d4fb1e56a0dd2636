"""Argument checks shared by the closed form, the prox and the regularizer.

Each raises ``ValueError`` naming the parameter and saying what is allowed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mip._checks import check_alpha, check_nonnegative, check_positive

__all__ = [
    "check_M",
    "check_alpha",
    "check_groups",
    "check_nonnegative",
    "check_positive",
]


def check_groups(W: Tensor, name: str = "W") -> Tensor:
    if not isinstance(W, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (G, n); got {type(W).__name__}")
    if W.dim() != 2 or W.shape[1] == 0:
        raise ValueError(
            f"{name} must have shape (G, n) with one group per row and n >= 1; "
            f"got shape {tuple(W.shape)}"
        )
    if not W.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor; got dtype {W.dtype}")
    if not bool(torch.isfinite(W).all()):
        raise ValueError(f"{name} contains NaN or infinite entries; SPR needs finite weights")
    return W


def check_M(M: float | Tensor, G: int) -> float | Tensor:
    """M as a float (inf allowed) or a tensor broadcastable to (G,), positive and not NaN."""
    if isinstance(M, Tensor):
        if M.dim() > 1 or (M.dim() == 1 and M.shape[0] not in (1, G)):
            raise ValueError(
                f"M must be a float or a tensor broadcastable to (G,) = ({G},); "
                f"got shape {tuple(M.shape)}"
            )
        if bool(torch.isnan(M).any()) or bool((M <= 0).any()):
            raise ValueError("M must be > 0 (inf allowed) and not NaN in every entry")
        return M
    return check_positive("M", M, allow_inf=True)
