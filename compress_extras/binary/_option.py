"""Binary weights as a bit-allocation option, and the converter that makes a network binary.

:class:`BinaryQuant` implements :class:`compress_extras.QuantizerOption`: per output row i of W
(flattened to (out, -1))::

    W_hat_i = alpha_i * sign(W_i - mean(W_i)),   alpha_i = mean_j |W_ij|   (sign(0) = +1)
    bits    = numel(W) + scale_bits * out          (1 bit per weight plus one scale per row)

so ``allocate_bits(model, [BinaryQuant(), Float16()], AverageBits(b), ...)`` chooses float or
binary per layer; :func:`binarize` then swaps the chosen nn.Linear / nn.Conv2d for
:class:`BinaryLinear` / :class:`BinaryConv2d` (weights and biases copied) for training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from compress_extras._code_bits import DeprecatedBitsMethod
from compress_extras._modules import replace_module
from compress_extras.binary._layers import BinaryConv2d, BinaryLinear
from compress_extras.binary._quantizers import sign_pm1

__all__ = ["BinaryQuant", "binarize"]


@dataclass(frozen=True)
class BinaryQuant(DeprecatedBitsMethod):
    """1-bit weights ``alpha_i * sign(W_i - rowmean)`` with an fp16 scale per row.

    Args:
        center: subtract each row's mean before the sign (False: ``sign(W)``).
        scale_bits: bits per stored row scale.

    >>> W = torch.tensor([[0.5, -1.0, 2.5], [0.2, 0.4, 0.0]])
    >>> BinaryQuant().quantize(W)
    tensor([[-1.3333, -1.3333,  1.3333],
            [ 0.2000,  0.2000, -0.2000]])
    >>> BinaryQuant().storage_bits(W), BinaryQuant().name        # 6 weights + 2 rows x 16 bits
    (38.0, 'binary')
    """

    center: bool = True
    scale_bits: int = 16

    @property
    def name(self) -> str:
        return "binary" if self.center else "binary-nc"

    def quantize(self, W: Tensor) -> Tensor:
        if W.dim() < 2:
            raise ValueError(f"BinaryQuant needs a weight (out, ...); got {tuple(W.shape)}")
        if not torch.isfinite(W).all():
            raise ValueError("BinaryQuant: the weight has NaN/inf entries")
        rows = W.detach().float().flatten(1)
        alpha = rows.abs().mean(1, keepdim=True)
        centred = rows - rows.mean(1, keepdim=True) if self.center else rows
        return (alpha * sign_pm1(centred)).reshape(W.shape).to(W.dtype)

    def storage_bits(self, W: Tensor) -> float:
        return float(W.numel() + self.scale_bits * W.shape[0])


def _to_binary(module: nn.Module, binary_input: bool, move: bool, center: bool,
               init_bias) -> nn.Module:
    bias = module.bias is not None
    if isinstance(module, nn.Linear):
        new = BinaryLinear(module.in_features, module.out_features, bias, init_bias=init_bias,
                           binary_input=binary_input, move=move, center=center)
    elif isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise ValueError(f"binarize supports zero padding only; got {module.padding_mode}")
        new = BinaryConv2d(module.in_channels, module.out_channels, module.kernel_size,
                           module.stride, module.padding, module.dilation, module.groups, bias,
                           init_bias=init_bias, binary_input=binary_input, move=move,
                           center=center)
    else:
        raise TypeError(f"binarize converts nn.Linear and nn.Conv2d; got {type(module).__name__}")
    new = new.to(module.weight.device, module.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(module.weight)
        if bias and init_bias == "zero":
            new.bias.copy_(module.bias)
    return new


def binarize(
    model: nn.Module,
    layers: Sequence[str] | None = None,
    *,
    plan=None,
    keep_first_last: bool = True,
    binary_input: bool = True,
    move: bool = True,
    center: bool = True,
    init_bias="zero",
) -> nn.Module:
    """Replace nn.Linear / nn.Conv2d modules of ``model`` by binary ones, in place.

    Args:
        model: the network (modified in place and returned).
        layers: module names to convert; default every nn.Linear and nn.Conv2d except, with
            ``keep_first_last``, the first and the last (the float stem and head).
        plan: an :class:`compress_extras.AllocationPlan`; converts exactly the layers it gave
            a binary option (name ``"binary"`` or ``"binary-nc"``), overriding ``layers``.
        binary_input: binarize each converted layer's input (False: binary weights only; the
            layer then computes exactly ``BinaryQuant().quantize(W)`` with float inputs).
        move, center: as in :class:`BinaryLinear` (a learnable RSign threshold; centred rows).
        init_bias: "zero" (keep the float bias) or a random bias spec (re-initialise it).

    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    >>> [type(m).__name__ for m in binarize(net)]
    ['Linear', 'BinaryLinear', 'Linear']
    """
    if plan is not None:
        names = [n for n, k in zip(plan.layers, plan.options, strict=True)
                 if k in ("binary", "binary-nc")]
        centers = {n: k == "binary" for n, k in zip(plan.layers, plan.options, strict=True)}
    else:
        if layers is None:
            found = [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)
                     and not isinstance(m, BinaryLinear | BinaryConv2d)]
            names = found[1:-1] if keep_first_last else found
        else:
            names = list(layers)
        centers = {}
    for name in names:
        new = _to_binary(model.get_submodule(name), binary_input, move,
                         centers.get(name, center), init_bias)
        replace_module(model, name, new)
    return model
