"""The solver registries (mip.LAYER_SOLVERS, mip.RELAXATIONS, mip.KNAPSACK_METHODS): every entry
takes its registry's uniform keywords and agrees with the front end; the deprecated names warn and
forward."""

import dataclasses
import inspect

import numpy as np
import pytest

import mip
from mip._solve_layer import METHODS
from tests.mip.instances import random_problem
from tests.mip.test_knapsack import brute_force, random_knapsack, same_result

REGISTRIES = {  # registry -> the keywords (beyond the problem) every entry accepts
    # local search spends the whole time_limit (its bound does not close the gap)
    "LAYER_SOLVERS": {"time_limit": 2.0, "mip_gap": 1e-6, "progress": False},
    "RELAXATIONS": {"time_limit": 60.0},
    "KNAPSACK_METHODS": {"time_limit": 60.0, "mip_gap": 1e-6, "reduce": True,
                         "repair_groups": 2000, "max_iterations": 200},
}
ENTRIES = [(registry, name) for registry in REGISTRIES for name in getattr(mip, registry)]


@pytest.fixture(scope="module")
def layer():
    problem = random_problem(np.random.default_rng(7), 7, 1, 2, max_keep=4)
    return problem, mip.solve_brute_force(problem).objective


@pytest.fixture(scope="module")
def knapsack():
    problem = random_knapsack(3, 6, 4)
    return problem, brute_force(problem)[0]


@pytest.mark.parametrize(("registry", "name"), ENTRIES, ids=[f"{r}-{n}" for r, n in ENTRIES])
def test_entry_takes_the_uniform_keywords(registry, name, layer, knapsack):
    entry = getattr(mip, registry)[name]
    keywords = REGISTRIES[registry]
    parameters = inspect.signature(entry).parameters
    assert set(keywords) <= set(parameters), (name, list(parameters))
    if registry == "KNAPSACK_METHODS":
        problem, optimum = knapsack
        result = entry(problem, **keywords)
        front = mip.solve_knapsack(problem, method=name, **keywords)
        assert same_result(result, front)
        assert result.objective == pytest.approx(optimum, rel=1e-6)
        return
    problem, optimum = layer
    if registry == "LAYER_SOLVERS":
        assert all(parameters[k].kind is inspect.Parameter.KEYWORD_ONLY for k in keywords)
        for result in (entry(problem, **keywords),
                       mip.solve_layer(problem, method=name, **keywords)):
            assert result.bound <= optimum * (1 + 1e-9) <= result.objective * (1 + 1e-9)
            if name != "local_search":  # the exact methods prove it here
                assert result.status == "optimal"
                assert result.objective == pytest.approx(optimum, rel=1e-6)
    else:
        value = entry(problem, **keywords).value
        assert value <= optimum * (1 + 1e-6)
        assert mip.relaxation(problem, name, **keywords).value == pytest.approx(value, rel=1e-6)


def test_registry_names():
    assert METHODS == tuple(mip.LAYER_SOLVERS)
    assert METHODS == ("auto", "branch_and_bound", "local_search", "outer_approximation")
    assert tuple(mip.RELAXATIONS) == ("big_m", "perspective", "perspective_lp")
    assert mip.RELAXATIONS["big_m"] is mip.big_m_relaxation
    assert mip.RELAXATIONS["perspective"] is mip.perspective_relaxation
    assert mip.RELAXATIONS["perspective_lp"] is mip.perspective_lp_relaxation
    assert tuple(mip.KNAPSACK_METHODS) == ("auto", "milp", "lagrangian")
    assert mip.KNAPSACK_METHODS["auto"] is mip.KNAPSACK_METHODS["milp"]  # the documented rule


def test_unknown_names_are_refused(layer):
    problem, _ = layer
    with pytest.raises(ValueError, match="relaxation must be one of .'big_m'"):
        mip.relaxation(problem, "lagrangian")
    with pytest.raises(ValueError, match="method must be one of .'auto'"):
        mip.solve_layer(problem, method="exact")


def test_solve_exact_is_a_deprecated_alias(layer):
    problem, _ = layer
    new = mip.solve_outer_approximation(problem, time_limit=60.0, mip_gap=1e-6, cuts="tangent")
    with pytest.warns(DeprecationWarning,
                      match="solve_exact is deprecated; use solve_outer_approximation"):
        old = mip.solve_exact(problem, 60.0, 1e-6, "tangent")  # the old positional order
    for field in dataclasses.fields(new):
        if field.name not in ("seconds", "history"):
            assert np.array_equal(getattr(old, field.name), getattr(new, field.name)), field
    with pytest.raises(TypeError):  # the new name takes keywords after the problem
        mip.solve_outer_approximation(problem, 60.0)
