"""ShiftQuant: the DenseShift (or zero-code shift) projection as a bit-allocation option.

``quantize(W)`` projects every weight to the nearest level of ``alpha_c * {±2^(p-P)}`` (with a
zero code also 0) in the linear domain, with the per-output-channel scale ``alpha_c`` fitted by
:func:`fit_scale` (``scale="mse"``: alternating least squares started at ``max_i |W_ci|``, never
worse than ``"max"``); ``storage_bits(W) = N * numel + scale_bits * out`` (one fp16 alpha per output
channel); ``name`` is ``"shift3"`` (``"shift3z"`` with a zero code), which
:func:`to_denseshift` reads back from an :class:`compress_extras.AllocationPlan`.

>>> import torch
>>> W = torch.tensor([[0.9, -0.3, 0.05, 0.5]])
>>> q = ShiftQuant(3, scale="max")
>>> q.quantize(W), q.storage_bits(W), q.name
(tensor([[ 0.9000, -0.2250,  0.1125,  0.4500]]), 28.0, 'shift3')
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from compress_extras._code_bits import with_code_bits
from compress_extras.shift._levels import check_bits, dequantize, fit_scale, project_codes


@with_code_bits
@dataclass(frozen=True)
class ShiftQuant:
    """N-bit power-of-two projection (module docstring).

    Args:
        bits: 2, 3 or 4.
        zero_code: the conventional shift level set with a zero code instead of DenseShift's.
        scale: ``"mse"`` or ``"max"`` (see :func:`fit_scale`).
        scale_bits: bits per stored alpha (16: fp16).
    """

    bits: int
    zero_code: bool = False
    scale: str = "mse"
    scale_bits: int = 16

    def __post_init__(self) -> None:
        check_bits(self.bits)
        if self.scale not in ("mse", "max"):
            raise ValueError(f'scale must be "mse" or "max"; got {self.scale!r}')

    @property
    def name(self) -> str:
        return f"shift{self.bits}{'z' if self.zero_code else ''}"

    def quantize(self, W: Tensor) -> Tensor:
        rows = W.detach().float().reshape(W.shape[0], -1)
        alpha = fit_scale(rows, self.bits, self.zero_code, self.scale)
        s, p, nz = project_codes(rows, alpha, self.bits, self.zero_code)
        W_hat = dequantize(s, p, alpha, self.bits, self.zero_code, nz)
        return W_hat.reshape(W.shape).to(W.dtype)

    def storage_bits(self, W: Tensor) -> float:
        return float(self.bits * W.numel() + self.scale_bits * W.shape[0])


__all__ = ["ShiftQuant"]
