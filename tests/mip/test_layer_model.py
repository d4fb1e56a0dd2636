"""mip.layer_model: the Pyomo model's objective and constraints are the LayerProblem's."""

import numpy as np
import pyomo.environ as pyo
import pytest

import mip
from tests.mip.instances import random_problem


@pytest.mark.parametrize("seed", range(4))
def test_model_objective_and_feasibility_agree_with_the_problem(seed):
    rng = np.random.default_rng(seed)
    problem = random_problem(rng, 4, group_size=2, max_keep=2)
    m = mip.layer_model(problem)
    keep = np.zeros(problem.n_groups, bool)
    keep[rng.choice(problem.n_groups, 2, replace=False)] = True
    W = mip.fit_support(problem, keep)
    for (i, e), var in m.w.items():
        var.set_value(float(W[i, e]))
    for j, var in m.z.items():
        var.set_value(float(keep[j]))
    assert pyo.value(m.objective) == pytest.approx(problem.objective(W, keep), rel=1e-9)
    slack = min(pyo.value(c.upper) - pyo.value(c.body) for c in m.component_data_objects(
        pyo.Constraint, active=True) if c.has_ub())
    assert slack >= -1e-9  # the support fit is feasible in the model
    assert all(m.z[j].is_binary() for j in m.J)
    assert not any(v.is_binary() for v in mip.layer_model(problem, binary=False).z.values())
