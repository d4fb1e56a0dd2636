"""Scalar quantizers for ICQuant's two groups, vectorised over rows (blocks) of values.

Each quantizer maps values (rows, m) and a bit width b to integer codes (rows, m) in [0, 2^b) and
per-row metadata (rows, p) stored as float16, and back. The metadata is rounded to float16 *before*
the codes are chosen, so decoding the stored bytes gives exactly what the quantizer computed.

- :class:`MinMaxRTN` (inliers; also the plain quantizer): ``lo = min``, ``s = (max - min) /
  (2^b - 1)``, ``q = round((v - lo) / s)``, ``v_hat = lo + q s``. Metadata (lo, s).
- :class:`ZeroPointRTN` (inliers of ``quantizer="asym"``): the textbook grid of
  :class:`compress_extras.AsymmetricRTN`, the range widened to include 0 and an integer zero point
  ``z``, ``q = clamp(round(v / s) + z)``, ``v_hat = (q - z) s``: 0 is a level (MinMaxRTN's
  ``lo + q s`` in general misses it, which costs language models dearly: the near-zero weights of
  the attention-sink neurons). Metadata (s, z), the whole number z exact in float16.
- :class:`SignMagnitudeRTN` (outliers, which form two tails ``[-max, -t] U [t, max]``): one sign
  bit and a (b-1)-bit min-max RTN of ``|v|`` over ``[min |v|, max |v|]``; with b = 1 the one
  magnitude is the midpoint. Metadata (lo, s) of the magnitudes.
- :class:`Lloyd`: a 2^b-level codebook per row from 1-D k-means (Lloyd's algorithm, quantile
  initialisation, at most ``iterations`` rounds), nearest-level codes. Metadata: the sorted
  codebook.

>>> v = torch.tensor([[0.0, 0.3, 1.0, 0.6]])
>>> codes, meta = MinMaxRTN().encode(v, 2)
>>> codes.tolist(), MinMaxRTN().decode(codes, meta, 2).tolist()
([[0, 1, 3, 2]], [[0.0, 0.333251953125, 0.999755859375, 0.66650390625]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from compress_extras._asymmetric import asymmetric_grid, decode_grid, grid_codes

__all__ = ["QUANTIZERS", "Lloyd", "MinMaxRTN", "ScalarQuantizer", "SignMagnitudeRTN",
           "ZeroPointRTN"]


class ScalarQuantizer(Protocol):
    """What ICQuant needs from a group quantizer (module docstring)."""

    def metadata_size(self, bits: int) -> int:
        """float16 values of metadata per row."""
        ...

    def encode(self, values: Tensor, bits: int) -> tuple[Tensor, Tensor]:
        """(rows, m) float -> codes (rows, m) int64 in [0, 2^bits), metadata (rows, p) float16."""
        ...

    def decode(self, codes: Tensor, metadata: Tensor, bits: int) -> Tensor:
        """codes (rows, m), metadata (rows, p) -> values (rows, m) float32."""
        ...


def _fp16(x: Tensor) -> Tensor:
    y = x.to(torch.float16)
    if not torch.isfinite(y).all():
        raise ValueError("quantizer metadata overflows float16 (|value| > 65504); scale the "
                         "weights down first")
    return y


def _uniform_encode(values: Tensor, levels: int) -> tuple[Tensor, Tensor]:
    if values.shape[1] == 0:
        return values.to(torch.int64), torch.zeros(values.shape[0], 2, dtype=torch.float16,
                                                    device=values.device)
    lo, hi = values.amin(dim=1), values.amax(dim=1)
    if levels == 1:
        lo, scale = (lo + hi) / 2, torch.zeros_like(lo)
    else:
        scale = (hi - lo) / (levels - 1)
    lo16, scale16 = _fp16(lo), _fp16(scale)
    lo_, scale_ = lo16.float()[:, None], scale16.float()[:, None]
    safe = torch.where(scale_ > 0, scale_, torch.ones_like(scale_))
    codes = torch.round((values - lo_) / safe).clamp_(0, levels - 1).to(torch.int64)
    return codes, torch.stack([lo16, scale16], dim=1)


def _uniform_decode(codes: Tensor, metadata: Tensor) -> Tensor:
    meta = metadata.float()
    return meta[:, :1] + codes.float() * meta[:, 1:2]


@dataclass(frozen=True)
class MinMaxRTN:
    """Round-to-nearest on ``[min, max]`` of each row with 2^b levels (module docstring)."""

    def metadata_size(self, bits: int) -> int:
        return 2

    def encode(self, values: Tensor, bits: int) -> tuple[Tensor, Tensor]:
        return _uniform_encode(values.float(), 2**bits)

    def decode(self, codes: Tensor, metadata: Tensor, bits: int) -> Tensor:
        return _uniform_decode(codes, metadata)


@dataclass(frozen=True)
class ZeroPointRTN:
    """Round-to-nearest on the integer-zero-point grid of each row (module docstring)."""

    def metadata_size(self, bits: int) -> int:
        return 2

    def encode(self, values: Tensor, bits: int) -> tuple[Tensor, Tensor]:
        values = values.float()
        if values.shape[1] == 0:
            return values.to(torch.int64), torch.zeros(values.shape[0], 2, dtype=torch.float16,
                                                        device=values.device)
        scale, zero = asymmetric_grid(values, bits)  # scale already float16-valued
        codes = grid_codes(values, scale, zero, bits)
        return codes, torch.cat([_fp16(scale), zero.to(torch.float16)], dim=1)

    def decode(self, codes: Tensor, metadata: Tensor, bits: int) -> Tensor:
        meta = metadata.float()
        return decode_grid(codes, meta[:, :1], meta[:, 1:2])


@dataclass(frozen=True)
class SignMagnitudeRTN:
    """A sign bit and a (b-1)-bit RTN of the magnitudes (module docstring); code = sign << (b-1)
    | magnitude code."""

    def metadata_size(self, bits: int) -> int:
        return 2

    def encode(self, values: Tensor, bits: int) -> tuple[Tensor, Tensor]:
        values = values.float()
        magnitude_codes, metadata = _uniform_encode(values.abs(), 2 ** (bits - 1))
        negative = (values < 0).to(torch.int64)
        return (negative << (bits - 1)) | magnitude_codes, metadata

    def decode(self, codes: Tensor, metadata: Tensor, bits: int) -> Tensor:
        magnitude = _uniform_decode(codes & (2 ** (bits - 1) - 1), metadata)
        return torch.where((codes >> (bits - 1)) == 1, -magnitude, magnitude)


@dataclass(frozen=True)
class Lloyd:
    """Per-row 1-D k-means codebook with 2^b levels (module docstring)."""

    iterations: int = 30

    def metadata_size(self, bits: int) -> int:
        return 2**bits

    def encode(self, values: Tensor, bits: int) -> tuple[Tensor, Tensor]:
        values = values.float().contiguous()
        rows, m = values.shape
        levels = 2**bits
        if m == 0:
            return values.to(torch.int64), torch.zeros(rows, levels, dtype=torch.float16,
                                                        device=values.device)
        ordered = values.sort(dim=1).values
        quantiles = ((torch.arange(levels, device=values.device) + 0.5) / levels * m).long()
        centers = ordered[:, quantiles.clamp(max=m - 1)]
        # On sorted values each cell is a contiguous run, so one Lloyd step is a search for the
        # cell boundaries and differences of prefix sums: O(rows L log m), not O(rows m).
        prefix = torch.nn.functional.pad(ordered.double().cumsum(dim=1), (1, 0))
        last = torch.full((rows, 1), m, device=values.device)
        for _ in range(self.iterations):
            midpoints = ((centers[:, 1:] + centers[:, :-1]) / 2).contiguous()
            ends = torch.cat([torch.searchsorted(ordered, midpoints), last], dim=1)
            starts = torch.nn.functional.pad(ends[:, :-1], (1, 0))
            counts = ends - starts
            sums = prefix.gather(1, ends) - prefix.gather(1, starts)
            updated = torch.where(counts > 0, sums / counts.clamp(min=1), centers.double())
            updated = updated.float().sort(dim=1).values
            if torch.equal(updated, centers):
                break
            centers = updated
        codebook = _fp16(centers).sort(dim=1).values
        return _nearest(values, codebook.float()), codebook

    def decode(self, codes: Tensor, metadata: Tensor, bits: int) -> Tensor:
        return torch.gather(metadata.float(), 1, codes)


def _nearest(values: Tensor, centers: Tensor) -> Tensor:
    """Index of the nearest of the sorted ``centers`` (rows, L) for each of ``values`` (rows, m)."""
    midpoints = ((centers[:, 1:] + centers[:, :-1]) / 2).contiguous()
    return torch.searchsorted(midpoints, values.contiguous())


# quantizer name -> (inlier quantizer, outlier quantizer); a name is stored in the bitstream.
QUANTIZERS: dict[str, tuple[ScalarQuantizer, ScalarQuantizer]] = {
    "rtn": (MinMaxRTN(), SignMagnitudeRTN()),
    "asym": (ZeroPointRTN(), SignMagnitudeRTN()),
    "lloyd": (Lloyd(), Lloyd()),
}
