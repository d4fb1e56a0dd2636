"""mip.solve_layer and mip.keep_curve: equal to brute force on small instances (with and without
cardinality and budget), a valid certificate on every instance and after an early stop, and the
inputs they refuse."""

from dataclasses import replace

import numpy as np
import pytest

import mip
from tests.mip.instances import random_problem

CASES = [  # (n_groups, group_size, n_out, max_keep, budget): 24 instances, up to 14 groups
    (n, g, out, keep, budget)
    for n, g, out in [(6, 1, 2), (8, 2, 2), (10, 1, 3), (12, 1, 2), (14, 1, 2), (9, 3, 1)]
    for keep, budget in [(None, False), (n // 3, False), (None, True), (n // 2, True)]
]


def check(problem, result):
    assert problem.violation(result.weight, result.keep) == 0
    assert result.objective == pytest.approx(problem.objective(result.weight, result.keep),
                                             rel=1e-12)
    assert result.bound <= result.objective * (1 + 1e-12)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}x{c[1]}-k{c[3]}-b{int(c[4])}")
def test_equals_brute_force(case):
    n, g, out, max_keep, budget = case
    problem = random_problem(np.random.default_rng(hash(case) % 2**32), n, g, out, max_keep,
                             budget)
    result = mip.solve_layer(problem, time_limit=600)
    oracle = mip.solve_brute_force(problem)
    check(problem, result)
    assert result.status == "optimal" and result.gap <= 1e-4
    assert result.objective == pytest.approx(oracle.objective, rel=1e-6)
    assert result.bound <= oracle.objective * (1 + 1e-9)


@pytest.mark.parametrize("method", ["local_search", "auto"])
@pytest.mark.parametrize("seed", range(3))
def test_an_early_stop_still_gives_a_valid_bound(method, seed):
    problem = random_problem(np.random.default_rng(seed), 13, 1, 3, max_keep=5)
    stopped = mip.solve_layer(problem, time_limit=0.02, method=method)
    check(problem, stopped)
    optimum = mip.solve_brute_force(problem).objective
    assert stopped.bound <= optimum * (1 + 1e-9) <= stopped.objective * (1 + 1e-9)


@pytest.mark.parametrize("n", [48, 64])
def test_wide_instances_carry_a_certificate(n):
    problem = random_problem(np.random.default_rng(n), n, 2, 4, max_keep=n // 2)
    result = mip.solve_layer(problem, time_limit=5)
    check(problem, result)
    assert np.isfinite(result.bound) and result.keep.sum() <= n // 2


def test_keep_curve_equals_brute_force_for_every_k_and_is_monotone():
    problem = random_problem(np.random.default_rng(11), 9, 2, 2)
    curve = mip.keep_curve(problem, time_limit=300)
    assert curve.ks.tolist() == list(range(1, 10))
    for i, k in enumerate(curve.ks):
        oracle = mip.solve_brute_force(replace(problem, max_keep=int(k)))
        assert curve.objective[i] == pytest.approx(oracle.objective, rel=1e-6)
        assert curve.bound[i] <= oracle.objective * (1 + 1e-9)
        assert curve.keep[i].sum() <= k and curve.status[i] == "optimal"
        assert problem.objective(curve.weight(i), curve.keep[i]) == pytest.approx(
            curve.objective[i])
    assert np.all(np.diff(curve.objective) <= 0) and np.all(np.diff(curve.bound) <= 0)


def test_keep_curve_early_stop_keeps_valid_bounds():
    problem = random_problem(np.random.default_rng(12), 12, 1, 2)
    curve = mip.keep_curve(problem, ks=[2, 4, 6], time_limit=0.05)
    for i, k in enumerate(curve.ks):
        oracle = mip.solve_brute_force(replace(problem, max_keep=int(k)))
        assert curve.bound[i] <= oracle.objective * (1 + 1e-9) <= curve.objective[i] * (1 + 1e-9)


def _magnitude_value(problem, k):
    keep = mip._solve_layer.magnitude_support(problem, k)
    return problem.objective(mip.fit_support(problem, keep), keep)


@pytest.mark.parametrize("seed", range(3))
def test_a_deadline_passed_before_the_greedy_pass_still_starts_from_k_groups(seed):
    # the greedy path then knows no value below the full width: the start must not be empty
    problem = random_problem(np.random.default_rng(seed), 20, 1, 3, max_keep=8)
    problem = replace(problem, lam=1e-4 * problem.lam)  # the count penalty all but gone
    result = mip.solve_layer(problem, time_limit=1e-9)
    assert result.keep.sum() == 8
    assert result.objective <= _magnitude_value(problem, 8) * (1 + 1e-9)
    curve = mip.keep_curve(problem, ks=[2, 5, 8], time_limit=1e-9)
    for i, k in enumerate(curve.ks):
        assert curve.objective[i] <= _magnitude_value(problem, int(k)) * (1 + 1e-9)
        assert curve.bound[i] <= curve.objective[i]


def test_zero_statistics_return_at_once():
    problem = mip.LayerProblem(np.zeros((6, 6)), np.zeros((6, 2)), np.ones(2), 2, lam=0.1,
                               alpha=0.5, M=1.0)
    result = mip.solve_layer(problem, time_limit=1)
    assert result.status == "optimal" and result.iterations == 0 and not result.keep.any()
    assert result.objective == result.bound == 2.0


@pytest.mark.parametrize("bad", [2.5, "3", True])
def test_max_keep_must_be_an_int(bad):
    with pytest.raises(ValueError, match="max_keep must be an int"):
        random_problem(np.random.default_rng(0), 4, max_keep=bad)


def test_bad_settings_and_a_layer_too_large():
    problem = random_problem(np.random.default_rng(0), 4)
    with pytest.raises(ValueError, match="method"):
        mip.solve_layer(problem, method="gurobi")
    with pytest.raises(ValueError, match="time_limit"):
        mip.solve_layer(problem, time_limit=0)
    with pytest.raises(ValueError, match="every k"):
        mip.keep_curve(problem, ks=[5])
    from mip._solve_layer import check_memory

    with pytest.raises(MemoryError, match=r"d = 8 columns .* GiB"):
        check_memory(random_problem(np.random.default_rng(0), 8), limit=100)
    assert check_memory(problem) == 8 * (4 * 16 + 4 * 2 * 4)
