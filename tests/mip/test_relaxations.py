"""Relaxations: big-M <= perspective <= optimum; the LP outer approximation converges to the conic
value; the conic value is loss + lam * sum SPR at its W (closed form: docs/mathematics.md §3)."""

import numpy as np
import pytest

import mip
from tests.mip.instances import random_problem

CASES = [(5, 1, 2, None), (6, 3, 1, None), (7, 2, 2, 3), (8, 1, 3, None), (6, 2, 2, 2)]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_relaxation_chain_and_spr_link(case):
    n, k, out, max_keep = case
    problem = random_problem(np.random.default_rng(100 + n), n, k, out, max_keep)
    optimum = mip.solve_outer_approximation(problem).objective
    big_m = mip.big_m_relaxation(problem)
    persp = mip.perspective_relaxation(problem)
    lp = mip.perspective_lp_relaxation(problem, tol=1e-6)
    tol = 1e-6 * optimum
    assert big_m.value <= persp.value + tol
    assert persp.value <= optimum + tol
    assert lp.converged and lp.value <= persp.value + tol
    assert lp.value == pytest.approx(persp.value, rel=1e-5)
    assert big_m.value < persp.value  # the perspective is strictly stronger on these instances
    if max_keep is None:  # z projects out group by group: the SPR closed form
        groups = persp.weight.reshape(out, n, k).transpose(1, 0, 2).reshape(n, out * k)
        spr_value = problem.loss(persp.weight) + problem.lam * mip.spr_penalty(
            groups, problem.alpha, problem.M
        ).sum()
        assert spr_value == pytest.approx(persp.value, rel=1e-6)
