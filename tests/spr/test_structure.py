"""The structural decision: a group goes when at most struct_threshold of its entries survive the
threshold, and then goes whole (conv filter with its BatchNorm entries); the others stay whole."""

import copy

import pytest
import torch
from torch import nn

import spr


def conv_bn(survivors_per_filter, n_entries=10):
    """A conv + BN whose filter j has survivors_per_filter[j] entries of magnitude 1 out of
    n_entries (9 conv weights + BN scale + BN shift = 11 with the BN entries)."""
    G = len(survivors_per_filter)
    net = nn.Sequential(nn.Conv2d(1, G, 3, bias=False), nn.BatchNorm2d(G), nn.ReLU())
    with torch.no_grad():
        net[0].weight.fill_(1e-3)
        net[1].weight.fill_(1e-3)
        net[1].bias.fill_(1e-3)
        for j, k in enumerate(survivors_per_filter):
            net[0].weight.view(G, -1)[j, :k] = 1.0
    return net


def test_share_at_most_struct_threshold_is_removed():
    # 11 entries per group; shares 0/11, 1/11 = 0.0909, 2/11 = 0.1818
    net = conv_bn([0, 1, 2, 9])
    alive = spr.structural_decision(net, threshold=0.01, struct_threshold=1 / 11)
    assert alive["0"].tolist() == [False, False, True, True]
    alive = spr.structural_decision(net, threshold=0.01, struct_threshold=0.0)
    assert alive["0"].tolist() == [False, True, True, True]


def test_dead_groups_are_zeroed_whole_and_live_ones_keep_every_entry():
    net = conv_bn([0, 1, 5, 9])
    before = copy.deepcopy(net.state_dict())
    alive = spr.structural_decision(net, threshold=0.01, struct_threshold=0.1)
    assert spr.zero_dead_groups(net, alive) == 2
    for j in (0, 1):
        assert net[0].weight[j].abs().sum() == 0 and net[1].weight[j] == 0 and net[1].bias[j] == 0
    for j in (2, 3):  # entries below the threshold are restored, not zeroed
        assert torch.equal(net[0].weight[j], before["0.weight"][j])
        assert net[1].weight[j] == before["1.weight"][j]


def test_decision_then_removal_is_exact():
    torch.manual_seed(0)
    net = nn.Sequential(conv_bn([0, 1, 5, 9]), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    with torch.no_grad():
        net[0][1].running_mean.uniform_(-1, 1)
    alive = spr.structural_decision(net, threshold=0.01, struct_threshold=0.1)
    spr.zero_dead_groups(net, alive)
    x = torch.randn(4, 1, 8, 8)
    small = spr.remove_pruned(net, x)
    assert small[0][0].out_channels == 2 and small[2].in_features == 2 * 36
    torch.testing.assert_close(small(x), net(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0])
def test_bad_struct_threshold(bad):
    with pytest.raises(ValueError, match="struct_threshold"):
        spr.structural_decision(conv_bn([1]), threshold=0.1, struct_threshold=bad)


def test_bad_alive_masks():
    net = conv_bn([1, 2])
    with pytest.raises(ValueError, match="does not have"):
        spr.zero_dead_groups(net, {"nope": torch.tensor([True, False])})
    with pytest.raises(ValueError, match="2 groups"):
        spr.zero_dead_groups(net, {"0": torch.tensor([True])})
