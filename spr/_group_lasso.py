"""``GroupLassoRegularizer``: the group-lasso baseline with SPR's grouping and scaling.

Per group ``G_j``: ``alpha * ||G_j||_2^2 + (1 - alpha) * ||G_j||_2`` (the elastic group lasso),
weighted exactly as :class:`spr.SPRegularizer` weights SPR — ``lam * (1/N) * sum_b n_b * sum_j`` —
so that swapping one for the other in a training run changes the penalty's shape only. SPR lies
between this and the l0 cost: for ``M = inf`` and small groups SPR equals
``2 sqrt(alpha (1 - alpha)) ||G_j||_2``, a group lasso, and it flattens to the constant
``alpha ||G_j||^2 + (1 - alpha)`` once ``sqrt(alpha / (1 - alpha)) ||G_j||_2 >= 1``.

>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False))
>>> with torch.no_grad():
...     _ = net[0].weight.copy_(torch.tensor([3.0, 4.0]).view(2, 1, 1, 1))
>>> reg = GroupLassoRegularizer(net, lam=1.0, alpha=0.5, groups="conv")
>>> float(reg())  # the mean of 0.5 * 9 + 0.5 * 3 and 0.5 * 16 + 0.5 * 4
8.0
"""

from __future__ import annotations

import torch
from torch import Tensor

from spr._regularizer import SPRegularizer

__all__ = ["GroupLassoRegularizer"]


class GroupLassoRegularizer(SPRegularizer):
    """Same arguments as :class:`spr.SPRegularizer`; ``M`` is accepted and unused."""

    def _group_penalty(self, W: Tensor, bound: Tensor) -> Tensor:
        squares = (W * W).sum(dim=1)
        # vector_norm's backward at an all-zero row is 0 (a subgradient), not NaN
        return self.alpha * squares + (1 - self.alpha) * torch.linalg.vector_norm(W, dim=1)
