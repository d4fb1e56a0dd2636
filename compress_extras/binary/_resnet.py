"""A binary CIFAR-style ResNet (ReActNet / Bi-Real style) with a float stem and head.

Every 3x3 conv of the blocks is a :class:`BinaryConv2d` with ±1 inputs (RSign move) and its own
shortcut::

    y = RPReLU(BN(BinConv(x)) + shortcut(x))

where the shortcut is the identity, or, where a block halves the resolution and doubles the
width, a 2x2 average pool with the channels repeated twice (parameter-free, as ReActNet's
concatenation). Stem: float 3x3 conv (in -> width, stride ``stem_stride``: 2 as in ReActNet's
stem quarters every count but the head's) + BN; head: global average pool + float Linear.
Depth ``6n + 2`` gives ``n`` blocks of two binary convs per stage, stages of width ``w, 2w, 4w``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from compress_extras.binary._layers import BinaryConv2d, RPReLU

__all__ = ["BinaryResNet", "binary_resnet"]


class _BinaryConvUnit(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv = BinaryConv2d(c_in, c_out, 3, stride, 1, bias=False, move=True)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = RPReLU(c_out)
        self.stride, self.repeat = stride, c_out // c_in

    def forward(self, x: Tensor) -> Tensor:
        shortcut = F.avg_pool2d(x, self.stride) if self.stride > 1 else x
        if self.repeat > 1:
            shortcut = shortcut.repeat(1, self.repeat, 1, 1)
        return self.act(self.bn(self.conv(x)) + shortcut)


class BinaryResNet(nn.Module):
    """Binary ResNet of depth ``6n + 2``: (B, in_channels, S, S) -> (B, num_classes).

    >>> import torch
    >>> binary_resnet(depth=8, width=8, in_channels=1)(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3,
                 width: int = 16, stem_stride: int = 1) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6*n + 2 with n >= 1 (8, 14, 20, ...); got {depth}")
        if width < 1 or stem_stride not in (1, 2):
            raise ValueError(f"width must be >= 1 and stem_stride 1 or 2; got {width}, "
                             f"{stem_stride}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(width))
        units, c = [], width
        for s, w in enumerate((width, 2 * width, 4 * width)):
            for i in range(2 * n):
                units.append(_BinaryConvUnit(c, w, 2 if (s > 0 and i == 0) else 1))
                c = w
        self.units = nn.Sequential(*units)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.units(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def binary_resnet(num_classes: int = 10, in_channels: int = 3, depth: int = 20,
                  width: int = 16, stem_stride: int = 1) -> BinaryResNet:
    """:class:`BinaryResNet` of ``depth`` and base ``width`` (binary ResNet-20: 20, 16)."""
    return BinaryResNet(depth, num_classes, in_channels, width, stem_stride)
