"""Lagrangian relaxation of the multiple-choice knapsack: the dual bound and a feasible solution.

Relax the size budget of the knapsack (:mod:`mip._knapsack_problem`) with a multiplier
``mu >= 0``::

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
per bit (rounds of vectorised prefix sums). The multiplier and bound also drive the reduced-cost
fixing of :func:`mip._knapsack_milp.reduced_cost_core`.

Works on the merged problem (ties merged, :class:`mip._knapsack_problem.MergedKnapsack`). Extra
resources are not relaxed here: that would need one multiplier per resource and a search over
several dimensions instead of a bisection.

>>> from mip._knapsack_problem import KnapsackProblem
>>> p = KnapsackProblem(cost=[[4.0, 1.0], [3.0, 2.0], [5.0, 0.5]],
...                     size=[[1, 3], [1, 2], [1, 4]], budget=7)
>>> lag = lagrangian_solution(p.merged, p)  # the optimum is 6.5 (mip.solve_knapsack)
>>> lag.choice.tolist(), lag.objective, round(lag.bound, 9), lag.multiplier
([1, 1, 0], 8.0, 6.0, 1.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from mip._knapsack_problem import KnapsackProblem, MergedKnapsack
from mip._result import relative_gap

__all__ = ["greedy_fill", "lagrangian_solution"]

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
