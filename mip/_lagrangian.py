"""Lagrangian relaxation of the multiple-choice knapsack, for very many groups.

Relax the size budget of the knapsack (:mod:`mip._knapsack`) with a multiplier ``mu >= 0``::

    L(mu) = min_x  sum_{g,k} c[g,k] x[g,k] + mu * (sum_{g,k} s[g,k] x[g,k] - S)
          = sum_g  min_k (c[g,k] + mu*s[g,k])  -  mu*S          (one option per group)

**Why L(mu) is a lower bound.** For every feasible x (one option per group, ``s.x <= S``) the added
term ``mu*(s.x - S)`` is <= 0, so ``c.x >= c.x + mu*(s.x - S) >= L(mu)``: the inner minimum runs
over a superset of the feasible set. Hence ``L(mu) <= OPT`` for every ``mu >= 0`` (weak duality),
and the separable inner minimum costs one vectorised ``argmin`` over the (G, K) array.

``L`` is concave and piecewise linear in mu, with supergradient ``s.x(mu) - S``: the size of the
per-group argmin ``x(mu)`` falls as mu grows. Bisection keeps ``mu_lo`` (argmin over budget) and
``mu_hi`` (argmin within budget) and ends where the two choices differ in at most one group (or
the gap or the float resolution says stop); then L is evaluated where the lines of the two
bracketing choices cross, which is the dual optimum ``max_mu L(mu)`` when one breakpoint is left
(Shoham & Gersho's convex-hull bit allocation). The reported bound is the best ``L`` evaluated,
lowered by a bound on its summation round-off, so it is a true lower bound. ``x(mu_hi)`` is
feasible; a greedy pass then spends the remaining budget on the moves with the best cost decrease
per bit (rounds of vectorised prefix sums), and, when the gap is still above the target, the MILP
(:func:`mip._knapsack._solve_milp`) repairs it over the *core*: the groups for which some option
other than the incumbent's has reduced cost ``rc[g,k] = c + mu*s - min_j(c + mu*s)`` with
``L(mu) + rc[g,k] <= UB`` (the other options provably cannot appear in a better solution, so the
core MILP's optimum and bound are those of the whole problem).

Ties are merged as in the MILP (tied groups become one group with summed cost and size). Extra
resources are refused: relaxing them too would need one multiplier per resource and a search over
several dimensions instead of a bisection; :func:`mip.solve_knapsack` handles them exactly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from mip._knapsack import (
    KnapsackProblem,
    KnapsackResult,
    MergedKnapsack,
    _solve_milp,
)
from mip._result import relative_gap

__all__ = ["greedy_fill", "lagrangian_solution", "reduced_cost_core", "solve_knapsack_lagrangian"]

_EPS = np.finfo(np.float64).eps


class _Dual:
    """``mu -> (argmin choice, L(mu), size, cost)`` over the merged arrays, reusing one buffer."""

    def __init__(self, merged: MergedKnapsack, budget: float) -> None:
        self.cost, self.size, self.budget = merged.cost, merged.size, budget
        self.buffer = np.empty_like(merged.cost)
        self.rows = np.arange(merged.n_groups)
        G = merged.n_groups
        self.round_off = (4.0 + math.log2(max(G, 2))) * _EPS  # pairwise sums + one product

    def __call__(self, mu: float) -> tuple[NDArray[np.int64], float, float, float]:
        buffer = self.buffer
        np.multiply(self.size, mu, out=buffer)
        buffer += self.cost  # inf stays inf: unavailable options are never chosen
        choice = buffer.argmin(axis=1)
        best = buffer[self.rows, choice]
        size = float(self.size[self.rows, choice].sum())
        cost = float(self.cost[self.rows, choice].sum())
        penalty = mu * self.budget if mu > 0 else 0.0
        value = float(best.sum()) - penalty
        error = self.round_off * (float(np.abs(best).sum()) + abs(penalty))
        return choice, value - error, size, cost


@dataclass
class _Lagrangian:
    choice: NDArray[np.int64]  # (G',) merged choice, exactly feasible
    objective: float
    bound: float
    multiplier: float
    iterations: int
    history: list[dict] = field(default_factory=list)


def _exactly_feasible(problem: KnapsackProblem, merged: MergedKnapsack, choice: NDArray,
                      size: float) -> bool:
    """``size`` is the fast float sum; decide exactly (math.fsum) only when it is close."""
    S = problem.budget
    margin = 1e-9 * max(abs(S), abs(size), 1e-300)
    if size < S - margin:
        return True
    if size > S + margin:
        return False
    return problem.size_used(merged.expand(choice)) <= S


def lagrangian_solution(
    merged: MergedKnapsack,
    problem: KnapsackProblem,
    mip_gap: float = 1e-6,
    max_iterations: int = 200,
) -> _Lagrangian:
    """Bisection on mu, the crossing point of the bracket, and the greedy fill (module docstring).
    Needs ``problem.budget >= problem.min_budget``."""
    S = problem.budget
    dual = _Dual(merged, S)
    history: list[dict] = []
    best = [-np.inf, 0.0]  # best dual value and its multiplier

    def evaluate(mu: float) -> tuple[NDArray[np.int64], float, float, bool]:
        choice, value, size, cost = dual(mu)
        history.append({"mu": mu, "dual": value, "size": size})
        if value > best[0]:
            best[:] = [value, mu]
        return choice, size, cost, _exactly_feasible(problem, merged, choice, size)

    k_lo, size_lo, cost_lo, feasible = evaluate(0.0)
    if feasible or not np.isfinite(S):
        return _finish(merged, problem, k_lo, best, len(history), history)

    # beyond mu_max every group takes its smallest option (the cheapest among equally small ones)
    avail, c, s = merged.available, merged.cost, merged.size
    smallest = np.where(avail, s, np.inf).min(axis=1)
    at_smallest = avail & (s == smallest[:, None])
    cheapest = np.where(at_smallest, c, np.inf).min(axis=1)
    bigger = avail & (s > smallest[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(bigger, (cheapest[:, None] - c) / (s - smallest[:, None]), 0.0)
    mu_max = float(ratio.max())
    finite_c = np.abs(c[avail])
    scale = max(float(finite_c.max()), 1e-300) / max(float(s.max()), 1e-300)
    hi = 2.0 * mu_max if mu_max > 0 else scale
    for _ in range(64):
        k_hi, size_hi, cost_hi, feasible = evaluate(hi)
        if feasible:
            break
        hi *= 2.0
    else:  # round-off at huge mu: take the smallest options directly
        k_hi = np.where(at_smallest, c, np.inf).argmin(axis=1)
        size_hi = float(s[np.arange(len(k_hi)), k_hi].sum())
        cost_hi = float(c[np.arange(len(k_hi)), k_hi].sum())
    lo = 0.0
    for _ in range(max_iterations):
        if relative_gap(cost_hi, best[0]) <= mip_gap * 0.5:
            break
        if np.count_nonzero(k_lo != k_hi) <= 1 or hi - lo <= 4 * _EPS * hi:
            break
        if lo == 0.0:
            mid = hi / 64.0
        elif hi > 4.0 * lo:
            mid = math.sqrt(lo * hi)
        else:
            mid = 0.5 * (lo + hi)
        choice, size, cost, feasible = evaluate(mid)
        if feasible:
            hi, k_hi, size_hi, cost_hi = mid, choice, size, cost
        else:
            lo, k_lo, size_lo, cost_lo = mid, choice, size, cost
    if size_lo > size_hi:  # where the lines of the two bracketing choices cross
        crossing = (cost_hi - cost_lo) / (size_lo - size_hi)
        if lo < crossing < hi:
            choice, size, cost, feasible = evaluate(crossing)
            if feasible and cost < cost_hi:
                k_hi = choice
    return _finish(merged, problem, k_hi, best, len(history), history)


def _finish(merged, problem, choice, best, iterations, history) -> _Lagrangian:
    if problem.over_budget(merged.expand(choice)) > 0:  # only round-off can get here
        choice = np.where(merged.available, merged.size, np.inf).argmin(axis=1)  # min_budget's
    choice = greedy_fill(merged, problem, choice)
    return _Lagrangian(choice=choice, objective=problem.objective(merged.expand(choice)),
                       bound=float(best[0]), multiplier=float(best[1]), iterations=iterations,
                       history=history)


def greedy_fill(
    merged: MergedKnapsack, problem: KnapsackProblem, choice: NDArray[np.int64], rounds: int = 4
) -> NDArray[np.int64]:
    """Spend the budget left by a feasible ``choice`` (G',) on cost-decreasing moves.

    Each round offers every group its move with the best cost decrease per added bit that fits
    in the slack, sorts the moves by that ratio and accepts them in order while they fit (prefix
    sums, then the remaining moves that still fit, again). Returns a choice that is feasible
    exactly (the input if round-off would have broken the budget).
    """
    S = problem.budget
    if not np.isfinite(S):
        return choice
    c, s = merged.cost, merged.size
    rows = np.arange(merged.n_groups)
    current = choice.copy()
    used = problem.size_used(merged.expand(current))
    slack = (S - used) - 1e-12 * max(abs(S), abs(used), 1e-300)
    for _ in range(rounds):
        if slack <= 0:
            break
        dc = c[rows, current][:, None] - c  # cost decrease; -inf where unavailable
        ds = s - s[rows, current][:, None]
        valid = (dc > 0) & (ds <= slack)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(valid, dc / np.where(ds > 0, ds, 1.0), -np.inf)
        ratio[valid & (ds <= 0)] = np.inf
        option = ratio.argmax(axis=1)
        groups = np.flatnonzero(valid[rows, option])
        if len(groups) == 0:
            break
        options = option[groups]
        order = np.argsort(-ratio[groups, options], kind="stable")
        groups, options = groups[order], options[order]
        added = ds[groups, options]
        accepted = np.zeros(len(groups), bool)
        candidates = np.arange(len(groups))
        while len(candidates):
            total = np.cumsum(added[candidates])
            fits = total <= slack
            n_fit = int(np.argmin(fits)) if not fits.all() else len(fits)
            if n_fit:
                accepted[candidates[:n_fit]] = True
                slack -= float(total[n_fit - 1])
            rest = candidates[n_fit + 1:]
            candidates = rest[added[rest] <= slack]
        current[groups[accepted]] = options[accepted]
    if problem.size_used(merged.expand(current)) > S:
        return choice
    return current


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
    keep = merged.available & (dual + rc <= upper + margin)
    keep[np.arange(merged.n_groups), incumbent] = True
    return keep


def solve_knapsack_lagrangian(
    problem: KnapsackProblem,
    mip_gap: float = 1e-6,
    repair_groups: int = 2000,
    time_limit: float = 60.0,
    max_iterations: int = 200,
) -> KnapsackResult:
    """Solve ``problem`` (size budget only) by bisection on the Lagrange multiplier.

    Args:
        problem: a :class:`mip.KnapsackProblem` without extra resources (ties allowed).
        mip_gap: stop the bisection once ``(objective - bound) / |objective|`` is below it; the
            MILP repair also runs to this gap.
        repair_groups: the largest core (groups left after reduced-cost fixing) the MILP repairs;
            0 turns the repair off (bisection and greedy only).
        time_limit: seconds for the MILP repair.
        max_iterations: bisection steps at most.

    Returns:
        A :class:`mip.KnapsackResult` with ``bound`` the best Lagrangian dual value (or the core
        MILP's bound when the repair ran and proved more), ``multiplier`` its mu, ``status``
        ``"optimal"`` when the gap is within ``mip_gap``, else ``"feasible"``.

    Raises:
        ValueError: extra resources (use :func:`mip.solve_knapsack`), or a size budget below the
            minimum feasible one (the message names it).

    >>> rng = np.random.default_rng(0)
    >>> bits = np.array([2.0, 3.0, 4.0, 8.0])
    >>> n = rng.integers(100, 1000, size=(5000, 1))
    >>> p = KnapsackProblem(cost=n * 4.0 ** -bits * rng.uniform(0.5, 2, (5000, 1)),
    ...                     size=n * bits, budget=float(3.0 * n.sum()))
    >>> r = solve_knapsack_lagrangian(p)
    >>> r.size_used <= p.budget, r.bound <= r.objective, r.gap < 1e-6
    (True, True, True)
    """
    if problem.extra is not None:
        raise ValueError(
            "solve_knapsack_lagrangian relaxes the size budget only; for extra resources use "
            "mip.solve_knapsack (the MILP)")
    if not (mip_gap >= 0 and time_limit > 0 and repair_groups >= 0 and max_iterations >= 0):
        raise ValueError("need mip_gap >= 0, time_limit > 0, repair_groups >= 0 and "
                         "max_iterations >= 0")
    start = time.perf_counter()
    problem.check_budgets()
    merged = problem.merged
    lag = lagrangian_solution(merged, problem, mip_gap=mip_gap, max_iterations=max_iterations)
    lower, upper, choice = lag.bound, lag.objective, lag.choice
    method, core = "lagrangian", 0
    if relative_gap(upper, lower) > mip_gap and repair_groups > 0:
        keep = reduced_cost_core(merged, lag.multiplier, lower, upper, choice)
        core = int((keep.sum(axis=1) > 1).sum())
        if 0 < core <= repair_groups:
            method = "lagrangian+milp"
            remaining = max(time_limit - (time.perf_counter() - start), 1e-3)
            repaired, bound, _ = _solve_milp(merged, problem, keep, remaining, mip_gap)
            lower = max(lower, bound)
            if repaired is not None:
                value = problem.objective(merged.expand(repaired))
                if value < upper:
                    upper, choice = value, repaired
    expanded = merged.expand(choice)
    gap = relative_gap(upper, lower)
    return KnapsackResult(
        choice=expanded, objective=upper, bound=min(lower, upper), gap=gap,
        status="optimal" if gap <= mip_gap else "feasible", seconds=time.perf_counter() - start,
        size_used=problem.size_used(expanded), extra_used=problem.extra_used(expanded),
        method=method, multiplier=lag.multiplier, core_groups=core, iterations=lag.iterations,
        history=lag.history,
    )
