"""The layer MIP as a Pyomo model (docs/mathematics.md §4), to print, inspect or hand on::

    min  sum_i [w_i^T (gram + lam*alpha*I) w_i - 2 xty_i^T w_i + yty_i] + lam*(1-alpha)*sum_j z_j
    s.t. -M z_j <= w_ie <= M z_j      for every output row i and entry e of group j
         z_j in {0, 1}                (in [0, 1] with binary=False: the big-M relaxation)
         sum_j z_j <= max_keep, sum_j cost_j z_j <= budget     (when given)

``w_i`` is output row i of the weight (d = n_groups * group_size entries), the objective is
``(1/N)||X W^T - Y||^2 + lam*sum_j [alpha*||W_j||^2 + (1-alpha)*z_j]`` written through the
sufficient statistics, so the model does not grow with N. HiGHS cannot solve it with binary z
(it is an MIQP): :func:`mip.solve_outer_approximation` solves it by outer approximation and
:func:`mip.big_m_relaxation` solves its continuous relaxation; SCIP solves it directly.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.standard_normal((20, 2))
>>> problem = LayerProblem.from_data(X, X @ rng.standard_normal((2, 1)), group_size=1, lam=0.1,
...                                  alpha=0.5, M=3.0)
>>> m = layer_model(problem)
>>> len(m.w), len(m.z), m.z[0].is_binary()
(2, 2, True)
"""

from __future__ import annotations

import numpy as np

from mip._constraints import add_side_constraints
from mip._problem import LayerProblem

__all__ = ["layer_model"]


def layer_model(problem: LayerProblem, binary: bool = True):
    """The Pyomo ``ConcreteModel`` of ``problem``: variables ``w[i, e]`` (output row i, entry e),
    ``z[j]`` (group j kept), constraints ``upper``/``lower`` (the big-M box), and the optional
    ``cardinality``/``budget``; ``binary=False`` relaxes z to [0, 1]."""
    import pyomo.environ as pyo

    out, d, k, M = problem.n_out, problem.d, problem.group_size, problem.M
    hessian = problem.gram + problem.lam * problem.alpha * np.eye(d)
    m = pyo.ConcreteModel(name="layer_mip" if binary else "big_m_relaxation")
    m.I, m.E, m.J = (pyo.RangeSet(0, n - 1) for n in (out, d, problem.n_groups))
    m.w = pyo.Var(m.I, m.E, bounds=(-M, M), initialize=0.0)
    m.z = pyo.Var(m.J, domain=pyo.Binary if binary else pyo.UnitInterval)
    m.upper = pyo.Constraint(m.I, m.E, rule=lambda m, i, e: m.w[i, e] <= M * m.z[e // k])
    m.lower = pyo.Constraint(m.I, m.E, rule=lambda m, i, e: -m.w[i, e] <= M * m.z[e // k])
    add_side_constraints(m, problem)
    rows, cols = np.nonzero(np.triu(hessian))
    quadratic = sum(
        (1.0 if a == b else 2.0) * float(hessian[a, b]) * m.w[i, a] * m.w[i, b]
        for i in range(out) for a, b in zip(rows, cols, strict=True)
    )
    linear = sum(-2.0 * float(problem.xty[e, i]) * m.w[i, e] for i in range(out) for e in range(d))
    count = problem.lam * (1 - problem.alpha) * sum(m.z[j] for j in m.J)
    m.objective = pyo.Objective(expr=float(problem.yty.sum()) + quadratic + linear + count)
    return m
