"""A small VGG-style CNN for quick demos: two stages of two conv-BN-ReLU layers.

Input (B, in_channels, H, W) with H, W >= 2 (28x28 Fashion-MNIST, 8x8 digits) -> logits
(B, num_classes). Widths ``width`` and ``2 * width``; about 0.03M parameters at width 16.

>>> small_cnn(in_channels=1, width=8)(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import torch  # noqa: F401  (the doctest uses it)
from torch import nn


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def small_cnn(num_classes: int = 10, in_channels: int = 1, width: int = 16) -> nn.Sequential:
    if width < 1:
        raise ValueError(f"width must be >= 1; got {width}")
    return nn.Sequential(
        *_conv_bn(in_channels, width), *_conv_bn(width, width), nn.MaxPool2d(2),
        *_conv_bn(width, 2 * width), *_conv_bn(2 * width, 2 * width),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes),
    )
