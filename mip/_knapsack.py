"""``mip.solve_knapsack``: the one front end of the multiple-choice knapsack (bit allocation).

The model is in :mod:`mip._knapsack_problem`. Two methods, picked by ``method``:

* ``"milp"``: exact, to relative gap ``mip_gap``. Without extra resources and with ``reduce``
  it first runs the Lagrangian bisection and greedy fill (:mod:`mip._knapsack_lagrangian`): if
  their gap already meets ``mip_gap`` no MILP is built (``result.method == "lagrangian"``),
  otherwise reduced-cost fixing leaves a *core* and the MILP runs over it only (``"milp-core"``,
  exact: :mod:`mip._knapsack_milp`). With extra resources, or ``reduce=False``, the full merged
  model is built (``"milp"``): the size-only Lagrangian gives no feasible incumbent for several
  budgets, and with extras the problem is the layer-level case of tens to hundreds of groups.
* ``"lagrangian"``: size budget only. The same bisection and greedy fill, then the MILP repair
  over the reduced-cost core only when the gap is open and the core has at most
  ``repair_groups`` groups (``"lagrangian+milp"``); else the certified heuristic answer, status
  ``"feasible"`` when its gap is above ``mip_gap``.

``"auto"`` (the default) is ``"milp"``: it is exact, and where the bisection alone proves the gap
it costs no more than ``"lagrangian"``. Choose ``"lagrangian"`` to cap the MILP on problems with
very many groups and accept a certified gap instead. ``experiments/bench_allocation.py`` times
both against the full model.

Both share the steps written once here and in :mod:`mip._knapsack_milp`: the Lagrangian start
with its reduced-cost core (:func:`_dual_start`), the "core MILP, keep the better" step
(:func:`mip._knapsack_milp.improve_by_milp`) and the result (:func:`_result`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from mip._checks import check_limits
from mip._deprecation import warn_deprecated
from mip._knapsack_lagrangian import lagrangian_solution
from mip._knapsack_milp import Bracket, improve_by_milp, reduced_cost_core
from mip._knapsack_problem import KnapsackProblem, KnapsackResult, MergedKnapsack
from mip._result import relative_gap

__all__ = ["KNAPSACK_METHODS", "solve_knapsack", "solve_knapsack_lagrangian"]


def _dual_start(merged: MergedKnapsack, problem: KnapsackProblem, mip_gap: float,
                max_iterations: int) -> tuple[Bracket, dict, NDArray[np.bool_] | None]:
    """The Lagrangian solution as a bracket, its certificate fields, and the reduced-cost core
    (None when the bisection already meets ``mip_gap``: nothing left to solve)."""
    lag = lagrangian_solution(merged, problem, mip_gap=mip_gap, max_iterations=max_iterations)
    bracket = Bracket(lag.bound, lag.objective, lag.choice)
    certificate = {"multiplier": lag.multiplier, "iterations": lag.iterations,
                   "history": lag.history}
    if relative_gap(lag.objective, lag.bound) <= mip_gap:
        return bracket, certificate, None
    return bracket, certificate, reduced_cost_core(merged, lag.multiplier, lag.bound,
                                                   lag.objective, lag.choice)


def _result(problem: KnapsackProblem, merged: MergedKnapsack, bracket: Bracket, *, start: float,
            mip_gap: float, proven: bool, otherwise: str, **certificate) -> KnapsackResult:
    """The :class:`KnapsackResult` of ``bracket``'s incumbent; status ``"optimal"`` when
    ``proven`` or the gap meets ``mip_gap``, else ``otherwise``."""
    lower, upper, choice = bracket
    expanded = merged.expand(choice)
    gap = relative_gap(upper, lower)
    return KnapsackResult(
        choice=expanded, objective=upper, bound=min(lower, upper), gap=gap,
        status="optimal" if proven or gap <= mip_gap else otherwise,
        seconds=time.perf_counter() - start, size_used=problem.size_used(expanded),
        extra_used=problem.extra_used(expanded), **certificate)


def _solve_milp(problem: KnapsackProblem, *, time_limit: float, mip_gap: float, reduce: bool,
                repair_groups: int, max_iterations: int) -> KnapsackResult:
    """``method="milp"`` (module docstring); ``repair_groups`` is not used."""
    start = time.perf_counter()
    problem.check_budgets()
    merged = problem.merged
    candidates = merged.available.copy()
    bracket, certificate = Bracket(-np.inf, np.inf, None), {"method": "milp"}
    if reduce and problem.extra is None:
        bracket, certificate, candidates = _dual_start(merged, problem, mip_gap, max_iterations)
        certificate["method"] = "milp-core" if candidates is not None else "lagrangian"
    status, core = "optimal", 0
    if candidates is not None:
        core = int((candidates.sum(axis=1) > 1).sum())
        remaining = time_limit - (time.perf_counter() - start)
        bracket, status = improve_by_milp(merged, problem, candidates, bracket, remaining, mip_gap)
    if bracket.choice is None:
        raise RuntimeError(f"HiGHS found no solution within {time_limit} s")
    return _result(problem, merged, bracket, start=start, mip_gap=mip_gap,
                   proven=status == "optimal", otherwise="time_limit", core_groups=core,
                   **certificate)


def _solve_lagrangian(problem: KnapsackProblem, *, time_limit: float, mip_gap: float,
                      reduce: bool, repair_groups: int, max_iterations: int) -> KnapsackResult:
    """``method="lagrangian"`` (module docstring); ``reduce`` is not used."""
    if problem.extra is not None:
        raise ValueError(
            'method="lagrangian" relaxes the size budget only; for extra resources use '
            'mip.solve_knapsack(method="milp")')
    start = time.perf_counter()
    problem.check_budgets()
    merged = problem.merged
    bracket, certificate, candidates = _dual_start(merged, problem, mip_gap, max_iterations)
    method, core = "lagrangian", 0
    if candidates is not None and repair_groups > 0:
        core = int((candidates.sum(axis=1) > 1).sum())
        if 0 < core <= repair_groups:
            method = "lagrangian+milp"
            remaining = max(time_limit - (time.perf_counter() - start), 1e-3)
            bracket, _ = improve_by_milp(merged, problem, candidates, bracket, remaining, mip_gap)
    return _result(problem, merged, bracket, start=start, mip_gap=mip_gap, proven=False,
                   otherwise="feasible", method=method, core_groups=core, **certificate)


KNAPSACK_METHODS: dict[str, Callable[..., KnapsackResult]] = {
    "auto": _solve_milp,  # the rule (module docstring): exact, with the Lagrangian reduction
    "milp": _solve_milp,
    "lagrangian": _solve_lagrangian,
}


def solve_knapsack(
    problem: KnapsackProblem,
    *,
    method: str = "auto",
    time_limit: float = 60.0,
    mip_gap: float = 1e-6,
    reduce: bool = True,
    repair_groups: int = 2000,
    max_iterations: int = 200,
) -> KnapsackResult:
    """Solve the multiple-choice knapsack ``problem`` (:class:`mip.KnapsackProblem`).

    Args:
        problem: the knapsack; ties are merged exactly before solving.
        method: ``"auto"`` (= ``"milp"``), ``"milp"`` (exact) or ``"lagrangian"`` (size budget
            only; a certified answer, exact when the repair runs): module docstring.
        time_limit: seconds for the whole call (the MILP gets what the bisection leaves).
        mip_gap: target relative gap ``(objective - bound) / |objective|``; stops the bisection
            and the MILP.
        reduce: ``"milp"`` only: start from the Lagrangian solution and build the MILP over the
            reduced-cost core (no effect with extra resources); False builds the full model.
        repair_groups: ``"lagrangian"`` only: the largest core the MILP repairs (0: never).
        max_iterations: bisection steps at most (wherever the bisection runs).

    Returns:
        A :class:`mip.KnapsackResult`: the choice, its objective, a proven ``bound``, ``gap``,
        ``status`` (``"optimal"``, ``"time_limit"`` or ``"feasible"``) and how it was solved.

    Raises:
        ValueError: a budget below its minimum feasible value (the message names it), budgets
            that are only jointly infeasible, extra resources with ``"lagrangian"``, or bad
            settings.

    >>> p = KnapsackProblem(cost=[[4.0, 1.0], [3.0, 2.0], [5.0, 0.5]],
    ...                     size=[[1, 3], [1, 2], [1, 4]], budget=7)
    >>> r = solve_knapsack(p)
    >>> r.choice.tolist(), r.objective, r.size_used, r.status
    ([0, 1, 1], 6.5, 7.0, 'optimal')
    >>> solve_knapsack(p, method="lagrangian").objective == r.objective
    True
    """
    if method not in KNAPSACK_METHODS:
        raise ValueError(f"method must be one of {list(KNAPSACK_METHODS)}; got {method!r}")
    check_limits(time_limit, mip_gap)
    if not (repair_groups >= 0 and max_iterations >= 0):
        raise ValueError(f"need repair_groups >= 0 and max_iterations >= 0; got {repair_groups}, "
                         f"{max_iterations}")
    return KNAPSACK_METHODS[method](problem, time_limit=time_limit, mip_gap=mip_gap,
                                    reduce=reduce, repair_groups=repair_groups,
                                    max_iterations=max_iterations)


def solve_knapsack_lagrangian(
    problem: KnapsackProblem,
    mip_gap: float = 1e-6,
    repair_groups: int = 2000,
    time_limit: float = 60.0,
    max_iterations: int = 200,
) -> KnapsackResult:
    """Deprecated: ``solve_knapsack(problem, method="lagrangian", ...)`` (same arguments)."""
    warn_deprecated("solve_knapsack_lagrangian", 'solve_knapsack(problem, method="lagrangian")')
    return solve_knapsack(problem, method="lagrangian", mip_gap=mip_gap,
                          repair_groups=repair_groups, time_limit=time_limit,
                          max_iterations=max_iterations)
