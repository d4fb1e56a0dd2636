"""The LP outer approximation of the perspective relaxation, as a Pyomo model for HiGHS.

Variables: the weights ``w[i, e]`` (out x d), the indicators ``z[j]``, the residual components
``s[i, k] = A[k] . w_i - B[k, i]`` (so the loss is ``sum s^2 + offset``), and, for the
outer-approximation masters, epigraph variables ``eta[i, k] >= s[i, k]^2`` and
``v[i, e] >= alpha * w[i, e]^2 / z_j`` (the perspective) that cuts bound from below::

    tangent cut at s_hat:      eta >= 2*s_hat*s - s_hat^2
    perspective cut at w_hat:  v   >= alpha*(2*w_hat*w - w_hat^2 * z_j)
                               (valid for z in [0, 1], tight on the ray w = w_hat * z)

Every square is one-dimensional, so a few cuts per term approximate it well. z is continuous in
[0, 1]; with enough cuts the LP value converges to the perspective relaxation's.
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
from numpy.typing import NDArray
from pyomo.core.expr import LinearExpression

from mip._constraints import add_side_constraints
from mip._problem import LayerProblem
from mip._solver import highs

__all__ = ["ExtendedModel"]


def _values(var, shape) -> NDArray[np.float64]:
    out = np.zeros(shape)
    for index, value in var.extract_values().items():
        out[index] = 0.0 if value is None else value
    return out


class ExtendedModel:
    """Build once, add cuts, re-solve: a persistent HiGHS model of one :class:`LayerProblem`."""

    def __init__(self, problem: LayerProblem) -> None:
        self.problem = problem
        A, B, offset = problem.factors
        out, d, r, k = problem.n_out, problem.d, A.shape[0], problem.group_size
        self.shape_w, self.shape_s = (out, d), (out, r)
        M = problem.M

        m = pyo.ConcreteModel(name="layer_pruning")
        m.I, m.E, m.K, m.J = (pyo.RangeSet(0, n - 1) for n in (out, d, r, problem.n_groups))
        m.w = pyo.Var(m.I, m.E, bounds=(-M, M), initialize=0.0)
        m.z = pyo.Var(m.J, domain=pyo.UnitInterval)
        m.s = pyo.Var(m.I, m.K)

        significant = np.abs(A) > 1e-12 * np.abs(A).max(initial=0.0)  # no round-off dust for HiGHS

        def define(m, i, kk):
            columns = np.flatnonzero(significant[kk])
            return LinearExpression(
                constant=-float(B[kk, i]),
                linear_coefs=[float(A[kk, e]) for e in columns],
                linear_vars=[m.w[i, e] for e in columns],
            ) - m.s[i, kk] == 0

        m.define = pyo.Constraint(m.I, m.K, rule=define)
        m.upper = pyo.Constraint(m.I, m.E, rule=lambda m, i, e: m.w[i, e] <= M * m.z[e // k])
        m.lower = pyo.Constraint(m.I, m.E, rule=lambda m, i, e: -m.w[i, e] <= M * m.z[e // k])
        add_side_constraints(m, problem)
        lam, a = problem.lam, problem.alpha
        constant = float(offset.sum())
        count = lam * (1 - a) * sum(m.z[j] for j in m.J)
        m.eta = pyo.Var(m.I, m.K, bounds=(0, None))
        m.v = pyo.Var(m.I, m.E, bounds=(0, None))
        m.cuts = pyo.ConstraintList()
        m.objective = pyo.Objective(
            expr=constant + pyo.quicksum(m.eta.values()) + lam * pyo.quicksum(m.v.values()) + count
        )
        self.model = m
        self.solver = highs()
        self.n_cuts = 0

    # ---- cuts ------------------------------------------------------------------------------------
    def add_loss_cuts(self, s_hat: NDArray, mask: NDArray | None = None) -> int:
        """Tangent cuts of eta[i,k] >= s[i,k]^2 at s_hat (out, r), where mask is True."""
        m, added = self.model, 0
        for i, kk in np.argwhere(np.ones_like(s_hat, bool) if mask is None else mask):
            t = float(s_hat[i, kk])
            m.cuts.add(m.eta[i, kk] >= 2 * t * m.s[i, kk] - t * t)
            added += 1
        self.n_cuts += added
        return added

    def add_ridge_cuts(self, w_hat: NDArray, mask: NDArray | None = None) -> int:
        """Perspective cuts of v[i,e] >= alpha*w[i,e]^2/z_j on the rays w = w_hat*z (out, d)."""
        m, a, k, added = self.model, self.problem.alpha, self.problem.group_size, 0
        for i, e in np.argwhere(np.ones_like(w_hat, bool) if mask is None else mask):
            t = float(w_hat[i, e])
            m.cuts.add(m.v[i, e] >= a * (2 * t * m.w[i, e] - t * t * m.z[e // k]))
            added += 1
        self.n_cuts += added
        return added

    def add_cuts_at(self, W: NDArray) -> int:
        """Cuts of every term at the point W (out, d) and its residuals."""
        A, B, _ = self.problem.factors
        return self.add_loss_cuts(W @ A.T - B.T) + self.add_ridge_cuts(W)

    # ---- solving ---------------------------------------------------------------------------------
    def solve(self, time_limit: float) -> tuple[str, float]:
        """Solve; returns ``(status, value)`` with status "optimal", "time_limit" or
        "infeasible", and loads the point into the model (see :meth:`point`)."""
        config = self.solver.config
        config.time_limit = max(time_limit, 1e-3)
        config.load_solutions = False
        config.raise_exception_on_nonoptimal_result = False
        results = self.solver.solve(self.model)
        condition = results.termination_condition.name
        if "nfeasible" in condition:
            return "infeasible", np.inf
        if results.solution_status.name not in ("optimal", "feasible"):
            return "time_limit", np.inf
        results.solution_loader.load_vars()
        status = "optimal" if condition == "convergenceCriteriaSatisfied" else "time_limit"
        return status, float(results.incumbent_objective)

    def point(self) -> dict[str, NDArray]:
        m = self.model
        return {
            "w": _values(m.w, self.shape_w),
            "z": _values(m.z, (self.problem.n_groups,)),
            "s": _values(m.s, self.shape_s),
            "eta": _values(m.eta, self.shape_s),
            "v": _values(m.v, self.shape_w),
        }
