"""Dense packing of fixed-width unsigned codes into bytes, and back (numpy and torch twins).

``pack_bits(codes, width)`` writes each code in ``width`` bits, most significant bit first, one
code after another, and pads the last byte with zero bits: ``ceil(len(codes) * width / 8)``
bytes. ``unpack_bits(buffer, width, count)`` reads ``count`` codes back. The torch twin
``unpack_bits_torch`` does the same on any device (the GPU dequantization path).

>>> buffer = pack_bits(np.array([5, 0, 7, 2]), 3)   # 101 000 111 010 -> 2 bytes
>>> len(buffer), unpack_bits(buffer, 3, 4).tolist()
(2, [5, 0, 7, 2])
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

__all__ = ["pack_bits", "packed_size", "unpack_bits", "unpack_bits_torch"]

MAX_WIDTH = 32


def _check_width(width: int) -> None:
    if not (isinstance(width, int | np.integer) and 1 <= width <= MAX_WIDTH):
        raise ValueError(f"code width must be an int in 1..{MAX_WIDTH}; got {width!r}")


def packed_size(count: int, width: int) -> int:
    """Bytes that ``count`` codes of ``width`` bits take: ``ceil(count * width / 8)``."""
    return -(-int(count) * int(width) // 8)


def pack_bits(codes: NDArray[np.integer], width: int) -> bytes:
    """Codes (any shape, flattened; each in [0, 2^width)) as ``width``-bit big-endian fields."""
    _check_width(width)
    codes = np.asarray(codes).reshape(-1)
    if codes.size and (codes.min() < 0 or int(codes.max()) >= 1 << width):
        raise ValueError(f"codes must lie in [0, 2^{width}); got range "
                         f"[{codes.min()}, {codes.max()}]")
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    bits = (codes.astype(np.uint64)[:, None] >> shifts) & np.uint64(1)
    return np.packbits(bits.astype(np.uint8).reshape(-1)).tobytes()


def unpack_bits(buffer: bytes, width: int, count: int) -> NDArray[np.int64]:
    """The first ``count`` ``width``-bit codes of ``buffer``, as int64 (count,)."""
    _check_width(width)
    if len(buffer) < packed_size(count, width):
        raise ValueError(f"bit stream truncated: {count} codes of {width} bits need "
                         f"{packed_size(count, width)} bytes, got {len(buffer)}")
    bits = np.unpackbits(np.frombuffer(buffer, dtype=np.uint8), count=count * width)
    weights = np.left_shift(np.int64(1), np.arange(width - 1, -1, -1, dtype=np.int64))
    return bits.reshape(count, width).astype(np.int64) @ weights


def unpack_bits_torch(buffer: Tensor, width: int, count: int) -> Tensor:
    """Torch twin of :func:`unpack_bits`: ``buffer`` a uint8 tensor on any device -> int64
    (count,) codes on that device."""
    _check_width(width)
    needed = packed_size(count, width)
    if buffer.numel() < needed:
        raise ValueError(f"bit stream truncated: {count} codes of {width} bits need {needed} "
                         f"bytes, got {buffer.numel()}")
    shifts = torch.arange(7, -1, -1, device=buffer.device, dtype=torch.int64)
    bits = (buffer[:needed].to(torch.int64)[:, None] >> shifts) & 1
    bits = bits.reshape(-1)[: count * width].reshape(count, width)
    weights = torch.ones((), dtype=torch.int64, device=buffer.device) << torch.arange(
        width - 1, -1, -1, device=buffer.device, dtype=torch.int64)
    return (bits * weights).sum(dim=1)
