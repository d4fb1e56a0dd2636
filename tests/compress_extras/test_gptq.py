"""GPTQ against a slow column-by-column OBS reference, against round-to-nearest on the output
error, the column adapters on their grids (and equal to the plain quantizers when H = I), and the
Hessian from the shared input statistics."""

import pytest
import torch
from torch import nn

from compress_extras import ShiftQuant, UniformQuant
from compress_extras._asymmetric import AsymmetricRTN, asymmetric_grid
from compress_extras._gptq import (
    AsymmetricColumns,
    ColumnQuantizer,
    ICQuantColumns,
    LloydColumns,
    ShiftColumns,
    UniformColumns,
    gptq_layer,
    gptq_quantize,
    hessian_from_statistics,
)
from compress_extras.icquant import ICQuantizer, Lloyd
from compress_extras.shift._levels import fit_scale, levels
from spr._input_statistics import InputStatistics, layer_rows


def problem(seed, out=6, d=12, n=64, dead=()):
    """W (out, d) and H = X^T X / n for correlated inputs X = Z A (columns of varied scale)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g) @ (torch.randn(d, d, generator=g) + 2 * torch.eye(d))
    X = X * torch.linspace(0.3, 2.0, d)
    X[:, list(dead)] = 0.0
    return torch.randn(out, d, generator=g), X.T @ X / n


def output_error(W, W_hat, H):
    D = (W - W_hat).double()
    return float(torch.trace(D @ H.double() @ D.T))


def reference_gptq(W, H, quantizer, damp=0.01, act_order=False):
    """Column by column in float64: no blocks, no lazy updates, the inverse Hessian of the
    columns left updated explicitly by the OBS formula after each column."""
    W, H = W.double().clone(), H.double().clone()
    d = W.shape[1]
    diag = H.diagonal().clone()
    group = quantizer.group_columns
    grids = {}
    if group is None:
        grids[0] = quantizer.fit(W.float().clone(), torch.arange(d))
    dead = diag == 0
    W[:, dead] = 0.0
    H.diagonal()[dead] = 1.0
    H += damp * float(diag.mean()) * torch.eye(d, dtype=torch.float64)
    Hinv = torch.linalg.inv(H)
    order = sorted(range(d), key=lambda j: -float(diag[j])) if act_order else list(range(d))
    left = list(range(d))
    for j in order:
        key = 0 if group is None else j // group
        if key not in grids:
            members = torch.arange(key * group, min(key * group + group, d))
            grids[key] = quantizer.fit(W[:, members].float(), members)
        q = quantizer.quantize(j, W[:, j].float(), grids[key]).double()
        left.remove(j)
        error = (W[:, j] - q) / Hinv[j, j]
        W[:, left] -= error[:, None] * Hinv[j, left][None, :]
        W[:, j] = q
        Hinv = Hinv - Hinv[:, j:j + 1] @ Hinv[j:j + 1, :] / Hinv[j, j]
    return W.float()


class Recording:
    """A column quantizer that records the grids GPTQ fits (keyed by the group's first column)."""

    def __init__(self, inner):
        self.inner, self.grids, self.fits = inner, {}, 0

    @property
    def group_columns(self):
        return self.inner.group_columns

    def fit(self, weights, columns):
        self.fits += 1
        grid = self.inner.fit(weights, columns)
        self.grids[int(columns[0])] = grid
        return grid

    def quantize(self, index, column, grid):
        return self.inner.quantize(index, column, grid)


ASYMMETRIC = [AsymmetricColumns(AsymmetricRTN(3)), AsymmetricColumns(AsymmetricRTN(3, "group", 5))]


@pytest.mark.parametrize("quantizer", ASYMMETRIC, ids=["channel", "group5"])
@pytest.mark.parametrize("block_size", [1, 4, 12])
@pytest.mark.parametrize("act_order", [False, True])
def test_equals_the_slow_reference(quantizer, block_size, act_order):
    W, H = problem(block_size + 10 * act_order, dead=(3,))
    expected = reference_gptq(W, H, quantizer, act_order=act_order)
    got = gptq_quantize(W, H, quantizer, block_size=block_size, act_order=act_order)
    assert torch.allclose(got, expected, atol=1e-5)
    assert (got[:, 3] == 0).all()  # the dead column
    if act_order:  # the order matters, so the check can tell the orders apart
        assert not torch.allclose(expected, reference_gptq(W, H, quantizer))


@pytest.mark.parametrize("option", [AsymmetricRTN(3), AsymmetricRTN(3, "group", 8)],
                         ids=["channel", "group8"])
@pytest.mark.parametrize("act_order", [False, True])
def test_output_error_below_round_to_nearest(option, act_order):
    for seed in range(5):
        W, H = problem(seed, out=16, d=32, n=128)
        gptq = gptq_quantize(W, H, AsymmetricColumns(option), act_order=act_order)
        assert output_error(W, gptq, H) < output_error(W, option.quantize(W), H)


def test_groups_are_fitted_once_each_on_their_grid():
    W, H = problem(7, out=8, d=20)
    option = AsymmetricRTN(3, "group", 8)
    recording = Recording(AsymmetricColumns(option))
    W_hat = gptq_quantize(W, H, recording, block_size=6, act_order=True)
    assert recording.fits == 3 and sorted(recording.grids) == [0, 8, 16]
    for first, (scale, zero) in recording.grids.items():
        part = W_hat[:, first:first + 8]
        codes = part / scale[:, None] + zero[:, None]
        assert torch.allclose(codes, torch.round(codes), atol=1e-4)
        assert codes.min() > -1e-4 and codes.max() < 7 + 1e-4
    # inputs of growing scale: act_order processes columns 19..0, so group 16 is fitted on the
    # original weights and group 0, last, on updated ones
    assert torch.equal(recording.grids[16][0], asymmetric_grid(W[:, 16:], 3)[0][:, 0])
    assert not torch.equal(recording.grids[0][0], asymmetric_grid(W[:, :8], 3)[0][:, 0])


@pytest.mark.parametrize("quantizer, plain", [
    (AsymmetricColumns(AsymmetricRTN(3)), lambda W: AsymmetricRTN(3).quantize(W)),
    (AsymmetricColumns(AsymmetricRTN(2, "group", 7)),
     lambda W: AsymmetricRTN(2, "group", 7).quantize(W)),
    (UniformColumns(UniformQuant(3)), lambda W: UniformQuant(3).quantize(W)),
    (UniformColumns(UniformQuant(2, "group", 10)),
     lambda W: UniformQuant(2, "group", 10).quantize(W)),
    (LloydColumns(2), lambda W: Lloyd().decode(*Lloyd().encode(W, 2), 2)),
    (ShiftColumns(ShiftQuant(3)), lambda W: ShiftQuant(3).quantize(W)),
    (ShiftColumns(ShiftQuant(3, zero_code=True)),
     lambda W: ShiftQuant(3, zero_code=True).quantize(W)),
    (ICQuantColumns(ICQuantizer(2, 0.1)), lambda W: ICQuantizer(2, 0.1).quantize(W).dequantize()),
    (ICQuantColumns(ICQuantizer(3, 0.1, "lloyd", group_size=16)),
     lambda W: ICQuantizer(3, 0.1, "lloyd", group_size=16).quantize(W).dequantize()),
], ids=["asym", "asym-g7", "uniform", "uniform-g10", "lloyd", "shift", "shift-zero", "icq",
        "icq-lloyd-g16"])
def test_adapters_without_compensation_are_the_plain_quantizers(quantizer, plain):
    W = problem(3, out=8, d=48)[0]
    assert isinstance(quantizer, ColumnQuantizer)
    # H = I: no column's error moves another, so GPTQ is round-to-nearest on the grid
    assert torch.equal(gptq_quantize(W, torch.eye(48), quantizer, block_size=16), plain(W))


def test_uniform_columns_on_the_float_minimum_grid():
    W, H = problem(11, out=8, d=24)
    W_hat = gptq_quantize(W, H, UniformColumns(UniformQuant(3)))
    low = W.amin(dim=1, keepdim=True)
    scale = (W.amax(dim=1, keepdim=True) - low) / 7
    steps = (W_hat - low) / scale
    assert torch.allclose(steps, torch.round(steps), atol=1e-4)
    assert steps.min() > -1e-4 and steps.max() < 7 + 1e-4
    assert not torch.equal(W_hat, UniformQuant(3).quantize(W))  # compensation did move weights


def test_lloyd_columns_on_each_rows_codebook():
    W, H = problem(12, out=8, d=40)
    W_hat = gptq_quantize(W, H, LloydColumns(2))
    codebook = Lloyd().encode(W, 2)[1].float()  # fixed from the original weights
    distance = (W_hat[:, :, None] - codebook[:, None, :]).abs().amin(dim=2)
    assert (distance == 0).all()
    assert not torch.equal(W_hat, Lloyd().decode(*Lloyd().encode(W, 2), 2))


def test_weighted_lloyd_columns_with_equal_weights_are_plain_lloyd():
    W, H = problem(13, out=8, d=40)
    plain = gptq_quantize(W, H, LloydColumns(2), act_order=True)
    for ones in (torch.ones(40), torch.ones(8, 40)):
        assert torch.equal(gptq_quantize(W, H, LloydColumns(2, sensitivity=ones),
                                         act_order=True), plain)


@pytest.mark.parametrize("seed", range(5))
def test_sensitivity_weighted_codebook_lowers_the_weighted_error(seed):
    """The codebook weighted by H's diagonal (inputs of very different energy) rounds the
    high-energy columns better: a lower weighted error sum_j H_jj (W_ij - c)^2 than the plain
    codebook's, hence (H = its diagonal) a lower output error; every entry on its row's
    float16 codebook, under activation order (the sensitivity follows the columns)."""
    W, _ = problem(seed, out=8, d=64)
    energy = torch.logspace(-2, 2, 64)[torch.randperm(64, generator=torch.Generator().manual_seed(
        seed))]
    H = torch.diag(energy)
    weighted = LloydColumns.weighted_by(2, H)
    W_plain = gptq_quantize(W, H, LloydColumns(2), act_order=True)
    W_weighted = gptq_quantize(W, H, weighted, act_order=True)
    assert output_error(W, W_weighted, H) < 0.8 * output_error(W, W_plain, H)
    codebook = weighted.fit(W, torch.arange(64))
    assert torch.equal(codebook, codebook.half().float()) and codebook.shape == (8, 4)
    distance = (W_weighted[:, :, None] - codebook[:, None, :]).abs().amin(dim=2)
    assert (distance == 0).all()


def test_weighted_lloyd_columns_bad_sensitivity():
    W, H = problem(14, out=8, d=40)
    with pytest.raises(ValueError, match="sensitivity must be"):
        LloydColumns(2, sensitivity=-torch.ones(40))
    with pytest.raises(ValueError, match="sensitivity must be"):
        LloydColumns(2, sensitivity=torch.full((40,), float("nan")))
    with pytest.raises(ValueError, match="does not match"):
        gptq_quantize(W, H, LloydColumns(2, sensitivity=torch.ones(7, 40)))


@pytest.mark.parametrize("zero_code", [False, True])
def test_shift_columns_on_the_power_of_two_levels(zero_code):
    W, H = problem(13, out=8, d=40)
    W_hat = gptq_quantize(W, H, ShiftColumns(ShiftQuant(3, zero_code=zero_code)))
    alpha = fit_scale(W, 3, zero_code)[:, None]
    unit = levels(3, zero_code)
    distance = (W_hat[:, :, None] / alpha[:, :, None] - unit).abs().amin(dim=2)
    assert (distance < 1e-6).all()


@pytest.mark.parametrize("settings", [ICQuantizer(2, 0.1), ICQuantizer(3, 0.1, group_size=20),
                                      ICQuantizer(2, 0.1, "lloyd")])
def test_icquant_columns_keep_the_mask_and_both_grids(settings):
    W, H = problem(14, out=8, d=40)
    W = W * 0.01  # ICQuant's metadata exponent is not 0 here
    W_hat = gptq_quantize(W, H, ICQuantColumns(settings))
    coded = settings.quantize(W)
    n, b, e = coded.block_length, settings.bits, coded.metadata_exponent
    blocks, mask = W_hat.reshape(-1, n), torch.from_numpy(coded.outlier_mask())
    inner = torch.from_numpy(coded.inlier_metadata).float()
    outer = torch.from_numpy(coded.outlier_metadata).float()
    if settings.quantizer == "rtn":  # lo + k s, and +-(lo + k s) for the outlier tails
        inlier_levels = inner[:, :1] + torch.arange(2**b) * inner[:, 1:]
        magnitudes = outer[:, :1] + torch.arange(2 ** (b - 1)) * outer[:, 1:]
        outlier_levels = torch.cat([magnitudes, -magnitudes], dim=1)
    else:  # the codebooks
        inlier_levels, outlier_levels = inner, outer
    for r in range(blocks.shape[0]):
        for values, grid in ((blocks[r][mask[r]], outlier_levels[r]),
                             (blocks[r][~mask[r]], inlier_levels[r])):
            distance = (values[:, None] / 2.0**e - grid[None, :]).abs().amin(dim=1)
            assert (distance == 0).all()
    assert not torch.equal(W_hat, coded.dequantize())  # compensation did move weights


def test_scale_of_h_does_not_matter():
    W, H = problem(15)
    quantizer = AsymmetricColumns(AsymmetricRTN(3, "group", 4))
    assert torch.allclose(gptq_quantize(W, H, quantizer), gptq_quantize(W, 2 * H, quantizer),
                          atol=1e-5)


def test_hessian_from_statistics_is_the_input_second_moment():
    g = torch.Generator().manual_seed(0)
    layer = nn.Linear(5, 3)
    batches = [torch.randn(4, 5, generator=g), torch.randn(3, 2, 5, generator=g)]
    stats = InputStatistics(layer)
    for X in batches:
        stats.update(X)
    X = torch.cat([b.reshape(-1, 5) for b in batches]).double()
    assert torch.allclose(hessian_from_statistics(stats), X.T @ X / 10, atol=1e-12)
    with pytest.raises(ValueError, match="no inputs"):
        hessian_from_statistics(InputStatistics(layer))


def test_gptq_layer_uses_the_layer_inputs():
    g = torch.Generator().manual_seed(1)
    layer = nn.Linear(12, 6)
    batches = [torch.randn(16, 12, generator=g) @ torch.randn(12, 12, generator=g)
               for _ in range(3)]
    quantizer = AsymmetricColumns(AsymmetricRTN(3))
    before = layer.weight.detach().clone()
    W_hat = gptq_layer(layer, batches, quantizer, act_order=True)
    X = torch.cat(batches).double()
    assert torch.allclose(W_hat, gptq_quantize(before, X.T @ X / 48, quantizer, act_order=True),
                          atol=1e-6)
    assert torch.equal(layer.weight, before)  # the layer is left as it was
    conv = nn.Conv2d(2, 3, 3, padding=1)
    images = torch.randn(2, 2, 5, 5, generator=g)
    rows = layer_rows(conv, images)[0].double()
    W_conv = gptq_layer(conv, [images], quantizer)
    assert W_conv.shape == conv.weight.shape
    assert torch.allclose(W_conv.reshape(3, -1), gptq_quantize(
        conv.weight.detach().reshape(3, -1), rows.T @ rows / rows.shape[0], quantizer), atol=1e-6)


def test_bad_inputs():
    W, H = problem(0)
    quantizer = AsymmetricColumns(AsymmetricRTN(3))
    with pytest.raises(ValueError):
        gptq_quantize(W, H[:5, :5], quantizer)
    with pytest.raises(ValueError):
        gptq_quantize(W[0], H, quantizer)
    bad = W.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        gptq_quantize(bad, H, quantizer)
    with pytest.raises(ValueError):
        gptq_quantize(W, H, quantizer, damp=-0.1)
    with pytest.raises(ValueError):
        gptq_quantize(W, H, quantizer, block_size=0)
    with pytest.raises(ValueError, match="ColumnQuantizer"):
        gptq_quantize(W, H, AsymmetricRTN(3))
    singular = torch.ones(12, 1) @ torch.ones(1, 12)  # rank one, no damping
    with pytest.raises(ValueError, match="positive definite"):
        gptq_quantize(W, singular, quantizer, damp=0.0)
    with pytest.raises(ValueError, match="inside rows"):
        gptq_quantize(W, H, ICQuantColumns(ICQuantizer(2, 0.1, group_size=8)))  # 8 !| 12
    with pytest.raises(ValueError):
        gptq_layer(nn.Linear(12, 6), [], quantizer)
