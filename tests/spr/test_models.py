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


def test_pad_shortcut_is_he_et_al_zero_padding():
    """Option A: subsample by 2 and put the input channels in the middle of zero channels."""
    import torch.nn.functional as F

    from spr.models import PadShortcut

    x = torch.randn(2, 16, 8, 8)
    expected = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8))
    assert torch.equal(PadShortcut(32, 16)(x), expected)
    odd = PadShortcut(7, 4)(torch.randn(1, 4, 4, 4))
    assert odd.shape == (1, 7, 2, 2) and odd[:, [0, 5, 6]].abs().sum() == 0


def test_pad_shortcut_refuses_to_shrink():
    from spr.models import PadShortcut

    with pytest.raises(ValueError, match="pads channels"):
        PadShortcut(8, 16)


@pytest.mark.parametrize("name", ["resnet20", "small_cnn"])
def test_registry_builds_each_model(name):
    from spr.models import INPUT_SIZE, build

    size = INPUT_SIZE[name] or 28
    model = build(name, num_classes=5, in_channels=1)
    assert model(torch.zeros(2, 1, size, size)).shape == (2, 5)
    with pytest.raises(ValueError, match="unknown architecture"):
        build("resnet21")
