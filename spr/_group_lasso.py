"""``GroupLassoRegularizer``: the group-lasso baseline with SPR's grouping and scaling.

Per group ``G_j``: ``alpha * ||G_j||_2^2 + (1 - alpha) * ||G_j||_2`` (the elastic group lasso,
:func:`spr.group_lasso_penalty`), weighted exactly as :class:`spr.SPRegularizer` weights SPR —
``lam * (1/N) * sum_b w_b * n_b * sum_j`` — so that swapping one for the other in a training run
changes the penalty's shape only. It is that module with ``penalty=group_lasso_penalty`` and no
bound (``M = inf``: the group lasso has none):

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False))
>>> with torch.no_grad():
...     _ = net[0].weight.copy_(torch.tensor([3.0, 4.0]).view(2, 1, 1, 1))
>>> reg = GroupLassoRegularizer(net, lam=1.0, alpha=0.5, groups="conv")
>>> float(reg())  # the mean of 0.5 * 9 + 0.5 * 3 and 0.5 * 16 + 0.5 * 4
8.0
>>> isinstance(reg, SPRegularizer)
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from torch import nn

from mip._deprecation import warn_deprecated
from spr._groups import UserGroups
from spr._penalties import group_lasso_penalty
from spr._regularizer import SPRegularizer

__all__ = ["GroupLassoRegularizer"]

_UNUSED = ("M", "M_scale", "reference")  # SPR's bound settings, accepted until the next release


def GroupLassoRegularizer(
    model: nn.Module,
    lam: float,
    alpha: float,
    *,
    groups: str | UserGroups = "conv_bn",
    exclude: Iterable[str | nn.Module] | None = None,
    check_finite: bool = True,
    block_weights: Mapping[str, float] | None = None,
    **unused,
) -> SPRegularizer:
    """The group-lasso :class:`spr.SPRegularizer` of ``model``; the arguments are that class's.

    ``M``, ``M_scale`` and ``reference`` (SPR's bound) are deprecated: they are accepted with a
    ``DeprecationWarning`` and unused.
    """
    unknown = sorted(set(unused) - set(_UNUSED))
    if unknown:
        raise TypeError(f"GroupLassoRegularizer() got unexpected keyword argument(s) {unknown}")
    if unused:
        names = ", ".join(f"{name}=" for name in unused)
        warn_deprecated(f"GroupLassoRegularizer({names}...)", "GroupLassoRegularizer without it "
                        "(the group lasso has no bound: the setting is unused)")
    return SPRegularizer(model, lam, alpha, M=math.inf, groups=groups, exclude=exclude,
                         check_finite=check_finite, block_weights=block_weights,
                         penalty=group_lasso_penalty)
