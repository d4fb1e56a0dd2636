"""Branch and bound over supports against brute force, SCIP and the outer approximation: the
optimum, its certificate, the bounds it prunes with, and its time limit."""

import importlib.util
import itertools

import numpy as np
import pytest

import mip
from mip._branch_and_bound import ridge_value
from tests.mip.instances import random_problem
from tests.mip.test_exact import CASES, check_certificate

MORE = [  # (n_groups, group_size, n_out, max_keep, budget): wider, and uncorrelated
    (10, 1, 3, 4, False), (10, 2, 2, None, True), (11, 1, 2, 6, True), (12, 1, 1, 3, False),
]


@pytest.mark.parametrize("case", CASES + MORE, ids=lambda c: f"{c[0]}x{c[1]}-out{c[2]}")
@pytest.mark.parametrize("correlated", [True, False])
def test_equals_brute_force(case, correlated):
    n, k, out, max_keep, budget = case
    rng = np.random.default_rng(n * 10 + k + 1000 * correlated)
    problem = random_problem(rng, n, k, out, max_keep, budget, correlated=correlated)
    result = mip.solve_branch_and_bound(problem)
    oracle = mip.solve_brute_force(problem)
    check_certificate(problem, result)
    assert result.objective == pytest.approx(oracle.objective, rel=1e-6)
    assert result.history[-1]["lower"] == result.bound
    assert result.iterations >= 1 and result.supports_evaluated >= 1


@pytest.mark.skipif(importlib.util.find_spec("pyscipopt") is None, reason="pyscipopt not installed")
@pytest.mark.parametrize("case", CASES[:6], ids=lambda c: f"{c[0]}x{c[1]}")
def test_equals_scip(case):
    n, k, out, max_keep, budget = case
    problem = random_problem(np.random.default_rng(n * 10 + k), n, k, out, max_keep, budget)
    ours = mip.solve_branch_and_bound(problem, mip_gap=1e-6)
    scip = mip.solve_scip(problem, mip_gap=1e-6, time_limit=900)
    assert scip.status == "optimal"
    assert ours.objective == pytest.approx(scip.objective, rel=1e-5)
    assert ours.bound <= scip.objective * (1 + 1e-6) and scip.bound <= ours.objective * (1 + 1e-6)


def test_agrees_with_the_outer_approximation_on_a_14_group_instance():
    problem = random_problem(np.random.default_rng(7), 14, 1, 2, max_keep=6)
    ours = mip.solve_branch_and_bound(problem, mip_gap=1e-6)
    oa = mip.solve_outer_approximation(problem, mip_gap=1e-6, time_limit=300)
    assert ours.status == oa.status == "optimal"
    assert ours.objective == pytest.approx(oa.objective, rel=1e-5)


def test_ridge_value_bounds_every_subset_of_its_support():
    """The pruning bound: r(U) <= phi(T) for every T inside U (monotone value, box dropped)."""
    problem = random_problem(np.random.default_rng(5), 6, 2, 2)
    a = problem.lam * problem.alpha
    for U in itertools.product([False, True], repeat=6):
        U = np.array(U)
        r = ridge_value(problem, U)
        W = mip.fit_support(problem, U)
        phi = problem.loss(W) + a * float(np.sum(W * W))
        assert r <= phi * (1 + 1e-9) + 1e-12
        for j in np.flatnonzero(U):  # a subset is never better
            T = U.copy()
            T[j] = False
            W_T = mip.fit_support(problem, T)
            assert problem.loss(W_T) + a * float(np.sum(W_T * W_T)) >= phi * (1 - 1e-9) - 1e-12


def test_ridge_value_without_ridge_on_a_singular_gram():
    X = np.random.default_rng(0).standard_normal((30, 3))
    X = np.hstack([X, X[:, :1]])  # a repeated column
    Y = X[:, :2] @ np.array([[1.0, -2.0], [0.5, 0.0]])
    problem = mip.LayerProblem.from_data(X, Y, 1, lam=0.0, alpha=0.5, M=10.0)
    assert ridge_value(problem, np.ones(4, bool)) == pytest.approx(0.0, abs=1e-9)


def test_time_limit_returns_incumbent_and_valid_bound():
    problem = random_problem(np.random.default_rng(3), 22, 1, 3, max_keep=11)
    result = mip.solve_branch_and_bound(problem, time_limit=0.05)
    assert result.status == "time_limit"
    assert problem.violation(result.weight, result.keep) == 0
    assert result.objective == pytest.approx(problem.objective(result.weight, result.keep))
    optimum = mip.solve_branch_and_bound(problem, time_limit=300).objective
    assert result.bound <= optimum * (1 + 1e-9) <= result.objective * (1 + 1e-9)


def test_max_keep_zero_and_bad_settings():
    problem = random_problem(np.random.default_rng(0), 5, 1, 2, max_keep=0)
    result = mip.solve_branch_and_bound(problem)
    assert result.status == "optimal" and not result.keep.any() and (result.weight == 0).all()
    with pytest.raises(ValueError, match="time_limit"):
        mip.solve_branch_and_bound(problem, time_limit=0)
    with pytest.raises(ValueError, match="mip_gap"):
        mip.solve_branch_and_bound(problem, mip_gap=-1)
