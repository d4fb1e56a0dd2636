"""ICQuant as a bit-allocation option and icquant_model: bits from the bytes, the plan applied in
place, the budget held, outliers placed where the tails are heavy."""

import pytest
import torch
from torch import nn

from compress_extras import AverageBits, QuantizerOption, allocate_bits
from compress_extras.icquant import ICQuantizer, ICQuantOption, icquant_model


def test_option_matches_the_quantizer_and_counts_bytes():
    W = torch.randn(16, 200, generator=torch.Generator().manual_seed(0))
    option = ICQuantOption(3, 0.05, "lloyd")
    assert isinstance(option, QuantizerOption) and option.name == "icq3-lloyd-o5"
    coded = ICQuantizer(3, 0.05, "lloyd").quantize(W)
    assert torch.equal(option.quantize(W), coded.dequantize())
    assert option.storage_bits(W) == 8 * len(coded.to_bytes())
    W.add_(1.0)  # an in-place change is not served from the cache
    assert torch.equal(option.quantize(W), ICQuantizer(3, 0.05, "lloyd").quantize(W)
                       .dequantize())
    assert ICQuantOption(2, 0.0, group_size=64).name == "icq2-rtn-o0-g64"
    with pytest.raises(ValueError, match="outlier_ratio"):
        ICQuantOption(2, 1.0)


def heavy_and_light_model() -> nn.Sequential:
    """Four Linear layers: 0 and 2 Gaussian weights, 1 and 3 Student-t(2) (heavy tails)."""
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(256, 256) for _ in range(4)])
    with torch.no_grad():
        for i, layer in enumerate(model):
            if i % 2:
                layer.weight.copy_(torch.distributions.StudentT(2.0).sample((256, 256)) * 0.05)
            else:
                layer.weight.normal_(0, 0.05)
    return model


def test_icquant_model_applies_the_plan_in_place_within_budget():
    model = heavy_and_light_model()
    original = [layer.weight.detach().clone() for layer in model]
    plan = icquant_model(model, 2.3, bits=(2, 3), outlier_ratios=(0.0, 0.05),
                         sensitivity="none", progress=False)
    assert plan.total_bits <= plan.budget_bits and plan.average_bits <= 2.3
    for name, option, W0 in zip(plan.layers, plan.quantizers, original, strict=True):
        assert torch.equal(model.get_submodule(name).weight, option.quantize(W0))
    # the outlier options go to the heavy-tailed layers (1 and 3)
    with_outliers = {int(name) for name, o in zip(plan.layers, plan.options, strict=True)
                     if not o.endswith("-o0")}
    assert with_outliers and with_outliers <= {1, 3}


def test_plan_beats_uniform_and_with_budget_re_solves():
    model = heavy_and_light_model()
    options = [ICQuantOption(b, r) for b in (2, 3) for r in (0.0, 0.05)]
    plan = allocate_bits(model, options, AverageBits(2.6), sensitivity="none", progress=False)
    uniform = ["icq2-rtn-o5"] * 4
    assert plan.bits_of(uniform) <= plan.budget_bits
    assert plan.predicted_distortion <= plan.distortion_of(uniform) + 1e-12
    wider = plan.with_budget(AverageBits(3.2))
    direct = allocate_bits(model, options, AverageBits(3.2), sensitivity="none", progress=False)
    assert wider.options == direct.options
    assert wider.predicted_distortion == pytest.approx(direct.predicted_distortion)
    assert wider.predicted_distortion <= plan.predicted_distortion
    with pytest.raises(ValueError, match="minimum feasible budget"):
        plan.with_budget(AverageBits(1.0))
