"""Bit allocation after GPTQ error compensation (compress_extras._compensation): the costs the
knapsack reads are those of the compensated weights, ``apply`` writes exactly those weights, the
sizes do not change, and compensation lowers the output error of every option it applies to."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from compress_extras import (
    AsymmetricRTN,
    AverageBits,
    Compensation,
    Float16,
    ICQuantOption,
    ShiftQuant,
    UniformQuant,
    allocate_bits,
    register_adapter,
)
from compress_extras._compensation import ADAPTERS, column_quantizer, compensated_weight
from compress_extras._gptq import UniformColumns
from compress_extras._sensitivities import output_distortion

OPTIONS = [AsymmetricRTN(3), AsymmetricRTN(4, per="group", group_size=16), UniformQuant(3),
           ShiftQuant(3), ICQuantOption(3, 0.05), Float16()]


@pytest.fixture(scope="module")
def net_and_data():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 48), nn.ReLU(), nn.Linear(48, 32)).eval()
    mix = torch.randn(32, 32)  # correlated inputs: where compensation pays
    return net, torch.randn(512, 32) @ mix


@pytest.fixture(scope="module")
def plans(net_and_data):
    net, x = net_and_data
    kwargs = {"calibration": x, "progress": False}
    return (allocate_bits(net, OPTIONS, AverageBits(4.0), **kwargs),
            allocate_bits(net, OPTIONS, AverageBits(4.0), compensate=Compensation(), **kwargs))


def test_compensated_costs_are_lower_and_sizes_unchanged(plans):
    plain, compensated = plans
    np.testing.assert_array_equal(compensated.size, plain.size)
    for k, option in enumerate(OPTIONS):
        if column_quantizer(option) is None:  # fp16: as it is
            np.testing.assert_array_equal(compensated.cost[:, k], plain.cost[:, k])
        else:
            assert compensated.cost[:, k].sum() < 0.95 * plain.cost[:, k].sum(), option.name
    assert compensated.predicted_distortion < plain.predicted_distortion
    assert compensated.to_dict()["compensation"] == {"block_size": 128, "damp": 0.01,
                                                      "act_order": False}
    assert plain.to_dict()["compensation"] is None


def test_apply_writes_the_weights_the_costs_were_measured_on(net_and_data, plans):
    net, x = net_and_data
    _, plan = plans
    quantized = copy.deepcopy(net)
    plan.apply(quantized)
    for i, name in enumerate(plan.layers):
        layer, dense = quantized.get_submodule(name), net.get_submodule(name)
        with torch.no_grad():
            rows = x if i == 0 else torch.relu(net[0](x))
        gram = (rows.T.double() @ rows.double())[None]
        measured = output_distortion(dense, gram, layer.weight)
        assert measured == pytest.approx(plan.layer_distortion[i], rel=1e-6)
        option = plan.quantizers[i]
        if column_quantizer(option) is not None:  # compensated: not the plain rounding
            assert not torch.equal(layer.weight, option.quantize(dense.weight))
    again = plan.with_budget(AverageBits(3.5))
    assert again.compensation == plan.compensation and len(again.hessians) == len(plan.layers)


def test_every_adapter_returns_the_options_grid_on_the_identity():
    # with H = I no column can help another: compensation is plain rounding
    torch.manual_seed(1)
    W = torch.randn(6, 32)
    for option in OPTIONS:
        W_hat = compensated_weight(option, W, torch.eye(32), Compensation())
        torch.testing.assert_close(W_hat, option.quantize(W), rtol=0, atol=1e-6)


def test_bad_arguments(net_and_data):
    net, x = net_and_data
    with pytest.raises(ValueError, match='sensitivity="output"'):
        allocate_bits(net, OPTIONS, AverageBits(4.0), sensitivity="none",
                      compensate=Compensation(), progress=False)
    with pytest.raises(TypeError, match="Compensation"):
        allocate_bits(net, OPTIONS, AverageBits(4.0), calibration=x, compensate=True,
                      progress=False)
    with pytest.raises(ValueError, match="block_size"):
        Compensation(block_size=0)
    with pytest.raises(ValueError, match="damp"):
        Compensation(damp=-1.0)
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)).eval()
    with pytest.raises(ValueError, match="grouped conv"):
        allocate_bits(grouped, [UniformQuant(4)], AverageBits(4.0),
                      calibration=torch.randn(4, 4, 6, 6), compensate=Compensation(),
                      progress=False)
    with pytest.raises(ValueError, match=r"H must be \(32, 32\)"):
        compensated_weight(UniformQuant(3), torch.randn(4, 32), torch.eye(8), Compensation())


def test_register_adapter_makes_a_new_option_compensable():
    class MyQuant(UniformQuant):
        pass

    option = MyQuant(3)
    assert column_quantizer(option) is None
    register_adapter(MyQuant, UniformColumns)
    try:
        assert isinstance(column_quantizer(option), UniformColumns)
    finally:
        del ADAPTERS[MyQuant]
    with pytest.raises(TypeError):
        register_adapter("MyQuant", UniformColumns)


def test_compensation_is_the_allocators_compensator(net_and_data):
    """allocate_bits reaches GPTQ through the Compensator protocol (no import of this module):
    Compensation's hessian and weight are as_hessian and compensated_weight."""
    from compress_extras._allocation_plan import Compensator
    from compress_extras._compensation import as_hessian

    net, x = net_and_data
    settings = Compensation(block_size=4)
    assert isinstance(settings, Compensator) and not isinstance(object(), Compensator)
    gram = (x.T.double() @ x.double())[None]
    H = settings.hessian(gram, "0")
    assert torch.equal(H, as_hessian(gram, "0"))
    W = net[0].weight.detach()
    assert torch.equal(settings.weight(AsymmetricRTN(3), W, H),
                       compensated_weight(AsymmetricRTN(3), W, H, settings))
    with pytest.raises(TypeError, match="compensate must be a Compensation"):
        allocate_bits(net, OPTIONS, AverageBits(4.0), calibration=x, compensate="gptq",
                      progress=False)
