"""ICQuant (Li et al., COLM 2025): outlier-aware low-bit weights with index-coded positions.

Per block of ``n`` weights (an output row by default, or ``group_size`` consecutive weights of the
row-major matrix), the ``k = round(gamma n)`` largest magnitudes are outliers. Inliers and outliers
are quantized to ``b`` bits each by separate scalar quantizers over their own ranges
(``quantizer="rtn"``: min-max RTN for inliers, sign + magnitude RTN for the two outlier tails;
``"asym"``: the same with the inliers on the integer-zero-point grid, so 0 is a level;
``"lloyd"``: a k-means codebook each), and the outlier positions are index-coded as B-bit gaps with
an escape code (:mod:`compress_extras.icquant._index`), B chosen to minimise the measured size per
matrix or per block. The total rate is::

    bits/weight = b + index bits + metadata bits  ~  b + C(gamma, B*) + 2 x 16 x (2 or 2^b) / n

and every figure reported (``bits_per_weight``, ``index_bits_per_weight``) is counted from the
bytes of :meth:`ICQuantized.to_bytes`, which :meth:`ICQuantized.from_bytes` reads back.
The float16 metadata is stored relative to a per-matrix power of two ``2^e`` (one byte): W is
scaled by ``2^-e`` so its largest magnitude lies in ``[2^13, 2^14)``, coded, and decoded values are
scaled back, so weights of 1e-7 or 1e6 code exactly as well as unit weights (power-of-two scaling is
exact and commutes with every step). Only ``max |W| < 2^-115`` (about 2.4e-35) is refused.
``outlier_ratio=0`` is the plain quantizer (no index stream).

Shapes: W (out, ...) is flattened to (out, in); the result dequantizes to W's shape and dtype.

>>> W = torch.randn(8, 256, generator=torch.Generator().manual_seed(0))
>>> q = ICQuantizer(bits=2, outlier_ratio=0.05).quantize(W)
>>> W_hat = q.dequantize()
>>> W_hat.shape, round(q.bits_per_weight, 2), round(q.index_bits_per_weight, 2)
(torch.Size([8, 256]), 2.82, 0.31)
>>> torch.equal(ICQuantized.from_bytes(q.to_bytes()).dequantize(), W_hat)
True
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from compress_extras._bitpack import pack_bits, packed_size, unpack_bits, unpack_bits_torch
from compress_extras.icquant._format import MAGIC, VERSION, CorruptStreamError, Reader, Writer
from compress_extras.icquant._index import (
    MAX_INDEX_BITS,
    code_counts,
    decode_gap_codes,
    decode_gap_codes_torch,
    gap_codes,
)
from compress_extras.icquant._scalar import QUANTIZERS

__all__ = ["ICQuantized", "ICQuantizer"]

WIDTH_FIELD_BITS = 5  # a per-block B in 1..31
METADATA_TOP = 14  # the largest |weight| is scaled into [2^(TOP-1), 2^TOP): metadata < 2^15 < 65504
MIN_EXPONENT = -128  # the exponent is stored as an i8 (float32 never needs more than 128 - 14)
MODES = {"none": 0, "matrix": 1, "row": 2}
SEARCH_WIDTHS = range(1, 17)


@dataclass(frozen=True)
class ICQuantizer:
    """Settings of ICQuant (module docstring); :meth:`quantize` codes one weight tensor.

    Args:
        bits: bits per code ``b`` (inliers and outliers alike), 1..8.
        outlier_ratio: ``gamma`` in [0, 1): the share of each block coded as outliers.
        quantizer: ``"rtn"``, ``"asym"`` or ``"lloyd"`` (a name in ``QUANTIZERS``).
        group_size: weights per block; ``None`` for one block per output row. Blocks are
            consecutive weights of the row-major (out, in) matrix (within a row whenever
            ``group_size`` divides ``in``); it must divide the weight count.
        index_bits: ``"auto"`` (the smaller of ``"matrix"`` and ``"row"``), ``"matrix"`` (one gap
            width B per matrix), ``"row"`` (one per block, 5 bits each) or a fixed int B.
    """

    bits: int
    outlier_ratio: float = 0.05
    quantizer: str = "rtn"
    group_size: int | None = None
    index_bits: int | str = "auto"

    def __post_init__(self) -> None:
        if not (isinstance(self.bits, int) and 1 <= self.bits <= 8):
            raise ValueError(f"bits must be an int in 1..8; got {self.bits!r}")
        ratio = self.outlier_ratio
        if not (isinstance(ratio, int | float) and 0.0 <= ratio < 1.0):
            raise ValueError(f"outlier_ratio must lie in [0, 1) (0 = plain quantizer); got "
                             f"{ratio!r}")
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {sorted(QUANTIZERS)}; got "
                             f"{self.quantizer!r}")
        if self.group_size is not None and not (
                isinstance(self.group_size, int) and self.group_size >= 1):
            raise ValueError(f"group_size must be None or an int >= 1; got {self.group_size!r}")
        B = self.index_bits
        if not (B in ("auto", "matrix", "row")
                or (isinstance(B, int) and 1 <= B <= MAX_INDEX_BITS)):
            raise ValueError(f'index_bits must be "auto", "matrix", "row" or an int in '
                             f"1..{MAX_INDEX_BITS}; got {B!r}")

    def blocks(self, W: Tensor) -> Tensor:
        """W as float32 blocks (blocks, n), after checking it."""
        if not isinstance(W, Tensor) or W.ndim < 2 or W.numel() == 0:
            raise ValueError("W must be a non-empty tensor of shape (out, in, ...); got "
                             f"{getattr(W, 'shape', type(W).__name__)}")
        W = W.detach().float().cpu()
        if not torch.isfinite(W).all():
            raise ValueError(f"W has {int((~torch.isfinite(W)).sum())} non-finite entries "
                             "(NaN or inf); ICQuant needs finite weights")
        if self.group_size is None:
            return W.reshape(W.shape[0], -1)
        if W.numel() % self.group_size:
            raise ValueError(f"group_size {self.group_size} does not divide the {W.numel()} "
                             f"weights of a {tuple(W.shape)} tensor")
        return W.reshape(-1, self.group_size)

    def quantize(self, W: Tensor) -> ICQuantized:
        """Code ``W``; the result dequantizes, counts its bits and serialises."""
        blocks = self.blocks(W)
        exponent = _metadata_exponent(blocks)
        blocks = _scale_pow2(blocks, -exponent)
        rows, n = blocks.shape
        k = int(self.outlier_ratio * n + 0.5)
        mask = torch.zeros(rows, n, dtype=torch.bool)
        if k:
            mask.scatter_(1, blocks.abs().topk(k, dim=1).indices, True)
        inlier_q, outlier_q = QUANTIZERS[self.quantizer]
        codes = torch.empty(rows, n, dtype=torch.int64)
        in_codes, in_meta = inlier_q.encode(blocks[~mask].reshape(rows, n - k), self.bits)
        out_codes, out_meta = outlier_q.encode(blocks[mask].reshape(rows, k), self.bits)
        codes[~mask], codes[mask] = in_codes.reshape(-1), out_codes.reshape(-1)
        if k == 0:  # an empty group stores no metadata
            out_meta = out_meta[:, :0]
        if k == n:
            in_meta = in_meta[:, :0]
        mode, widths, streams = _index_streams(mask.numpy(), k, self.index_bits)
        return ICQuantized(
            shape=tuple(W.shape), dtype=str(W.dtype).removeprefix("torch."), bits=self.bits,
            quantizer=self.quantizer, block_length=n, outliers=k,
            codes=pack_bits(codes.numpy(), self.bits), index_mode=mode, widths=widths,
            streams=streams, inlier_metadata=in_meta.numpy(), outlier_metadata=out_meta.numpy(),
            metadata_exponent=exponent)


def _metadata_exponent(blocks: Tensor) -> int:
    """The ``e`` that scales max |W| into ``[2^(METADATA_TOP-1), 2^METADATA_TOP)`` (0 for W = 0)."""
    largest = float(blocks.abs().max())
    if largest == 0.0:
        return 0
    exponent = math.frexp(largest)[1] - METADATA_TOP  # largest in [2^(x-1), 2^x)
    if exponent < MIN_EXPONENT:
        raise ValueError(
            f"W's largest |weight| is {largest:.3g}, below the 2^{MIN_EXPONENT + METADATA_TOP - 1}"
            f" (~{2.0 ** (MIN_EXPONENT + METADATA_TOP - 1):.2g}) that ICQuant's metadata exponent "
            "reaches; scale W up (by a power of two) before quantizing, and back afterwards")
    return exponent


def _scale_pow2(values: Tensor, exponent: int) -> Tensor:
    """``values * 2^exponent``, exactly (correctly rounded only where the result is subnormal)."""
    if exponent == 0:
        return values
    if -126 <= exponent <= 127:  # 2^exponent is a normal float32: one exact float32 multiply
        return values * 2.0**exponent
    return (values.double() * 2.0**exponent).to(values.dtype)


def _index_streams(mask: NDArray[np.bool_], k: int, index_bits: int | str):
    """Choose the gap widths and code the mask: (mode, widths (blocks,), streams)."""
    rows = mask.shape[0]
    if k == 0:
        return "none", np.zeros(rows, dtype=np.uint8), ()
    if isinstance(index_bits, int):
        widths, mode = np.full(rows, index_bits, dtype=np.uint8), "matrix"
    else:
        bits = code_counts(mask, SEARCH_WIDTHS) * np.array(SEARCH_WIDTHS)[:, None]
        matrix_B = SEARCH_WIDTHS[int(bits.sum(axis=1).argmin())]
        row_B = np.array(SEARCH_WIDTHS)[bits.argmin(axis=0)]
        matrix_size = packed_size(bits.sum(axis=1).min(), 1)
        row_size = sum(packed_size(bits[B - 1, row_B == B].sum(), 1) for B in set(row_B)) \
            + packed_size(rows, WIDTH_FIELD_BITS)
        if index_bits == "row" or (index_bits == "auto" and row_size < matrix_size):
            widths, mode = row_B.astype(np.uint8), "row"
        else:
            widths, mode = np.full(rows, matrix_B, dtype=np.uint8), "matrix"
    streams = []
    for B in sorted({int(b) for b in widths}):
        codes = gap_codes(mask[widths == B], B)
        streams.append((B, int(codes.size), pack_bits(codes, B)))
    return mode, widths, tuple(streams)


@dataclass(frozen=True, eq=False)
class ICQuantized:
    """A weight tensor coded by :class:`ICQuantizer`: packed codes, index streams, metadata.

    Attributes:
        shape, dtype: the original tensor's.
        bits, quantizer, block_length (n), outliers (k per block).
        codes: every weight's b-bit code, packed (bytes).
        index_mode: ``"none"``, ``"matrix"`` or ``"row"``; widths: (blocks,) gap width B.
        streams: ``(B, number of codes, bytes)`` per distinct B, blocks in order.
        inlier_metadata, outlier_metadata: (blocks, p) float16, of the weights scaled by
            ``2^-metadata_exponent``.
        metadata_exponent: ``e``, the power of two the decoded values are scaled back by (0 in
            version-1 streams).
    """

    shape: tuple[int, ...]
    dtype: str
    bits: int
    quantizer: str
    block_length: int
    outliers: int
    codes: bytes
    index_mode: str
    widths: NDArray[np.uint8]
    streams: tuple[tuple[int, int, bytes], ...]
    inlier_metadata: NDArray[np.float16]
    outlier_metadata: NDArray[np.float16]
    metadata_exponent: int = 0

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape))

    @property
    def n_blocks(self) -> int:
        return self.numel // self.block_length

    @cached_property
    def _bytes(self) -> bytes:
        return self.to_bytes()

    @property
    def stored_bytes(self) -> int:
        """``len(to_bytes())``: everything stored, header and checksum included."""
        return len(self._bytes)

    @property
    def bits_per_weight(self) -> float:
        """Everything stored (``len(to_bytes())``, header and checksum included) per weight."""
        return 8 * len(self._bytes) / self.numel

    @property
    def index_bits_per_weight(self) -> float:
        """The outlier positions' share: gap streams plus the stored widths, per weight."""
        return 8 * (len(self._width_field()) + sum(len(s) for _, _, s in self.streams)) \
            / self.numel

    @property
    def metadata_bits_per_weight(self) -> float:
        return 8 * (self.inlier_metadata.nbytes + self.outlier_metadata.nbytes) / self.numel

    def _width_field(self) -> bytes:
        if self.index_mode == "none":
            return b""
        if self.index_mode == "matrix":
            return bytes([int(self.widths[0])])
        return pack_bits(self.widths, WIDTH_FIELD_BITS)

    def outlier_mask(self) -> NDArray[np.bool_]:
        """The decoded (blocks, n) outlier mask (numpy decoder)."""
        mask = np.zeros((self.n_blocks, self.block_length), dtype=bool)
        for B, count, stream in self.streams:
            rows = self.widths == B
            codes = unpack_bits(stream, B, count)
            mask[rows] = decode_gap_codes(codes, B, np.full(int(rows.sum()), self.outliers),
                                          self.block_length)
        return mask

    def levels(self) -> tuple[Tensor | None, Tensor | None]:
        """Every code's value per block, ``(inliers, outliers)``, each (blocks, 2^b) float32
        indexed by code (scaled back by ``2^e``: what :meth:`dequantize` gives that code); None
        for an empty group."""
        every_code = torch.arange(2**self.bits).expand(self.n_blocks, -1)
        tables = []
        for q, meta, members in zip(QUANTIZERS[self.quantizer],
                                    (self.inlier_metadata, self.outlier_metadata),
                                    (self.block_length - self.outliers, self.outliers),
                                    strict=True):
            if members == 0:
                tables.append(None)
                continue
            values = q.decode(every_code, torch.from_numpy(meta), self.bits)
            tables.append(_scale_pow2(values, self.metadata_exponent))
        return tables[0], tables[1]

    def recode(self, W_hat: Tensor) -> ICQuantized:
        """The same coding (mask, index streams, metadata) with new codes: each weight of
        ``W_hat`` (``shape``) takes the code of the nearest value of its group's grid (inlier
        or outlier, by the mask). When ``W_hat`` lies on those grids -- as the output of GPTQ
        with :class:`compress_extras.ICQuantColumns` does -- ``recode(W_hat).dequantize()``
        equals it exactly, at :attr:`stored_bytes` unchanged."""
        if tuple(W_hat.shape) != self.shape:
            raise ValueError(f"W_hat must have the coded shape {self.shape}; got "
                             f"{tuple(W_hat.shape)}")
        values = W_hat.detach().float().cpu().reshape(self.n_blocks, -1)
        mask = torch.from_numpy(self.outlier_mask())
        codes = torch.empty(values.shape, dtype=torch.int64)
        for table, where in zip(self.levels(), (~mask, mask), strict=True):
            if table is None:
                continue
            for start in range(0, self.n_blocks, 256):  # (rows, n, 2^b) distances, in chunks
                part = slice(start, start + 256)
                distance = (values[part, :, None] - table[part, None, :]).abs()
                nearest = distance.argmin(dim=2)
                codes[part] = torch.where(where[part], nearest, codes[part])
        return dataclasses.replace(self, codes=pack_bits(codes.numpy(), self.bits))

    def dequantize(self, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> Tensor:
        """The reconstructed weights on ``device`` (decoded there: the GPU path on CUDA), in
        ``dtype`` (default: the original dtype)."""
        device = torch.device(device or "cpu")
        rows, n, k = self.n_blocks, self.block_length, self.outliers
        codes = unpack_bits_torch(_tensor(self.codes, device), self.bits, rows * n)
        codes = codes.reshape(rows, n)
        mask = torch.zeros(rows, n, dtype=torch.bool, device=device)
        widths = torch.as_tensor(self.widths.astype(np.int64), device=device)
        for B, count, stream in self.streams:
            selected = widths == B
            gap = unpack_bits_torch(_tensor(stream, device), B, count)
            counts = torch.full((int(selected.sum()),), k, device=device)
            mask[selected] = decode_gap_codes_torch(gap, B, counts, n)
        if int(mask.sum()) != rows * k:
            raise CorruptStreamError("ICQuant stream's index streams do not cover every block")
        inlier_q, outlier_q = QUANTIZERS[self.quantizer]
        meta_in = torch.as_tensor(self.inlier_metadata, device=device)
        meta_out = torch.as_tensor(self.outlier_metadata, device=device)
        values = torch.empty(rows, n, dtype=torch.float32, device=device)
        values[~mask] = inlier_q.decode(codes[~mask].reshape(rows, n - k), meta_in,
                                        self.bits).reshape(-1)
        values[mask] = outlier_q.decode(codes[mask].reshape(rows, k), meta_out,
                                        self.bits).reshape(-1)
        values = _scale_pow2(values, self.metadata_exponent)
        return values.reshape(self.shape).to(dtype or getattr(torch, self.dtype))

    def to_bytes(self) -> bytes:
        """The compact serialisation (layout in :mod:`compress_extras.icquant._format`)."""
        w = Writer()
        w.parts.append(MAGIC)
        w.u8(VERSION)
        w.u8(self.bits)
        w.u8(MODES[self.index_mode])
        w.text(self.quantizer)
        w.text(self.dtype)
        w.u8(len(self.shape))
        for size in self.shape:
            w.u32(size)
        w.u32(self.block_length)
        w.u32(self.outliers)
        w.i8(self.metadata_exponent)
        w.blob(self.codes)
        w.blob(self._width_field())
        w.u8(len(self.streams))
        for B, count, stream in self.streams:
            w.u8(B)
            w.u32(count)
            w.blob(stream)
        w.blob(self.inlier_metadata.astype("<f2").tobytes())
        w.blob(self.outlier_metadata.astype("<f2").tobytes())
        return w.finish()

    @classmethod
    def from_bytes(cls, data: bytes) -> ICQuantized:
        """Parse :meth:`to_bytes`' output; :class:`CorruptStreamError` (a ValueError) on a
        truncated, corrupted or inconsistent stream."""
        r = Reader.open(data)
        bits, mode_id = r.u8(), r.u8()
        quantizer, dtype = r.text(), r.text()
        shape = tuple(r.u32() for _ in range(r.u8()))
        n, k = r.u32(), r.u32()
        exponent = r.i8() if r.version >= 2 else 0
        modes = {v: m for m, v in MODES.items()}
        numel = int(np.prod(shape)) if shape else 0
        if (mode_id not in modes or quantizer not in QUANTIZERS or not 1 <= bits <= 8
                or not isinstance(getattr(torch, dtype, None), torch.dtype) or n == 0
                or numel % n or k > n):
            raise CorruptStreamError("ICQuant stream header is inconsistent")
        rows, mode = numel // n, modes[mode_id]
        codes = r.blob()
        if len(codes) != packed_size(numel, bits):
            raise CorruptStreamError("ICQuant stream's code section has the wrong length")
        width_field = r.blob()
        if mode == "none":
            widths = np.zeros(rows, dtype=np.uint8)
        elif mode == "matrix" and len(width_field) == 1:
            widths = np.full(rows, width_field[0], dtype=np.uint8)
        elif mode == "row" and len(width_field) == packed_size(rows, WIDTH_FIELD_BITS):
            widths = unpack_bits(width_field, WIDTH_FIELD_BITS, rows).astype(np.uint8)
        else:
            raise CorruptStreamError("ICQuant stream's width section is inconsistent")
        streams = []
        for _ in range(r.u8()):
            B, count, stream = r.u8(), r.u32(), r.blob()
            if not 1 <= B <= MAX_INDEX_BITS or len(stream) != packed_size(count, B):
                raise CorruptStreamError("ICQuant stream has an inconsistent index stream")
            streams.append((B, count, stream))
        if sorted(B for B, _, _ in streams) != sorted({int(b) for b in widths} - {0}):
            raise CorruptStreamError("ICQuant stream's index streams do not match its widths")
        inlier_q, outlier_q = QUANTIZERS[quantizer]
        meta = []
        for q, members in ((inlier_q, n - k), (outlier_q, k)):
            size = q.metadata_size(bits) if members else 0
            raw = r.blob()
            if len(raw) != 2 * rows * size:
                raise CorruptStreamError("ICQuant stream's metadata has the wrong length")
            meta.append(np.frombuffer(raw, dtype="<f2").astype(np.float16).reshape(rows, size))
        r.done()
        return cls(shape=shape, dtype=dtype, bits=bits, quantizer=quantizer, block_length=n,
                   outliers=k, codes=codes, index_mode=mode, widths=widths,
                   streams=tuple(streams), inlier_metadata=meta[0], outlier_metadata=meta[1],
                   metadata_exponent=exponent)


def _tensor(raw: bytes, device: torch.device) -> Tensor:
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).copy()).to(device)
