"""Power-of-two level sets, projection to the nearest level, and the dense (sign, exponent) codes.

Normalised so that ``|w| <= alpha_c`` (one scale per output channel ``c``), an N-bit weight is

- DenseShift (zero-free, ``zero_code=False``): ``w = alpha_c * s * 2^(p - P)``, ``s in {-1, +1}``,
  ``p in {0..P}``, ``P = 2^(N-1) - 1``: all ``2^N`` codes are levels (3 bits: ``alpha/8 * {±1, ±2,
  ±4, ±8}``);
- conventional shift with a zero code (``zero_code=True``, S3-style): ``w in {0} ∪ {alpha_c * s *
  2^(p - P)}`` with ``p in {0..P}``, ``P = 2^(N-1) - 2`` (3 bits: ``alpha/4 * {0, ±1, ±2, ±4}``);
  ``2^N - 1`` codes are used.

Projection is to the nearest level in the *linear* domain: for ``u = |w| / alpha`` the threshold
between ``2^(k-P)`` and ``2^(k+1-P)`` is ``1.5 * 2^(k-P)`` (not ``round(log2 u)``), and with a zero
code the threshold between 0 and ``2^-P`` is ``0.5 * 2^-P``; ties go to the smaller magnitude.
The sign of 0 is +1.

Codes: ``code = (sigma << (N-1)) | p`` with ``sigma = 1`` for a negative weight; with a zero code
the zero weight is ``p = 2^(N-1) - 1`` (all ones) and ``sigma = 0``. Codes are packed densely,
most significant bit first (3 bits: 8 codes in 3 bytes) by :func:`pack_codes`.

>>> levels(3)
tensor([-1.0000, -0.5000, -0.2500, -0.1250,  0.1250,  0.2500,  0.5000,  1.0000])
>>> levels(3, zero_code=True)
tensor([-1.0000, -0.5000, -0.2500,  0.0000,  0.2500,  0.5000,  1.0000])
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from compress_extras._bitpack import pack_bits, unpack_bits

SUPPORTED_BITS = (2, 3, 4)


def check_bits(bits: int) -> int:
    """``bits`` if it is a supported width (2, 3 or 4), else a ValueError saying so."""
    if (isinstance(bits, bool) or not isinstance(bits, int | np.integer)
            or bits not in SUPPORTED_BITS):
        raise ValueError(f"bits must be one of {SUPPORTED_BITS} (a sign bit + a (bits-1)-bit "
                         f"exponent); got {bits!r}")
    return int(bits)


def max_exponent(bits: int, zero_code: bool = False) -> int:
    """``P``, the largest exponent code: ``2^(N-1) - 1``, or ``2^(N-1) - 2`` with a zero code.

    >>> [max_exponent(n) for n in (2, 3, 4)], [max_exponent(n, True) for n in (2, 3, 4)]
    ([1, 3, 7], [0, 2, 6])
    """
    return 2 ** (check_bits(bits) - 1) - 1 - int(bool(zero_code))


def levels(bits: int, zero_code: bool = False, dtype: torch.dtype = torch.float32) -> Tensor:
    """The sorted level set for ``alpha = 1``: (2^N,) without, (2^N - 1,) with a zero code."""
    P = max_exponent(bits, zero_code)
    mags = [2.0 ** (p - P) for p in range(P + 1)]
    values = [-m for m in mags] + mags + ([0.0] if zero_code else [])
    return torch.tensor(sorted(values), dtype=dtype)


def _check_finite(W: Tensor, what: str = "weights") -> None:
    if not torch.isfinite(W).all():
        raise ValueError(f"{what} contain NaN or inf; clean or re-train the model before "
                         "quantizing")


def project_codes(W: Tensor, alpha: Tensor, bits: int, zero_code: bool = False
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """The nearest level of each weight, as codes.

    Args:
        W: (out, ...) weights (finite).
        alpha: (out,) positive per-output-channel scales.

    Returns:
        ``(sign, exponent, nonzero)``: sign in {-1, +1} (float, sign(0) = +1), exponent in
        {0..P} (int64), nonzero (bool; all True without a zero code), each of W's shape.

    >>> s, p, nz = project_codes(torch.tensor([[0.9, -0.3, 0.0, 0.05]]), torch.tensor([1.0]), 3)
    >>> s.tolist(), p.tolist()
    ([[1.0, -1.0, 1.0, 1.0]], [[3, 1, 0, 0]])
    """
    check_bits(bits)
    _check_finite(W)
    if alpha.shape != W.shape[:1] or not bool((alpha > 0).all()):
        raise ValueError(f"alpha must be ({W.shape[0]},) positive scales, one per output "
                         f"channel; got shape {tuple(alpha.shape)}")
    P = max_exponent(bits, zero_code)
    u = W.abs() / alpha.reshape(-1, *([1] * (W.dim() - 1))).to(W.dtype)
    exponent = torch.zeros(W.shape, dtype=torch.int64, device=W.device)
    for k in range(P):
        exponent += (u > 1.5 * 2.0 ** (k - P)).long()
    sign = torch.where(W < 0, -1.0, 1.0).to(W.dtype)
    nonzero = (u > 0.5 * 2.0**-P) if zero_code else torch.ones_like(u, dtype=torch.bool)
    return sign, exponent, nonzero


def dequantize(sign: Tensor, exponent: Tensor, alpha: Tensor, bits: int, zero_code: bool = False,
               nonzero: Tensor | None = None) -> Tensor:
    """``alpha_c * s * 2^(p - P)`` (times ``nonzero``): the weights of the codes, W's shape."""
    P = max_exponent(bits, zero_code)
    mag = torch.exp2((exponent - P).to(alpha.dtype))
    W = alpha.reshape(-1, *([1] * (sign.dim() - 1))) * sign.to(alpha.dtype) * mag
    return W * nonzero.to(W.dtype) if nonzero is not None else W


