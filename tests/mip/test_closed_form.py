"""The numpy closed form against independent oracles: a bounded 1-D minimisation over y, and a
cvxpy conic model with quad_over_lin."""

import subprocess
import sys

import cvxpy as cp
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

import mip
from tests.cases import random_groups

ALPHAS = [0.05, 0.3, 0.5, 0.9]


def perspective_min_over_y(w: np.ndarray, alpha: float, M: float) -> float:
    """min over y in [||w||_inf / M, 1] of a*||w||^2/y + b*y, by a bounded scalar search."""
    a, b = alpha, 1 - alpha
    lo = np.max(np.abs(w)) / M
    if lo >= 1:  # only y = 1 is left (the formula caps y at 1)
        return a * w @ w + b
    r2 = w @ w
    res = minimize_scalar(
        lambda y: a * r2 / y + b * y, bounds=(lo, 1.0), method="bounded",
        options={"xatol": 1e-13, "maxiter": 2000},
    )
    # The bounded search stays strictly inside; the ends are candidates too.
    return min(res.fun, a * r2 + b, a * r2 / lo + b * lo if lo > 0 else np.inf)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_closed_form_equals_min_over_y(alpha):
    rng = np.random.default_rng(int(alpha * 100))
    groups = random_groups(rng, 300, alpha)
    assert {case for *_, case in groups} == {1, 2, 3}
    for w, M, case in groups:
        got = mip.spr_penalty(w[None, :], alpha, M)[0]
        want = perspective_min_over_y(w, alpha, M)
        assert got == pytest.approx(want, rel=1e-9), (case, w, M)


@pytest.mark.parametrize("alpha", [0.3, 0.7])
def test_closed_form_equals_cvxpy_quad_over_lin(alpha):
    rng = np.random.default_rng(7)
    a, b = alpha, 1 - alpha
    for w, M, case in random_groups(rng, 30, alpha):
        w = w / np.max(np.abs(w))  # unit scale keeps the conic solver's tolerance meaningful
        M = M / np.max(np.abs(w)) if np.isfinite(M) else M
        y = cp.Variable()
        constraints = [y <= 1, y >= np.max(np.abs(w)) / M] if np.isfinite(M) else [y <= 1]
        if np.max(np.abs(w)) / M >= 1:
            continue  # infeasible box: the formula's cap, not a conic model
        problem = cp.Problem(cp.Minimize(a * cp.quad_over_lin(w, y) + b * y), constraints)
        problem.solve(solver=cp.CLARABEL)
        assert problem.status == cp.OPTIMAL
        got = mip.spr_penalty(w[None, :], alpha, M)[0]
        assert got == pytest.approx(problem.value, rel=1e-6, abs=1e-7), case


def test_zero_group_and_indicator_cases():
    alpha, M = 0.5, 2.0
    W = np.array([[0.0, 0.0], [0.1, 0.0], [0.3, 0.4], [3.0, 4.0]])
    y = mip.spr_indicator(W, alpha, M)
    np.testing.assert_allclose(y, [0.0, 0.1, 0.5, 1.0])  # 0, max(0.05, 0.1), c*r, capped
    np.testing.assert_allclose(mip.spr_penalty(W, alpha, M), [0.0, 0.1, 0.5, 13.0])


def test_per_group_M_broadcasts():
    W = np.array([[0.2, 0.1], [0.2, 0.1]])
    separate = [mip.spr_penalty(W[i : i + 1], 0.2, M)[0] for i, M in enumerate([0.25, np.inf])]
    np.testing.assert_allclose(mip.spr_penalty(W, 0.2, np.array([0.25, np.inf])), separate)
    assert separate[0] != separate[1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": np.nan}, "alpha"),
        ({"M": 0.0}, "M must be positive"),
        ({"M": -1.0}, "M must be positive"),
        ({"M": np.nan}, "M must be positive"),
        ({"M": np.ones(3)}, "broadcastable"),
        ({"W": np.ones(4)}, r"shape \(G, n\)"),
        ({"W": np.array([[1.0, np.nan]])}, "NaN"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"W": np.ones((2, 2)), "alpha": 0.5, "M": 1.0} | kwargs
    for fn in (mip.spr_penalty, mip.spr_indicator):
        with pytest.raises(ValueError, match=match):
            fn(**args)


def test_mip_imports_without_torch():
    code = (
        "import sys, mip; "
        "from mip import solve_outer_approximation, perspective_relaxation, solve_scip; "
        "assert 'torch' not in sys.modules, 'mip imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
