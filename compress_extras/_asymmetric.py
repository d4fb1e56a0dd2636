"""The textbook asymmetric grid: round-to-nearest with an integer zero point (GPTQ / HQQ style).

One grid per output row, or per group of ``group_size`` consecutive weights *inside* a row of W
reshaped to (out, -1) (the last group of a row may be shorter; a group never crosses a row's
end). With b bits and ``top = 2^b - 1``::

    lo    = min(min w, 0),   hi = max(max w, 0)          0 always lies in the range
    scale = fp16((hi - lo) / top)                        rounded to float16 *before* the codes
    zero  = clamp(round(-lo / scale), 0, top)            an integer: a b-bit zero point
    q     = clamp(round(w / scale) + zero, 0, top)       the b-bit code
    w_hat = (q - zero) * scale

so ``w = 0`` decodes to exactly 0 (``q = zero``), ``|w_hat - w| <= scale / 2`` up to the float16
rounding of the scale, and decoding the stored (codes, float16 scale, zero) gives ``w_hat``
bit for bit. A group of zeros has ``scale = 0``: its codes and zero point are 0, ``w_hat = 0``.
A scale below float16's smallest subnormal (6e-8) also becomes 0 (the group decodes to 0) and
subnormal scales keep fewer significant bits: scale weights of that size up first. Storage::

    bits = b * numel + n_groups * (scale_bits + b)       a float16 scale and a b-bit zero point

How it differs from :class:`compress_extras.UniformQuant` (left as it is): UniformQuant's grid is
``lo + k scale`` with the *float* minimum ``lo = min w`` (not clamped) stored next to the scale, so
each row keeps its min exactly but 0 is in general not a level, and it counts ``2 * scale_bits``
per group. Here the offset is a whole number of steps, so 0 is a level (zero and tiny weights
stay exactly 0), the zero point costs b bits, and ``w_hat = scale * (q - zero)`` is the form
integer kernels consume. The price: the range is widened to include 0, so a row that does not
straddle 0 gets a coarser step than UniformQuant's.

>>> W = torch.tensor([[-1.0, 0.0, 0.5, 2.0], [0.2, 0.4, 0.6, 0.8]])
>>> q = AsymmetricRTN(2)
>>> q.quantize(W)
tensor([[-1.0000,  0.0000,  0.0000,  2.0000],
        [ 0.2666,  0.5332,  0.5332,  0.7998]])
>>> q.storage_bits(W), q.name  # 2 bits x 8 weights + 2 rows x (16-bit scale + 2-bit zero)
(52.0, 'asym-int2')
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from compress_extras._code_bits import with_code_bits

__all__ = ["AsymmetricRTN", "asymmetric_grid", "decode_grid", "grid_codes", "quantize_to_grid"]


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"bits must be an int in 1..16; got {bits!r}")
    return bits


def _check_weights(W: Tensor, what: str = "W") -> None:
    if not isinstance(W, Tensor):
        raise ValueError(f"{what} must be a torch.Tensor; got {type(W).__name__}")
    if W.ndim < 2 or W.numel() == 0:
        raise ValueError(f"{what} must be a non-empty tensor of shape (out, in, ...); got "
                         f"{tuple(W.shape)}")
    if not bool(torch.isfinite(W).all()):
        raise ValueError(f"{what} has {int((~torch.isfinite(W)).sum())} non-finite entries "
                         "(NaN or inf); quantization needs finite weights")


def asymmetric_grid(W2d: Tensor, bits: int, group_size: int | None = None
                    ) -> tuple[Tensor, Tensor]:
    """The per-row (``group_size=None``) or per-group grid of ``W2d`` (module docstring).

    Args:
        W2d: (out, in) finite weights.
        bits: b, 1..16.
        group_size: G consecutive weights of a row per group (the last one of a row may be
            shorter), or None for one group per row.

    Returns:
        ``(scale, zero)``, each (out, ceil(in / G)): scale float32 holding float16 values,
        zero int64 in [0, 2^b - 1].

    >>> scale, zero = asymmetric_grid(torch.tensor([[-1.0, 0.0, 0.5, 2.0]]), 2)
    >>> scale.tolist(), zero.tolist()
    ([[1.0]], [[1]])
    """
    _check_bits(bits)
    _check_weights(W2d, "W2d")
    if W2d.ndim != 2:
        raise ValueError(f"W2d must be 2-D (out, in); got {tuple(W2d.shape)}")
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(
            group_size, int) or group_size < 1):
        raise ValueError(f"group_size must be None or an int >= 1; got {group_size!r}")
    rows = W2d.detach().float()
    out, length = rows.shape
    size = length if group_size is None else group_size
    n_groups = -(-length // size)
    # zeros as padding: they move neither the clamped min (<= 0) nor the clamped max (>= 0)
    rows = F.pad(rows, (0, n_groups * size - length))
    groups = rows.reshape(out, n_groups, size)
    lo = groups.amin(dim=2).clamp(max=0.0)
    hi = groups.amax(dim=2).clamp(min=0.0)
    top = 2**bits - 1
    scale16 = ((hi - lo) / top).to(torch.float16)
    if not bool(torch.isfinite(scale16).all()):
        raise ValueError("a scale overflows float16 (range / (2^b - 1) > 65504); scale the "
                         "weights down first")
    scale = scale16.float()
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.where(scale > 0, torch.round(-lo / safe).clamp(0, top), torch.zeros_like(lo))
    return scale, zero.to(torch.int64)


def grid_codes(w: Tensor, scale: Tensor, zero: Tensor, bits: int) -> Tensor:
    """``q = clamp(round(w / scale) + zero, 0, 2^b - 1)`` (int64; ``zero`` where scale = 0), with
    ``scale`` and ``zero`` broadcast against ``w`` (a column (out,) with (out,) grids, say)."""
    top = 2 ** _check_bits(bits) - 1
    scale = scale.float()
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.clamp(torch.round(w.float() / safe) + zero.float(), 0, top)
    return torch.where(scale > 0, codes, zero.float()).to(torch.int64)


def decode_grid(codes: Tensor, scale: Tensor, zero: Tensor) -> Tensor:
    """``w_hat = (q - zero) * scale`` in float32 (broadcast as :func:`grid_codes`)."""
    return (codes - zero).float() * scale.float()


def quantize_to_grid(w: Tensor, scale: Tensor, zero: Tensor, bits: int) -> Tensor:
    """``w`` rounded to the grid ``(scale, zero)``: ``decode_grid(grid_codes(...))``, float32.

    Shapes broadcast: GPTQ passes one column ``w`` (out,) with its group's ``scale`` and ``zero``
    (out,).

    >>> quantize_to_grid(torch.tensor([-0.7, 0.2, 3.0]), torch.tensor(1.0), torch.tensor(1), 2)
    tensor([-1.,  0.,  2.])
    """
    return decode_grid(grid_codes(w, scale, zero, bits), scale, zero)


def _per_column(values: Tensor, size: int, length: int) -> Tensor:
    """(out, n_groups) per-group values repeated over their columns: (out, length)."""
    return values.repeat_interleave(size, dim=1)[:, :length]


@with_code_bits
@dataclass(frozen=True)
class AsymmetricRTN:
    """Round-to-nearest on the integer-zero-point grid, a
    :class:`compress_extras.QuantizerOption` (module docstring for the formulas).

    Args:
        bits: b, 1..16.
        per: ``"channel"`` (one grid per output row) or ``"group"`` (per ``group_size``
            consecutive weights inside a row; the last group of a row may be shorter).
        group_size: weights per group with ``per="group"``.
        scale_bits: bits counted per stored scale (16: float16, which is how it is rounded).

    The name is ``"asym-int{b}"`` or ``"asym-int{b}-g{G}"``.
    """

    bits: int
    per: str = "channel"
    group_size: int = 128
    scale_bits: int = 16

    def __post_init__(self) -> None:
        _check_bits(self.bits)
        if self.per not in ("channel", "group"):
            raise ValueError(f'per must be "channel" or "group"; got {self.per!r}')
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) \
                or self.group_size < 1:
            raise ValueError(f"group_size must be an int >= 1; got {self.group_size!r}")
        if isinstance(self.scale_bits, bool) or not isinstance(self.scale_bits, int) \
                or self.scale_bits < 0:
            raise ValueError(f"scale_bits must be an int >= 0; got {self.scale_bits!r}")

    @property
    def name(self) -> str:
        suffix = f"-g{self.group_size}" if self.per == "group" else ""
        return f"asym-int{self.bits}{suffix}"

    @property
    def columns_per_group(self) -> int | None:
        """G with ``per="group"``, None per channel (the ``group_size`` of
        :func:`asymmetric_grid`)."""
        return self.group_size if self.per == "group" else None

    def encode(self, W: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """What is stored: codes (out, in) int64 (``in`` = W[0].numel()), scale
        (out, n_groups) float16 and zero (out, n_groups) int64."""
        _check_weights(W)
        rows = W.detach().float().reshape(W.shape[0], -1)
        scale, zero = asymmetric_grid(rows, self.bits, self.columns_per_group)
        size = rows.shape[1] if self.per == "channel" else self.group_size
        codes = grid_codes(rows, _per_column(scale, size, rows.shape[1]),
                           _per_column(zero, size, rows.shape[1]), self.bits)
        return codes, scale.to(torch.float16), zero

    def decode(self, codes: Tensor, scale: Tensor, zero: Tensor) -> Tensor:
        """The (out, in) float32 weights of stored ``(codes, scale, zero)``."""
        length = codes.shape[1]
        size = length if self.per == "channel" else self.group_size
        return decode_grid(codes, _per_column(scale, size, length),
                           _per_column(zero, size, length))

    def quantize(self, W: Tensor) -> Tensor:
        return self.decode(*self.encode(W)).reshape(W.shape).to(W.dtype)

    def storage_bits(self, W: Tensor) -> float:
        length = W[0].numel()
        per_row = 1 if self.per == "channel" else -(-length // self.group_size)
        groups = W.shape[0] * per_row
        return float(self.bits * W.numel()
                     + groups * (self.scale_bits + self.bits))
