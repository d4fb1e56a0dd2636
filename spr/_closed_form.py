"""The Structured Perspective Regularizer in closed form (torch, with a hand-written backward).

With ``a = alpha``, ``b = 1 - alpha``, ``r = ||w||_2``, ``m = ||w||_inf``, ``c = sqrt(a/b)``
(docs/mathematics.md §3)::

    y*(w)  = min(1, max(m/M, c*r))
    SPR(w) = a*r^2 + b                if max(m/M, c*r) >= 1
           = 2*sqrt(a*b)*r            if m/M <= c*r < 1
           = a*M*r^2/m + b*m/M        if c*r < m/M < 1
    SPR(0) = 0

All three cases are ``a*r^2/y* + b*y*``, which is how the value is evaluated here (the numpy twin
:func:`mip.spr_penalty` evaluates the cases literally; the tests compare the two).

Gradient. Where ``y* < 1`` and ``w != 0`` the gradient is ``2*a*w / y*`` (an adaptive weight
decay), plus, in the third case where ``y* = m/M`` sits on its lower bound, the term
``(b/M - a*M*||w/m||^2) * d m/dw``. The backward is written out so that it is finite everywhere:

* ``w = 0``: the zero subgradient (SPR has the group-lasso kink there);
* ties of the max entry: ``d m/dw`` is shared equally among the tied entries (a subgradient);
* very large or very small groups (subnormal ones included): everything is computed from
  ``u = w/m`` (entries in [-1, 1]) and ``y*/m``, so nothing overflows or underflows before the
  last product.
Half and bfloat16 inputs are evaluated in float32.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spr._checks import check_alpha, check_groups, check_M

__all__ = ["spr_penalty", "spr_indicator"]


def _statistics(W: Tensor, M: Tensor, alpha: float):
    """Per row, in the scale-free form that neither underflows nor overflows:

    ``m = ||w||_inf``, ``u = w/m``, ``rho = ||u||_2`` (so ``r = m*rho``), ``inv_M = 1/M`` and
    ``y_hat = max(1/M, c*rho) = max(m/M, c*r) / m``; the group is *capped* (``y* = 1``) when
    ``m*y_hat >= 1``, otherwise ``y* = m*y_hat``.
    """
    absW = W.abs()
    m = absW.amax(dim=1)
    nonzero = m > 0
    ones = torch.ones_like(m)
    u = W / torch.where(nonzero, m, ones).unsqueeze(1)
    rho = torch.linalg.vector_norm(u, dim=1)
    inv_M = 1.0 / M
    y_hat = torch.where(nonzero, torch.maximum(inv_M, math.sqrt(alpha / (1 - alpha)) * rho), ones)
    capped = m * y_hat >= 1.0
    return absW, nonzero, m, u, rho, inv_M, y_hat, capped


class _SPRFunction(torch.autograd.Function):
    """Row-wise SPR values of a (G, n) tensor; ``M`` is a (G,) tensor, ``alpha`` a float."""

    @staticmethod
    def forward(W: Tensor, M: Tensor, alpha: float) -> Tensor:
        a, b = alpha, 1.0 - alpha
        _, nonzero, m, _, rho, _, y_hat, capped = _statistics(W, M, alpha)
        # a*r^2/y + b*y with y = m*y_hat, i.e. m*(a*rho^2/y_hat + b*y_hat), or a*r^2 + b if capped
        value = torch.where(capped, a * (m * rho) ** 2 + b, m * (a * rho * rho / y_hat + b * y_hat))
        return torch.where(nonzero, value, torch.zeros_like(value))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        W, M, alpha = inputs
        ctx.save_for_backward(W, M)
        ctx.alpha = alpha

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        W, M = ctx.saved_tensors
        a = ctx.alpha
        b = 1.0 - a
        absW, nonzero, m, u, rho, inv_M, y_hat, capped = _statistics(W, M, a)
        # 2*a*w/y written as 2*a*u*(m/y): m/y is m if capped, else 1/y_hat.
        grad = (2.0 * a) * u * torch.where(capped, m, 1.0 / y_hat).unsqueeze(1)
        # Third case: y = m/M on its lower bound, d y/d w = (1/M) d m/d w, coefficient
        # b - a*r^2/y^2 = b - a*M^2*rho^2.
        boxed = ~capped & (inv_M > math.sqrt(a / b) * rho)
        safe_inv_M = torch.where(boxed, inv_M, torch.ones_like(inv_M))
        coef = torch.where(boxed, b * safe_inv_M - a * rho * rho / safe_inv_M, torch.zeros_like(m))
        ties = absW == m.unsqueeze(1)
        share = coef / ties.sum(dim=1).clamp(min=1)
        grad = grad + share.unsqueeze(1) * torch.sign(W) * ties
        grad = torch.where(nonzero.unsqueeze(1), grad, torch.zeros_like(grad))
        return grad * grad_out.unsqueeze(1), None, None


def _compute_dtype(W: Tensor) -> Tensor:
    return W.float() if W.dtype in (torch.float16, torch.bfloat16) else W


def _as_row_tensor(M: float | Tensor, W: Tensor) -> Tensor:
    if isinstance(M, Tensor):
        return M.to(device=W.device, dtype=W.dtype).expand(W.shape[0])
    return torch.full((W.shape[0],), float(M), device=W.device, dtype=W.dtype)


def _spr_penalty(W: Tensor, alpha: float, M: float | Tensor) -> Tensor:
    """:func:`spr_penalty` without the argument checks (for callers that checked once)."""
    W = _compute_dtype(W)
    return _SPRFunction.apply(W, _as_row_tensor(M, W), alpha)


def _spr_indicator(W: Tensor, alpha: float, M: float | Tensor) -> Tensor:
    W = _compute_dtype(W.detach())
    _, _, m, _, _, _, y_hat, _ = _statistics(W, _as_row_tensor(M, W), alpha)
    return torch.clamp(m * y_hat, max=1.0)


def spr_penalty(W: Tensor, alpha: float, M: float | Tensor = math.inf) -> Tensor:
    """SPR value of each group (row) of ``W``; differentiable, finite backward everywhere.

    Args:
        W: (G, n), one group per row.
        alpha: in (0, 1); ``a = alpha`` weighs the ridge term, ``b = 1 - alpha`` the group count.
        M: big-M bound, a float (``math.inf`` allowed) or a tensor broadcastable to (G,).

    Returns:
        (G,) tensor of SPR values (float32 for half/bfloat16 input, else W's dtype).

    Example:
        >>> W = torch.tensor([[0.0, 0.0], [0.3, 0.4], [3.0, 4.0]])
        >>> spr_penalty(W, alpha=0.5)          # 0, 2*sqrt(ab)*r, a*r^2 + b
        tensor([ 0.0000,  0.5000, 13.0000])
    """
    alpha = check_alpha(alpha)
    check_groups(W)
    return _spr_penalty(W, alpha, check_M(M, W.shape[0]))


def spr_indicator(W: Tensor, alpha: float, M: float | Tensor = math.inf) -> Tensor:
    """The minimising ``y*(w) = min(1, max(||w||_inf/M, sqrt(a/b)*||w||_2))`` per row of ``W``.

    Shapes: ``W`` (G, n); returns (G,), detached; 0 for an all-zero group.

    Example:
        >>> spr_indicator(torch.tensor([[0.1, 0.0], [3.0, 4.0]]), alpha=0.5, M=10.0)
        tensor([0.1000, 1.0000])
    """
    alpha = check_alpha(alpha)
    check_groups(W)
    return _spr_indicator(W, alpha, check_M(M, W.shape[0]))
