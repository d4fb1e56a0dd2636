"""Binary layers and the ReActNet/BinaryViT helpers around them.

- :class:`BinaryLinear`, :class:`BinaryConv2d`: ``y = sign(x + move) ⊛ W_b + b`` with the binary
  weight ``W_b = alpha ⊙ sign(W - rowmean W)`` (:func:`binarize_weight`) and the ApproxSign
  activation binarizer (:func:`approx_sign`); ``binary_input=False`` keeps float inputs (a
  weight-only binary layer), ``move=True`` adds the RSign learnable threshold. The bias is
  initialised by ``init_bias`` (random bias initialization, Li & Partovi Nia 2019)::

      "zero"            b = 0
      ("uniform", a)    b ~ U(-a, a)
      ("normal", s)     b ~ N(0, s^2)

- :class:`RSign`: ``sign(x + move)`` with a learnable per-channel ``move`` (zero at init).
- :class:`RPReLU`: ``PReLU(x - mu1) + mu2``, per-channel ``mu1 = mu2 = 0`` and slope 0.25 at init.
- :class:`LayerScale`: ``alpha ⊙ x + beta`` per channel (``alpha = init``, ``beta = 0``).
- :class:`BatchNormT`: BatchNorm over the channels of tokens (B, N, C), LayerNorm's replacement.

Channels are the last dim of a (B, N, C) or (B, C) input and dim 1 of a (B, C, H, W) input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compress_extras.binary._quantizers import approx_sign, binarize_weight

__all__ = [
    "BatchNormT",
    "BinaryConv2d",
    "BinaryLinear",
    "LayerScale",
    "Move",
    "RPReLU",
    "RSign",
    "init_bias_",
    "parse_init_bias",
]

InitBias = str | tuple[str, float]


def parse_init_bias(spec: InitBias) -> tuple[str, float]:
    """Validate an ``init_bias`` spec; returns ``(kind, scale)`` (``("zero", 0.0)`` for "zero").

    >>> parse_init_bias("zero"), parse_init_bias(("uniform", 0.5))
    (('zero', 0.0), ('uniform', 0.5))
    """
    if spec == "zero":
        return ("zero", 0.0)
    if (isinstance(spec, tuple | list) and len(spec) == 2 and spec[0] in ("uniform", "normal")
            and isinstance(spec[1], int | float) and not isinstance(spec[1], bool)
            and math.isfinite(spec[1]) and spec[1] >= 0):
        return (str(spec[0]), float(spec[1]))
    raise ValueError(
        f'init_bias must be "zero", ("uniform", a) or ("normal", s) with a finite scale >= 0; '
        f"got {spec!r}"
    )


@torch.no_grad()
def init_bias_(bias: Tensor, spec: InitBias, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``bias`` in place by ``spec`` (module docstring) and return it.

    >>> b = init_bias_(torch.empty(1000), ("uniform", 0.5), torch.Generator().manual_seed(0))
    >>> bool(b.abs().max() <= 0.5), bool(b.abs().max() > 0.45)
    (True, True)
    """
    kind, scale = parse_init_bias(spec)
    if kind == "zero":
        return bias.zero_()
    if kind == "uniform":
        return bias.uniform_(-scale, scale, generator=generator)
    return bias.normal_(0.0, scale, generator=generator)


def _per_channel(p: Tensor, x: Tensor) -> Tensor:
    """Shape a (C,) parameter to broadcast over x's channel dim."""
    return p.view(1, -1, 1, 1) if x.dim() == 4 else p


class RSign(nn.Module):
    """``sign(x + move)`` forward (values ±1), ApproxSign backward; ``move`` (C,) learnable,
    zero at init (``learnable=False``: plain ``sign(x)``, no parameter).

    >>> RSign(2)(torch.tensor([[-0.1, 0.3]])).tolist()
    [[-1.0, 1.0]]
    """

    def __init__(self, channels: int, learnable: bool = True) -> None:
        super().__init__()
        self.move = nn.Parameter(torch.zeros(channels)) if learnable else None

    def forward(self, x: Tensor) -> Tensor:
        return approx_sign(x + _per_channel(self.move, x) if self.move is not None else x)


