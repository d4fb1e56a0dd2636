"""The exact MILP of the multiple-choice knapsack, over all options or over a reduced core.

The model of :mod:`mip._knapsack_problem` is solved on the merged problem (ties merged) with HiGHS
through Pyomo (:func:`mip._solver.highs`): one binary per (group, candidate option), one "exactly
one" row per group and one row per finite budget. The MILP is always built through Pyomo (indexed
components and ``LinearExpression``); almost all of the time of a large model is spent inside
HiGHS, so what keeps large problems fast is the reduction below, not a direct ``highspy`` model
(``experiments/bench_allocation.py`` measures both).

**Reduced-cost fixing.** Given a Lagrange multiplier ``mu`` with dual value ``L(mu)``
(:mod:`mip._knapsack_lagrangian`) and a feasible solution of value ``UB``, remove every option
whose *reduced cost* proves it cannot beat ``UB``::

    rc[g,k] = c[g,k] + mu*s[g,k] - min_j (c[g,j] + mu*s[g,j]) >= 0
    L(mu) + rc[g,k] > UB   =>   no solution with x[g,k] = 1 is better than the incumbent

(fixing ``x[g,k] = 1`` and relaxing the budget gives the lower bound ``L(mu) + rc[g,k]`` of every
such solution). Groups left with one option are fixed; the MILP is built over the others only (the
*core*). The incumbent survives the fixing, so the optimum of the core is the optimum of the whole
problem and the core's bound is a bound for the whole problem: this is exact.

Every returned choice satisfies ``size_used <= budget`` and ``extra_used <= extra_budget`` in
correctly rounded arithmetic: a solver answer that violates a budget by round-off is re-solved
with the budget tightened by the excess.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from mip._knapsack_problem import KnapsackProblem, MergedKnapsack

__all__ = ["Bracket", "improve_by_milp", "reduced_cost_core", "solve_milp"]


class Bracket(NamedTuple):
    """The state of a knapsack solve: a proven lower bound, the incumbent's value (``inf``
    without one) and its merged choice (or None)."""

    lower: float
    upper: float
    choice: NDArray[np.int64] | None


def reduced_cost_core(
    merged: MergedKnapsack, mu: float, dual: float, upper: float, incumbent: NDArray[np.int64]
) -> NDArray[np.bool_]:
    """(G', K) the options that may still appear in a solution better than ``upper``.

    Option k of group g is dropped when ``dual + rc[g, k] > upper`` (module docstring), with a
    round-off margin that keeps it in doubt; the incumbent's options are always kept.
    """
    v = merged.cost + mu * merged.size
    rc = v - v.min(axis=1, keepdims=True)
    margin = 1e-9 * (abs(upper) + abs(dual)) + 1e-12
    candidates = merged.available & (dual + rc <= upper + margin)
    candidates[np.arange(merged.n_groups), incumbent] = True
    return candidates


def _feasible(merged: MergedKnapsack, problem: KnapsackProblem, choice: NDArray) -> bool:
    """Whether a merged choice keeps the budgets (exactly); it keeps the ties by construction."""
    return problem.over_budget(merged.expand(choice)) == 0.0


def solve_milp(
    merged: MergedKnapsack,
    problem: KnapsackProblem,
    candidates: NDArray[np.bool_],
    time_limit: float,
    mip_gap: float,
) -> tuple[NDArray[np.int64] | None, float, str]:
    """The MILP over the ``candidates`` (G', K) options of the merged problem (Pyomo + HiGHS).

    Groups with a single candidate option are fixed (their size and extras leave the budgets); the
    model has one binary per candidate option of the others. Costs are shifted by each group's least
    kept cost and sizes/extras by each group's least kept entry (exactly one option per group, so
    the shifts are constants), then scaled to O(1) for HiGHS. Returns ``(choice, bound, status)``;
    ``choice`` (G',) satisfies the budgets exactly or is None, ``bound`` is HiGHS's dual bound in
    the original units (``-inf`` if none), ``status`` ``"optimal"``, ``"time_limit"`` or
    ``"infeasible"``.
    """
    start = time.perf_counter()
    fixed = candidates.sum(axis=1) == 1
    free = np.flatnonzero(~fixed)
    # any candidate option; for a fixed group, its only one
    base = np.where(candidates, merged.size, np.inf).argmin(axis=1)
    rows = np.flatnonzero(fixed)
    fixed_cost = math.fsum(merged.cost[rows, base[rows]].tolist())
    if len(free) == 0:  # one choice left: optimal if feasible
        if _feasible(merged, problem, base):
            return base, fixed_cost, "optimal"
        return None, np.inf, "infeasible"

    g_local, k_idx = np.nonzero(candidates[free])  # grouped by group (row-major)
    g_idx = free[g_local]
    starts = np.searchsorted(g_local, np.arange(len(free)))
    cost = merged.cost[g_idx, k_idx]
    cmin = np.minimum.reduceat(cost, starts)
    c_shift = cost - cmin[g_local]
    c_scale = float(c_shift.max()) if c_shift.max() > 0 else 1.0
    constant = (fixed_cost + math.fsum(cmin.tolist())) / c_scale

    def budget_row(full: NDArray, budget: float) -> tuple[NDArray, float]:
        """(coefficients, right-hand side) of ``sum full[g, k] x[g, k] <= budget`` over the free
        groups: shifted by each group's least entry, the fixed groups moved to the right, and
        scaled to O(1)."""
        values = full[g_idx, k_idx]
        low = np.minimum.reduceat(values, starts)
        coef = values - low[g_local]
        rhs = budget - math.fsum(full[rows, base[rows]].tolist()) - math.fsum(low.tolist())
        scale = max(float(coef.max()), abs(rhs), 1e-300)
        return coef / scale, rhs / scale

    budget_rows = []  # (entries (G', K), budget)
    if np.isfinite(problem.budget):
        budget_rows.append((merged.size, problem.budget))
    for r in range(problem.n_resources):
        if np.isfinite(problem.extra_budget[r]):
            budget_rows.append((merged.extra[:, :, r], float(problem.extra_budget[r])))

    bound, status = -np.inf, "time_limit"
    budgets = [budget for _, budget in budget_rows]
    for attempt in range(4):  # re-solve with tightened budgets if round-off broke one
        remaining = max(time_limit - (time.perf_counter() - start), 1e-3)
        rows_now = [budget_row(full, b) for (full, _), b in zip(budget_rows, budgets, strict=True)]
        condition, solution_ok, objective_bound, values = _run_highs(
            c_shift / c_scale, constant, starts, rows_now, remaining, mip_gap)
        if "nfeasible" in condition:
            return None, (np.inf if attempt == 0 else bound), "infeasible"
        if attempt == 0:  # the bound of the untightened model is a bound of the problem
            bound = -np.inf if objective_bound is None else objective_bound * c_scale
            status = "optimal" if condition == "convergenceCriteriaSatisfied" else "time_limit"
        if not solution_ok:
            return None, bound, status
        order = np.lexsort((-values, g_local))
        choice = base.copy()
        choice[free] = k_idx[order[starts]]
        if _feasible(merged, problem, choice):
            return choice, bound, status
        expanded = merged.expand(choice)
        used = [problem.size_used(expanded)] if np.isfinite(problem.budget) else []
        if problem.extra_budget is not None:
            used += [u for u, b in zip(problem.extra_used(expanded), problem.extra_budget,
                                       strict=True) if np.isfinite(b)]
        # tighten past the excess and past HiGHS's feasibility tolerance (1e-7 of the scaled
        # row), else it may return the same answer; the first attempt's bound stays valid
        budgets = [b - max(2 * max(u - b0, 0.0), 1e-6 * max(abs(b0), 1.0)) if u > b0 else b
                   for b, u, (_, b0) in zip(budgets, used, budget_rows, strict=True)]
    return None, bound, status


def _run_highs(
    cost: NDArray, constant: float, starts: NDArray, budget_rows: list, time_limit: float,
    mip_gap: float,
) -> tuple[str, bool, float | None, NDArray | None]:
    """Build ``min constant + cost.x`` s.t. one x per group (groups start at ``starts``) and
    ``coef.x <= rhs`` per budget row, x binary, as a Pyomo model with indexed components and
    linear expressions, and solve it with HiGHS. Returns (termination condition, whether a
    solution exists, objective bound, x values)."""
    import pyomo.environ as pyo
    from pyomo.core.expr.numeric_expr import LinearExpression

    from mip._solver import highs

    n = len(cost)
    ends = np.append(starts[1:], n)
    m = pyo.ConcreteModel(name="knapsack")
    m.x = pyo.Var(range(n), domain=pyo.Binary)
    xs = list(m.x.values())
    m.objective = pyo.Objective(expr=LinearExpression(
        constant=constant, linear_coefs=cost.tolist(), linear_vars=xs))
    m.one = pyo.Constraint(range(len(starts)), rule=lambda m, i: LinearExpression(
        constant=0.0, linear_coefs=[1.0] * int(ends[i] - starts[i]),
        linear_vars=xs[starts[i]:ends[i]]) == 1)
    m.budgets = pyo.ConstraintList()
    for coef, rhs in budget_rows:
        nz = np.flatnonzero(coef)
        m.budgets.add(LinearExpression(constant=0.0, linear_coefs=coef[nz].tolist(),
                                       linear_vars=[xs[i] for i in nz]) <= rhs)
    solver = highs()
    config = solver.config
    config.time_limit = time_limit
    config.rel_gap = mip_gap
    config.abs_gap = 0.0
    config.load_solutions = False
    config.raise_exception_on_nonoptimal_result = False
    config.solver_options = {"mip_feasibility_tolerance": 1e-9,
                             "primal_feasibility_tolerance": 1e-9}
    results = solver.solve(m)
    condition = results.termination_condition.name
    ok = results.solution_status.name in ("optimal", "feasible")
    values = None
    if ok:
        primals = results.solution_loader.get_vars(xs)
        values = np.array([primals[v] for v in xs])
    bound = results.objective_bound
    return condition, ok, (None if bound is None else float(bound)), values


def improve_by_milp(
    merged: MergedKnapsack,
    problem: KnapsackProblem,
    candidates: NDArray[np.bool_],
    bracket: Bracket,
    time_limit: float,
    mip_gap: float,
) -> tuple[Bracket, str]:
    """Solve the MILP over the ``candidates`` options and keep the better of its answer and the
    incumbent of ``bracket`` (``Bracket(-inf, inf, None)`` when there is none yet).

    Returns the tightened bracket and the MILP's status. ValueError when the MILP is infeasible
    and there is no incumbent: the budgets are then jointly infeasible.
    """
    lower, upper, incumbent = bracket
    choice, bound, status = solve_milp(merged, problem, candidates, time_limit, mip_gap)
    if status == "infeasible" and incumbent is None:
        raise ValueError(
            "the budgets are jointly infeasible (each alone is feasible: minimum size "
            f"{problem.min_budget!r}, minimum extras {problem.min_extra.tolist()})")
    lower = max(lower, bound)
    if choice is not None:
        value = problem.objective(merged.expand(choice))
        if value < upper:
            upper, incumbent = value, choice
    return Bracket(lower, upper, incumbent), status
