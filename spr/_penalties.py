"""Per-group penalties of :class:`spr.SPRegularizer`: pure functions ``(W, M, alpha) -> (G,)``.

A penalty takes the (G, n) matrix ``W`` of G groups (one per row), their (G,) big-M bounds ``M``
and ``alpha`` in (0, 1), and returns the (G,) per-group values; the regulariser weighs and sums
them as ``lam * (1/N) * sum_b w_b * n_b * sum_j penalty(W_b, M_b, alpha)_j``. With
``r = ||G_j||_2``:

* :func:`spr_group_penalty`: SPR's closed form (:func:`spr.spr_penalty`), which lies between the
  group lasso and the l0 cost: for ``M = inf`` and small groups it is
  ``2 sqrt(alpha (1 - alpha)) r``, and it flattens to ``alpha r^2 + (1 - alpha)`` once
  ``sqrt(alpha / (1 - alpha)) r >= 1``;
* :func:`group_lasso_penalty`: the elastic group lasso ``alpha r^2 + (1 - alpha) r`` (``M`` is
  not used), the baseline.

:data:`PENALTY_FUNCTIONS` names them as ``spr.PruneConfig(penalty=...)`` does.

>>> W = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
>>> group_lasso_penalty(W, torch.full((2,), float("inf")), 0.5)   # 0.5 * 25 + 0.5 * 5, and 0
tensor([15.,  0.])
>>> spr_group_penalty(W, torch.full((2,), float("inf")), 0.5)     # alpha r^2 + (1 - alpha)
tensor([13.,  0.])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from spr._closed_form import _spr_penalty

__all__ = ["PENALTY_FUNCTIONS", "Penalty", "group_lasso_penalty", "spr_group_penalty"]

Penalty = Callable[[Tensor, Tensor, float], Tensor]
"""``penalty(W: (G, n) Tensor, M: (G,) Tensor, alpha: float) -> (G,) Tensor``."""


def spr_group_penalty(W: Tensor, M: Tensor, alpha: float) -> Tensor:
    """SPR of each row of ``W`` with its bound ``M``: :func:`spr.spr_penalty` without the argument
    checks (the regulariser checked ``alpha`` and ``M`` once); half and bfloat16 in float32."""
    return _spr_penalty(W, alpha, M)


def group_lasso_penalty(W: Tensor, M: Tensor, alpha: float) -> Tensor:
    """``alpha * ||G_j||_2^2 + (1 - alpha) * ||G_j||_2`` of each row ``G_j`` of ``W``; ``M`` is
    unused. The gradient at an all-zero row is 0 (a subgradient), not NaN."""
    squares = (W * W).sum(dim=1)
    return alpha * squares + (1 - alpha) * torch.linalg.vector_norm(W, dim=1)


PENALTY_FUNCTIONS: dict[str, Penalty] = {
    "spr": spr_group_penalty,
    "group_lasso": group_lasso_penalty,
}
