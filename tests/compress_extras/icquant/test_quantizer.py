"""ICQuantizer end to end: the MSE claims on synthetic rows, exact bit accounting from the bytes,
lossless serialisation, index modes, shapes and dtypes, and every kind of bad input."""

import dataclasses

import numpy as np
import pytest
import torch

from compress_extras._bitpack import packed_size
from compress_extras.icquant import CorruptStreamError, ICQuantized, ICQuantizer, pack_bits


def gaussian(rows=32, n=4096, seed=0):
    return torch.randn(rows, n, generator=torch.Generator().manual_seed(seed))


def student_t(rows=32, n=4096, seed=0):
    torch.manual_seed(seed)
    return torch.distributions.StudentT(4.0).sample((rows, n))


def mse(q: ICQuantizer, W: torch.Tensor) -> float:
    return float(((q.quantize(W).dequantize() - W) ** 2).mean())


def test_icquant_beats_the_plain_quantizer_at_equal_base_bits():
    W = gaussian()
    assert mse(ICQuantizer(2, 0.05, "rtn"), W) <= 0.4 * mse(ICQuantizer(2, 0.0, "rtn"), W)
    assert mse(ICQuantizer(2, 0.05, "lloyd"), W) <= 0.7 * mse(ICQuantizer(2, 0.0, "lloyd"), W)


def test_icquant_at_2_3_bits_beats_rtn_at_3_bits_on_heavy_tails():
    W = student_t()
    icq = ICQuantizer(2, 0.05, "rtn").quantize(W)
    rtn3 = ICQuantizer(3, 0.0, "rtn").quantize(W)
    assert icq.bits_per_weight < 2.4 < 3.0 < rtn3.bits_per_weight
    assert float(((icq.dequantize() - W) ** 2).mean()) < float(((rtn3.dequantize() - W) ** 2)
                                                              .mean())


def test_inlier_range_halves_on_gaussian_rows():
    W = gaussian(16)
    coded = ICQuantizer(2, 0.05).quantize(W)
    mask = torch.from_numpy(coded.outlier_mask())
    inliers = W.masked_fill(mask, float("nan"))
    ratio = ((inliers.nan_to_num(-1e9).amax(1) - inliers.nan_to_num(1e9).amin(1))
             / (W.amax(1) - W.amin(1)))
    assert 0.45 <= float(ratio.mean()) <= 0.60
    # the decoded mask is exactly the top-5% magnitudes of each row
    k = round(0.05 * 4096)
    top = torch.zeros_like(mask).scatter_(1, W.abs().topk(k, dim=1).indices, True)
    assert torch.equal(mask, top)


@pytest.mark.parametrize("quantizer", ["rtn", "asym", "lloyd"])
@pytest.mark.parametrize("ratio", [0.0, 0.05, 0.2])
def test_bits_are_counted_from_the_bytes(quantizer, ratio):
    W = gaussian(24, 1000, seed=3)
    coded = ICQuantizer(3, ratio, quantizer).quantize(W)
    data = coded.to_bytes()
    assert coded.bits_per_weight == 8 * len(data) / W.numel()
    assert len(coded.codes) == packed_size(W.numel(), 3)  # 3 bits for every weight
    index = coded.index_bits_per_weight
    meta = coded.metadata_bits_per_weight
    header = coded.bits_per_weight - 8 * len(coded.codes) / W.numel() - index - meta
    assert 0 < header * W.numel() / 8 < 100  # only a fixed header and checksum are left
    assert (index == 0) == (ratio == 0)
    per_row = 2**3 if quantizer == "lloyd" else 2
    expected_meta = 16 * per_row * (2 if ratio else 1) / 1000  # fp16 metadata per group
    assert meta == pytest.approx(expected_meta)


@pytest.mark.parametrize("settings", [
    dict(bits=2, outlier_ratio=0.05), dict(bits=3, outlier_ratio=0.0, quantizer="lloyd"),
    dict(bits=1, outlier_ratio=0.1), dict(bits=4, outlier_ratio=0.05, index_bits="row"),
    dict(bits=2, outlier_ratio=0.05, index_bits="matrix"), dict(bits=2, outlier_ratio=0.3,
                                                               index_bits=3),
    dict(bits=2, outlier_ratio=0.05, group_size=128),
    dict(bits=2, outlier_ratio=0.05, quantizer="asym"), dict(bits=3, quantizer="asym"),
])
def test_serialisation_round_trips_bit_exactly(settings):
    W = student_t(12, 384, seed=1)
    coded = ICQuantizer(**settings).quantize(W)
    again = ICQuantized.from_bytes(coded.to_bytes())
    assert torch.equal(again.dequantize(), coded.dequantize())
    assert again.to_bytes() == coded.to_bytes()
    np.testing.assert_array_equal(again.outlier_mask(), coded.outlier_mask())


