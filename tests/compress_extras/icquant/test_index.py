"""The escape-coded gap index: lossless on random masks and on every edge case, against a
literal per-position reference encoder; its measured cost against the closed form."""

import numpy as np
import pytest
import torch

from compress_extras.icquant import (
    ICQuantizer,
    binary_entropy,
    decode_gap_codes,
    decode_gap_codes_torch,
    expected_index_cost,
    gap_codes,
)


def reference_codes(mask: np.ndarray, B: int) -> list[int]:
    """The spec, one position at a time: count inliers; at an outlier emit escapes for each
    full 2^B-1 run, then the remainder; trailing inliers emit nothing."""
    escape, codes = 2**B - 1, []
    for row in mask:
        run = 0
        for is_outlier in row:
            if not is_outlier:
                run += 1
                continue
            while run >= escape:
                codes.append(escape)
                run -= escape
            codes.append(run)
            run = 0
    return codes


def round_trip(mask: np.ndarray, B: int) -> None:
    codes = gap_codes(mask, B)
    assert codes.tolist() == reference_codes(mask, B)
    counts = mask.sum(axis=1)
    np.testing.assert_array_equal(decode_gap_codes(codes, B, counts, mask.shape[1]), mask)
    decoded = decode_gap_codes_torch(torch.from_numpy(codes), B, torch.from_numpy(counts),
                                     mask.shape[1])
    np.testing.assert_array_equal(decoded.numpy(), mask)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("B", [1, 2, 3, 5, 8])
def test_random_masks_round_trip(seed, B):
    rng = np.random.default_rng(seed)
    rows, n = int(rng.integers(1, 9)), int(rng.integers(1, 300))
    rate = rng.choice([0.01, 0.05, 0.3, 0.9])
    round_trip(rng.random((rows, n)) < rate, B)  # Bernoulli: counts differ between rows
    k = int(rng.integers(0, n + 1))  # exactly k per row, as ICQuant codes them
    exact = np.zeros((rows, n), dtype=bool)
    for r in range(rows):
        exact[r, rng.choice(n, k, replace=False)] = True
    round_trip(exact, B)


@pytest.mark.parametrize("B", [2, 3, 4])
def test_edge_cases(B):
    E, n = 2**B - 1, 3 * 2**B + 5

    def mask_with(*positions):
        m = np.zeros((1, n), dtype=bool)
        m[0, list(positions)] = True
        return m

    cases = {
        "first": mask_with(0),
        "last": mask_with(n - 1),
        "first and last": mask_with(0, n - 1),
        "adjacent": mask_with(3, 4, 5),
        "gap 2^B-2": mask_with(E - 1),  # largest gap without an escape
        "gap 2^B-1": mask_with(E),  # one escape, then code 0
        "gap 2^B": mask_with(E + 1),  # one escape, then code 1
        "gap 2(2^B-1)": mask_with(2 * E),
        "none": np.zeros((1, n), dtype=bool),
        "all": np.ones((1, n), dtype=bool),
    }
    for mask in cases.values():
        round_trip(mask, B)
    assert gap_codes(cases["gap 2^B-2"], B).tolist() == [E - 1]
    assert gap_codes(cases["gap 2^B-1"], B).tolist() == [E, 0]
    assert gap_codes(cases["gap 2^B"], B).tolist() == [E, 1]
    assert gap_codes(cases["none"], B).size == 0
    assert gap_codes(cases["all"], B).tolist() == [0] * n
    # rows with no outlier between rows that have some
    mixed = np.zeros((4, n), dtype=bool)
    mixed[1, [0, n - 1]] = True
    mixed[3, E] = True
    round_trip(mixed, B)


def test_every_weight_an_outlier_through_the_quantizer():
    W = torch.randn(3, 10)
    coded = ICQuantizer(2, 0.97).quantize(W)  # round(0.97 * 10) = 10 outliers per row
    assert coded.outliers == 10
    assert coded.outlier_mask().all()
    torch.testing.assert_close(coded.dequantize(), coded.__class__.from_bytes(
        coded.to_bytes()).dequantize(), rtol=0, atol=0)


@pytest.mark.parametrize("decode", [decode_gap_codes, decode_gap_codes_torch])
def test_corrupt_streams_are_refused(decode):
    def call(codes, counts, n, B=2):
        as_type = torch.tensor if decode is decode_gap_codes_torch else np.array
        return decode(as_type(codes), B, as_type(counts), n)

    with pytest.raises(ValueError, match="past the row length"):
        call([2, 2], [2], 4)  # positions 2 and 5 in a row of 4
    with pytest.raises(ValueError, match="ends in an escape"):
        call([0, 3], [1], 10)
    with pytest.raises(ValueError, match="outliers coded"):
        call([0, 0], [3], 10)
    with pytest.raises(ValueError, match="outside"):
        call([5], [1], 10)


def test_measured_cost_matches_the_closed_form_at_5_percent():
    """64 Gaussian rows of 4096 weights, 5% outliers: the coded index costs within 0.01 of
    min_B C(0.05, B), above the entropy H(0.05) = 0.286 and at most 0.33 bits per weight."""
    W = torch.randn(64, 4096, generator=torch.Generator().manual_seed(0))
    coded = ICQuantizer(2, 0.05).quantize(W)
    best = min(expected_index_cost(0.05, B) for B in range(1, 17))
    measured = coded.index_bits_per_weight
    assert abs(measured - best) < 0.01, (measured, best)
    assert binary_entropy(0.05) == pytest.approx(0.2864, abs=1e-4)
    assert binary_entropy(0.05) <= measured <= 0.33
    assert set(coded.widths.tolist()) <= {5, 6, 7}  # the best widths at 5%
    for B in (5, 6):  # a fixed width costs what the formula says too
        fixed = ICQuantizer(2, 0.05, index_bits=B).quantize(W)
        assert abs(fixed.index_bits_per_weight - expected_index_cost(0.05, B)) < 0.01


def test_expected_cost_limits():
    assert expected_index_cost(0.0, 5) == 0.0
    assert expected_index_cost(1.0, 3) == 3.0  # every position coded as gap 0
    for gamma in (0.01, 0.05, 0.2):
        costs = [expected_index_cost(gamma, B) for B in range(1, 20)]
        assert min(costs) >= binary_entropy(gamma)
    with pytest.raises(ValueError):
        expected_index_cost(1.5, 3)
