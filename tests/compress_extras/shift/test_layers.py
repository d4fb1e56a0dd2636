"""DenseShiftConv2d / DenseShiftLinear: levels, projection of trained weights, export, gradients."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compress_extras.shift import (
    DenseShiftConv2d,
    DenseShiftLinear,
    decode,
    dequantize,
    levels,
    max_exponent,
    project_codes,
    unpack_codes,
)


def unit_levels(layer):
    W = layer.quantized_weight().detach()
    return W / layer.alpha.detach().reshape(-1, *([1] * (W.dim() - 1)))


@pytest.mark.parametrize("bits", (2, 3, 4))
@pytest.mark.parametrize("zero_code", (False, True))
def test_forward_weights_lie_in_the_scaled_level_set(bits, zero_code):
    torch.manual_seed(bits)
    layer = DenseShiftConv2d(16, 32, 3, padding=1, bits=bits, zero_code=zero_code)
    with torch.no_grad():
        layer.alpha.mul_(torch.linspace(0.5, 2.0, 32))
    ratio = unit_levels(layer)
    L = levels(bits, zero_code)
    assert torch.isin(ratio, L).all()
    reached = set(ratio.flatten().tolist())
    assert len(reached) == len(L)  # every code is reachable
    if not zero_code:
        assert (layer.quantized_weight() != 0).all()
    # the forward matches F.conv2d with the dequantized codes exactly
    x = torch.randn(2, 16, 8, 8)
    ref = F.conv2d(x, layer.dequantized(), layer.bias, padding=1)
    assert torch.equal(layer(x), ref)


def test_fresh_init_rms_matches_he():
    torch.manual_seed(0)
    layer = DenseShiftLinear(1024, 256, bits=3)
    rms = layer.quantized_weight().detach().pow(2).mean().sqrt().item()
    assert abs(rms / math.sqrt(2 / 1024) - 1) < 0.05


@pytest.mark.parametrize("bits", (2, 3, 4))
@pytest.mark.parametrize("zero_code", (False, True))
def test_from_float_projects_to_the_nearest_level(bits, zero_code):
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=True)
    shifted = DenseShiftConv2d.from_float(conv, bits, zero_code)
    W_hat = shifted.quantized_weight().detach()
    alpha = shifted.alpha.detach()
    # brute force over the level set with the fitted alpha
    cand = alpha[:, None, None, None, None] * levels(bits, zero_code)
    best = (conv.weight.detach()[..., None] - cand).abs().min(dim=-1).values
    assert torch.all((conv.weight.detach() - W_hat).abs() <= best + 1e-7)
    assert torch.equal(shifted.bias, conv.bias)
    x = torch.randn(2, 8, 9, 9)
    assert shifted(x).shape == conv(x).shape


def test_export_round_trip_linear():
    torch.manual_seed(2)
    lin = nn.Linear(37, 5)
    for bits in (2, 3, 4):
        layer = DenseShiftLinear.from_float(lin, bits)
        out = layer.export()
        n = 37 * 5
        assert out["packed"].dtype == np.uint8 and out["packed"].size == -(-n * bits // 8)
        codes = torch.from_numpy(unpack_codes(out["packed"], bits, n)).reshape(out["shape"])
        s, p, nz = decode(codes, bits)
        alpha = torch.from_numpy(out["alpha"].astype(np.float32))
        assert torch.allclose(dequantize(s, p, alpha, bits), layer.quantized_weight(), rtol=1e-3)
        # the codes are exactly the layer's own (alpha in fp32)
        assert torch.equal(dequantize(s, p, layer.alpha.detach(), bits),
                           layer.quantized_weight().detach())


def test_gradients_reach_latents_and_alpha():
    torch.manual_seed(3)
    layer = DenseShiftLinear(64, 16, bits=3)
    layer(torch.randn(8, 64)).pow(2).sum().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert layer.gate_latents.shape == (3, 16, 64)


def test_codes_match_projection_after_from_float():
    torch.manual_seed(4)
    lin = nn.Linear(20, 6, bias=False)
    layer = DenseShiftLinear.from_float(lin, 4)
    s, p, _ = layer.codes()
    s2, p2, _ = project_codes(lin.weight.detach(), layer.alpha.detach(), 4)
    assert torch.equal(s, s2) and torch.equal(p, p2)
    assert int(p.max()) <= max_exponent(4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="bits must be one of"):
        DenseShiftLinear(4, 4, bits=1)
    with pytest.raises(ValueError, match="divisible by groups"):
        DenseShiftConv2d(3, 4, 3, groups=2)
    layer = DenseShiftLinear(4, 2)
    with pytest.raises(ValueError, match="shape"):
        layer.load_weight(torch.ones(3, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        layer.load_weight(torch.full((2, 4), float("inf")))
