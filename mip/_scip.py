"""The layer MIQP solved directly by SCIP (package ``pyscipopt``): a second exact oracle and the
speed reference of the benchmark.

SCIP gets the big-M formulation with the loss in its extended form (the same exact problem)::

    min  t + offset + lam*(1 - alpha)*sum_j z_j
    s.t. t >= sum_{i,k} s_ik^2 + lam*alpha*sum_{i,e} w_ie^2,   s_i = A w_i - B[:, i],
         |w_ie| <= M*z_j,  z binary,  cardinality and budget as given.
"""

from __future__ import annotations

import time

import numpy as np

from mip._problem import LayerProblem
from mip._result import MIPResult, relative_gap
from mip._solver import require

__all__ = ["solve_scip"]


def solve_scip(problem: LayerProblem, time_limit: float = 60.0, mip_gap: float = 1e-4) -> MIPResult:
    """Solve with SCIP; ``weight`` and ``objective`` are SCIP's incumbent, recomputed exactly."""
    scip = require("pyscipopt", "pyscipopt", "the SCIP oracle")
    start = time.perf_counter()
    A, B, offset = problem.factors
    out, d, r, k, M = problem.n_out, problem.d, A.shape[0], problem.group_size, problem.M
    model = scip.Model("layer_pruning")
    model.hideOutput()
    model.setParam("limits/time", float(time_limit))
    model.setParam("limits/gap", float(mip_gap))
    w = [[model.addVar(lb=-M, ub=M) for _ in range(d)] for _ in range(out)]
    z = [model.addVar(vtype="B") for _ in range(problem.n_groups)]
    s = [[model.addVar(lb=None) for _ in range(r)] for _ in range(out)]
    t = model.addVar(lb=0.0)
    for i in range(out):
        for kk in range(r):
            expr = scip.quicksum(float(A[kk, e]) * w[i][e] for e in range(d) if A[kk, e] != 0)
            model.addCons(s[i][kk] == expr - float(B[kk, i]))
        for e in range(d):
            model.addCons(w[i][e] <= M * z[e // k])
            model.addCons(-w[i][e] <= M * z[e // k])
    lam_a = problem.lam * problem.alpha
    squares = scip.quicksum(s[i][kk] * s[i][kk] for i in range(out) for kk in range(r))
    ridge = scip.quicksum(w[i][e] * w[i][e] for i in range(out) for e in range(d))
    model.addCons(t >= squares + lam_a * ridge)
    if problem.max_keep is not None:
        model.addCons(scip.quicksum(z) <= problem.max_keep)
    if problem.cost is not None:
        model.addCons(scip.quicksum(float(c) * zj for c, zj in zip(problem.cost, z, strict=True))
                      <= problem.budget)
    count = problem.lam * (1 - problem.alpha)
    model.setObjective(t + float(offset.sum()) + count * scip.quicksum(z), "minimize")
    model.optimize()
    solution_status = model.getStatus()
    if solution_status == "infeasible":
        nan = np.full((out, d), np.nan)
        return MIPResult(np.zeros(problem.n_groups, bool), nan, np.inf, np.inf, np.inf,
                         "infeasible", int(model.getNNodes()), time.perf_counter() - start)
    best = model.getBestSol()
    keep = np.array([model.getSolVal(best, zj) > 0.5 for zj in z])
    W = np.array([[model.getSolVal(best, w[i][e]) for e in range(d)] for i in range(out)])
    W = np.clip(W, -M, M) * problem.group_columns(keep)[None, :]
    value = problem.objective(W, keep)
    bound = float(model.getDualbound())
    status = "optimal" if solution_status in ("optimal", "gaplimit") else "time_limit"
    return MIPResult(keep, W, value, bound, relative_gap(value, bound), status,
                     int(model.getNNodes()), time.perf_counter() - start)
