"""The size of a network as a function of the widths of its prunable channel groups.

With ``k_g`` channels kept in group ``g`` (:class:`spr._channel_groups.ChannelGroup`), a conv or
Linear layer whose input channels are group ``a`` and output channels group ``b`` has
``MACs_L * (k_a / n_a) * (k_b / n_b)`` MACs and as many weights in that proportion (its bias and
its BatchNorm follow ``k_b`` alone); a side that is no group stays at full width. So every size
(MACs, parameters) is exactly::

    size(k) = constant + sum_g linear[g] * k_g + sum_(a, b) pair[a, b] * k_a * k_b

The pair terms are the layers between two prunable groups (a plain chain of convs); in a ResNet
every block's inner channels sit between residual streams, which stay whole, so there are none
and the size is linear. :func:`spr.prune_to_budget` checks ``size(n) ==`` the measured dense
size, and measures the pruned model again.

>>> from spr.models import small_cnn
>>> from spr._channel_groups import channel_groups
>>> net, x = small_cnn(), torch.zeros(1, 1, 28, 28)
>>> groups, _ = channel_groups(net, x)
>>> macs, params = size_models(net, groups, x)
>>> macs.size([g.channels for g in groups]) == count_macs(net, x), len(macs.pairs)
(True, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch  # noqa: F401  (the doctest uses it)
from torch import Tensor, nn

from spr._channel_groups import ChannelGroup
from spr._counting import count_macs, count_params, macs_by_layer  # noqa: F401

__all__ = ["SizeModel", "size_models"]


@dataclass
class SizeModel:
    """``size(k) = constant + linear @ k + sum pair[a, b] k_a k_b`` (module docstring)."""

    constant: float
    linear: np.ndarray
    pairs: dict[tuple[int, int], float] = field(default_factory=dict)

    def size(self, widths: Sequence[int] | np.ndarray) -> float:
        k = np.asarray(widths, dtype=np.float64)
        value = self.constant + float(self.linear @ k)
        return float(value + sum(c * k[a] * k[b] for (a, b), c in self.pairs.items()))

    def _add(self, coefficient: float, sides: list[int]) -> None:
        if not sides:
            self.constant += coefficient
        elif len(sides) == 1:
            self.linear[sides[0]] += coefficient
        else:
            key = (min(sides), max(sides))
            self.pairs[key] = self.pairs.get(key, 0.0) + coefficient


def size_models(
    model: nn.Module, groups: list[ChannelGroup], example: tuple[Tensor, ...] | Tensor
) -> tuple[SizeModel, SizeModel]:
    """(MACs, parameters) of ``model`` as functions of the group widths, for the input
    ``example`` (a batch of one: MACs per sample)."""
    G = len(groups)
    macs, params = SizeModel(0.0, np.zeros(G)), SizeModel(0.0, np.zeros(G))
    by_layer = macs_by_layer(model, example)
    reads = {g.consumer: i for i, g in enumerate(groups)}
    writes = {g.producer: i for i, g in enumerate(groups)}
    norms = {name: i for i, g in enumerate(groups) for name in g.norms}
    modelled = 0
    for name, module in model.named_modules():
        if name in reads or name in writes:
            sides = [i for i in (reads.get(name), writes.get(name)) if i is not None]
            scale = float(np.prod([groups[i].channels for i in sides]))
            macs._add(by_layer.get(name, 0) / scale, sides)
            params._add(module.weight.numel() / scale, sides)
            modelled += module.weight.numel()
            if module.bias is not None:
                out = writes.get(name)
                params._add(module.bias.numel() / (groups[out].channels if out is not None
                                                   else 1), [out] if out is not None else [])
                modelled += module.bias.numel()
        elif name in norms:
            i = norms[name]
            for p in module.parameters(recurse=False):
                params._add(p.numel() / groups[i].channels, [i])
                modelled += p.numel()
    macs._add(sum(v for n, v in by_layer.items() if n not in reads and n not in writes), [])
    params._add(count_params(model) - modelled, [])
    return macs, params
