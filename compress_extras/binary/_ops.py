"""Parameters and operations of a (partly) binary network, ReActNet's convention::

    OPs = BOPs / 64 + FLOPs

- BOPs: multiply-accumulates of binary operands: every :class:`BinaryLinear` and
  :class:`BinaryConv2d` (with binary inputs) and every :class:`BinaryMatMul` (the attention's
  ``Q_b K_b^T`` and ``A_b V_b``);
- FLOPs: multiply-accumulates of the float nn.Linear and nn.Conv2d layers (stem, head, any layer
  left in float, and binary-weight layers with float inputs).

Normalisation, pooling, softmax, shortcuts and elementwise ops are not counted (as in ReActNet
and BinaryViT). Counts are per sample, measured by forward hooks on one batch in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from compress_extras.binary._layers import BinaryConv2d, BinaryLinear
from compress_extras.binary._vit import BinaryMatMul

__all__ = ["OpsCount", "count_ops"]


@dataclass(frozen=True)
class OpsCount:
    """Per-sample counts: ``params``, ``bops``, ``flops`` and ``ops = bops / 64 + flops``."""

    params: int
    bops: int
    flops: int

    @property
    def ops(self) -> float:
        return self.bops / 64 + self.flops

    def to_dict(self) -> dict:
        return {"params": self.params, "bops": self.bops, "flops": self.flops, "ops": self.ops}


def _macs(module: nn.Module, inputs: tuple, output: Tensor) -> int:
    if isinstance(module, BinaryMatMul):
        a, b = inputs
        return a.numel() * b.shape[-1]
    if isinstance(module, nn.Linear):
        return inputs[0].numel() // module.in_features * module.in_features * module.out_features
    kh, kw = module.kernel_size
    return output.numel() * module.in_channels // module.groups * kh * kw


@torch.no_grad()
def count_ops(model: nn.Module, input_shape: Sequence[int], batch: int = 2) -> OpsCount:
    """Count parameters, BOPs and FLOPs of ``model`` on one input of ``input_shape`` (no batch).

    >>> from compress_extras.binary import BinaryLinear
    >>> net = nn.Sequential(nn.Linear(4, 8), BinaryLinear(8, 8), nn.Linear(8, 2))
    >>> count_ops(net, (4,))
    OpsCount(params=130, bops=64, flops=48)
    """
    counts = {"bops": 0, "flops": 0}

    def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        binary = isinstance(module, BinaryMatMul) or (
            isinstance(module, BinaryLinear | BinaryConv2d) and module.binary_input)
        counts["bops" if binary else "flops"] += _macs(module, inputs, output)

    kinds = (nn.Linear, nn.Conv2d, BinaryMatMul)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        model(torch.zeros(batch, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    return OpsCount(params, counts["bops"] // batch, counts["flops"] // batch)
