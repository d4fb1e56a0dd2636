"""Parameter and MAC counts: hand-computed layers, CIFAR ResNets, torchvision ResNet-18."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from spr._counting import Size, count_macs, count_params, measure, percent_removed
from spr.models import resnet20, resnet56


def conv_out(size: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def test_conv_formula_with_stride_padding_groups_dilation():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 15x15 -> 8x8
        nn.Conv2d(8, 16, 3, groups=4, dilation=2),  # 8x8 -> 4x4, 2 input channels per group
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 5),
    )
    assert conv_out(15, 3, stride=2, padding=1) == 8 and conv_out(8, 3, dilation=2) == 4
    first = 8 * 8 * 8 * (3 * 3 * 3)  # output elements x in_channels x kernel = 13824
    second = 16 * 4 * 4 * (2 * 3 * 3)  # = 4608
    linear = 5 * 256  # = 1280
    assert count_macs(model, torch.randn(1, 3, 15, 15)) == first + second + linear == 19712
    # the count is per batch given
    assert count_macs(model, torch.randn(3, 3, 15, 15)) == 3 * 19712


def test_linear_any_leading_dims_and_tuple_inputs():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(7, 3), nn.Linear(4, 6, bias=False)

        def forward(self, x, y):
            return self.a(x).sum() + self.b(y).sum()

    x, y = torch.randn(2, 5, 7), torch.randn(4)
    assert count_macs(TwoInputs(), (x, y)) == 2 * 5 * 3 * 7 + 6 * 4


def test_conv1d_conv3d_and_transposed():
    assert count_macs(nn.Conv1d(4, 6, 5, stride=2), torch.randn(1, 4, 21)) == 9 * 6 * 4 * 5
    conv3 = nn.Conv3d(2, 3, (1, 3, 3), padding=(0, 1, 1))
    assert count_macs(conv3, torch.randn(1, 2, 4, 5, 5)) == (4 * 5 * 5 * 3) * 2 * 9
    # transposed: every input element meets out_channels/groups x kernel weights
    up = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    assert count_macs(up, torch.randn(1, 4, 5, 5)) == (4 * 5 * 5) * 3 * 9


def test_module_called_twice_counts_twice_but_its_parameters_once():
    lin = nn.Linear(10, 10)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    assert count_params(model) == 110 == sum(p.numel() for p in lin.parameters())
    assert count_macs(model, torch.randn(1, 10)) == 2 * 100


def test_shared_parameter_counted_once():
    emb, head = nn.Embedding(50, 8), nn.Linear(8, 50, bias=False)
    head.weight = emb.weight  # tied weights
    model = nn.ModuleDict({"emb": emb, "head": head})
    assert count_params(model) == 50 * 8
    assert count_params(nn.ModuleDict({"emb": nn.Embedding(50, 8), "head": nn.Linear(8, 50)})) == (
        400 + 450
    )


def cifar_resnet_macs(n: int, shortcut: str, num_classes: int = 10) -> int:
    """He et al. §4.2 by hand: 3x3 convs, stages of (16, 32x32), (32, 16x16), (64, 8x8)."""

    def conv(hw: int, c_in: int, c_out: int, k: int = 3) -> int:
        return hw * hw * c_out * c_in * k * k

    total = conv(32, 3, 16)  # stem
    c_in = 16
    for width, hw in ((16, 32), (32, 16), (64, 8)):
        for _ in range(n):
            total += conv(hw, c_in, width) + conv(hw, width, width)
            if shortcut == "B" and c_in != width:
                total += conv(hw, c_in, width, k=1)  # projection, strided to the output size
            c_in = width
    return total + 64 * num_classes  # fc after global average pooling


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_resnet20_macs_match_the_architecture(shortcut):
    expected = cifar_resnet_macs(3, shortcut)
    assert 40.5e6 < expected < 41e6  # He et al.: ~41M multiply-adds
    assert count_macs(resnet20(shortcut=shortcut), torch.zeros(1, 3, 32, 32)) == expected


def test_resnet56_macs_match_the_pruning_literature():
    expected = cifar_resnet_macs(9, "A")
    assert expected / 1e6 == pytest.approx(125.49, abs=0.005)  # the "125.49M FLOPs" of HRank etc.
    assert count_macs(resnet56(), torch.zeros(1, 3, 32, 32)) == expected


def test_torchvision_resnet18():
    model = resnet18(weights=None)
    size = measure(model, torch.zeros(1, 3, 224, 224))
    assert size.params == 11_689_512 == sum(p.numel() for p in model.parameters())
    assert size.macs == pytest.approx(1.81e9, rel=0.02)  # published: 1.8 GMACs


def test_count_params_is_sum_of_numel():
    model = resnet20(in_channels=1, shortcut="B")
    assert count_params(model) == sum(p.numel() for p in model.parameters()) > 270_000


def test_training_flags_restored_and_statistics_untouched():
    model = resnet20(in_channels=1)
    model.train()
    model.layer2.eval()  # a mixed state must come back as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, torch.randn(2, 1, 32, 32))
    assert model.training and model.layer1.training and model.fc.training
    assert not model.layer2.training and not model.layer2[0].bn1.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # ran in eval mode
    model.eval()
    count_macs(model, torch.randn(1, 1, 32, 32))
    assert not any(m.training for m in model.modules())


def test_hooks_removed_and_flag_restored_after_an_error():
    model = resnet20(in_channels=1)
    model.train()
    with pytest.raises(RuntimeError):
        count_macs(model, torch.randn(1, 3, 32, 32))  # wrong number of channels
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    # and a later count is not inflated by leftover hooks
    assert count_macs(model, torch.zeros(1, 1, 32, 32)) == cifar_resnet_macs(3, "A") - (
        32 * 32 * 16 * 2 * 9  # stem with 1 input channel instead of 3
    )


def test_percent_removed_and_size():
    dense, pruned = Size(params=1000, macs=4000), Size(params=600, macs=1000)
    assert percent_removed(dense, pruned) == pytest.approx((40.0, 75.0))
    assert percent_removed(dense, dense) == (0.0, 0.0)
    with pytest.raises(ValueError, match="positive"):
        percent_removed(Size(0, 0), pruned)
    with pytest.raises(AttributeError):
        dense.params = 3  # frozen
    assert str(Size(270_000, 40_551_040)) == "0.270M params, 40.55M MACs"


def test_mac_weights_follow_output_positions_and_average_to_one():
    from spr import mac_weights
    from spr._groups import group_parts
    from spr.models import resnet20

    model = resnet20(in_channels=1)
    weights = mac_weights(model, torch.zeros(1, 1, 32, 32))
    # a stage-1 conv sees 32x32 output positions, a stage-3 conv 8x8
    assert weights["layer1.0.conv1"] / weights["layer3.1.conv2"] == pytest.approx(16.0)
    assert weights["conv1"] == pytest.approx(weights["layer1.2.conv2"])
    entries = {name: sum(p.numel() for p in parts) for name, parts in group_parts(model)}
    mean = sum(weights[n] * entries[n] for n in entries) / sum(entries.values())
    assert mean == pytest.approx(1.0)
