"""The per-group scalar quantizers against direct checks: RTN's error bound, the sign-magnitude
tails, Lloyd's optimality conditions and nearest-level codes (brute force)."""

import pytest
import torch

from compress_extras.icquant import Lloyd, MinMaxRTN, SignMagnitudeRTN


def rows(seed, shape=(16, 300)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_rtn_error_is_at_most_half_a_step(bits):
    v = rows(bits)
    codes, meta = MinMaxRTN().encode(v, bits)
    assert meta.dtype == torch.float16 and codes.min() >= 0 and codes.max() < 2**bits
    v_hat = MinMaxRTN().decode(codes, meta, bits)
    step = meta[:, 1:2].float()
    # half a step, plus the float16 rounding of lo and step (relative 2^-11 of the range)
    slack = 2 ** -10 * (v.abs().amax(dim=1, keepdim=True) + step * 2**bits)
    assert ((v_hat - v).abs() <= step / 2 + slack).all()


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_sign_magnitude_keeps_signs_and_the_magnitude_range(bits):
    v = rows(10 + bits)
    v = torch.where(v.abs() < 1.5, torch.sign(v) * 1.5, v)  # two tails, like outliers
    codes, meta = SignMagnitudeRTN().encode(v, bits)
    v_hat = SignMagnitudeRTN().decode(codes, meta, bits)
    assert torch.equal(torch.sign(v_hat), torch.sign(v))
    lo, hi = v.abs().amin(dim=1, keepdim=True), v.abs().amax(dim=1, keepdim=True)
    assert (v_hat.abs() >= lo - 1e-2).all() and (v_hat.abs() <= hi + 1e-2).all()
    assert len(torch.unique(v_hat[0].abs())) <= 2 ** (bits - 1)


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_lloyd_codes_are_nearest_and_levels_are_cell_means(bits):
    v = rows(20 + bits, (8, 500))
    codes, codebook = Lloyd(iterations=1000).encode(v, bits)  # run to its fixed point
    levels = codebook.float()
    assert (levels[:, 1:] >= levels[:, :-1]).all()  # sorted
    brute = (v[:, :, None] - levels[:, None, :]).abs()  # (rows, m, L)
    chosen = brute.gather(2, codes[:, :, None]).squeeze(2)
    assert torch.allclose(chosen, brute.amin(dim=2))  # nearest level, by brute force
    for r in range(v.shape[0]):  # a Lloyd fixed point: each level is its cell's mean
        for j in range(2**bits):
            cell = v[r][codes[r] == j]
            if cell.numel():
                assert abs(float(cell.mean()) - float(levels[r, j])) < 2e-3 * (1 + cell.abs()
                                                                                .max())


def test_lloyd_beats_rtn_on_gaussian_rows():
    v = rows(30, (16, 1000))
    for bits in (2, 3):
        rtn = MinMaxRTN().decode(*MinMaxRTN().encode(v, bits), bits)
        lloyd = Lloyd().decode(*Lloyd().encode(v, bits), bits)
        assert ((lloyd - v) ** 2).mean() < ((rtn - v) ** 2).mean()


def test_constant_and_empty_rows():
    v = torch.full((2, 5), 0.25)
    for q in (MinMaxRTN(), SignMagnitudeRTN(), Lloyd()):
        out = q.decode(*q.encode(v, 2), 2)
        torch.testing.assert_close(out, v)
        codes, meta = q.encode(torch.zeros(3, 0), 2)
        assert codes.shape == (3, 0) and meta.shape == (3, q.metadata_size(2))


def test_metadata_overflowing_float16_is_refused():
    with pytest.raises(ValueError, match="float16"):
        MinMaxRTN().encode(torch.tensor([[0.0, 1e6]]), 2)
