"""The weighted Lloyd codebook against a slow weighted k-means, the unweighted Lloyd of ICQuant
for equal weights, and its fixed-point condition (each level the weighted mean of its cell)."""

import pytest
import torch

from compress_extras._weighted_lloyd import weighted_lloyd
from compress_extras.icquant import Lloyd


def data(seed, rows, m):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(rows, m, generator=g) ** 3  # skewed and heavy-tailed
    weights = torch.empty(rows, m).exponential_(generator=g) ** 2
    return values, weights


def slow_weighted_kmeans(values, weights, levels, iterations):
    """One row at a time in float64 lists: weighted quantile start, nearest-level assignment (a
    value on the midpoint of two levels goes to the upper one, so levels that start on the same
    value -- a heavy weight puts several quantiles there -- split their values at it), weighted
    cell means (an empty or weightless cell keeps its level)."""
    codebooks = []
    for v_row, w_row in zip(values.tolist(), weights.tolist(), strict=True):
        pairs = sorted(zip(v_row, w_row, strict=True), key=lambda p: p[0])
        total = sum(w for _, w in pairs)
        centers = []
        for j in range(levels):
            target, running = (j + 0.5) / levels * total, 0.0
            chosen = pairs[-1][0]
            for v, w in pairs:
                running += w
                if running > target:
                    chosen = v
                    break
            centers.append(chosen)
        for _ in range(iterations):
            mass, sums = [0.0] * levels, [0.0] * levels
            midpoints = [(a + b) / 2 for a, b in zip(centers, centers[1:], strict=False)]
            for v, w in pairs:  # the nearest level; on a midpoint, the upper one
                j = sum(1 for mid in midpoints if mid <= v)
                mass[j] += w
                sums[j] += w * v
            updated = sorted(sums[j] / mass[j] if mass[j] > 0 else centers[j]
                             for j in range(levels))
            if updated == centers:
                break
            centers = updated
        codebooks.append(centers)
    return torch.tensor(codebooks, dtype=torch.float64)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [2, 3, 4])
def test_matches_slow_weighted_kmeans(seed, levels):
    values, weights = data(seed, 3, 11)
    expected = slow_weighted_kmeans(values.double(), weights.double(), levels, 30)
    got = weighted_lloyd(values, weights, levels)
    assert got.shape == (3, levels)
    assert torch.allclose(got.double(), expected, atol=1e-5)


@pytest.mark.parametrize("bits", [1, 2, 3])
@pytest.mark.parametrize("weight", [1.0, 0.5, 0.0])  # 0 everywhere counts as equal weights
def test_equal_weights_reproduce_the_unweighted_lloyd(bits, weight):
    values = data(bits, 8, 300)[0]
    codebook = weighted_lloyd(values, torch.full_like(values, weight), 2**bits)
    assert torch.equal(codebook.half(), Lloyd().encode(values, bits)[1])


def test_levels_are_weighted_cell_means_at_convergence():
    values, weights = data(10, 6, 200)
    codebook = weighted_lloyd(values, weights, 4, iterations=1000)
    assert (codebook[:, 1:] >= codebook[:, :-1]).all()
    cell = (values[:, :, None] - codebook[:, None, :]).abs().argmin(dim=2)
    for r in range(6):
        for j in range(4):
            inside = cell[r] == j
            if weights[r][inside].sum() > 0:
                mean = (weights[r][inside] * values[r][inside]).sum() / weights[r][inside].sum()
                assert abs(float(mean) - float(codebook[r, j])) < 1e-4 * (1 + abs(float(mean)))


def test_weights_lower_the_weighted_error():
    values, weights = data(20, 16, 400)
    weights = weights * (values.abs() < 0.5) * 50 + 0.01  # the small values matter most

    def weighted_error(codebook):
        nearest = (values[:, :, None] - codebook[:, None, :]).abs().min(dim=2).values
        return float((weights * nearest**2).sum())

    weighted = weighted_lloyd(values, weights, 4)
    plain = weighted_lloyd(values, torch.ones_like(values), 4)
    assert weighted_error(weighted) < 0.5 * weighted_error(plain)


@pytest.mark.parametrize("call", [
    lambda v, w: weighted_lloyd(v, -w, 4),
    lambda v, w: weighted_lloyd(v, w[:, :5], 4),
    lambda v, w: weighted_lloyd(v.flatten(), w.flatten(), 4),
    lambda v, w: weighted_lloyd(v, w, 0),
    lambda v, w: weighted_lloyd(v, w, 4, iterations=-1),
    lambda v, w: weighted_lloyd(v * float("nan"), w, 4),
])
def test_bad_inputs(call):
    with pytest.raises(ValueError):
        call(*data(0, 2, 10))
