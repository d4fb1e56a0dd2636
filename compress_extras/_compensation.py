"""Error-compensated quantizer options: the GPTQ counterpart of an option, for bit allocation.

An option (:class:`compress_extras.QuantizerOption`) rounds every weight on its own. Under
compensation (:func:`compress_extras.gptq_quantize`) the same grid is used, but the weights are
rounded column by column and each column's error is moved onto the columns not yet rounded, to
minimise the layer's output error ``tr((W - W_hat) H (W - W_hat)^T)`` with ``H`` the Gram matrix
of its calibration inputs (the statistics :func:`compress_extras.allocate_bits` already gathers for
``sensitivity="output"``, with :func:`spr._input_statistics.collect_input_statistics`).

:data:`ADAPTERS` maps an option's type to the :class:`compress_extras.ColumnQuantizer` that rounds
its grid column by column (a registry: :func:`register_adapter` adds one):

====================  ==========================================================================
option                column quantizer
====================  ==========================================================================
AsymmetricRTN         :class:`~compress_extras.AsymmetricColumns` (group grids from the updated
                      weights, one scale and zero point per group as before)
UniformQuant          :class:`~compress_extras.UniformColumns`
ShiftQuant            :class:`~compress_extras.ShiftColumns` (per-row scale fixed from W)
ICQuantOption         :class:`~compress_extras.ICQuantColumns` (outlier mask and grids fixed from W)
====================  ==========================================================================

Every adapter keeps the option's storage: the same number of scales, zero points, codebooks and the
same index stream, so ``option.storage_bits(W)`` is the compensated weight's size too. Options
without an adapter (``Float16``, ``Pruned``, ...) are used as they are.

>>> from compress_extras import AsymmetricRTN
>>> g = torch.Generator().manual_seed(0)
>>> X = torch.randn(256, 16, generator=g) @ torch.randn(16, 16, generator=g)
>>> W, H = torch.randn(8, 16, generator=g), X.T @ X
>>> option = AsymmetricRTN(3)
>>> error = lambda V: float(torch.trace((W - V) @ H @ (W - V).T))
>>> error(compensated_weight(option, W, H, Compensation())) < error(option.quantize(W))
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from compress_extras._asymmetric import AsymmetricRTN
from compress_extras._checks import check_int
from compress_extras._gptq import (
    AsymmetricColumns,
    ColumnQuantizer,
    ICQuantColumns,
    ShiftColumns,
    UniformColumns,
    gptq_quantize,
)
from compress_extras._options import QuantizerOption, UniformQuant
from compress_extras.icquant._option import ICQuantOption
from compress_extras.shift._option import ShiftQuant

__all__ = ["ADAPTERS", "Compensation", "column_quantizer", "compensated_weight",
           "register_adapter"]

ADAPTERS: dict[type, Callable[[QuantizerOption], ColumnQuantizer]] = {
    AsymmetricRTN: AsymmetricColumns,
    UniformQuant: UniformColumns,
    ShiftQuant: ShiftColumns,
    ICQuantOption: lambda option: ICQuantColumns(option.settings()),
}


@dataclass(frozen=True)
class Compensation:
    """GPTQ's settings (:func:`compress_extras.gptq_quantize`): columns per lazy block, the
    dampening ``damp * mean(diag H)`` added to H's diagonal, and activation order (columns by
    decreasing ``H_ii``). As ``allocate_bits(..., compensate=...)`` it implements
    :class:`compress_extras._allocation_plan.Compensator` (``hessian``, ``weight``)."""

    block_size: int = 128
    damp: float = 0.01
    act_order: bool = False

    def __post_init__(self) -> None:
        check_int("block_size", self.block_size, 1)
        if not (isinstance(self.damp, int | float) and 0 <= self.damp < float("inf")):
            raise ValueError(f"damp must be a number >= 0; got {self.damp!r}")
        if not isinstance(self.act_order, bool):
            raise ValueError(f"act_order must be True or False; got {self.act_order!r}")

    def hessian(self, gram: Tensor, layer: str) -> Tensor:
        """GPTQ's H from a layer's input Gram sums (:func:`as_hessian`)."""
        return as_hessian(gram, layer)

    def weight(self, option: QuantizerOption, W: Tensor, H: Tensor) -> Tensor:
        """``option``'s weight for W under these settings (:func:`compensated_weight`)."""
        return compensated_weight(option, W, H, self)


def register_adapter(option_type: type,
                     make: Callable[[QuantizerOption], ColumnQuantizer]) -> None:
    """Let options of ``option_type`` be compensated: ``make(option)`` returns the column
    quantizer that rounds the option's grid (it must keep the option's storage, module
    docstring)."""
    if not isinstance(option_type, type):
        raise TypeError(f"option_type must be a class; got {option_type!r}")
    ADAPTERS[option_type] = make


def column_quantizer(option: QuantizerOption) -> ColumnQuantizer | None:
    """The column quantizer of ``option`` (:data:`ADAPTERS`, by exact type), or None when the
    option has none (it is then not compensated)."""
    make = ADAPTERS.get(type(option))
    return None if make is None else make(option)


def compensated_weight(option: QuantizerOption, W: Tensor, H: Tensor,
                       compensation: Compensation) -> Tensor:
    """``option``'s grid with GPTQ error compensation on inputs of Gram matrix ``H`` (d, d),
    ``d = W[0].numel()``; W (out, ...) is rounded as ``W.reshape(out, -1)``. Options without an
    adapter return ``option.quantize(W)``. The result has W's shape and dtype."""
    adapter = column_quantizer(option)
    if adapter is None:
        return option.quantize(W)
    W2d = W.detach().reshape(W.shape[0], -1)
    if H.shape != (W2d.shape[1], W2d.shape[1]):
        raise ValueError(f"H must be ({W2d.shape[1]}, {W2d.shape[1]}) for a weight of "
                         f"{W2d.shape[1]} columns; got {tuple(H.shape)}")
    W_hat = gptq_quantize(W2d, H.to(W2d.device), adapter, block_size=compensation.block_size,
                          damp=compensation.damp, act_order=compensation.act_order)
    return W_hat.reshape(W.shape).to(W.dtype)


def as_hessian(gram: Tensor, layer: str) -> Tensor:
    """A layer's (1, d, d) Gram sum as GPTQ's H (d, d) in float32 (its scale does not matter);
    ValueError for a grouped conv (one H per channel group)."""
    if gram.shape[0] != 1:
        raise ValueError(f"layer {layer!r} is a grouped conv ({gram.shape[0]} channel groups): "
                         "compensation handles ungrouped layers; leave it out with layers= or "
                         "allocate without compensate=")
    return gram[0].to(torch.float32)
