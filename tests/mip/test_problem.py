"""LayerProblem: the sufficient statistics reproduce the formula, and bad input is refused."""

import numpy as np
import pytest

from mip import LayerProblem, fit_support


def test_statistics_reproduce_the_objective_from_data():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((30, 6)), rng.standard_normal((30, 2))  # Y not from X: general
    p = LayerProblem.from_data(X, Y, group_size=2, lam=0.7, alpha=0.3, M=1.0)
    W = rng.uniform(-1, 1, (2, 6))
    keep = np.array([True, False, True])
    W[:, 2:4] = 0
    direct = np.sum((X @ W.T - Y) ** 2) / 30 + 0.7 * (0.3 * np.sum(W * W) + 0.7 * 2)
    assert p.objective(W, keep) == pytest.approx(direct, rel=1e-12)
    A, B, offset = p.factors  # the factorised loss is the same function
    factored = np.sum((W @ A.T - B.T) ** 2) + offset.sum()
    assert factored == pytest.approx(p.loss(W), rel=1e-10)
    assert p.violation(W, keep) == 0
    assert p.violation(W, np.array([True, False, False])) > 0


def test_fit_support_matches_cvxpy():
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(1)
    X, W0 = rng.standard_normal((30, 8)), rng.standard_normal((3, 8))
    p = LayerProblem.from_data(X, X @ W0.T, group_size=2, lam=0.3, alpha=0.4, M=1.0)
    keep = np.array([True, False, True, True])
    W = fit_support(p, keep)
    V = cp.Variable((3, 8))
    columns = p.group_columns(keep)
    objective = cp.sum_squares(X @ V.T - X @ W0.T) / 30 + 0.3 * 0.4 * cp.sum_squares(V)
    cp.Problem(cp.Minimize(objective), [cp.abs(V) <= 1.0 * columns[None, :]]).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12
    )
    np.testing.assert_allclose(W, np.clip(V.value, -1, 1) * columns, atol=1e-7)
    assert (np.abs(W) <= 1.0).all() and (np.abs(W).max() == pytest.approx(1.0))  # box active


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": 0.0}, "alpha"),
        ({"lam": -1.0}, "lam"),
        ({"M": 0.0}, "M must be"),
        ({"M": np.inf}, "M must be"),
        ({"max_keep": -1}, "max_keep"),
        ({"cost": [1.0, 1.0, 1.0]}, "cost and budget"),
        ({"cost": [1.0, 1.0, 1.0], "budget": -1.0}, "budget"),
        ({"cost": [1.0, -1.0, 1.0], "budget": 1.0}, "cost"),
        ({"cost": [1.0, 1.0], "budget": 1.0}, "cost"),
        ({"group_size": 4}, "group_size"),
    ],
)
def test_bad_settings(kwargs, match):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 6))
    settings = {"group_size": 2, "lam": 0.1, "alpha": 0.5, "M": 1.0} | kwargs
    with pytest.raises(ValueError, match=match):
        LayerProblem.from_data(X, X[:, :2], **settings)


def test_bad_data():
    X = np.ones((10, 4))
    with pytest.raises(ValueError, match="NaN"):
        LayerProblem.from_data(np.full((10, 4), np.nan), X, 1, lam=0.1, alpha=0.5, M=1.0)
    with pytest.raises(ValueError, match="same number"):
        LayerProblem.from_data(X, X[:5], 1, lam=0.1, alpha=0.5, M=1.0)
