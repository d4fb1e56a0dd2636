"""ICQuant as a bit-allocation option, and the call that quantizes a model with a plan.

:class:`ICQuantOption` implements :class:`compress_extras.QuantizerOption`: ``quantize(W)`` is the
dequantized ICQuant reconstruction and ``bits(W)`` the length of its encoded bytes in bits, so the
allocator compares options by what they really store. ``outlier_ratio=0`` is the plain quantizer.

:func:`icquant_model` offers every (bits, outlier ratio) pair to
:func:`compress_extras.allocate_bits` under an average-bits budget and writes the chosen
reconstruction into each layer, in place::

    min_{k_l}  sum_l c[l, k_l]   s.t.  sum_l bytes_l(k_l) * 8 <= budget * sum_l n_l

>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
>>> plan = icquant_model(model, 3.5, bits=(2, 4), outlier_ratios=(0.0, 0.05),
...                      sensitivity="none", progress=False)
>>> plan.average_bits <= 3.5, plan.options[0].startswith("icq")
(True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn

from compress_extras._allocation import AllocationPlan, AverageBits, allocate_bits
from compress_extras._code_bits import with_code_bits
from compress_extras.icquant._quantizer import ICQuantized, ICQuantizer

__all__ = ["ICQuantOption", "icquant_model"]


@with_code_bits
@dataclass(frozen=True)
class ICQuantOption:
    """:class:`ICQuantizer` settings as a :class:`compress_extras.QuantizerOption`.

    The name is ``icq<b>-<quantizer>-o<percent>`` (``-g<size>`` with groups), e.g.
    ``icq2-rtn-o5``; ``o0`` is the plain quantizer.
    """

    bits: int
    outlier_ratio: float = 0.05
    quantizer: str = "rtn"
    group_size: int | None = None
    _last: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.settings()  # validates

    def settings(self) -> ICQuantizer:
        return ICQuantizer(self.bits, self.outlier_ratio, self.quantizer,
                           self.group_size)

    @property
    def name(self) -> str:
        group = f"-g{self.group_size}" if self.group_size else ""
        return (f"icq{self.bits}-{self.quantizer}-o{100 * self.outlier_ratio:g}"
                f"{group}")

    def code(self, W: Tensor) -> ICQuantized:
        """W coded (the last result is kept, so ``quantize`` then ``storage_bits`` codes W once)."""
        key = (W.data_ptr(), W._version, tuple(W.shape), str(W.device), str(W.dtype))
        if self._last.get("key") != key:
            self._last.clear()
            self._last.update(key=key, coded=self.settings().quantize(W))
        return self._last["coded"]

    def quantize(self, W: Tensor) -> Tensor:
        return self.code(W).dequantize(device=W.device, dtype=W.dtype)

    def storage_bits(self, W: Tensor) -> float:
        return 8.0 * self.code(W).stored_bytes


def icquant_model(
    model: nn.Module,
    average_bits: float,
    bits: Sequence[int] = (2, 3, 4),
    outlier_ratios: Sequence[float] = (0.0, 0.05),
    quantizer: str = "rtn",
    layers: Sequence[str] | None = None,
    sensitivity: str = "output",
    calibration=None,
    **allocate_kwargs,
) -> AllocationPlan:
    """Quantize ``model``'s layers in place with ICQuant options chosen under a budget.

    Args:
        model: the network (its chosen layers' weights are overwritten).
        average_bits: the budget, bits per weight over the quantized layers, everything stored
            counted (codes, index streams, metadata, headers).
        bits, outlier_ratios: the options offered are every (b, gamma) pair.
        quantizer: ``"rtn"``, ``"asym"`` or ``"lloyd"``.
        layers: module names; default every nn.Linear and nn.Conv2d.
        sensitivity, calibration, **allocate_kwargs: passed to
            :func:`compress_extras.allocate_bits`.

    Returns:
        The :class:`AllocationPlan` that was applied.
    """
    options = [ICQuantOption(b, r, quantizer) for b in bits for r in outlier_ratios]
    plan = allocate_bits(model, options, AverageBits(average_bits), sensitivity=sensitivity,
                         calibration=calibration, layers=layers, **allocate_kwargs)
    plan.apply(model)
    return plan
