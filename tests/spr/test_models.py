"""CIFAR-style ResNets: depth, parameter counts of the paper's networks, input channels."""

import pytest
import torch

from spr.models import CifarResNet, resnet20, resnet56, resnet110


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "make, millions", [(resnet20, 0.27), (resnet56, 0.85), (resnet110, 1.73)]
)
def test_parameter_counts_match_he_et_al(make, millions):
    assert n_params(make()) / 1e6 == pytest.approx(millions, abs=0.01)


def test_depth_and_shortcuts():
    model = resnet20(shortcut="B")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19 + 2  # 19 3x3 convs + two 1x1 projections
    assert n_params(model) > n_params(resnet20())


@pytest.mark.parametrize("in_channels", [1, 3])
def test_forward_shape(in_channels):
    out = resnet20(num_classes=7, in_channels=in_channels)(torch.randn(2, in_channels, 32, 32))
    assert out.shape == (2, 7)


@pytest.mark.parametrize("depth", [18, 21, 2])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match="6\\*n \\+ 2"):
        CifarResNet(depth)


def test_bad_shortcut():
    with pytest.raises(ValueError, match="shortcut"):
        resnet20(shortcut="C")
