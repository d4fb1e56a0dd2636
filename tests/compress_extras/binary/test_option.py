"""BinaryQuant as a bit-allocation option, and an allocation plan driving binarize."""

import copy

import pytest
import torch
from torch import nn

from compress_extras import AverageBits, Float16, QuantizerOption, allocate_bits
from compress_extras.binary import BinaryConv2d, BinaryLinear, BinaryQuant, binarize


def test_binary_quant_formula_and_bits():
    torch.manual_seed(0)
    W = torch.randn(6, 3, 3, 3)
    q = BinaryQuant()
    assert isinstance(q, QuantizerOption)
    W_hat = q.quantize(W).flatten(1)
    rows = W.flatten(1)
    for i in range(6):
        a = rows[i].abs().mean().item()
        assert sorted(set(W_hat[i].tolist())) == pytest.approx([-a, a])
        assert torch.equal(W_hat[i] > 0, rows[i] >= rows[i].mean())
    assert q.storage_bits(W) == 6 * 27 + 6 * 16
    assert BinaryQuant(center=False).name == "binary-nc"
    with pytest.raises(ValueError, match="NaN"):
        q.quantize(torch.tensor([[float("nan"), 1.0]]))


def test_binarize_keeps_first_and_last_float():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2, padding=1),
                        nn.Flatten(), nn.Linear(4 * 36, 10))
    binarize(net)
    assert [type(m) for m in net if not isinstance(m, nn.ReLU | nn.Flatten)] == [
        nn.Conv2d, BinaryConv2d, nn.Linear]
    assert net[2].groups == 2 and net[2].padding == (1, 1)
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_an_allocation_plan_drives_the_conversion():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                        nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    x = torch.randn(256, 16)
    # a budget between all-binary and all-fp16 forces a mix
    plan = allocate_bits(net, [BinaryQuant(), Float16()], AverageBits(6.0), calibration=x,
                         progress=False)
    chosen = dict(zip(plan.layers, plan.options, strict=True))
    assert set(chosen.values()) == {"binary", "fp16"}
    converted = binarize(copy.deepcopy(net), plan=plan, binary_input=False, move=False)
    for name, option in chosen.items():
        module = converted.get_submodule(name)
        assert isinstance(module, BinaryLinear) == (option == "binary")
    # with float inputs the binary layers compute exactly the plan's dequantized weights
    reference = plan.apply(copy.deepcopy(net))
    for name, option in chosen.items():
        if option == "fp16":  # binarize leaves float layers untouched; compare like with like
            reference.get_submodule(name).weight.data.copy_(net.get_submodule(name).weight)
    torch.testing.assert_close(converted(x), reference(x), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(converted(x), net(x), atol=1e-3)
