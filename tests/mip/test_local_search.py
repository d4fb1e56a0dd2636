"""Greedy backward elimination and the swap local search: their low-rank bookkeeping against
refits, never worse than their start, and against a plain swap search on wide instances."""

import numpy as np
import pytest

import mip
from mip._branch_and_bound import ridge_value
from mip._local_search import greedy_backward, heuristic_ridge, swap_search
from tests.mip.instances import random_problem


def plain_swap_search(problem, keep):
    """The oracle: best-improvement exchanges, every candidate refit from scratch."""
    keep = keep.copy()
    value = ridge_value(problem, keep)
    while True:
        best = (value * (1 - 1e-12), None)
        for i in np.flatnonzero(keep):
            for j in np.flatnonzero(~keep):
                trial = keep.copy()
                trial[i], trial[j] = False, True
                trial_value = ridge_value(problem, trial)
                if trial_value < best[0]:
                    best = (trial_value, trial)
        if best[1] is None:
            return keep
        value, keep = best


@pytest.mark.parametrize("case", [(9, 1, 2, None), (8, 3, 2, None), (12, 2, 3, 4), (10, 1, 1, 3)])
def test_greedy_path_values_are_the_refit_ridge_values(case):
    n, g, out, max_keep = case
    problem = random_problem(np.random.default_rng(n + g), n, g, out, max_keep)
    path = greedy_backward(problem, rho=problem.lam * problem.alpha)
    per_group = problem.lam * (1 - problem.alpha)
    assert sorted(path.order.tolist()) == list(range(n))
    for m in range(n + 1):
        keep = path.support(m)
        assert keep.sum() == m
        expected = ridge_value(problem, keep) + per_group * m
        assert path.values[m] == pytest.approx(expected, rel=1e-8, abs=1e-10)
    for m in range(1, n):  # nested supports
        assert np.all(path.support(m) <= path.support(m + 1))


@pytest.mark.parametrize("stop", [0, 3, 7])
def test_greedy_path_stopped_at_a_size_is_the_full_path_down_to_it(stop):
    problem = random_problem(np.random.default_rng(stop), 11, 2, 3)
    full, stopped = greedy_backward(problem), greedy_backward(problem, stop=stop)
    assert sorted(stopped.order.tolist()) == list(range(11))
    for m in range(stop, 12):
        assert np.array_equal(stopped.support(m), full.support(m))
        assert stopped.values[m] == pytest.approx(full.values[m], rel=1e-10)
    assert np.all(np.isnan(stopped.values[1:stop]))


@pytest.mark.parametrize("seed", range(6))
def test_swap_search_never_worse_than_its_start_and_at_a_local_optimum(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 14))
    problem = random_problem(rng, n, int(rng.integers(1, 3)), 2, max_keep=n // 2)
    start = np.zeros(n, bool)
    start[rng.choice(n, n // 2, replace=False)] = True
    found, _ = swap_search(problem, start, rho=problem.lam * problem.alpha)
    per_group = problem.lam * (1 - problem.alpha)

    def value(keep):
        return ridge_value(problem, keep) + per_group * keep.sum()

    assert found.sum() <= n // 2
    assert value(found) <= value(start) * (1 + 1e-12)
    for i in np.flatnonzero(found):  # no single exchange, drop or add improves it
        for j in np.flatnonzero(~found):
            trial = found.copy()
            trial[i], trial[j] = False, True
            assert value(trial) >= value(found) * (1 - 1e-9)
        trial = found.copy()
        trial[i] = False
        assert value(trial) >= value(found) * (1 - 1e-9)


def test_swap_search_respects_the_budget():
    problem = random_problem(np.random.default_rng(4), 10, 1, 2, budget=True)
    start = np.zeros(10, bool)
    found, _ = swap_search(problem, start)
    assert problem.cost @ found <= problem.budget * (1 + 1e-12)
    with pytest.raises(ValueError, match="feasible"):
        swap_search(problem, np.ones(10, bool))


@pytest.mark.parametrize("n", [48, 64])
def test_wide_local_search_beats_a_plain_swap_search_from_the_magnitude_support(n):
    """solve_layer's incumbent against the plain exchange search started from the groups of
    largest norm in the full least-squares fit (the OSSCAR-style baseline)."""
    rng = np.random.default_rng(n)
    problem = random_problem(rng, n, 1, 2, max_keep=n // 4)
    full = mip.fit_support(problem, np.ones(n, bool))
    magnitude = np.zeros(n, bool)
    magnitude[np.argsort(-np.linalg.norm(full, axis=0))[: n // 4]] = True
    plain = plain_swap_search(problem, magnitude)
    ours = mip.solve_layer(problem, time_limit=30, method="local_search")
    plain_value = problem.objective(mip.fit_support(problem, plain), plain)
    assert ours.objective <= plain_value * (1 + 1e-9)
    assert ours.keep.sum() <= n // 4
    assert heuristic_ridge(problem) == problem.lam * problem.alpha
