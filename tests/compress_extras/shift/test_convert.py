"""to_denseshift: which layers convert, projection of trained weights, per-layer plans, export."""

import numpy as np
import pytest
import torch
from torch import nn

from compress_extras import AverageBits, allocate_bits
from compress_extras.shift import (
    DenseShiftConv2d,
    DenseShiftLinear,
    ShiftQuant,
    export_denseshift,
    shift_layers,
    to_denseshift,
)
from spr.models import resnet20


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.Flatten(),
                         nn.Linear(8 * 16, 32), nn.ReLU(), nn.Linear(32, 4))


def test_resnet20_keeps_first_conv_and_classifier_float():
    net = resnet20(10, 1)
    shifted = to_denseshift(net, bits=3)
    assert type(shifted.conv1) is nn.Conv2d and type(shifted.fc) is nn.Linear
    layers = shift_layers(shifted)
    assert len(layers) == 18 and all(isinstance(m, DenseShiftConv2d) for m in layers.values())
    assert type(net.layer1[0].conv1) is nn.Conv2d  # the original is untouched
    assert shifted(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("zero_code", (False, True))
def test_projection_equals_shiftquant(zero_code):
    net = small_net()
    shifted = to_denseshift(net, bits=3, zero_code=zero_code)
    q = ShiftQuant(3, zero_code)
    for name in ("2", "4", "6"):
        W = net.get_submodule(name).weight
        assert torch.equal(shifted.get_submodule(name).quantized_weight().detach(), q.quantize(W))
    assert isinstance(shifted[6], DenseShiftLinear) and type(shifted[8]) is nn.Linear


def test_plan_dict_and_allocation_plan():
    net = small_net()
    shifted = to_denseshift(net, plan={"2": 2, "4": 4, "6": None})
    assert shifted[2].bits == 2 and shifted[4].bits == 4 and type(shifted[6]) is nn.Linear
    plan = allocate_bits(net, [ShiftQuant(2), ShiftQuant(3), ShiftQuant(4)], AverageBits(3.0),
                         calibration=torch.randn(32, 1, 4, 4), layers=["2", "4", "6"],
                         progress=False)
    from_plan = to_denseshift(net, plan=plan)
    for name, option in zip(plan.layers, plan.options, strict=True):
        assert f"shift{from_plan.get_submodule(name).bits}" == option
    assert type(from_plan[0]) is nn.Conv2d


def test_fresh_latents_without_projection():
    net = small_net()
    fresh = to_denseshift(net, bits=3, project=False)
    assert fresh[2].gate_latents.abs().max() < 0.01  # N(0, 1e-3^2), not +-1e-3 exactly
    assert len(set(fresh[2].gate_latents.abs().flatten().tolist())) > 100


def test_export_sizes():
    shifted = to_denseshift(small_net(), bits=3)
    out = export_denseshift(shifted)
    assert set(out) == {"2", "4", "6"}
    for record in out.values():
        n = int(np.prod(record["shape"]))
        assert record["packed"].size == -(-3 * n // 8) and record["alpha"].dtype == np.float16


def test_errors():
    with pytest.raises(ValueError, match="no module named"):
        to_denseshift(small_net(), plan={"nope": 3})
    with pytest.raises(ValueError, match="bits must be one of"):
        to_denseshift(small_net(), bits=5)
    with pytest.raises(TypeError, match="only nn.Conv2d and nn.Linear"):
        to_denseshift(small_net(), plan={"1": 3})
