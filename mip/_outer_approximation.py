"""Exact solution of the layer MIP: outer approximation over the supports, HiGHS MILP masters.

Write the MIP as ``min_z phi(z) + lam*(1 - alpha)*sum_j z_j`` over binary z (with the cardinality
and budget constraints), where ``phi`` is the value of the perspective reformulation for fixed z::

    phi(z) = min_W  loss(W) + lam*alpha*sum_j ||W_j||^2 / z_j   s.t.  |W_ie| <= M*z_j.

``phi`` is convex in z (a partial minimum of a jointly convex function), and at binary z it is the
best value of that support (:func:`mip.fit_support`). Its dual gives, at every evaluated support
z_hat with weights W and loss gradient ``gamma = grad loss(W)``, the tangent (perspective) cut::

    theta >= phi(z_hat) + sum_j g_j * (z_j - z_hat_j),
    g_j = -lam*alpha*||W_j||^2 - M * sum_{e in j, |W_e| = M} |gamma_e + 2*lam*alpha*W_e|
                                                                               (kept j)
    g_j = -sum_{e in j} psi(gamma_e)                                           (dropped j)
    psi(x) = x^2 / (4*alpha*lam)   if |x| <= 2*alpha*lam*M,   M*|x| - alpha*lam*M^2   otherwise

valid for all z in [0, 1]^n (it is the Lagrangian bound of the perspective program with the dual
variables of z_hat), and tight at z_hat. For fixed z everything separates over the output rows of
W, so phi, gamma and the cut are split by row and the master carries one theta per row. The
master ``min sum_i theta_i + lam*(1-alpha)*sum z`` over the cuts is a small MILP that HiGHS
solves; its optimum is a lower bound, the best evaluated support an upper bound, and a support
evaluated twice closes the gap, so the loop ends after finitely many iterations. Whenever the
incumbent improves, its neighbouring supports are evaluated as well (local search), which both
improves the incumbent and adds cuts where they matter. With
``cuts="tangent"`` the cuts come from the big-M value function instead (ridge
term without the perspective): ``g_j`` loses the ``-lam*alpha*||W_j||^2`` part and ``psi(x)``
becomes ``M*|x|``, a weaker model that needs more iterations (the benchmark's baseline).
"""

from __future__ import annotations

import time

import numpy as np
import pyomo.environ as pyo
from numpy.typing import NDArray
from tqdm.auto import tqdm

from mip._checks import check_limits
from mip._constraints import add_side_constraints
from mip._deprecation import warn_deprecated
from mip._problem import LayerProblem
from mip._result import MIPResult, relative_gap
from mip._solver import highs
from mip._support_fit import fit_support

__all__ = ["solve_exact", "solve_outer_approximation", "support_cut"]


def _neighbours(keep: NDArray[np.bool_], swaps: bool) -> list[NDArray[np.bool_]]:
    """Supports one flip away, and, if ``swaps``, one kept group exchanged for a dropped one."""
    out = []
    for j in range(len(keep)):
        flipped = keep.copy()
        flipped[j] = not flipped[j]
        out.append(flipped)
    if swaps:
        for i in np.flatnonzero(keep):
            for j in np.flatnonzero(~keep):
                swapped = keep.copy()
                swapped[i], swapped[j] = False, True
                out.append(swapped)
    return out


