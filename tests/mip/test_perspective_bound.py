"""The perspective bound: valid at any point, equal to the conic relaxation (cvxpy) when its
first-order method converges, tightened by cardinality and budget, and valid for fixings."""

import itertools

import numpy as np
import pytest

import mip
from mip._perspective_bound import bounds_at, perspective_bound
from tests.mip.instances import random_problem


@pytest.mark.parametrize("case", [(8, 1, 2, 3), (10, 2, 3, None), (12, 1, 2, None), (12, 2, 3, 4)])
def test_converges_to_the_conic_relaxation_from_below(case):
    n, g, out, max_keep = case
    problem = random_problem(np.random.default_rng(sum(case[:3])), n, g, out, max_keep)
    conic = mip.perspective_relaxation(problem).value
    start = mip.fit_support(problem, np.ones(n, bool))
    bound = perspective_bound(problem, start=start, iterations=10000).value
    assert bound <= conic * (1 + 1e-6)
    assert bound >= conic - 5e-3 * abs(conic)


@pytest.mark.parametrize("seed", range(4))
def test_valid_at_any_point_and_for_every_k(seed):
    rng = np.random.default_rng(seed)
    problem = random_problem(rng, 7, 2, 2, budget=seed % 2 == 1)
    ks = np.arange(0, 8)
    optima = np.array([mip.solve_brute_force(
        mip.LayerProblem(problem.gram, problem.xty, problem.yty, 2, problem.lam, problem.alpha,
                         problem.M, int(k), problem.cost, problem.budget)).objective for k in ks])
    for _ in range(5):
        W = rng.standard_normal((problem.n_out, problem.d)) * rng.uniform(0, 2)
        assert np.all(bounds_at(problem, W, ks) <= optima * (1 + 1e-9) + 1e-12)
    assert np.all(np.diff(optima) <= 1e-12)  # the oracle itself: more groups, no worse


def test_cardinality_tightens_the_bound():
    problem = random_problem(np.random.default_rng(2), 12, 2, 3)
    start = mip.fit_support(problem, np.ones(12, bool))
    loose = perspective_bound(problem, start=start, iterations=1500).value
    tight = perspective_bound(problem, max_keep=3, start=start, iterations=1500).value
    optimum = mip.solve_brute_force(
        mip.LayerProblem(problem.gram, problem.xty, problem.yty, 2, problem.lam, problem.alpha,
                         problem.M, 3)).objective
    assert loose < tight <= optimum * (1 + 1e-9)


def test_valid_for_every_fixing():
    """A node's bound never exceeds the best objective of the supports the node covers."""
    problem = random_problem(np.random.default_rng(8), 6, 1, 2, max_keep=3)
    best = {}
    for bits in itertools.product([False, True], repeat=6):
        keep = np.array(bits)
        if keep.sum() <= 3:
            best[bits] = problem.objective(mip.fit_support(problem, keep), keep)
    for fixed in itertools.product([0, 1, 2], repeat=6):  # 0 free, 1 in, 2 out
        fixed = np.array(fixed)
        covered = [v for bits, v in best.items() if all(
            (f != 1 or b) and (f != 2 or not b) for f, b in zip(fixed, bits, strict=True))]
        node = perspective_bound(problem, fixed_in=fixed == 1, fixed_out=fixed == 2,
                                 iterations=60)
        if not covered:
            assert node.value == np.inf
        else:
            assert node.value <= min(covered) * (1 + 1e-9) + 1e-12


def test_the_budget_tightens_the_bound():
    free = random_problem(np.random.default_rng(6), 10, 1, 3)
    cost = np.random.default_rng(7).uniform(0.5, 2.0, 10)
    tight = mip.LayerProblem(free.gram, free.xty, free.yty, 1, free.lam, free.alpha, free.M,
                             cost=cost, budget=float(cost.sum() / 4))
    start = mip.fit_support(free, np.ones(10, bool))
    loose = perspective_bound(free, start=start, iterations=1500).value
    budgeted = perspective_bound(tight, start=start, iterations=1500).value
    assert loose < budgeted <= mip.solve_brute_force(tight).objective * (1 + 1e-9)
