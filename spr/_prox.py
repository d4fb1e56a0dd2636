"""Proximal operator of ``lam * SPR`` with ``M = inf`` (docs/mathematics.md §3).

For ``M = inf`` SPR is the reverse Huber function of the group norm ``r``: ``2*s*r`` below the
kink ``k = sqrt(b/a)`` and ``a*r^2 + b`` above it, with ``s = sqrt(a*b)``. Its prox with step
``t``, ``argmin_w 0.5*||w - v||^2 + t*lam*SPR(w)``, acts on each group ``v`` as::

    prox(v) = 0                                  if ||v|| <= 2*t*lam*s
            = (1 - 2*t*lam*s/||v||) * v          if ||v|| <= k + 2*t*lam*s
            = v / (1 + 2*t*lam*a)                otherwise

a group soft-threshold (exact zeros) below the kink and a ridge shrinkage above it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spr._checks import check_alpha, check_groups, check_nonnegative, check_positive

__all__ = ["spr_prox"]


def spr_prox(V: Tensor, alpha: float, lam: float, step: float) -> Tensor:
    """Row-wise proximal step of ``lam * SPR`` (``M = inf``) with step size ``step``.

    Args:
        V: (G, n), one group per row (typically ``W - step * grad``).
        alpha: in (0, 1).
        lam: regularisation strength, >= 0.
        step: step size t, > 0.

    Returns:
        (G, n) tensor, the prox of each row; rows below the threshold are exactly zero.

    Example:
        >>> V = torch.tensor([[0.1, 0.0], [3.0, 4.0]])
        >>> spr_prox(V, alpha=0.5, lam=1.0, step=0.1)  # zero below 2*t*lam*s = 0.1; v/1.1 above
        tensor([[0.0000, 0.0000],
                [2.7273, 3.6364]])
    """
    a = check_alpha(alpha)
    lam = check_nonnegative("lam", lam)
    t = check_positive("step", step)
    check_groups(V, name="V")
    b = 1.0 - a
    s, k = math.sqrt(a * b), math.sqrt(b / a)
    shrink = 2.0 * t * lam * s
    norm = torch.linalg.vector_norm(V, dim=1, keepdim=True)
    safe_norm = torch.where(norm > 0, norm, torch.ones_like(norm))
    soft = torch.clamp(1.0 - shrink / safe_norm, min=0.0) * V
    ridge = V / (1.0 + 2.0 * t * lam * a)
    return torch.where(norm <= k + shrink, soft, ridge)
