"""DenseShiftConv2d and DenseShiftLinear: drop-in layers whose weights are N-bit powers of two.

The weight is ``W = alpha_c * w / 2^P`` with ``w = s 2^p`` from the latents (see
:mod:`compress_extras.shift._latent`), so ``|W| <= alpha_c`` and ``W in {±alpha_c 2^(k-P)}``;
``alpha`` (out,) is a learnable per-output-channel scale. ``zero_code=True`` gives the
conventional shift layer with a zero code at the same bits (the baseline).

Fresh layers draw every latent from N(0, 1e-3^2) and set ``alpha`` so that the RMS of the initial
weights equals He's ``sqrt(2 / fan_in)``; :meth:`from_float` instead projects a trained layer's
weights to the nearest level (linear domain) with a fitted per-channel scale.

>>> torch.manual_seed(0) is not None
True
>>> layer = DenseShiftLinear(8, 4, bits=3)
>>> x = torch.randn(2, 8)
>>> layer(x).shape, sorted(set(layer.codes()[1].flatten().tolist())) <= [0, 1, 2, 3]
(torch.Size([2, 4]), True)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from compress_extras.shift._latent import (
    exponent_probabilities,
    init_latents,
    latents_from_codes,
    shift_weight,
)
from compress_extras.shift._levels import (
    check_bits,
    dequantize,
    encode,
    fit_scale,
    max_exponent,
    pack_codes,
    project_codes,
)


class _ShiftWeight(nn.Module):
    """Latents + per-channel scale of one N-bit shift weight of shape ``weight_shape``."""

    def _init_shift(self, weight_shape: tuple[int, ...], bits: int, zero_code: bool,
                    init_std: float) -> None:
        self.bits, self.zero_code = check_bits(bits), bool(zero_code)
        self.weight_shape = tuple(weight_shape)
        lat = init_latents(self.weight_shape, bits, zero_code, init_std)
        self.sign_latent = nn.Parameter(lat["sign"])
        self.gate_latents = nn.Parameter(lat["gates"])
        self.value_latent = nn.Parameter(lat["value"]) if zero_code else None
        fan_in = math.prod(self.weight_shape[1:])
        P = max_exponent(bits, zero_code)
        if zero_code:  # value gate on with probability 1/2, p as DenseShift with one gate fewer
            probs = [2.0 ** -(k + 1) for k in range(P)] + [2.0**-P]
            mean_sq = 0.5 * sum(q * 4.0 ** (k - P) for k, q in enumerate(probs))
        else:
            mean_sq = sum(q * 4.0 ** (k - P) for k, q in enumerate(exponent_probabilities(bits)))
        alpha = math.sqrt(2.0 / fan_in) / math.sqrt(mean_sq)
        self.alpha = nn.Parameter(torch.full((self.weight_shape[0],), alpha))

    def quantized_weight(self) -> Tensor:
        """``alpha_c * s * 2^(p-P)`` (times the value gate), the weight's shape, differentiable
        through the straight-through estimators."""
        w = shift_weight(self.sign_latent, self.gate_latents, self.value_latent)
        scale = self.alpha * 2.0 ** -max_exponent(self.bits, self.zero_code)
        return scale.reshape(-1, *([1] * (w.dim() - 1))) * w

    @property
    def weight(self) -> Tensor:
        """The forward weight (as :meth:`quantized_weight`), so code reading ``.weight`` works."""
        return self.quantized_weight()

    @torch.no_grad()
    def codes(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(sign, exponent, nonzero)`` of the current weights (exponent in 0..P, int64)."""
        sign = torch.where(self.sign_latent >= 0, 1.0, -1.0)
        p = torch.zeros(self.weight_shape, dtype=torch.int64, device=sign.device)
        for i in range(self.gate_latents.shape[0]):
            p = (self.gate_latents[i] > 0).long() * (1 + p)
        nz = (self.value_latent > 0) if self.zero_code else torch.ones_like(p, dtype=torch.bool)
        return sign, p, nz

    @torch.no_grad()
    def _copy_from(self, module: nn.Module, scale: str):
        """Project ``module``'s weight to the nearest level and copy its bias; returns self."""
        self.load_weight(module.weight, scale)
        if module.bias is not None:
            self.bias.data.copy_(module.bias.detach())
        return self

    def load_weight(self, W: Tensor, scale: str = "mse", magnitude: float | None = None) -> None:
        """Project ``W`` (weight_shape) to the nearest level with a fitted scale (``"mse"`` or
        ``"max"``, see :func:`fit_scale`) and set the latents to reproduce it, each of magnitude
        ``magnitude`` (default 1e-3, next to its flip threshold)."""
        if tuple(W.shape) != self.weight_shape:
            raise ValueError(f"weight must have shape {self.weight_shape}; got {tuple(W.shape)}")
        W = W.detach().float()
        alpha = fit_scale(W, self.bits, self.zero_code, scale)
        s, p, nz = project_codes(W, alpha, self.bits, self.zero_code)
        lat = latents_from_codes(s, p, self.bits, self.zero_code, nz,
                                 1e-3 if magnitude is None else magnitude)
        device = self.sign_latent.device
        self.sign_latent.copy_(lat["sign"].to(device))
        self.gate_latents.copy_(lat["gates"].to(device))
        if self.zero_code:
            self.value_latent.copy_(lat["value"].to(device))
        self.alpha.copy_(alpha.to(device))

    @torch.no_grad()
    def export(self) -> dict:
        """Storage form: ``{"bits", "zero_code", "shape", "packed" (uint8 ndarray of the dense
        codes, see pack_codes), "alpha" (out,) float16 ndarray, "bias" or None}``; the weight
        is ``dequantize(*decode(unpack_codes(packed)), alpha)``."""
        s, p, nz = self.codes()
        codes = encode(s, p, self.bits, self.zero_code, nz)
        bias = getattr(self, "bias", None)
        return {"bits": self.bits, "zero_code": self.zero_code, "shape": list(self.weight_shape),
                "packed": pack_codes(codes, self.bits),
                "alpha": self.alpha.detach().cpu().numpy().astype(np.float16),
                "bias": None if bias is None else bias.detach().cpu().numpy()}

    @torch.no_grad()
    def dequantized(self) -> Tensor:
        """The forward weight rebuilt from the codes (no autograd)."""
        s, p, nz = self.codes()
        return dequantize(s, p, self.alpha.detach(), self.bits, self.zero_code, nz)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bits={self.bits}, zero_code={self.zero_code}"