def support_cut(
    problem: LayerProblem, keep: NDArray[np.bool_], W: NDArray, perspective: bool = True
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(phi, g)``: per output row i, the value ``phi[i]`` of support ``keep`` at its fitted
    weights ``W`` and the cut slopes ``g[i]`` per group (module docstring). phi separates over
    the rows for fixed z, so each row gets its own cut (a multi-cut master)."""
    A, B, offset = problem.factors
    lam_a, M = problem.lam * problem.alpha, problem.M
    residual = W @ A.T - B.T  # (out, r)
    phi = np.sum(residual**2, axis=1) + offset + lam_a * np.sum(W * W, axis=1)
    gamma = 2.0 * residual @ A  # gradient of the loss, (out, d)
    kept = problem.group_columns(keep)[None, :]
    at_bound = kept & (np.abs(W) >= M * (1 - 1e-9))
    slope = np.where(at_bound, M * np.abs(gamma + 2.0 * lam_a * W), 0.0)
    if perspective:
        slope = slope + np.where(kept, lam_a * W * W, 0.0)
        if lam_a > 0:
            x = np.abs(gamma)
            psi = np.where(x <= 2 * lam_a * M, x * x / (4 * lam_a), M * x - lam_a * M * M)
        else:
            psi = M * np.abs(gamma)
    else:
        psi = M * np.abs(gamma)
    slope = np.where(kept, slope, psi)
    g = -slope.reshape(problem.n_out, problem.n_groups, problem.group_size).sum(axis=2)
    return phi, g


class _Master:
    """``min sum_i theta_i + lam*(1-alpha)*sum z`` over the cuts (one theta per output row);
    z binary, with cardinality and budget."""

    def __init__(self, problem: LayerProblem) -> None:
        m = pyo.ConcreteModel(name="support_master")
        m.J = pyo.RangeSet(0, problem.n_groups - 1)
        m.I = pyo.RangeSet(0, problem.n_out - 1)
        m.z = pyo.Var(m.J, domain=pyo.Binary)
        offset = problem.factors[2]
        m.theta = pyo.Var(m.I, bounds=lambda m, i: (float(offset[i]), None))
        add_side_constraints(m, problem)
        m.cuts = pyo.ConstraintList()
        count = problem.lam * (1 - problem.alpha)
        m.objective = pyo.Objective(
            expr=sum(m.theta[i] for i in m.I) + count * sum(m.z[j] for j in m.J)
        )
        self.model, self.solver = m, highs()

    def add_cuts(self, phi: NDArray, g: NDArray, keep: NDArray) -> None:
        """``theta_i >= phi_i + g_i . (z - keep)`` for every output row i.

        Slopes below 1e-9, which HiGHS would ignore, are dropped, and the cut is lowered by
        their magnitude so it stays valid for every z in [0, 1]^n."""
        m = self.model
        for i in range(len(phi)):
            tiny = np.abs(g[i]) < 1e-9
            constant = float(phi[i]) - float(np.abs(g[i][tiny]).sum())
            terms = [(j, float(g[i, j])) for j in np.flatnonzero(~tiny)]
            m.cuts.add(
                m.theta[i] >= constant + sum(c * (m.z[j] - float(keep[j])) for j, c in terms)
            )

    def solve(self, time_limit: float) -> tuple[str, float, NDArray[np.bool_] | None]:
        config = self.solver.config
        config.time_limit = max(time_limit, 1e-3)
        config.rel_gap = 1e-10
        config.abs_gap = 0.0
        config.load_solutions = False
        config.raise_exception_on_nonoptimal_result = False
        results = self.solver.solve(self.model)
        condition = results.termination_condition.name
        if "nfeasible" in condition:
            return "infeasible", np.inf, None
        bound = results.objective_bound
        bound = -np.inf if bound is None else float(bound)
        if results.solution_status.name not in ("optimal", "feasible"):
            return "time_limit", bound, None
        results.solution_loader.load_vars()
        keep = np.array([self.model.z[j].value > 0.5 for j in self.model.J])
        status = "optimal" if condition == "convergenceCriteriaSatisfied" else "time_limit"
        return status, bound, keep


def solve_outer_approximation(
    problem: LayerProblem,
    *,
    time_limit: float = 60.0,
    mip_gap: float = 1e-4,
    cuts: str = "perspective",
    progress: bool = False,
) -> MIPResult:
    """Solve ``problem`` to relative gap ``mip_gap`` (or until ``time_limit`` seconds) by outer
    approximation (module docstring); ``cuts``: ``"perspective"`` or ``"tangent"``.

    Returns a :class:`mip.MIPResult`: ``objective`` recomputed from its weights, ``bound`` the
    best master bound, ``history`` the bounds per iteration.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 6)); W0 = rng.standard_normal((2, 6))
    >>> p = LayerProblem.from_data(X, X @ W0.T, group_size=1, lam=0.5, alpha=0.5, M=5.0,
    ...                            max_keep=3)
    >>> r = solve_outer_approximation(p)
    >>> r.status, int(r.keep.sum()) <= 3, r.gap <= 1e-4
    ('optimal', True, True)
    """
    if cuts not in ("perspective", "tangent"):
        raise ValueError(f'cuts must be "perspective" or "tangent"; got {cuts!r}')
    check_limits(time_limit, mip_gap)
    start = time.perf_counter()
    master = _Master(problem)
    n = problem.n_groups
    best = (np.inf, np.zeros(n, bool), np.zeros((problem.n_out, problem.d)))
    seen: set[bytes] = set()

    def evaluate(keep: NDArray[np.bool_], local_search: bool = True) -> None:
        """Fit a support, add its cut (valid even where the support itself is infeasible), and
        update the incumbent; a new incumbent's neighbours (one group flipped, or one swapped for
        another) are evaluated too, which improves the incumbent and the master alike."""
        nonlocal best
        if keep.tobytes() in seen:
            return
        seen.add(keep.tobytes())
        W = fit_support(problem, keep)
        phi, g = support_cut(problem, keep, W, perspective=cuts == "perspective")
        master.add_cuts(phi, g, keep)
        if problem.violation(W, keep) > 0:
            return
        value = problem.objective(W, keep)
        if value >= best[0]:
            return
        best = (value, keep, W)
        if local_search:
            for neighbour in _neighbours(keep, swaps=constrained):
                evaluate(neighbour, local_search=False)

    constrained = problem.max_keep is not None or problem.cost is not None
    evaluate(np.zeros(n, bool))  # always feasible: the first incumbent
    evaluate(np.ones(n, bool))

    # objective >= the loss offset: a valid bound even before the first master is solved
    lower, status, iteration, history = float(problem.factors[2].sum()), "time_limit", 0, []
    bar = tqdm(desc="outer approximation", disable=not progress, leave=False)
    while (remaining := time_limit - (time.perf_counter() - start)) > 0:
        iteration += 1
        master_status, bound, keep = master.solve(remaining)
        if master_status == "infeasible":
            status = "infeasible"
            break
        lower = max(lower, bound)
        if keep is not None:
            evaluate(keep)
        gap = relative_gap(best[0], lower)
        history.append({"iteration": iteration, "lower": lower, "upper": best[0],
                        "seconds": time.perf_counter() - start})
        bar.update(1)
        bar.set_postfix(lower=f"{lower:.6g}", upper=f"{best[0]:.6g}", gap=f"{gap:.1e}")
        if gap <= mip_gap:
            status = "optimal"
            break
    bar.close()
    value, keep, W = best
    if status == "infeasible":
        value = lower = np.inf
    return MIPResult(
        keep=keep, weight=W, objective=value, bound=lower, gap=relative_gap(value, lower),
        status=status, iterations=iteration, seconds=time.perf_counter() - start,
        history=history, supports_evaluated=len(seen),
    )


def solve_exact(
    problem: LayerProblem,
    time_limit: float = 60.0,
    mip_gap: float = 1e-4,
    cuts: str = "perspective",
    progress: bool = False,
) -> MIPResult:
    """Deprecated: :func:`solve_outer_approximation` (same arguments, keywords after
    ``problem``)."""
    warn_deprecated("solve_exact", "solve_outer_approximation")
    return solve_outer_approximation(problem, time_limit=time_limit, mip_gap=mip_gap, cuts=cuts,
                                     progress=progress)
