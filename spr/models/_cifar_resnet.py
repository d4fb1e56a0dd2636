"""CIFAR-style ResNets (He et al. 2016, §4.2): depth 6n+2, stages of 16/32/64 channels.

Input (B, in_channels, 32, 32) -> logits (B, num_classes). Parameters: ResNet-20 0.27M,
ResNet-56 0.85M, ResNet-110 1.7M with the parameter-free shortcut ("A": subsample and zero-pad
the channels, the paper's choice); ``shortcut="B"`` uses a 1x1 conv + BatchNorm projection.

>>> model = resnet20(num_classes=10, in_channels=1)
>>> model(torch.zeros(2, 1, 32, 32)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PadShortcut(nn.Module):
    """Option A: take every other pixel and zero-pad the new channels (no parameters).

    Written as a channel map so that pruning can shrink it: output channel ``o`` is input channel
    ``source[o]``, or zeros where ``source[o] == -1``. Fresh, the input sits in the middle of the
    output channels (He et al.'s zero padding); ``spr.remove_pruned`` edits ``source``.
    """

    def __init__(self, out_channels: int, in_channels: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"PadShortcut pads channels: {in_channels} -> {out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        source = torch.full((out_channels,), -1, dtype=torch.long)
        start = (out_channels - in_channels) // 2
        source[start : start + in_channels] = torch.arange(in_channels)
        self.register_buffer("source", source)

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, 0, 1))[:, self.source]  # index -1: the appended zeros


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            if shortcut == "A":
                self.shortcut = PadShortcut(channels, in_channels)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                    nn.BatchNorm2d(channels),
                )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet of depth ``6*n + 2`` for 32x32 inputs."""

    def __init__(
        self, depth: int, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A"
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6*n + 2 with n >= 1 (20, 56, 110, ...); got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(
                f'shortcut must be "A" (zero padding) or "B" (1x1 conv); got {shortcut!r}'
            )
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, channels = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(channels, width, stride if i == 0 else 1, shortcut))
                channels = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def resnet20(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    return CifarResNet(20, num_classes, in_channels, shortcut)


def resnet56(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    return CifarResNet(56, num_classes, in_channels, shortcut)


def resnet110(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    return CifarResNet(110, num_classes, in_channels, shortcut)