class DenseShiftLinear(_ShiftWeight):
    """``y = x W^T + b`` with N-bit power-of-two ``W`` (out, in); nn.Linear's arguments plus
    ``bits`` (2, 3, 4), ``zero_code`` and ``init_std`` (latent std, 1e-3)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bits: int = 3,
                 zero_code: bool = False, init_std: float = 1e-3) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_shift((out_features, in_features), bits, zero_code, init_std)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)

    @classmethod
    def from_float(cls, module: nn.Linear, bits: int = 3, zero_code: bool = False,
                   scale: str = "mse") -> DenseShiftLinear:
        """A shift copy of ``module`` with its weights projected to the nearest level."""
        new = cls(module.in_features, module.out_features, module.bias is not None, bits,
                  zero_code).to(module.weight.device)
        return new._copy_from(module, scale)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, bits={self.bits}, zero_code={self.zero_code}")


class DenseShiftConv2d(_ShiftWeight):
    """2-D convolution with N-bit power-of-two weights (out, in/groups, kh, kw); nn.Conv2d's
    arguments (zero padding only) plus ``bits``, ``zero_code`` and ``init_std``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, bits: int = 3,
                 zero_code: bool = False, init_std: float = 1e-3) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.dilation = _pair(dilation)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self._init_shift(shape, bits, zero_code, init_std)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.quantized_weight(), self.bias, self.stride, self.padding,
                        self.dilation, self.groups)

    @classmethod
    def from_float(cls, module: nn.Conv2d, bits: int = 3, zero_code: bool = False,
                   scale: str = "mse") -> DenseShiftConv2d:
        """A shift copy of ``module`` with its weights projected to the nearest level."""
        if module.padding_mode != "zeros":
            raise ValueError(f"only zero padding is supported; got {module.padding_mode!r}")
        new = cls(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                  module.padding, module.dilation, module.groups, module.bias is not None, bits,
                  zero_code).to(module.weight.device)
        return new._copy_from(module, scale)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}, "
                f"bits={self.bits}, zero_code={self.zero_code}")
