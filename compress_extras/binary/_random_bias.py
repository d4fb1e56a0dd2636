"""The statistic behind random bias initialization (Li & Partovi Nia 2019).

A binary network trained with sign forward and a straight-through estimator backward trains like
a float network with the saturating hard tanh: a unit passes gradient for a sample only while its
pre-activation lies in the band ``|z| <= 1``. :func:`band_share` measures, per sample, the share
of units inside that band; :func:`preactivations` collects the pre-activations ``z`` (outputs)
of every binary layer of a network by forward hooks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from compress_extras.binary._layers import BinaryConv2d, BinaryLinear

__all__ = ["band_share", "preactivations"]


def band_share(z: Tensor, width: float = 1.0) -> Tensor:
    """Per-sample share of units with ``|z| <= width``: (N, ...) -> (N,) in [0, 1].

    >>> band_share(torch.tensor([[0.5, 2.0, -1.0, 3.0], [0.0, 0.1, 0.2, 5.0]]))
    tensor([0.5000, 0.7500])
    """
    if z.dim() < 2:
        raise ValueError(f"z must be (N, units...); got shape {tuple(z.shape)}")
    return (z.detach().abs() <= width).flatten(1).float().mean(1)


@torch.no_grad()
def preactivations(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Outputs of every :class:`BinaryLinear` / :class:`BinaryConv2d` of ``model`` on ``x``, by
    module name, in forward order (the mode, train or eval, is left as it is).

    >>> from compress_extras.binary import BinaryLinear
    >>> net = nn.Sequential(BinaryLinear(3, 4, binary_input=False), BinaryLinear(4, 2))
    >>> {k: tuple(v.shape) for k, v in preactivations(net, torch.randn(5, 3)).items()}
    {'0': (5, 4), '1': (5, 2)}
    """
    found: dict[str, Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, name=name: found.__setitem__(name, out))
        for name, m in model.named_modules() if isinstance(m, BinaryLinear | BinaryConv2d)
    ]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return found
