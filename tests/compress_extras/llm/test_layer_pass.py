"""compress_extras.llm._layer_pass.TokenStatistics: down_proj's layer problem over token windows,
through the shared InputStatistics, against the formulas written out: position 0 of each window
weighted by ``first_weight``, targets the dense output plus a shift, the ridge and the energies
from the ordinary tokens (positions >= 1) alone, and the centred problem of a fit with a bias."""

import numpy as np
import pytest
import torch
from torch import nn

from compress_extras.llm._layer_pass import ALPHA, BOX, RIDGE, TokenStatistics


def _close(actual, expected, rtol=1e-5):
    """Float32 products: relative to the largest entry."""
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def _batches(seed: int, d: int = 12, out: int = 5):
    g = torch.Generator().manual_seed(seed)
    batches = []
    for B in (3, 1):
        X = torch.randn(B, 7, d, generator=g)
        X[:, 0] *= 40.0  # the attention sink
        batches.append((X, X + 0.1 * torch.randn(B, 7, d, generator=g),
                        torch.randn(B, 7, out, generator=g), torch.randn(B, 7, out, generator=g)))
    return batches


@pytest.mark.parametrize("first_weight", [1.0, 0.0, 16.0])
@pytest.mark.parametrize("shifted", [False, True])
def test_statistics_are_the_weighted_token_sums(first_weight, shifted):
    torch.manual_seed(0)
    down = nn.Linear(12, 5, bias=False)
    W0 = down.weight.detach().double().numpy()
    stats = TokenStatistics(down, first_weight)
    rows, targets, weights, ordinary_x, ordinary_y, residuals = [], [], [], [], [], []
    for X, X_dense, residual, shift in _batches(1):
        stats.update(X, X_dense, residual, shift if shifted else None)
        Y = X_dense.double().numpy() @ W0.T + (shift.double().numpy() if shifted else 0.0)
        for b in range(X.shape[0]):
            rows.append(X[b].double().numpy())
            targets.append(Y[b])
            weights.append(np.r_[first_weight, np.ones(6)])
            ordinary_x.append(X[b, 1:].double().numpy())
            ordinary_y.append(Y[b, 1:])
            residuals.append(residual[b, 1:].double().numpy())
    R, Y, w = np.concatenate(rows), np.concatenate(targets), np.concatenate(weights)
    n = w.sum()
    assert stats.inputs.count == pytest.approx(n)
    problem = stats.problem()
    _close(problem.gram, (R * w[:, None]).T @ R / n)
    _close(problem.xty, (R * w[:, None]).T @ Y / n)
    _close(problem.yty, (w[:, None] * Y * Y).sum(0) / n)
    Xo, Yo = np.concatenate(ordinary_x), np.concatenate(ordinary_y)
    assert problem.lam * problem.alpha == pytest.approx(RIDGE * np.mean(Xo * Xo), rel=1e-5)
    assert problem.alpha == ALPHA and problem.M == pytest.approx(BOX * np.abs(W0).max())
    assert stats.energy("output") == pytest.approx((Yo * Yo).sum() / len(Yo), rel=1e-5)
    res = np.concatenate(residuals)
    assert stats.energy("residual") == pytest.approx((res * res).sum() / len(res), rel=1e-9)
    centred = stats.problem(center=True)
    mx, my = (w[:, None] * R).sum(0) / n, (w[:, None] * Y).sum(0) / n
    Rc, Yc = R - mx, Y - my
    _close(centred.gram, (Rc * w[:, None]).T @ Rc / n, rtol=1e-4)
    _close(centred.xty, (Rc * w[:, None]).T @ Yc / n, rtol=1e-4)
    _close(centred.yty, (w[:, None] * Yc * Yc).sum(0) / n, rtol=1e-4)


def test_the_sums_are_float64_on_the_cpu():
    stats = TokenStatistics(nn.Linear(12, 5), 1.0)
    X, X_dense, residual, _ = _batches(2)[0]
    stats.update(X, X_dense, residual)
    inputs = stats.inputs
    assert inputs.gram.dtype == inputs.xty.dtype == inputs.row_sum.dtype == torch.float64
    assert inputs.gram.device.type == "cpu" and inputs.count == 3 * 7
