"""Multiplication by ±2^p as an integer add on the exponent field, and the reference matmul/conv.

For an IEEE float with ``m`` mantissa bits in a ``b``-bit word (float32: m = 23, b = 32; float16:
m = 10, b = 16)::

    bits(x * (-1)^sigma * 2^p) = (bits(x) + (p << m)) XOR (sigma << (b - 1))

exactly when ``x`` is normal and ``x * 2^p`` stays normal (p may be negative). It is wrong for
zeros (the add makes a zero into a tiny normal number or, with p < 0, garbage), subnormals, infs
and NaNs, and on under- or overflow. The guard (``guard=True``) keeps the integer path where it is
exact, turns a zero into the correctly signed zero (sign flip only), and falls back to ordinary
multiplication elsewhere, so the result equals ``x * ((-1)^sigma * 2^p)`` bit for bit.

:func:`shift_linear` / :func:`shift_conv2d` compute ``y_o = alpha_o * sum_i x_i * s_oi *
2^(p_oi - P)`` with these products (in the input's dtype, exact), accumulated in float32 and
scaled by ``alpha`` once per output channel: a multiplication-free inner product for DenseShift
weights with float activations. They are reference (not fast) implementations.

>>> x = torch.tensor([1.5, -3.0, 0.0])
>>> exponent_add(x, torch.tensor([2, -1, 3]), torch.tensor([False, True, True]))
tensor([6.0000, 1.5000, -0.0000])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.utils import _pair

from compress_extras.shift._levels import max_exponent

_FORMATS = {torch.float32: (23, 32, 8, torch.int32), torch.float16: (10, 16, 5, torch.int16)}


def _format(dtype: torch.dtype) -> tuple[int, int, int, torch.dtype]:
    if dtype not in _FORMATS:
        raise TypeError(f"exponent_add needs float32 or float16 activations; got {dtype} "
                        "(cast with .float() or .half())")
    return _FORMATS[dtype]


def exponent_add(x: Tensor, exponent: Tensor, negate: Tensor, guard: bool = True) -> Tensor:
    """``x * (-1)^negate * 2^exponent`` by integer operations on the bit pattern of ``x``.

    Args:
        x: float32 or float16 tensor.
        exponent: integer tensor broadcastable with ``x`` (may be negative).
        negate: bool tensor broadcastable with ``x`` (True: flip the sign).
        guard: handle zeros, subnormals, inf/NaN, under- and overflow exactly (module
            docstring); False: the raw integer path, exact only for normal in-range values.

    Returns:
        The products, the broadcast shape, ``x``'s dtype.
    """
    m, b, E, int_dtype = _format(x.dtype)
    exponent, negate = torch.as_tensor(exponent), torch.as_tensor(negate)
    if exponent.dtype.is_floating_point or exponent.dtype == torch.bool:
        raise TypeError(f"exponent must be an integer tensor; got {exponent.dtype}")
    # integer ops in the float's own width (two's complement): add to the exponent field, XOR
    # the sign bit; no carry reaches the sign bit while the result stays in range
    bits = x.view(int_dtype)
    p = exponent.to(device=x.device, dtype=int_dtype)
    flip = torch.where(negate.to(x.device), torch.iinfo(int_dtype).min, 0).to(int_dtype)
    out = ((bits + (p << m)) ^ flip)
    if guard:
        field = (bits >> m) & ((1 << E) - 1)
        top = (1 << E) - 2
        moved = field.to(torch.int32) + p.to(torch.int32)
        exact = (field >= 1) & (field <= top) & (moved >= 1) & (moved <= top)
        zero = (bits & torch.iinfo(int_dtype).max) == 0
        out = torch.where(zero, bits ^ flip, out)
        slow = ~(exact | zero)
        out = out.view(x.dtype)
        if bool(slow.any()):
            factor = torch.where(negate.to(x.device), -1.0, 1.0) * torch.exp2(p.double())
            out = torch.where(slow, (x.double() * factor).to(x.dtype), out)
        return out
    return out.view(x.dtype)


def _check_codes(sign: Tensor, exponent: Tensor, alpha: Tensor) -> None:
    if sign.shape != exponent.shape or alpha.shape != sign.shape[:1]:
        raise ValueError(f"sign and exponent must share a shape (out, ...) and alpha be (out,); "
                         f"got {tuple(sign.shape)}, {tuple(exponent.shape)}, "
                         f"{tuple(alpha.shape)}")


def shift_linear(x: Tensor, sign: Tensor, exponent: Tensor, alpha: Tensor, bits: int,
                 bias: Tensor | None = None, *, zero_code: bool = False,
                 nonzero: Tensor | None = None, guard: bool = True,
                 chunk_elements: int = 1 << 22) -> Tensor:
    """``x W^T (+ bias)`` for shift weights ``W = alpha_o s_oi 2^(p_oi - P)`` without multiplying
    by weights: exponent-add products, float32 accumulation, one multiply by alpha per output.

    Args:
        x: (B, in) float32 or float16 activations.
        sign: (out, in) in {-1, +1}; exponent: (out, in) integers in 0..P; alpha: (out,).
        bits, zero_code: the code (P = max_exponent(bits, zero_code)).
        nonzero: (out, in) bool, the zero code's mask (weights where False are 0).
        guard: see :func:`exponent_add`.
        chunk_elements: at most this many products are materialised at once.

    Returns:
        (B, out) in ``x``'s dtype.

    >>> x = torch.tensor([[1.0, 2.0]])
    >>> shift_linear(x, torch.tensor([[1.0, -1.0]]), torch.tensor([[3, 1]]), torch.tensor([2.0]),
    ...              bits=3)
    tensor([[1.]])
    """
    _check_codes(sign, exponent, alpha)
    if x.dim() != 2 or x.shape[1] != sign.shape[1]:
        raise ValueError(f"x must be (B, {sign.shape[1]}); got {tuple(x.shape)}")
    shift = exponent.to(torch.int64) - max_exponent(bits, zero_code)
    negate = sign < 0
    rows = max(1, chunk_elements // max(1, x.shape[0] * x.shape[1]))
    parts = []
    for start in range(0, sign.shape[0], rows):
        sl = slice(start, start + rows)
        prod = exponent_add(x[:, None, :], shift[None, sl], negate[None, sl], guard)
        if nonzero is not None:
            prod = torch.where(nonzero[None, sl], prod, torch.zeros((), dtype=prod.dtype))
        parts.append(prod.float().sum(dim=-1))
    y = torch.cat(parts, dim=1) * alpha.float()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def shift_conv2d(x: Tensor, sign: Tensor, exponent: Tensor, alpha: Tensor, bits: int,
                 bias: Tensor | None = None, stride=1, padding=0, dilation=1, *,
                 zero_code: bool = False, nonzero: Tensor | None = None, guard: bool = True
                 ) -> Tensor:
    """Convolution (groups = 1, zero padding) with shift weights (out, in, kh, kw), as
    :func:`shift_linear` over the unfolded patches. x: (B, in, H, W) -> (B, out, H', W')."""
    _check_codes(sign, exponent, alpha)
    if x.dim() != 4 or x.shape[1] != sign.shape[1]:
        raise ValueError(f"x must be (B, {sign.shape[1]}, H, W) (groups = 1 only); "
                         f"got {tuple(x.shape)}")
    kh, kw = sign.shape[2:]
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    cols = F.unfold(x, (kh, kw), dilation, padding, stride)  # (B, in*kh*kw, L)
    B, K, L = cols.shape
    flat = cols.transpose(1, 2).reshape(B * L, K)
    nz = None if nonzero is None else nonzero.reshape(sign.shape[0], -1)
    y = shift_linear(flat, sign.reshape(sign.shape[0], -1), exponent.reshape(sign.shape[0], -1),
                     alpha, bits, bias, zero_code=zero_code, nonzero=nz, guard=guard)
    Ho = (x.shape[2] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (x.shape[3] + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return y.reshape(B, Ho, Wo, -1).permute(0, 3, 1, 2)
