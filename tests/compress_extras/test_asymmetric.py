"""The integer-zero-point grid against direct computations: the uniform-noise MSE, the exact zero,
groups that stop at row ends, the bit count, and the float16 metadata round trip."""

import numpy as np
import pytest
import torch

from compress_extras import QuantizerOption, UniformQuant
from compress_extras._asymmetric import (
    AsymmetricRTN,
    asymmetric_grid,
    decode_grid,
    grid_codes,
    quantize_to_grid,
)


def randn(seed, *shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", [3, 4])
def test_mse_on_a_uniform_row_is_a_twelfth_of_the_step_squared(bits):
    g = torch.Generator().manual_seed(bits)
    row = torch.rand(1, 200_000, generator=g) * 2.5 - 1.0  # U(-1, 1.5)
    w_hat = AsymmetricRTN(bits).quantize(row)
    value_range = float(row.max() - row.min())
    expected = (value_range / (2**bits - 1)) ** 2 / 12
    assert abs(float(((w_hat - row) ** 2).mean()) / expected - 1) < 0.01


@pytest.mark.parametrize("option", [AsymmetricRTN(3), AsymmetricRTN(2, "group", 16),
                                    AsymmetricRTN(4, "group", 7)])
def test_zero_is_a_level(option):
    W = randn(0, 6, 40) + 0.3
    W[W.abs() < 0.4] = 0.0  # a third or so of exact zeros
    assert int((W == 0).sum()) > 20
    W_hat = option.quantize(W)
    assert (W_hat[W == 0] == 0).all()
    # the float-minimum grid of UniformQuant does not keep them (so the check can fail)
    assert not (UniformQuant(3).quantize(W)[W == 0] == 0).all()


def test_error_is_at_most_half_a_step_and_codes_are_in_range():
    W = randn(1, 8, 100) * 3 + 1
    option = AsymmetricRTN(3, "group", 32)
    codes, scale, zero = option.encode(W)
    assert codes.min() >= 0 and codes.max() <= 7 and zero.min() >= 0 and zero.max() <= 7
    step = scale.float().repeat_interleave(32, dim=1)[:, :100]
    assert ((option.quantize(W) - W).abs() <= step / 2 * (1 + 2**-9)).all()


def test_groups_stop_at_row_ends():
    W = randn(2, 4, 6, 96) * torch.linspace(0.1, 3, 4)[:, None, None]  # rows of 576 weights
    rows = W.reshape(4, 576)
    bits = 3
    scale, zero = asymmetric_grid(rows, bits, 128)
    assert scale.shape == zero.shape == (4, 5)  # 4 groups of 128 and one of 64 per row
    for r in range(4):
        for g in range(5):
            part = rows[r, 128 * g:128 * (g + 1)]
            lo, hi = min(float(part.min()), 0.0), max(float(part.max()), 0.0)
            s = torch.tensor((hi - lo) / 7).half().float()
            assert scale[r, g] == s
            assert zero[r, g] == int(torch.round(torch.tensor(-lo) / s))
    # and the option's per-group result is the per-channel result of each slice on its own
    W_hat = AsymmetricRTN(bits, "group", 128).quantize(W).reshape(4, 576)
    for g in range(5):
        part = rows[:, 128 * g:128 * (g + 1)]
        assert torch.equal(W_hat[:, 128 * g:128 * (g + 1)], AsymmetricRTN(bits).quantize(part))


def test_bits_and_names():
    W = torch.zeros(4, 576)
    assert AsymmetricRTN(3).storage_bits(W) == 3 * 2304 + 4 * (16 + 3)
    assert AsymmetricRTN(3, "group", 128).storage_bits(W) == 3 * 2304 + 4 * 5 * (16 + 3)
    size = AsymmetricRTN(4, "group", 64, scale_bits=32).storage_bits(W)
    assert size == 4 * 2304 + 4 * 9 * (32 + 4)
    assert AsymmetricRTN(3).name == "asym-int3"
    assert AsymmetricRTN(2, "group", 128).name == "asym-int2-g128"
    assert isinstance(AsymmetricRTN(3), QuantizerOption)


@pytest.mark.parametrize("option", [AsymmetricRTN(3), AsymmetricRTN(4, "group", 24)])
def test_float16_metadata_round_trip_is_exact(option):
    W = randn(3, 5, 3, 30) * 0.02  # a conv-shaped weight, rows of 90
    codes, scale, zero = option.encode(W)
    assert scale.dtype == torch.float16 and zero.dtype == torch.int64
    # what is stored: b-bit codes and zero points, float16 scales as raw bytes
    stored = scale.numpy().tobytes(), codes.numpy().astype(np.uint8), zero.numpy().astype(np.uint8)
    scale_back = torch.from_numpy(np.frombuffer(stored[0], dtype=np.float16).copy())
    scale_back = scale_back.reshape(scale.shape)
    decoded = option.decode(torch.from_numpy(stored[1]).long(), scale_back,
                            torch.from_numpy(stored[2]).long())
    assert torch.equal(decoded.reshape(W.shape), option.quantize(W))


def test_column_wise_functions_match_the_option():
    W = randn(4, 6, 50)
    scale, zero = asymmetric_grid(W, 3)
    W_hat = AsymmetricRTN(3).quantize(W)
    for j in range(50):
        assert torch.equal(quantize_to_grid(W[:, j], scale[:, 0], zero[:, 0], 3), W_hat[:, j])
    codes = grid_codes(W, scale, zero, 3)
    assert torch.equal(decode_grid(codes, scale, zero), W_hat)
    on_grid = W_hat / scale + zero
    assert torch.equal(on_grid, torch.round(on_grid))


def test_zero_rows_and_rows_of_one_sign():
    W = torch.stack([torch.zeros(8), torch.linspace(1, 2, 8), -torch.linspace(1, 2, 8)])
    scale, zero = asymmetric_grid(W, 2)
    assert scale[0, 0] == 0 and zero[0, 0] == 0
    assert zero[1, 0] == 0 and zero[2, 0] == 3  # all positive: zero at the bottom; negative: top
    W_hat = AsymmetricRTN(2).quantize(W)
    assert (W_hat[0] == 0).all() and torch.isfinite(W_hat).all()


@pytest.mark.parametrize("kwargs", [dict(bits=0), dict(bits=17), dict(bits=True),
                                    dict(bits=3, per="row"), dict(bits=3, group_size=0),
                                    dict(bits=3, scale_bits=-1)])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        AsymmetricRTN(**kwargs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights(bad):
    W = torch.ones(2, 4)
    W[1, 2] = bad
    with pytest.raises(ValueError, match="non-finite"):
        AsymmetricRTN(3).quantize(W)
    with pytest.raises(ValueError, match="non-finite"):
        asymmetric_grid(W, 3)
    with pytest.raises(ValueError):
        asymmetric_grid(torch.ones(4), 3)  # not 2-D
    with pytest.raises(ValueError, match="float16"):
        asymmetric_grid(torch.tensor([[-1e6, 1e6]]), 2)  # the scale overflows float16
