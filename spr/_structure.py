"""The structural decision: after thresholding, each group is removed whole or restored whole.

For group ``j`` of a block with entries ``G_j`` (a conv filter with its BatchNorm scale and
shift, for ``groups="conv_bn"``), the surviving share is ``s_j = #{|G_j| > t} / n``. The group
is *dead* when ``s_j <= struct_threshold`` (the paper: 0.5–5 %): all its entries are set to
zero, so that :func:`spr.remove_pruned` can take it out. Otherwise it keeps every entry,
including those below ``t`` — the threshold only decides, it does not sparsify.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from spr._groups import UserGroups, group_parts


def _check_share(struct_threshold: float) -> float:
    struct_threshold = float(struct_threshold)
    if not 0 <= struct_threshold < 1:
        raise ValueError(
            "struct_threshold is the largest share of surviving entries of a removed group and "
            f"must be in [0, 1); got {struct_threshold}"
        )
    return struct_threshold


def structural_decision(
    model: nn.Module,
    threshold: float,
    struct_threshold: float = 0.05,
    *,
    groups: str | UserGroups = "conv_bn",
    exclude: Iterable | None = None,
) -> dict[str, Tensor]:
    """Which groups stay: ``{block name: (G,) bool}``, True for alive. Reads, never writes.

    >>> conv = nn.Conv2d(1, 3, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = conv.weight.copy_(torch.tensor([1e-4, 0.5, 2.0]).view(3, 1, 1, 1))
    >>> structural_decision(nn.Sequential(conv), threshold=0.01, groups="conv")
    {'0': tensor([False,  True,  True])}
    """
    struct_threshold = _check_share(struct_threshold)
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0; got {threshold}")
    alive = {}
    with torch.no_grad():
        for name, parts in group_parts(model, groups, exclude):
            matrix = torch.cat([p.detach() for p in parts], dim=1)
            share = (matrix.abs() > threshold).float().mean(dim=1)
            alive[name] = (share > struct_threshold).cpu()
    return alive


def zero_dead_groups(
    model: nn.Module,
    alive: Mapping[str, Tensor],
    *,
    groups: str | UserGroups = "conv_bn",
    exclude: Iterable | None = None,
) -> int:
    """Set every entry of each dead group to zero (in place); return the number of groups."""
    blocks = dict(group_parts(model, groups, exclude))
    unknown = set(alive) - set(blocks)
    if unknown:
        raise ValueError(f"alive names blocks the model does not have: {sorted(unknown)}")
    count = 0
    with torch.no_grad():
        for name, keep in alive.items():
            parts = blocks[name]
            if keep.shape != (parts[0].shape[0],):
                raise ValueError(
                    f"alive[{name!r}] has shape {tuple(keep.shape)}; the block has "
                    f"{parts[0].shape[0]} groups"
                )
            dead = ~keep.to(parts[0].device)
            for p in parts:
                p[dead] = 0
            count += int(dead.sum())
    return count
