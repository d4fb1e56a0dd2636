"""Outer approximation against brute force and SCIP, its certificate, and its time limit."""

import importlib.util

import numpy as np
import pytest

import mip
from tests.mip.instances import random_problem

CASES = [  # (n_groups, group_size, n_out, max_keep, budget)
    (4, 1, 1, None, False), (5, 3, 2, 2, False), (6, 1, 3, None, True), (7, 2, 2, 3, False),
    (8, 1, 2, None, False), (8, 3, 1, 4, True), (9, 1, 1, 5, False), (10, 1, 2, None, False),
]


def check_certificate(problem, result):
    assert result.status == "optimal"
    assert problem.violation(result.weight, result.keep) == 0
    assert result.objective == pytest.approx(problem.objective(result.weight, result.keep))
    assert result.bound <= result.objective * (1 + 1e-12)
    assert result.gap <= 1e-4


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}x{c[1]}-out{c[2]}" for c in CASES])
@pytest.mark.parametrize("cuts", ["perspective", "tangent"])
def test_equals_brute_force(case, cuts):
    n, k, out, max_keep, budget = case
    problem = random_problem(np.random.default_rng(n * 10 + k), n, k, out, max_keep, budget)
    result = mip.solve_outer_approximation(problem, cuts=cuts)
    oracle = mip.solve_brute_force(problem)
    check_certificate(problem, result)
    assert result.objective == pytest.approx(oracle.objective, rel=1e-6)
    assert oracle.bound <= result.objective * (1 + 1e-6)
    assert result.history and result.history[-1]["lower"] == pytest.approx(result.bound)


@pytest.mark.skipif(importlib.util.find_spec("pyscipopt") is None, reason="pyscipopt not installed")
@pytest.mark.parametrize("case", CASES[:6], ids=[f"{c[0]}x{c[1]}" for c in CASES[:6]])
def test_equals_scip(case):
    n, k, out, max_keep, budget = case
    problem = random_problem(np.random.default_rng(n * 10 + k), n, k, out, max_keep, budget)
    ours = mip.solve_outer_approximation(problem, mip_gap=1e-6)
    scip = mip.solve_scip(problem, mip_gap=1e-6)
    assert scip.status == "optimal"
    assert ours.objective == pytest.approx(scip.objective, rel=1e-5)
    assert ours.bound <= scip.objective * (1 + 1e-6) and scip.bound <= ours.objective * (1 + 1e-6)


def test_perspective_cuts_need_fewer_iterations_than_plain():
    totals = {"perspective": 0, "tangent": 0}
    for seed in range(4):
        problem = random_problem(np.random.default_rng(seed), 9, 1, 2, None)
        for cuts in totals:
            totals[cuts] += mip.solve_outer_approximation(problem, cuts=cuts).iterations
    assert totals["perspective"] < totals["tangent"], totals


def test_time_limit_returns_incumbent_and_valid_bound():
    problem = random_problem(np.random.default_rng(3), 12, 1, 3, None)
    result = mip.solve_outer_approximation(problem, time_limit=0.3)
    assert result.status == "time_limit"
    assert problem.violation(result.weight, result.keep) == 0
    assert result.objective == pytest.approx(problem.objective(result.weight, result.keep))
    optimum = mip.solve_outer_approximation(problem, time_limit=120).objective
    assert result.bound <= optimum * (1 + 1e-9) <= result.objective * (1 + 1e-9)
    assert result.gap > 1e-4


def test_max_keep_zero_keeps_nothing():
    problem = random_problem(np.random.default_rng(0), 5, 1, 2, max_keep=0)
    result = mip.solve_outer_approximation(problem)
    assert result.status == "optimal" and not result.keep.any() and (result.weight == 0).all()


def test_bad_solver_settings():
    problem = random_problem(np.random.default_rng(0), 4)
    with pytest.raises(ValueError, match="cuts"):
        mip.solve_outer_approximation(problem, cuts="benders")
    with pytest.raises(ValueError, match="time_limit"):
        mip.solve_outer_approximation(problem, time_limit=0)
