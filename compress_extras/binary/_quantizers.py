"""The three binarizers of BinaryViT as autograd functions, with their exact straight-through
estimators (Le & Li 2023, code ``transformer/utils_quant.py``; BiT for the attention).

- Weights, per output row i of W (out, in) (a conv's (out, in/groups, kh, kw) flattened)::

      c = W - rowmean(W)  (or c = W without centring),  alpha_i = mean_j |W_ij|  (detached)
      forward:  W_b = alpha ⊙ sign(c)                       two values per row: ±alpha_i
      backward: dL/dc = dL/dW_b ⊙ 1[|c| <= 1]              (the clip STE of clamp(c, -1, 1))

  and the gradient reaches W through the centring. ``sign(0) = +1`` here, so a row takes
  exactly the two values ±alpha_i (torch.sign would give a third value, 0).
- Activations: forward ``sign(x)`` in {-1, +1}; backward the Bi-Real ApproxSign derivative
  ``2 + 2x`` on [-1, 0], ``2 - 2x`` on (0, 1], 0 elsewhere, i.e. ``max(0, 2 - 2|x|)``.
- Attention probabilities A in [0, 1] (BiT elastic binarization, Q_n = 0, Q_p = 1)::

      forward:  A_b = alpha * clamp(round(A / alpha), 0, 1)      values in {0, alpha}
      backward: dL/dA = dL/dA_b ⊙ 1[0 <= A/alpha <= 1]
                dL/dalpha = g * sum(dL/dA_b ⊙ (1[A/alpha > 1] + 1[0 <= A/alpha <= 1] *
                                                (round(A/alpha) - A/alpha)))
                with the LSQ gradient scale g = 1 / sqrt(numel(A))

  alpha is clamped below at 1e-5 in both passes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["approx_sign", "binarize_attention", "binarize_weight", "sign_pm1"]

ALPHA_EPS = 1e-5


def sign_pm1(x: Tensor) -> Tensor:
    """``+1`` where ``x >= 0``, else ``-1`` (same dtype as x).

    >>> sign_pm1(torch.tensor([-0.5, 0.0, 2.0]))
    tensor([-1.,  1.,  1.])
    """
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class _ClipSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, centred: Tensor, alpha: Tensor) -> Tensor:
        ctx.save_for_backward(centred)
        return alpha * sign_pm1(centred)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (centred,) = ctx.saved_tensors
        return grad * (centred.abs() <= 1).to(grad.dtype), None


class _ApproxSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return sign_pm1(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.clamp(2.0 - 2.0 * x.abs(), min=0.0)


class _Elastic(torch.autograd.Function):
    @staticmethod
    def forward(ctx, A: Tensor, alpha: Tensor) -> Tensor:
        alpha = torch.clamp(alpha, min=ALPHA_EPS)
        ctx.save_for_backward(A, alpha)
        return torch.clamp(torch.round(A / alpha), 0, 1) * alpha

    @staticmethod
    def backward(ctx, grad: Tensor):
        A, alpha = ctx.saved_tensors
        q = A / alpha
        big = (q > 1).to(grad.dtype)
        middle = ((q >= 0) & (q <= 1)).to(grad.dtype)
        scale = 1.0 / math.sqrt(A.numel())
        grad_alpha = ((big + middle * (torch.round(q) - q)) * grad).sum() * scale
        return grad * middle, grad_alpha.reshape(alpha.shape)


def binarize_weight(W: Tensor, center: bool = True) -> Tensor:
    """Effective binary weight ``alpha_i * sign(W_i - mean W_i)`` per output row, clip STE.

    Args:
        W: (out, ...) latent float weight; rows are ``W.flatten(1)``.
        center: subtract each row's mean before the sign (BinaryViT's linears); the paper's
            convs use ``center=False``.

    Returns:
        (out, ...) like W; row i holds only ``+alpha_i`` and ``-alpha_i``.

    >>> W = torch.tensor([[0.5, -1.0, 2.5], [0.2, 0.4, 0.0]])
    >>> binarize_weight(W)
    tensor([[-1.3333, -1.3333,  1.3333],
            [ 0.2000,  0.2000, -0.2000]])
    """
    if W.dim() < 2:
        raise ValueError(f"binarize_weight needs a weight with an output dim, (out, ...); "
                         f"got shape {tuple(W.shape)}")
    rows = W.flatten(1)
    alpha = rows.detach().abs().mean(1, keepdim=True)
    centred = rows - rows.mean(1, keepdim=True) if center else rows
    return _ClipSTE.apply(centred, alpha).view_as(W)


def approx_sign(x: Tensor) -> Tensor:
    """``sign(x)`` in {-1, +1} forward, ``max(0, 2 - 2|x|)`` times the gradient backward.

    >>> x = torch.tensor([-1.5, -0.5, 0.0, 0.25, 1.0], requires_grad=True)
    >>> y = approx_sign(x); y.sum().backward()
    >>> y.detach(), x.grad
    (tensor([-1., -1.,  1.,  1.,  1.]), tensor([0.0000, 1.0000, 2.0000, 1.5000, 0.0000]))
    """
    return _ApproxSign.apply(x)


def binarize_attention(A: Tensor, alpha: Tensor) -> Tensor:
    """BiT elastic binarization ``alpha * clamp(round(A / alpha), 0, 1)`` of probabilities.

    Args:
        A: attention probabilities, any shape, values in [0, 1].
        alpha: the learnable scale, a scalar tensor (one element).

    Returns:
        A tensor like A with values in {0, alpha}.

    >>> binarize_attention(torch.tensor([0.001, 0.003, 0.9]), torch.tensor(0.005))
    tensor([0.0000, 0.0050, 0.0050])
    """
    if alpha.numel() != 1:
        raise ValueError(f"alpha must be one scalar; got shape {tuple(alpha.shape)}")
    return _Elastic.apply(A, alpha)
