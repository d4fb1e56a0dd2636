"""Binary layers against independent forward formulas; RSign, RPReLU, LayerScale, BatchNormT;
the random bias initialisation's distributions and the spec's validation."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compress_extras.binary import (
    BatchNormT,
    BinaryConv2d,
    BinaryLinear,
    LayerScale,
    RPReLU,
    RSign,
    init_bias_,
    parse_init_bias,
)


def _binary_weight(W, center):
    rows = W.detach().flatten(1)
    alpha = rows.abs().mean(1, keepdim=True)
    c = rows - rows.mean(1, keepdim=True) if center else rows
    return (alpha * torch.where(c >= 0, 1.0, -1.0)).view_as(W)


def test_binary_linear_forward_is_the_formula():
    torch.manual_seed(0)
    layer = BinaryLinear(6, 4, move=True)
    with torch.no_grad():
        layer.act.move.copy_(torch.linspace(-0.5, 0.5, 6))
        layer.bias.copy_(torch.arange(4.0))
    x = torch.randn(3, 5, 6)
    xb = torch.where(x + layer.act.move >= 0, 1.0, -1.0)
    torch.testing.assert_close(layer(x), xb @ _binary_weight(layer.weight, True).T + layer.bias)


def test_binary_conv_forward_is_the_formula():
    torch.manual_seed(1)
    conv = BinaryConv2d(3, 5, 3, stride=2, padding=1, bias=False)
    x = torch.randn(2, 3, 9, 9)
    ref = F.conv2d(torch.where(x >= 0, 1.0, -1.0), _binary_weight(conv.weight, False), None, 2, 1)
    torch.testing.assert_close(conv(x), ref)
    float_in = BinaryConv2d(3, 5, 3, padding=1, binary_input=False, center=True)
    torch.testing.assert_close(float_in(x),
                               F.conv2d(x, _binary_weight(float_in.weight, True),
                                        float_in.bias, 1, 1))


def test_nan_weight_raises_with_advice():
    layer = BinaryLinear(3, 2)
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="learning rate"):
        layer(torch.ones(1, 3))


def test_rsign_rprelu_layerscale_batchnormt():
    x = torch.randn(4, 7, 3)
    s = RSign(3)
    with torch.no_grad():
        s.move.copy_(torch.tensor([0.1, -0.2, 0.0]))
    assert torch.equal(s(x), torch.where(x + s.move >= 0, 1.0, -1.0))
    r = RPReLU(3)
    with torch.no_grad():
        r.mu1.copy_(torch.tensor([0.5, 0.0, -1.0]))
        r.mu2.copy_(torch.tensor([1.0, 2.0, 3.0]))
    t = x - r.mu1
    torch.testing.assert_close(r(x), torch.where(t >= 0, t, 0.25 * t) + r.mu2)
    g = torch.randn(2, 3, 4, 4)  # channel dim 1 for images
    torch.testing.assert_close(r(g), F.prelu(g - r.mu1.view(1, 3, 1, 1), torch.full((3,), 0.25))
                               + r.mu2.view(1, 3, 1, 1))
    ls = LayerScale(3, 0.1)
    torch.testing.assert_close(ls(x), 0.1 * x)
    bn, ref = BatchNormT(3), nn.BatchNorm1d(3)
    torch.testing.assert_close(bn(x), ref(x.reshape(-1, 3)).reshape(4, 7, 3))


@pytest.mark.parametrize("spec", [("uniform", 0.7), ("normal", 0.7)])
def test_random_bias_has_the_stated_distribution(spec):
    torch.manual_seed(3)
    b = BinaryLinear(16, 20000, init_bias=spec).bias.detach().double()
    kind, a = spec
    if kind == "uniform":  # U(-a, a): bounded by a, variance a^2 / 3
        assert b.abs().max() <= a and b.abs().max() > 0.99 * a
        assert b.var().item() == pytest.approx(a * a / 3, rel=0.05)
    else:  # N(0, a^2): std a, 68.3% within one std
        assert b.std().item() == pytest.approx(a, rel=0.03)
        assert (b.abs() <= a).double().mean().item() == pytest.approx(math.erf(2**-0.5), abs=0.01)
    assert abs(b.mean().item()) < 4 * a / math.sqrt(20000)
    assert BinaryLinear(16, 50).bias.abs().max() == 0  # "zero"


def test_init_bias_spec_validation():
    assert parse_init_bias(["normal", 2]) == ("normal", 2.0)
    for bad in ["uniform", ("uniform",), ("gauss", 1.0), ("normal", -1.0), ("normal", float("nan")),
                ("normal", True)]:
        with pytest.raises(ValueError, match='"zero", \\("uniform", a\\)'):
            BinaryLinear(2, 2, init_bias=bad)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(init_bias_(torch.empty(8), ("normal", 1.0), g1),
                       init_bias_(torch.empty(8), ("normal", 1.0), g2))
