"""ShiftQuant as a QuantizerOption, and bit allocation over shift widths."""

import pytest
import torch
from torch import nn

from compress_extras import AverageBits, QuantizerOption, allocate_bits
from compress_extras.shift import ShiftQuant, fit_scale, levels


@pytest.mark.parametrize("bits", (2, 3, 4))
@pytest.mark.parametrize("zero_code", (False, True))
def test_quantize_is_projection_with_fitted_scale(bits, zero_code):
    q = ShiftQuant(bits, zero_code)
    assert isinstance(q, QuantizerOption)
    assert q.name == f"shift{bits}" + ("z" if zero_code else "")
    W = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(bits))
    W_hat = q.quantize(W)
    alpha = fit_scale(W.reshape(6, -1), bits, zero_code)
    ratio = W_hat.reshape(6, -1) / alpha[:, None]
    assert W_hat.shape == W.shape and torch.isin(ratio, levels(bits, zero_code)).all()
    cand = alpha[:, None, None] * levels(bits, zero_code)
    best = (W.reshape(6, -1)[..., None] - cand).abs().min(dim=-1).values
    assert torch.all((W - W_hat).abs().reshape(6, -1) <= best + 1e-6)
    assert q.storage_bits(W) == bits * W.numel() + 16 * 6


def test_more_bits_less_error():
    W = torch.randn(16, 256, generator=torch.Generator().manual_seed(0))
    errs = [((ShiftQuant(b).quantize(W) - W) ** 2).sum().item() for b in (2, 3, 4)]
    assert errs[0] > errs[1] > errs[2]


def test_allocation_over_shift_widths():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                        nn.Linear(64, 8))
    options = [ShiftQuant(2), ShiftQuant(3), ShiftQuant(4)]
    plan = allocate_bits(net, options, AverageBits(3.0), calibration=torch.randn(128, 32),
                         progress=False)
    assert set(plan.options) <= {"shift2", "shift3", "shift4"}
    assert plan.total_bits <= plan.budget_bits
    assert plan.predicted_distortion <= plan.distortion_of(["shift2"] * 3) + 1e-9


def test_bad_option():
    with pytest.raises(ValueError, match="bits must be one of"):
        ShiftQuant(8)
    with pytest.raises(ValueError, match="scale must be"):
        ShiftQuant(3, scale="rms")