def test_index_modes_agree_and_auto_takes_the_smaller():
    W = gaussian(16, 2048, seed=5)
    coded = {m: ICQuantizer(2, 0.05, index_bits=m).quantize(W)
             for m in ("auto", "matrix", "row", 6)}
    masks = [c.outlier_mask() for c in coded.values()]
    assert all(np.array_equal(masks[0], m) for m in masks)
    sizes = {m: c.index_bits_per_weight for m, c in coded.items()}
    assert sizes["auto"] == min(sizes["matrix"], sizes["row"])
    assert sizes["matrix"] <= sizes[6] + 1e-12
    assert coded["row"].index_mode == "row" and len(set(coded["row"].widths.tolist())) >= 1


def test_shapes_dtypes_and_groups():
    conv = torch.randn(8, 3, 3, 3)
    coded = ICQuantizer(3, 0.05).quantize(conv)
    assert coded.dequantize().shape == conv.shape and coded.block_length == 27
    half = torch.randn(4, 64).to(torch.bfloat16)
    out = ICQuantizer(4, 0.05).quantize(half).dequantize()
    assert out.dtype == torch.bfloat16
    out32 = ICQuantizer(4, 0.05).quantize(half).dequantize(dtype=torch.float32)
    assert out32.dtype == torch.float32
    groups = ICQuantizer(2, 0.05, group_size=64).quantize(torch.randn(6, 128))
    assert groups.n_blocks == 12 and groups.outliers == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("largest", [None, 1e-7, 1e6, 1e-30, 2.0**-114])
def test_gpu_dequantization_matches_the_cpu(largest):
    W = student_t(64, 1024)
    if largest is not None:  # 2^-114: the exponent -127, scaled back in float64
        W = W / W.abs().max() * largest
    coded = ICQuantizer(2, 0.05, "lloyd").quantize(W)
    assert torch.equal(coded.dequantize("cuda").cpu(), coded.dequantize())


def test_bad_settings_and_weights_are_refused():
    for ratio in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="outlier_ratio"):
            ICQuantizer(2, ratio)
    for bits in (0, -1, 9, 2.5):
        with pytest.raises(ValueError, match="bits"):
            ICQuantizer(bits)
    with pytest.raises(ValueError, match="quantizer"):
        ICQuantizer(2, quantizer="gptq")
    with pytest.raises(ValueError, match="index_bits"):
        ICQuantizer(2, index_bits=0)
    W = torch.randn(4, 16)
    for bad in (float("nan"), float("inf")):
        W_bad = W.clone()
        W_bad[1, 2] = bad
        with pytest.raises(ValueError, match="non-finite"):
            ICQuantizer(2).quantize(W_bad)
    with pytest.raises(ValueError, match="shape"):
        ICQuantizer(2).quantize(torch.randn(16))
    with pytest.raises(ValueError, match="group_size"):
        ICQuantizer(2, group_size=5).quantize(W)


