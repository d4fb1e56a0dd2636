"""experiments/_references.py: Gurobi against brute force, the OSSCAR-style swap search and abess
on tiny layer problems (n_groups <= 8), and the ReferenceUnavailable paths."""

import importlib
import importlib.util
import sys

import numpy as np
import pytest

import mip
from tests.experiments.importing import import_experiment

HAVE_GUROBI = importlib.util.find_spec("gurobipy") is not None
HAVE_ABESS = importlib.util.find_spec("abess") is not None



refs = import_experiment("_references")


def problem(seed, group_size, out, n, max_keep=None, budget=False, M_scale=1.5):
    """Correlated inputs, uneven group scales, noisy targets; a box that may bind."""
    rng = np.random.default_rng(seed)
    d = n * group_size
    X = rng.standard_normal((max(3 * d, 30), d)) @ rng.standard_normal((d, d))
    W0 = rng.standard_normal((out, d)) * np.repeat(rng.uniform(0.1, 1.0, n), group_size)
    Y = X @ W0.T + 0.3 * rng.standard_normal((X.shape[0], out))
    extra = {}
    if budget:
        cost = rng.uniform(0.5, 2.0, n)
        extra = {"cost": cost, "budget": 0.4 * float(cost.sum())}
    return mip.LayerProblem.from_data(X, Y, group_size, lam=0.1, alpha=0.5,
                                      M=M_scale * float(np.abs(W0).max()), max_keep=max_keep,
                                      **extra)


def with_max_keep(p, k):
    return mip.LayerProblem(p.gram, p.xty, p.yty, p.group_size, p.lam, p.alpha, p.M, max_keep=k)


CASES = {  # id: (seed, group_size, out, n, max_keep, budget)
    "linear-free": (0, 1, 3, 6, None, False),
    "linear-max_keep": (1, 1, 2, 8, 3, False),
    "grouped-max_keep": (2, 2, 2, 5, 2, False),
    "grouped-free": (3, 3, 2, 4, None, False),
    "linear-budget": (4, 1, 2, 6, None, True),
}


# ---- Gurobi ------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_GUROBI, reason="gurobipy is not installed (pip install gurobipy)")
@pytest.mark.parametrize("case", list(CASES))
def test_gurobi_matches_brute_force(case):
    p = problem(*CASES[case])
    exact = mip.solve_brute_force(p)
    result = refs.solve_gurobi(p, time_limit=30.0, mip_gap=1e-9)
    assert result.status == "optimal"
    assert p.violation(result.weight, result.keep) == 0.0
    assert result.objective == pytest.approx(p.objective(result.weight, result.keep), rel=1e-12)
    assert result.objective == pytest.approx(exact.objective, rel=1e-6)
    assert result.bound <= exact.objective + 1e-9 * abs(exact.objective)
    assert result.gap == mip._result.relative_gap(result.objective, result.bound)
    assert result.seconds > 0


@pytest.mark.skipif(not HAVE_GUROBI, reason="gurobipy is not installed (pip install gurobipy)")
def test_gurobi_size_limit_is_reported():
    p = problem(5, 9, 2, 12)  # 2*108 weights + 12 binaries = 228 variables
    try:
        result = refs.solve_gurobi(p, time_limit=2.0)
    except refs.ReferenceUnavailable as err:  # the free licence: 200 variables in a quadratic model
        assert "licence" in err.reason and "228 variables" in err.reason
    else:  # a full licence admits it
        assert result.status in ("optimal", "time_limit")


def test_gurobi_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "gurobipy", None)  # makes `import gurobipy` fail
    with pytest.raises(refs.ReferenceUnavailable, match="gurobipy is not installed"):
        refs.solve_gurobi(problem(*CASES["linear-free"]), 1.0)


# ---- OSSCAR-style swap search ------------------------------------------------------------------
@pytest.mark.parametrize("case", [c for c in CASES if not CASES[c][5]])
def test_osscar_support_and_objective(case):
    p = problem(*CASES[case])
    k = p.max_keep if p.max_keep is not None else p.n_groups // 2
    result = refs.solve_osscar(p, k, time_limit=10.0)
    assert result.keep.sum() <= k and result.bound == -np.inf and result.status == "time_limit"
    assert p.violation(result.weight, result.keep) <= 1e-12
    np.testing.assert_allclose(result.weight, mip.fit_support(p, result.keep), atol=1e-12)
    assert result.objective == p.objective(result.weight, result.keep)
    optimum = mip.solve_brute_force(with_max_keep(p, k)).objective
    assert result.objective >= optimum - 1e-9 * abs(optimum)
    ridge_path = [h["ridge_objective"] for h in result.history]
    assert all(b < a for a, b in zip(ridge_path, ridge_path[1:], strict=False))
    # never worse than the magnitude start it began from
    start = refs._start_support(p, k, p.lam * p.alpha)
    assert result.objective <= p.objective(mip.fit_support(p, start), start) + 1e-12


def test_osscar_never_worse_than_a_given_start():
    p = problem(*CASES["linear-max_keep"])
    rng = np.random.default_rng(7)
    for _ in range(4):
        start = np.zeros(p.n_groups, bool)
        start[rng.choice(p.n_groups, 3, replace=False)] = True
        result = refs.solve_osscar(p, 3, time_limit=10.0, start=start)
        assert result.keep.sum() == 3
        assert result.objective <= p.objective(mip.fit_support(p, start), start) + 1e-12


def test_osscar_stops_at_the_time_limit():
    p = problem(*CASES["linear-max_keep"])
    result = refs.solve_osscar(p, 3, time_limit=0.0)  # one batch of candidates, then stop
    assert result.iterations == 1 and result.supports_evaluated == p.n_groups - 3
    assert result.keep.sum() == 3 and p.violation(result.weight, result.keep) <= 1e-12


def test_osscar_refuses_a_budget_and_a_too_large_k():
    with pytest.raises(refs.ReferenceUnavailable, match="budget"):
        refs.solve_osscar(problem(*CASES["linear-budget"]), 2)
    with pytest.raises(ValueError, match="max_keep"):
        refs.solve_osscar(problem(*CASES["linear-max_keep"]), 4)


# ---- abess -------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_ABESS, reason="abess is not installed (pip install abess)")
@pytest.mark.parametrize("case", [c for c in CASES if not CASES[c][5]])
def test_abess_feasible_support(case):
    p = problem(*CASES[case])
    k = p.max_keep if p.max_keep is not None else p.n_groups // 2
    result = refs.solve_abess(p, k)
    assert 0 < result.keep.sum() <= k and result.bound == -np.inf
    assert p.violation(result.weight, result.keep) <= 1e-12
    np.testing.assert_allclose(result.weight, mip.fit_support(p, result.keep), atol=1e-12)
    assert result.objective == p.objective(result.weight, result.keep)
    optimum = mip.solve_brute_force(with_max_keep(p, k)).objective
    assert result.objective >= optimum - 1e-9 * abs(optimum)


def test_abess_unavailable(monkeypatch):
    with pytest.raises(refs.ReferenceUnavailable, match="budget"):
        refs.solve_abess(problem(*CASES["linear-budget"]), 2)
    monkeypatch.setitem(sys.modules, "abess", None)
    with pytest.raises(refs.ReferenceUnavailable, match="abess is not installed"):
        refs.solve_abess(problem(*CASES["linear-free"]), 2)