class Move(nn.Module):
    """``x + move`` with a learnable per-channel ``move`` (zero at init), no sign."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.move = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + _per_channel(self.move, x)


class RPReLU(nn.Module):
    """``PReLU(x - mu1) + mu2`` per channel: slope 0.25 below zero, mu1 = mu2 = 0 at init.

    >>> RPReLU(1)(torch.tensor([[-2.0], [3.0]])).detach()
    tensor([[-0.5000],
            [ 3.0000]])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mu1 = nn.Parameter(torch.zeros(channels))
        self.slope = nn.Parameter(torch.full((channels,), 0.25))
        self.mu2 = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        x = x - _per_channel(self.mu1, x)
        x = torch.where(x >= 0, x, _per_channel(self.slope, x) * x)
        return x + _per_channel(self.mu2, x)


class LayerScale(nn.Module):
    """``alpha ⊙ x + beta`` per channel, alpha = ``init``, beta = 0 at init.

    >>> LayerScale(2, 0.1)(torch.ones(1, 2)).detach()
    tensor([[0.1000, 0.1000]])
    """

    def __init__(self, channels: int, init: float) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((channels,), float(init)))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return _per_channel(self.alpha, x) * x + _per_channel(self.beta, x)


class BatchNormT(nn.BatchNorm1d):
    """BatchNorm1d over the channels of tokens: (B, N, C) -> (B, N, C); (B, C) passes as is.

    >>> BatchNormT(4)(torch.randn(2, 5, 4)).shape
    torch.Size([2, 5, 4])
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            return super().forward(x.transpose(1, 2)).transpose(1, 2)
        return super().forward(x)


class _BinaryMixin:
    """Shared setup of BinaryLinear and BinaryConv2d."""

    def _setup(self, channels_in: int, init_bias: InitBias, binary_input: bool, move: bool,
               center: bool) -> None:
        self.init_bias = init_bias if init_bias == "zero" else parse_init_bias(init_bias)
        self.binary_input, self.center = bool(binary_input), bool(center)
        # the input transform: its output is exactly what the binary matmul/conv consumes
        if binary_input:
            self.act: nn.Module = RSign(channels_in, learnable=move)
        else:
            self.act = Move(channels_in) if move else nn.Identity()
        if self.bias is not None:
            init_bias_(self.bias, self.init_bias)

    @property
    def binary_weight(self) -> Tensor:
        """The effective weight ``alpha ⊙ sign(W - rowmean)`` the layer computes with."""
        return binarize_weight(self.weight, self.center)

    def _input(self, x: Tensor) -> Tensor:
        if not torch.isfinite(self.weight).all():
            raise FloatingPointError(f"{type(self).__name__}: the latent weight has NaN/inf "
                                     "entries; lower the learning rate")
        return self.act(x)


class BinaryLinear(_BinaryMixin, nn.Linear):
    """Binary linear: ``y = sign(x + move) W_b^T + b``; x (..., in) -> y (..., out).

    Args:
        in_features, out_features, bias: as nn.Linear (latent weight init as nn.Linear's).
        init_bias: "zero", ("uniform", a) or ("normal", s) for the bias.
        binary_input: binarize the input with ApproxSign (False: float input).
        move: a learnable RSign threshold (in,) added before the sign (``layer.act.move``);
            ``layer.act`` outputs exactly the matmul's input (±1 when ``binary_input``).
        center: subtract each weight row's mean before the sign.

    >>> layer = BinaryLinear(3, 2, init_bias=("normal", 1.0))
    >>> layer(torch.randn(4, 3)).shape, sorted(set(layer.binary_weight[0].abs().tolist())) == [
    ...     layer.weight[0].abs().mean().item()]
    (torch.Size([4, 2]), True)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 init_bias: InitBias = "zero", binary_input: bool = True, move: bool = False,
                 center: bool = True) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias)
        self._setup(in_features, init_bias, binary_input, move, center)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self._input(x), self.binary_weight, self.bias)


class BinaryConv2d(_BinaryMixin, nn.Conv2d):
    """Binary conv: ``y = conv(sign(x + move), W_b) + b``; (B, in, H, W) -> (B, out, H', W').

    Args as nn.Conv2d plus ``init_bias``, ``binary_input``, ``move`` and ``center`` (default
    False: the paper's convs scale ``sign(W)`` by the per-out-channel ``mean |W|``).

    >>> BinaryConv2d(2, 4, 3, padding=1)(torch.randn(1, 2, 5, 5)).shape
    torch.Size([1, 4, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, *,
                 init_bias: InitBias = "zero", binary_input: bool = True, move: bool = False,
                 center: bool = False) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding,
                           dilation, groups, bias)
        self._setup(in_channels, init_bias, binary_input, move, center)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(self._input(x), self.binary_weight, self.bias)
