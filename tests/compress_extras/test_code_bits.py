"""One name per concept for an option's bits: ``bits`` (code width), ``storage_bits(W)``; the old
spellings ``bits(W)``, ``bits_per_weight`` and ``bits_per_weight=`` warn and give the same."""

import copy
import dataclasses
import pickle

import pytest
import torch

from compress_extras import (
    AsymmetricRTN,
    BinaryQuant,
    Float16,
    ICQuantOption,
    Pruned,
    ShiftQuant,
    UniformQuant,
)
from compress_extras._code_bits import storage_bits

WIDTHS = [UniformQuant(3), AsymmetricRTN(3, "group", 8), ShiftQuant(3), ICQuantOption(3)]
WIDTHLESS = [Float16(), Pruned(), BinaryQuant()]


@pytest.mark.parametrize("option", WIDTHS, ids=lambda o: o.name)
def test_width_is_bits_and_old_spellings_warn(option):
    W = torch.randn(6, 40, generator=torch.Generator().manual_seed(0))
    assert option.bits == 3 and isinstance(option.bits, int)
    size = option.storage_bits(W)
    assert size > 3 * W.numel()  # the grid's metadata is counted
    with pytest.warns(DeprecationWarning, match="storage_bits"):
        assert option.bits(W) == size
    with pytest.warns(DeprecationWarning, match=r"\.bits"):
        assert option.bits_per_weight == 3
    with pytest.warns(DeprecationWarning, match="bits="):
        old = type(option)(bits_per_weight=3)
    assert old.bits == 3 and old.storage_bits(W) == type(option)(3).storage_bits(W)
    with pytest.raises(ValueError, match="bits"):
        type(option)(bits=0)


@pytest.mark.parametrize("option", WIDTHS, ids=lambda o: o.name)
def test_options_stay_plain_values(option):
    """Equality, hashing, replace, copy and pickle see an int width."""
    twin = dataclasses.replace(option)
    assert twin == option and hash(twin) == hash(option)
    assert dataclasses.replace(option, bits=2).bits == 2
    for twin in (copy.deepcopy(option), pickle.loads(pickle.dumps(option))):
        assert twin == option and type(twin.bits) is int
    assert "bits=3" in repr(option)


@pytest.mark.parametrize("option", WIDTHLESS, ids=lambda o: o.name)
def test_widthless_options_keep_the_old_method(option):
    W = torch.randn(4, 9)
    with pytest.warns(DeprecationWarning, match="storage_bits"):
        assert option.bits(W) == option.storage_bits(W)


def test_storage_bits_reads_an_old_style_option():
    class Old:
        name = "old"

        def quantize(self, W):
            return W

        def bits(self, W):
            return 7.0 * W.numel()

    W = torch.ones(2, 3)
    with pytest.warns(DeprecationWarning, match="storage_bits"):
        assert storage_bits(Old(), W) == 42.0
    assert storage_bits(UniformQuant(4), W) == UniformQuant(4).storage_bits(W)


def test_allocate_bits_still_takes_an_old_style_option():
    """An option written against the old protocol (bits(W) as its size, no storage_bits) is
    allocated as before, with a DeprecationWarning."""
    from torch import nn

    from compress_extras import AverageBits, allocate_bits

    class OldHalf:
        name = "old-fp16"

        def quantize(self, W):
            return W.half().to(W.dtype)

        def bits(self, W):
            return 16.0 * W.numel()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    with pytest.warns(DeprecationWarning, match="storage_bits"):
        plan = allocate_bits(model, [OldHalf(), UniformQuant(2)], AverageBits(16.0),
                             calibration=[torch.randn(32, 8)], progress=False)
    assert set(plan.options) == {"old-fp16"} and plan.average_bits == 16.0
    with pytest.raises(TypeError, match="storage_bits"):
        allocate_bits(model, [object()], AverageBits(4.0), calibration=[torch.randn(4, 8)])
