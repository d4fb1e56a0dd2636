"""Index coding of outlier positions: gaps between outliers in a fixed B-bit code with an escape.

Per row (block) of ``n`` weights with outlier mask ``m`` (n,), walk the positions left to right
and, before each outlier, count the inliers skipped since the previous outlier (the gap ``g``).
A gap is written as ``g // E`` escape codes followed by the code ``g mod E``, with ``E = 2^B - 1``:

- code ``d`` in ``[0, 2^B - 2]``: skip ``d`` inliers, then one outlier;
- the escape code ``2^B - 1``: skip ``2^B - 1`` inliers, no outlier;
- inliers after a row's last outlier need no code.

Rows are concatenated; knowing each row's outlier count, the decoder assigns every code to its
row. For i.i.d. outlier positions with rate ``gamma`` the gaps are geometric and the expected cost
per weight is (Li et al., ICQuant, 2025)::

    C(gamma, B) = gamma * B / (1 - (1 - gamma)^(2^B - 1))      bits per weight,

against the entropy floor ``H(gamma) = -gamma log2 gamma - (1-gamma) log2 (1-gamma)``
(0.286 at 5%; the best B gives 0.312) and a 1-bit-per-weight bitmap.

Encoding and decoding are vectorised over all rows (numpy; the decoder has a torch twin that runs
on the weights' device). Shapes: masks (rows, n) bool; codes (M,) int64.

>>> mask = np.array([[0, 1, 0, 0, 0, 0, 0, 0, 1, 1]], dtype=bool)
>>> codes = gap_codes(mask, 2)     # gaps 1, 6 = 3 + 3, 0 with E = 3
>>> codes.tolist()
[1, 3, 3, 0, 0]
>>> bool((decode_gap_codes(codes, 2, np.array([3]), 10) == mask).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

__all__ = [
    "binary_entropy",
    "code_counts",
    "decode_gap_codes",
    "decode_gap_codes_torch",
    "expected_index_cost",
    "gap_codes",
    "gaps",
]

MAX_INDEX_BITS = 24


def _check_index_bits(B: int) -> None:
    if not (isinstance(B, int | np.integer) and 1 <= B <= MAX_INDEX_BITS):
        raise ValueError(f"index code width B must be an int in 1..{MAX_INDEX_BITS}; got {B!r}")


def expected_index_cost(gamma: float, B: int) -> float:
    """``C(gamma, B) = gamma B / (1 - (1-gamma)^(2^B-1))`` bits per weight (module docstring).

    >>> round(expected_index_cost(0.05, 6), 3), round(expected_index_cost(0.05, 5), 3)
    (0.312, 0.314)
    """
    _check_index_bits(B)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1]; got {gamma}")
    if gamma == 0.0:
        return 0.0
    return gamma * B / (1.0 - (1.0 - gamma) ** (2**B - 1))


def binary_entropy(gamma: float) -> float:
    """``H(gamma)`` in bits, the least any code for i.i.d. positions can spend per weight.

    >>> round(binary_entropy(0.05), 3)
    0.286
    """
    if gamma in (0.0, 1.0):
        return 0.0
    return -gamma * math.log2(gamma) - (1 - gamma) * math.log2(1 - gamma)


def gaps(mask: NDArray[np.bool_]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Inliers skipped before each outlier and that outlier's row: two (K,) arrays, row-major."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (rows, n); got shape {mask.shape}")
    rows, cols = np.nonzero(mask)
    previous = np.empty_like(cols)
    if cols.size:
        previous[0] = -1
        previous[1:] = np.where(rows[1:] == rows[:-1], cols[:-1], -1)
    return cols - previous - 1, rows


def code_counts(mask: NDArray[np.bool_], widths: Sequence[int]) -> NDArray[np.int64]:
    """Codes each row needs at each width B in ``widths``: (len(widths), rows), the sum over a
    row's outliers of ``gap // (2^B - 1) + 1`` (the gaps are found once for all widths).

    >>> code_counts(np.array([[0, 0, 0, 0, 1], [1, 0, 0, 0, 0]], dtype=bool), [1, 2]).tolist()
    [[5, 1], [2, 1]]
    """
    for B in widths:
        _check_index_bits(B)
    g, rows = gaps(mask)
    return np.stack([
        np.bincount(rows, weights=g // (2**B - 1) + 1, minlength=np.shape(mask)[0])
        for B in widths]).astype(np.int64)


def gap_codes(mask: NDArray[np.bool_], B: int) -> NDArray[np.int64]:
    """The escape-coded gap codes of every row of ``mask`` (rows, n), concatenated: (M,)."""
    _check_index_bits(B)
    escape = 2**B - 1
    g, _ = gaps(mask)
    n_escapes = g // escape
    ends = np.cumsum(n_escapes + 1) - 1  # where each outlier's final code lands
    codes = np.full(int(ends[-1]) + 1 if ends.size else 0, escape, dtype=np.int64)
    codes[ends] = g - n_escapes * escape
    return codes


def decode_gap_codes(codes: NDArray[np.integer], B: int, counts: NDArray[np.integer],
                     n: int) -> NDArray[np.bool_]:
    """Inverse of :func:`gap_codes`: the (rows, n) mask from the codes, the per-row outlier
    counts (rows,) and the row length. Raises ValueError on a stream that cannot come from a
    valid mask (a position past the row end, codes left over, outliers missing)."""
    _check_index_bits(B)
    codes = np.asarray(codes, dtype=np.int64).reshape(-1)
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    escape = 2**B - 1
    mask = np.zeros((counts.size, n), dtype=bool)
    if codes.size and (codes.min() < 0 or codes.max() > escape):
        raise ValueError(f"corrupt index stream: codes outside [0, {escape}]")
    is_outlier = codes != escape
    if int(is_outlier.sum()) != int(counts.sum()):
        raise ValueError(f"corrupt index stream: {int(is_outlier.sum())} outliers coded, "
                         f"{int(counts.sum())} expected")
    if codes.size == 0:
        return mask
    if not is_outlier[-1]:
        raise ValueError("corrupt index stream: it ends in an escape code")
    before = np.cumsum(is_outlier) - is_outlier  # outliers strictly before each code
    row = np.searchsorted(np.cumsum(counts), before, side="right")
    step = np.where(is_outlier, codes + 1, escape)
    total = np.cumsum(step)
    first = np.searchsorted(row, np.arange(counts.size), side="left")
    base = np.where(first > 0, total[np.maximum(first - 1, 0)], 0)
    position = total - base[row] - 1
    rows, cols = row[is_outlier], position[is_outlier]
    if cols.size and cols.max() >= n:
        raise ValueError(f"corrupt index stream: an outlier position {int(cols.max())} lies "
                         f"past the row length {n}")
    mask[rows, cols] = True
    return mask


def decode_gap_codes_torch(codes: Tensor, B: int, counts: Tensor, n: int) -> Tensor:
    """Torch twin of :func:`decode_gap_codes` on the codes' device (the GPU path): (rows, n)."""
    _check_index_bits(B)
    escape = 2**B - 1
    device = codes.device
    codes, counts = codes.to(torch.int64).reshape(-1), counts.to(device, torch.int64).reshape(-1)
    mask = torch.zeros(counts.numel(), n, dtype=torch.bool, device=device)
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > escape):
        raise ValueError(f"corrupt index stream: codes outside [0, {escape}]")
    is_outlier = codes != escape
    coded = int(is_outlier.sum())
    if coded != int(counts.sum()):
        raise ValueError(f"corrupt index stream: {coded} outliers coded, "
                         f"{int(counts.sum())} expected")
    if codes.numel() == 0:
        return mask
    if not bool(is_outlier[-1]):
        raise ValueError("corrupt index stream: it ends in an escape code")
    flags = is_outlier.to(torch.int64)
    before = torch.cumsum(flags, 0) - flags
    row = torch.searchsorted(torch.cumsum(counts, 0), before, right=True)
    step = torch.where(is_outlier, codes + 1, torch.full_like(codes, escape))
    total = torch.cumsum(step, 0)
    first = torch.searchsorted(row, torch.arange(counts.numel(), device=device))
    base = torch.where(first > 0, total[(first - 1).clamp(min=0)], torch.zeros_like(first))
    position = total - base[row] - 1
    rows, cols = row[is_outlier], position[is_outlier]
    if cols.numel() and int(cols.max()) >= n:
        raise ValueError(f"corrupt index stream: an outlier position {int(cols.max())} lies "
                         f"past the row length {n}")
    mask[rows, cols] = True
    return mask
