"""Constraints every Pyomo model of the layer problem shares."""

from __future__ import annotations

import pyomo.environ as pyo

from mip._problem import LayerProblem

__all__ = ["add_side_constraints"]


def add_side_constraints(m: pyo.ConcreteModel, problem: LayerProblem) -> None:
    """``sum z <= max_keep`` and ``cost . z <= budget`` on ``m.z`` (indexed by ``m.J``)."""
    if problem.max_keep is not None:
        m.cardinality = pyo.Constraint(expr=sum(m.z[j] for j in m.J) <= problem.max_keep)
    if problem.cost is not None:
        m.budget = pyo.Constraint(
            expr=sum(float(c) * m.z[j] for j, c in enumerate(problem.cost)) <= problem.budget
        )