def test_truncated_and_corrupted_streams_are_refused():
    data = ICQuantizer(2, 0.05).quantize(student_t(8, 256)).to_bytes()
    for cut in range(0, len(data), max(1, len(data) // 40)):
        with pytest.raises(CorruptStreamError):
            ICQuantized.from_bytes(data[:cut])
    rng = np.random.default_rng(0)
    for position in rng.choice(len(data), 40, replace=False):
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        with pytest.raises(CorruptStreamError):
            ICQuantized.from_bytes(bytes(flipped))
    with pytest.raises(CorruptStreamError, match="magic"):
        ICQuantized.from_bytes(b"PK\x03\x04" + data[4:])
    coded = ICQuantizer(2, 0.05).quantize(student_t(2, 64))
    for field, value in (("dtype", "Tensor"), ("quantizer", "gptq"), ("bits", 9)):
        forged = dataclasses.replace(coded, **{field: value}).to_bytes()  # a valid CRC
        with pytest.raises(CorruptStreamError, match="header"):
            ICQuantized.from_bytes(forged)


def test_a_forged_index_with_a_valid_checksum_is_still_refused():
    """A well-formed stream (correct lengths and CRC) whose index points past the row end."""
    coded = ICQuantizer(2, 0.05, index_bits=4).quantize(student_t(2, 64))
    assert coded.outliers == 3
    # row 0: four escapes (60 inliers) then gap 14 -> position 74 > 63
    forged_codes = np.array([15, 15, 15, 15, 14, 0, 0, 0, 0, 0])
    forged = dataclasses.replace(coded, streams=((4, 10, pack_bits(forged_codes, 4)),))
    parsed = ICQuantized.from_bytes(forged.to_bytes())
    with pytest.raises(ValueError, match="past the row length"):
        parsed.dequantize()
    with pytest.raises(ValueError, match="past the row length"):
        parsed.outlier_mask()


# --- metadata range: tiny and huge weights (issue 18) ---------------------------------------------

SETTINGS = [dict(bits=b, outlier_ratio=r, quantizer=q)
            for q in ("rtn", "asym", "lloyd") for b in (2, 4, 8) for r in (0.0, 0.05)]


def relative_error(coded: ICQuantized, W: torch.Tensor) -> float:
    W64 = W.double()
    return float((coded.dequantize().double() - W64).norm() / W64.norm())


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("scale", [1e-7, 3e-5, 1e6, 1e30, 1e-30])
def test_tiny_and_huge_weights_are_coded_as_well_as_unit_weights(settings, scale):
    """The float16 metadata once underflowed (1e-7: relative error 1-2.3, silently) and
    overflowed (1e6: refused); a per-matrix power-of-two exponent now keeps every scale exact."""
    W = student_t(8, 512, seed=2)
    unit = relative_error(ICQuantizer(**settings).quantize(W), W)
    coded = ICQuantizer(**settings).quantize(W * scale)
    assert relative_error(coded, W * scale) <= 1.05 * unit + 1e-6
    again = ICQuantized.from_bytes(coded.to_bytes())
    assert torch.equal(again.dequantize(), coded.dequantize())


@pytest.mark.parametrize("exponent", [-23, -17, 20, 100])
def test_power_of_two_scaling_commutes_with_coding_bit_exactly(exponent):
    W = student_t(6, 256, seed=4)
    for settings in SETTINGS:
        unit = ICQuantizer(**settings).quantize(W)
        scaled = ICQuantizer(**settings).quantize(W * 2.0**exponent)
        assert torch.equal(scaled.dequantize(), unit.dequantize() * 2.0**exponent), settings
        assert scaled.codes == unit.codes and scaled.streams == unit.streams
        np.testing.assert_array_equal(scaled.inlier_metadata, unit.inlier_metadata)


@pytest.mark.parametrize("settings", SETTINGS[:3])
def test_the_smallest_exponents_still_code_well(settings):
    W = student_t(8, 512, seed=2)
    unit = relative_error(ICQuantizer(**settings).quantize(W), W)
    for largest in (2.0**-100, 2.0**-114):  # exponents -113 and -127 (scaled in float64)
        W_small = W / W.abs().max() * largest
        coded = ICQuantizer(**settings).quantize(W_small)
        assert coded.metadata_exponent == {2.0**-100: -113, 2.0**-114: -127}[largest]
        assert relative_error(coded, W_small) <= 1.05 * unit + 1e-4
        assert torch.equal(ICQuantized.from_bytes(coded.to_bytes()).dequantize(),
                           coded.dequantize())


def test_weights_below_the_metadata_range_are_refused_naming_W():
    W = student_t(4, 64) * 1e-37
    with pytest.raises(ValueError, match=r"W's largest \|weight\|.*scale W up"):
        ICQuantizer(2, 0.05).quantize(W)
    zero = ICQuantizer(2, 0.05).quantize(torch.zeros(4, 64))  # all-zero is fine (exact)
    assert torch.equal(zero.dequantize(), torch.zeros(4, 64))


# A version-1 stream (float16 metadata, no exponent) written by the previous release.
V1_STREAM = bytes.fromhex(
    "494351310102010372746e07666c6f61743332020200000010000000100000000200000008000000e0156abf"
    "0155aafc01000000030103050000000200000001f80800000040bd55380037ab3808000000c03d0030a040c0"
    "3e8d55d279")
V1_VALUES = [
    [-1.5625, -1.4375, -1.3125, -1.3125, -1.3125, -0.77099609375, -0.77099609375,
     -0.77099609375, -0.77099609375, -0.2294921875, -0.2294921875, -0.2294921875,
     -0.2294921875, 0.31201171875, 0.31201171875, 0.31201171875],
    [0.4375, 0.4375, 0.4375, 4.0, 1.02099609375, 1.02099609375, 1.02099609375, 1.02099609375,
     1.6044921875, 1.6044921875, 1.6044921875, 1.6044921875, 2.18798828125, 2.18798828125,
     2.18798828125, 2.3125]]


def test_version_1_streams_still_read_and_unknown_versions_are_refused():
    old = ICQuantized.from_bytes(V1_STREAM)
    assert old.metadata_exponent == 0 and old.dequantize().tolist() == V1_VALUES
    again = ICQuantized.from_bytes(old.to_bytes())  # rewritten in the current version
    assert torch.equal(again.dequantize(), old.dequantize())
    body = bytearray(old.to_bytes()[:-4])
    body[4] = 99
    import struct
    import zlib
    future = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
    with pytest.raises(CorruptStreamError, match="version 99"):
        ICQuantized.from_bytes(future)


@pytest.mark.parametrize("quantizer", ["rtn", "asym", "lloyd"])
@pytest.mark.parametrize("group_size", [None, 32])
def test_compensated_weights_code_to_bytes_exactly_at_the_same_size(quantizer, group_size):
    # GPTQ (ICQuantColumns: mask and grids fixed) moves weights between levels; recode() stores
    # the result in the same stream layout, and the bytes decode to it bit for bit
    from compress_extras import Compensation, ICQuantOption
    from compress_extras._compensation import compensated_weight

    g = torch.Generator().manual_seed(3)
    X = torch.randn(512, 64, generator=g) @ torch.randn(64, 64, generator=g)
    W = torch.randn(16, 64, generator=g) * torch.linspace(0.2, 3.0, 64)
    option = ICQuantOption(3, 0.05, quantizer, group_size)
    W_hat = compensated_weight(option, W, X.T @ X, Compensation())
    plain = option.code(W)
    assert not torch.equal(W_hat, plain.dequantize())  # compensation did move weights
    coded = plain.recode(W_hat)
    again = ICQuantized.from_bytes(coded.to_bytes())
    assert torch.equal(again.dequantize(), W_hat)
    assert coded.stored_bytes == plain.stored_bytes
    assert coded.bits_per_weight == option.storage_bits(W) / W.numel()
    np.testing.assert_array_equal(again.outlier_mask(), plain.outlier_mask())
    with pytest.raises(ValueError, match="shape"):
        plain.recode(W_hat[:, :32])


@pytest.mark.parametrize("ratio", [0.0, 0.05])
def test_asym_inliers_have_an_exact_zero_level(ratio):
    """quantizer="asym": the inliers' grid has 0 as a level, so zero weights and weights within
    half a step of 0 decode to exactly 0 (the "rtn" grid's float minimum generally misses 0);
    the same codes and metadata sizes as "rtn", and the inliers' error within half a step."""
    W = gaussian(16, 512, seed=5)
    W[:, ::7] = 0.0
    asym = ICQuantizer(3, ratio, "asym").quantize(W)
    rtn = ICQuantizer(3, ratio, "rtn").quantize(W)
    W_hat = asym.dequantize()
    assert (W_hat[:, ::7] == 0).all()
    assert not (rtn.dequantize()[:, ::7] == 0).all()
    assert asym.stored_bytes == rtn.stored_bytes + 1  # the quantizer's name is a letter longer
    inliers = asym.levels()[0]
    assert (inliers == 0).any(dim=1).all()
    steps = inliers[:, 1] - inliers[:, 0]
    mask = torch.from_numpy(asym.outlier_mask()).reshape(W.shape)
    error = torch.where(mask, 0.0, (W_hat - W).abs()).amax(dim=1)
    assert (error <= steps * 0.5 * (1 + 1e-2)).all()
