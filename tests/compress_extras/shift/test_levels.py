"""Level sets, nearest-level projection (against brute force), scales and the packed codes."""

import itertools

import numpy as np
import pytest
import torch

from compress_extras.shift import (
    decode,
    dequantize,
    encode,
    fit_scale,
    levels,
    max_exponent,
    pack_codes,
    project_codes,
    unpack_codes,
)

CASES = list(itertools.product((2, 3, 4), (False, True)))


def brute_force(W, alpha, bits, zero_code):
    """The nearest level by enumerating the level set: (out, n) values."""
    L = levels(bits, zero_code, torch.float64)
    cand = alpha.double()[:, None, None] * L[None, None, :]
    dist = (W.double()[:, :, None] - cand).abs()
    return dist.min(dim=2).values


@pytest.mark.parametrize("bits,zero_code", CASES)
def test_level_sets(bits, zero_code):
    L = levels(bits, zero_code, torch.float64)
    P = max_exponent(bits, zero_code)
    mags = {2.0 ** (k - P) for k in range(P + 1)}
    assert set(L.abs().tolist()) - {0.0} == mags
    assert (0.0 in L.tolist()) == zero_code
    assert len(L) == (2**bits - 1 if zero_code else 2**bits)
    assert L.abs().max() == 1.0  # normalised: |w| <= alpha


@pytest.mark.parametrize("bits,zero_code", CASES)
def test_projection_is_the_nearest_level(bits, zero_code):
    gen = torch.Generator().manual_seed(bits)
    W = torch.randn(6, 4000, generator=gen) * torch.logspace(-3, 0, 6)[:, None]
    W[0, :5] = 0.0
    alpha = W.abs().amax(dim=1) * torch.tensor([1.0, 0.5, 0.8, 1.3, 2.0, 0.1])
    s, p, nz = project_codes(W, alpha, bits, zero_code)
    W_hat = dequantize(s, p, alpha, bits, zero_code, nz)
    err = (W.double() - W_hat.double()).abs()
    best = brute_force(W, alpha, bits, zero_code)
    assert torch.all(err <= best + 1e-12 * alpha.double()[:, None])
    # the projected value is itself a level: alpha * L
    L = levels(bits, zero_code, torch.float64)
    ratio = W_hat.double() / alpha.double()[:, None]
    assert torch.isin(ratio, L).all()
    if not zero_code:
        assert (W_hat != 0).all() and (s[0, :5] == 1).all()  # sign(0) = +1


def test_threshold_is_linear_not_logarithmic():
    # 3 bits, alpha = 8: levels 1, 2, 4, 8; 1.45 -> 1, 1.55 -> 2 (log-rounding puts 1.45 at 1,
    # 1.42 at 1 and 2.9 at 4 -- but 2.9 is nearer 2: the linear threshold is 3)
    W = torch.tensor([[1.45, 1.55, 2.9, 3.1, 5.9, 6.1, 100.0, 1e-9]])
    s, p, _ = project_codes(W, torch.tensor([8.0]), 3)
    assert p.tolist() == [[0, 1, 1, 2, 2, 3, 3, 0]]


@pytest.mark.parametrize("bits,zero_code", CASES)
def test_mse_scale_never_worse_than_max(bits, zero_code):
    W = torch.randn(8, 300, generator=torch.Generator().manual_seed(1))
    errs = {}
    for scale in ("max", "mse"):
        alpha = fit_scale(W, bits, zero_code, scale)
        W_hat = dequantize(*project_codes(W, alpha, bits, zero_code)[:2], alpha, bits, zero_code,
                           project_codes(W, alpha, bits, zero_code)[2])
        errs[scale] = ((W_hat - W) ** 2).sum(dim=1)
    assert torch.all(errs["mse"] <= errs["max"] * (1 + 1e-6))
    assert errs["mse"].sum() < errs["max"].sum()


@pytest.mark.parametrize("bits", (2, 3, 4))
@pytest.mark.parametrize("count", (1, 7, 8, 1001))
def test_pack_unpack_round_trip(bits, count):
    rng = np.random.default_rng(bits * 1000 + count)
    codes = rng.integers(0, 2**bits, count).astype(np.uint8)
    codes[: min(count, 2**bits)] = np.arange(min(count, 2**bits))  # every code value appears
    packed = pack_codes(codes, bits)
    assert packed.dtype == np.uint8 and packed.size == -(-count * bits // 8)  # dense
    assert np.array_equal(unpack_codes(packed, bits, count), codes)


@pytest.mark.parametrize("bits,zero_code", CASES)
def test_encode_decode_round_trip(bits, zero_code):
    W = torch.randn(4, 500, generator=torch.Generator().manual_seed(2))
    alpha = fit_scale(W, bits, zero_code)
    s, p, nz = project_codes(W, alpha, bits, zero_code)
    codes = encode(s, p, bits, zero_code, nz)
    assert int(codes.max()) < 2**bits
    assert len(set(codes.flatten().tolist())) == (2**bits - 1 if zero_code else 2**bits)
    flat = unpack_codes(pack_codes(codes, bits), bits, codes.numel())
    s2, p2, nz2 = decode(torch.from_numpy(flat).reshape(codes.shape), bits, zero_code)
    assert torch.equal(dequantize(s2, p2, alpha, bits, zero_code, nz2),
                       dequantize(s, p, alpha, bits, zero_code, nz))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="bits must be one of"):
        levels(5)
    with pytest.raises(ValueError, match="NaN or inf"):
        project_codes(torch.tensor([[float("nan")]]), torch.ones(1), 3)
    with pytest.raises(ValueError, match="alpha must be"):
        project_codes(torch.ones(2, 3), torch.ones(3), 3)
    with pytest.raises(ValueError, match="codes must lie"):
        pack_codes(np.array([8]), 3)