def fit_scale(W: Tensor, bits: int, zero_code: bool = False, scale: str = "mse",
              iters: int = 20) -> Tensor:
    """Per-output-channel ``alpha`` (out,) for the projection.

    ``"max"``: ``alpha_c = max_i |W_ci|`` (the largest weight is a level). ``"mse"``: starting
    there, alternate the projection with the closed-form least-squares scale for fixed codes,
    ``alpha_c = sum_i |W_ci| l_ci / sum_i l_ci^2`` (l the unit level magnitudes), ``iters``
    times, keeping the best; never worse than ``"max"`` in squared error. All-zero rows get 1.

    >>> fit_scale(torch.tensor([[1.0, 0.5, 0.25]]), 3, scale="max")
    tensor([1.])
    """
    _check_finite(W)
    if scale not in ("max", "mse"):
        raise ValueError(f'scale must be "max" or "mse"; got {scale!r}')
    rows = W.detach().reshape(W.shape[0], -1).float()
    top = rows.abs().amax(dim=1)
    alpha = torch.where(top > 0, top, torch.ones_like(top))
    if scale == "max":
        return alpha.to(W.dtype)
    best, best_err = alpha.clone(), torch.full_like(alpha, float("inf"))
    for _ in range(iters):
        s, p, nz = project_codes(rows, alpha, bits, zero_code)
        unit = dequantize(s, p, torch.ones_like(alpha), bits, zero_code, nz)
        err = ((alpha[:, None] * unit - rows) ** 2).sum(dim=1)
        better = err < best_err
        best, best_err = torch.where(better, alpha, best), torch.where(better, err, best_err)
        den = (unit**2).sum(dim=1)
        new = (rows * unit).sum(dim=1) / den.clamp_min(1e-30)
        alpha = torch.where((den > 0) & (new > 0), new, alpha)
    return best.to(W.dtype)


def encode(sign: Tensor, exponent: Tensor, bits: int, zero_code: bool = False,
           nonzero: Tensor | None = None) -> Tensor:
    """Codes ``(sigma << (N-1)) | p`` as uint8, sigma = 1 for negative (zero: all-ones p).

    >>> encode(torch.tensor([1.0, -1.0, -1.0]), torch.tensor([0, 0, 3]), 3).tolist()
    [0, 4, 7]
    """
    N = check_bits(bits)
    sigma = (sign < 0).to(torch.int64)
    field = exponent.to(torch.int64)
    if zero_code and nonzero is not None:
        sigma = torch.where(nonzero, sigma, 0)
        field = torch.where(nonzero, field, 2 ** (N - 1) - 1)
    return ((sigma << (N - 1)) | field).to(torch.uint8)


def decode(codes: Tensor, bits: int, zero_code: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of :func:`encode`: ``(sign, exponent, nonzero)`` as in :func:`project_codes`."""
    N = check_bits(bits)
    c = codes.to(torch.int64)
    sigma, field = c >> (N - 1), c & (2 ** (N - 1) - 1)
    sign = torch.where(sigma == 1, -1.0, 1.0)
    if zero_code:
        nonzero = field != 2 ** (N - 1) - 1
        return sign, torch.where(nonzero, field, 0), nonzero
    return sign, field, torch.ones_like(field, dtype=torch.bool)


def pack_codes(codes: NDArray | Tensor, bits: int) -> NDArray[np.uint8]:
    """N-bit codes (any shape, values < 2^N) densely packed by
    :func:`compress_extras._bitpack.pack_bits`: ceil(numel * N / 8) uint8.

    >>> len(pack_codes(np.arange(8), 3))   # 8 codes in 3 bytes
    3
    >>> unpack_codes(pack_codes(np.arange(8), 3), 3, 8).tolist()
    [0, 1, 2, 3, 4, 5, 6, 7]
    """
    N = check_bits(bits)
    c = np.asarray(codes.cpu() if isinstance(codes, Tensor) else codes).astype(np.int64).ravel()
    return np.frombuffer(pack_bits(c, N), dtype=np.uint8).copy()


def unpack_codes(packed: NDArray[np.uint8] | bytes, bits: int, count: int) -> NDArray[np.uint8]:
    """The first ``count`` N-bit codes of :func:`pack_codes` output, (count,) uint8."""
    raw = packed.tobytes() if isinstance(packed, np.ndarray) else bytes(packed)
    return unpack_bits(raw, check_bits(bits), count).astype(np.uint8)
