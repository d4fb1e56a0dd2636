"""Quantizer options for bit allocation: the protocol every option implements, and the built-ins.

An option maps a weight tensor W (a Linear's (out, in) or a conv's (out, in/groups, kh, kw)) to

- ``quantize(W)``: the *dequantized* weight W_hat, same shape and dtype (what the layer computes
  with after quantization);
- ``storage_bits(W)``: the storage it costs in bits, overhead included (scales, zero points,
  codebooks, index codes), a float >= 0;
- ``name``: a short unique label (``"int4"``, ``"int3-g128"``, ``"fp16"``, ``"pruned"``).

The allocator (:func:`compress_extras.allocate_bits`) only uses these three, so the shift, binary
and index-coding quantizers plug in by implementing the same protocol (a small frozen dataclass).
An option with a code width calls it ``bits`` (an int: ``UniformQuant(4).bits == 4``); see
:mod:`compress_extras._code_bits` for the names and their deprecated spellings.

Built-ins:

- :class:`UniformQuant`: round-to-nearest asymmetric min-max quantization with ``b`` bits per
  weight, one (scale, zero point) pair per output channel (row of W flattened to (out, -1)) or per
  group of ``group_size`` consecutive weights of a row::

      scale = (max - min) / (2^b - 1),   q = round((w - min) / scale) in {0..2^b - 1},
      w_hat = min + q * scale,           bits = b * numel + 2 * scale_bits * n_scales

  so ``|w_hat - w| <= scale / 2`` and each row (group) keeps its min exactly.
- :class:`Float16`: IEEE half precision, 16 bits per weight.
- :class:`Pruned`: the weight removed, ``w_hat = 0`` at 0 bits (for structures SPR can remove).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from compress_extras._code_bits import DeprecatedBitsMethod, with_code_bits

__all__ = ["Float16", "Pruned", "QuantizerOption", "UniformQuant"]


@runtime_checkable
class QuantizerOption(Protocol):
    """What bit allocation needs from a quantizer (module docstring).

    >>> isinstance(UniformQuant(4), QuantizerOption), isinstance(object(), QuantizerOption)
    (True, False)
    """

    @property
    def name(self) -> str: ...

    def quantize(self, W: Tensor) -> Tensor: ...

    def storage_bits(self, W: Tensor) -> float: ...


@with_code_bits
@dataclass(frozen=True)
class UniformQuant:
    """Asymmetric min-max round-to-nearest quantization (module docstring for the formula).

    Args:
        bits: the code width b, 1..16.
        per: ``"channel"`` (one scale and zero point per output row) or ``"group"`` (per
            ``group_size`` consecutive weights of a row; the last group of a row may be shorter).
        group_size: weights per group with ``per="group"``.
        scale_bits: bits to store one scale and one zero point each (16: fp16).

    >>> W = torch.tensor([[0.0, 0.1, 0.2, 0.3], [-1.0, 0.0, 0.5, 1.0]])
    >>> q = UniformQuant(2)
    >>> q.quantize(W)
    tensor([[ 0.0000,  0.1000,  0.2000,  0.3000],
            [-1.0000,  0.3333,  0.3333,  1.0000]])
    >>> q.storage_bits(W), q.name   # 2 bits x 8 weights + 2 rows x (scale + zero) x 16 bits
    (80.0, 'int2')
    """

    bits: int
    per: str = "channel"
    group_size: int = 128
    scale_bits: int = 16

    def __post_init__(self) -> None:
        if not (isinstance(self.bits, int) and 1 <= self.bits <= 16):
            raise ValueError(f"bits must be an int in 1..16; got {self.bits!r}")
        if self.per not in ("channel", "group"):
            raise ValueError(f'per must be "channel" or "group"; got {self.per!r}')
        if not (isinstance(self.group_size, int) and self.group_size >= 1):
            raise ValueError(f"group_size must be an int >= 1; got {self.group_size!r}")
        if not (isinstance(self.scale_bits, int) and self.scale_bits >= 0):
            raise ValueError(f"scale_bits must be an int >= 0; got {self.scale_bits!r}")

    @property
    def name(self) -> str:
        suffix = f"-g{self.group_size}" if self.per == "group" else ""
        return f"int{self.bits}{suffix}"

    def _blocks(self, W: Tensor) -> tuple[Tensor, int]:
        """W as (blocks, block length), padded by repeating each row's last value, and the
        padded row length."""
        rows = W.reshape(W.shape[0], -1)
        if self.per == "channel":
            return rows, rows.shape[1]
        length = rows.shape[1]
        padded = -(-length // self.group_size) * self.group_size
        if padded > length:
            rows = torch.cat([rows, rows[:, -1:].expand(-1, padded - length)], dim=1)
        return rows.reshape(-1, min(self.group_size, padded)), padded

    def quantize(self, W: Tensor) -> Tensor:
        blocks, padded = self._blocks(W.detach().float())
        low = blocks.amin(dim=1, keepdim=True)
        high = blocks.amax(dim=1, keepdim=True)
        scale = (high - low) / (2**self.bits - 1)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.clamp(torch.round((blocks - low) / safe), 0, 2**self.bits - 1)
        W_hat = low + q * scale
        rows = W_hat.reshape(W.shape[0], padded)[:, : W[0].numel()]
        return rows.reshape(W.shape).to(W.dtype)

    def storage_bits(self, W: Tensor) -> float:
        length = W[0].numel()
        scales = W.shape[0] * (1 if self.per == "channel" else -(-length // self.group_size))
        return float(self.bits * W.numel() + 2 * self.scale_bits * scales)


@dataclass(frozen=True)
class Float16(DeprecatedBitsMethod):
    """IEEE half precision: ``W_hat = W.half()`` (back in W's dtype), 16 bits per weight.

    >>> Float16().storage_bits(torch.zeros(3, 4)), Float16().name
    (192.0, 'fp16')
    """

    @property
    def name(self) -> str:
        return "fp16"

    def quantize(self, W: Tensor) -> Tensor:
        return W.detach().half().to(W.dtype)

    def storage_bits(self, W: Tensor) -> float:
        return 16.0 * W.numel()


@dataclass(frozen=True)
class Pruned(DeprecatedBitsMethod):
    """The weight removed: ``W_hat = 0`` at 0 bits (the layer keeps its bias).

    >>> Pruned().quantize(torch.ones(2, 2)).sum().item(), Pruned().storage_bits(torch.ones(2, 2))
    (0.0, 0.0)
    """

    @property
    def name(self) -> str:
        return "pruned"

    def quantize(self, W: Tensor) -> Tensor:
        return torch.zeros_like(W.detach())

    def storage_bits(self, W: Tensor) -> float:
        return 0.0
