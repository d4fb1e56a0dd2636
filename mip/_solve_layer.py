"""``mip.solve_layer``: the layer MIP at any width, proven where it can be, certified where not.

``method="auto"`` runs, within one ``time_limit`` for the whole call:

1. **primal**: greedy backward elimination (:func:`mip._local_search.greedy_backward`), the best
   support of the allowed sizes on its path, and the same number of groups of largest norm in
   the full ridge fit (the magnitude start); the swap local search
   (:func:`mip._local_search.swap_search`, full neighbourhoods) from each; the box-constrained fit
   (:func:`mip.fit_support`) of the best support seen is the incumbent;
2. on layers of at most 64 groups, **branch and bound** (:func:`mip.solve_branch_and_bound`)
   from that incumbent: with ridge node bounds for a tenth of the time limit, then, if the gap is
   still open, again from the best support and bound so far with perspective node bounds near the
   root for the time left;
3. on wider layers, the **dual**: the perspective relaxation with the cardinality and budget
   kept, by FISTA from the incumbent's weights
   (:func:`mip._perspective_bound.perspective_bound`), for the time left or until the gap
   closes, a bound valid wherever it stops; never below the ridge value of all groups together
   (a bound on every support).

The other methods: ``"branch_and_bound"`` (step 2 alone, from scratch), ``"local_search"``
(steps 1 and 3 at any width: an incumbent and a bound, never a proof unless they meet),
``"outer_approximation"`` (:func:`mip.solve_outer_approximation`, HiGHS MILP masters).
:data:`LAYER_SOLVERS` maps each name to its solver; all take ``(problem, *, time_limit, mip_gap,
progress)`` and :data:`METHODS` lists the names.

Cost (d = n_groups * group_size columns, out outputs, k kept groups, g = group_size): the
statistics take ``8 d^2`` bytes and every step works on them, never on the calibration data; the
greedy pass is ``O(d^3)`` time and ``3 * 8 d^2`` bytes (the inverse and its downdate); one swap
move ``O((k g)^2 (n - k) g)``; one FISTA step ``O(out * d^2)``. :func:`check_memory` plans
``8 * (4 d^2 + 4 out d)`` bytes: a 2048 x 2048 Linear layer about 260 MB, a 512-channel 3x3 conv
(d = 4608, 512 outputs) about 720 MB.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from mip._branch_and_bound import ridge_value, solve_branch_and_bound
from mip._checks import check_limits
from mip._local_search import GreedyPath, greedy_backward, swap_search
from mip._perspective_bound import perspective_bound
from mip._problem import LayerProblem
from mip._result import MIPResult, relative_gap
from mip._support_fit import fit_support, ridge_solution

__all__ = ["LAYER_SOLVERS", "METHODS", "check_memory", "solve_layer"]

BRANCH_AND_BOUND_GROUPS = 64  # auto: branch when at most this many groups
MEMORY_LIMIT = 4 * 2**30  # bytes of working memory solve_layer may plan for


def check_memory(problem: LayerProblem, limit: int = MEMORY_LIMIT) -> int:
    """Bytes ``solve_layer`` needs for ``problem`` (about four d x d float64 matrices plus the
    weights); ``MemoryError`` naming the size when that exceeds ``limit``."""
    d, out = problem.d, problem.n_out
    need = 8 * (4 * d * d + 4 * out * d)
    if need > limit:
        raise MemoryError(
            f"the layer problem has d = {d} columns ({problem.n_groups} groups of "
            f"{problem.group_size}) and {out} outputs: solving it needs about {need / 2**30:.1f} "
            f"GiB, more than the {limit / 2**30:.1f} GiB allowed; split the layer's outputs into "
            "several problems or raise mip._solve_layer.MEMORY_LIMIT"
        )
    return need


def _trivial(problem: LayerProblem) -> bool:
    """All-zero statistics: every W has the same loss, so W = 0 with nothing kept is optimal."""
    return not np.any(problem.gram) and not np.any(problem.xty)


def start_sizes(problem: LayerProblem, path: GreedyPath, limit: int) -> list[int]:
    """The support sizes to start local search from, at most ``limit`` and within the budget:
    the size of least value on the greedy ``path``; and, when the path stopped at its deadline
    before reaching some allowed sizes (their values unknown, NaN), also the largest of those,
    so a short time limit never leaves the empty support as the only start."""
    sizes = [m for m in range(min(limit, problem.n_groups) + 1)
             if problem.cost is None or problem.cost @ path.support(m) <= problem.budget]
    known = [m for m in sizes if np.isfinite(path.values[m])]
    found = [min(known, key=lambda m: path.values[m])] if known else []
    unknown = [m for m in sizes if not np.isfinite(path.values[m])]
    if unknown and max(unknown) not in found:
        found.append(max(unknown))
    return found


def primal(problem: LayerProblem, deadline: float, max_keep: int | None = None,
           path: GreedyPath | None = None) -> tuple[NDArray[np.bool_], NDArray[np.float64], float]:
    """The heuristic incumbent: ``(keep, weight, objective)`` (steps 1 of the module docstring).
    Never worse than the greedy support it starts from."""
    n = problem.n_groups
    limit = problem.max_keep if max_keep is None else max_keep
    limit = n if limit is None else min(int(limit), n)
    path = greedy_backward(problem, deadline) if path is None else path
    sizes = start_sizes(problem, path, limit)
    starts = [path.support(size) for size in sizes]
    magnitude = magnitude_support(problem, max(sizes), full_fit_norms(problem, path))
    if problem.cost is None or problem.cost @ magnitude <= problem.budget:
        starts.append(magnitude)
    best = None
    for index, start in enumerate(starts):
        left = (deadline - time.perf_counter()) / (len(starts) - index)
        found, _ = swap_search(problem, start, max_keep=limit,
                               deadline=time.perf_counter() + left, candidates=problem.n_groups)
        for keep in (start, found):
            W = fit_support(problem, keep)
            value = problem.objective(W, keep)
            if best is None or value < best[2]:
                best = (keep, W, value)
    return best


def full_fit_norms(problem: LayerProblem, path: GreedyPath | None = None) -> NDArray[np.float64]:
    """(n_groups,) the norm of each group in the ridge fit of every group: read off the greedy
    ``path`` when it used the problem's ridge lam*alpha, else one Cholesky."""
    if path is not None and path.rho == problem.lam * problem.alpha:
        return path.full_norms
    W = ridge_solution(problem, np.ones(problem.d, bool))  # (d, out)
    return np.sqrt(np.sum((W * W).reshape(problem.n_groups, -1), axis=1))


def full_ridge_value(problem: LayerProblem, path: GreedyPath | None = None) -> float:
    """The ridge value of every group together, a lower bound on every support's objective
    (module docstring): read off the greedy ``path`` when it used lam*alpha, else one solve."""
    n = problem.n_groups
    if path is not None and path.rho == problem.lam * problem.alpha:
        return float(path.values[n] - problem.lam * (1 - problem.alpha) * n)
    return ridge_value(problem, np.ones(n, bool))


def magnitude_support(problem: LayerProblem, size: int,
                      norms: NDArray[np.float64] | None = None) -> NDArray[np.bool_]:
    """The ``size`` groups of largest norm in the ridge fit of every group (the usual start of a
    swap search, e.g. OSSCAR's); ``norms``: :func:`full_fit_norms`, if already computed."""
    norms = full_fit_norms(problem) if norms is None else norms
    keep = np.zeros(problem.n_groups, bool)
    keep[np.argsort(-norms, kind="stable")[:size]] = True
    return keep


def _bound_incumbent(problem: LayerProblem, time_limit: float, mip_gap: float, progress: bool,
                     branch: bool) -> MIPResult:
    """Steps 1 and then 2 (``branch``) or 3 of the module docstring, within ``time_limit``."""
    start = time.perf_counter()
    deadline = start + time_limit
    history = []

    def note(iteration: int, lower: float, upper: float) -> None:
        history.append({"iteration": iteration, "lower": lower, "upper": upper,
                        "seconds": time.perf_counter() - start})

    primal_deadline = start + (0.2 if branch else 0.4) * time_limit
    path = greedy_backward(problem, primal_deadline)
    keep, W, value = primal(problem, primal_deadline, path=path)
    # the ridge value of every group together bounds every support (it only falls as groups are
    # added, and dropping the box only lowers it): nonnegative
    floor = min(full_ridge_value(problem, path), value)
    note(0, floor, value)
    if branch:
        # ridge node bounds first (cheapest per node: what proves most layers fastest), then,
        # if the gap is still open, perspective node bounds near the root (they pay where the
        # count penalty lam*(1-alpha) matters; measured in experiments/bench_layer_scale.py)
        iterations = evaluated = 0
        phases = [(0, start + 0.1 * time_limit), (40, deadline)]
        for node_iterations, until in phases:
            result = solve_branch_and_bound(
                problem, mip_gap=mip_gap, progress=progress, incumbent=keep, root_bound=floor,
                node_iterations=node_iterations, deadline=until)
            offset = history[-1]["seconds"]
            history.extend({**h, "seconds": h["seconds"] + offset} for h in result.history)
            iterations += result.iterations
            evaluated += result.supports_evaluated
            keep, floor = result.keep, max(floor, result.bound)
            if result.status == "optimal" or time.perf_counter() >= deadline:
                break
        return MIPResult(result.keep, result.weight, result.objective, result.bound, result.gap,
                         result.status, iterations, time.perf_counter() - start, history,
                         evaluated)
    target = value - mip_gap * abs(value)
    root = perspective_bound(problem, start=W, iterations=10**9, target=target,
                             deadline=deadline)
    bound = min(max(root.value, floor), value)
    note(root.iterations, bound, value)
    gap = relative_gap(value, bound)
    status = "optimal" if gap <= mip_gap else "time_limit"
    return MIPResult(keep, W, value, bound, gap, status, root.iterations,
                     time.perf_counter() - start, history)


def _auto(problem: LayerProblem, *, time_limit: float = 60.0, mip_gap: float = 1e-4,
          progress: bool = False) -> MIPResult:
    """``method="auto"``: local search, then branch and bound on layers of at most
    ``BRANCH_AND_BOUND_GROUPS`` groups, the perspective bound on wider ones."""
    branch = problem.n_groups <= BRANCH_AND_BOUND_GROUPS
    return _bound_incumbent(problem, time_limit, mip_gap, progress, branch)


def _local_search(problem: LayerProblem, *, time_limit: float = 60.0, mip_gap: float = 1e-4,
                  progress: bool = False) -> MIPResult:
    """``method="local_search"``: local search and the perspective bound at any width."""
    return _bound_incumbent(problem, time_limit, mip_gap, progress, branch=False)


def _branch_and_bound(problem: LayerProblem, *, time_limit: float = 60.0, mip_gap: float = 1e-4,
                      progress: bool = False) -> MIPResult:
    """``method="branch_and_bound"``: :func:`mip.solve_branch_and_bound` from scratch."""
    return solve_branch_and_bound(problem, time_limit, mip_gap, progress)


def _outer_approximation(problem: LayerProblem, *, time_limit: float = 60.0,
                         mip_gap: float = 1e-4, progress: bool = False) -> MIPResult:
    """``method="outer_approximation"``: :func:`mip.solve_outer_approximation` (imported on first
    use: it loads Pyomo)."""
    from mip._outer_approximation import solve_outer_approximation

    return solve_outer_approximation(problem, time_limit=time_limit, mip_gap=mip_gap,
                                     progress=progress)


LAYER_SOLVERS: dict[str, Callable[..., MIPResult]] = {
    "auto": _auto,
    "branch_and_bound": _branch_and_bound,
    "local_search": _local_search,
    "outer_approximation": _outer_approximation,
}
METHODS = tuple(LAYER_SOLVERS)


def solve_layer(
    problem: LayerProblem,
    time_limit: float = 60.0,
    mip_gap: float = 1e-4,
    method: str = "auto",
    *,
    progress: bool = False,
) -> MIPResult:
    """Solve the layer MIP ``problem`` to relative gap ``mip_gap`` within ``time_limit`` seconds
    for the whole call (module docstring). Returns a :class:`mip.MIPResult`: ``status``
    ``"optimal"`` when the gap is closed, else ``"time_limit"`` with the incumbent and a valid
    bound.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((80, 12)); W0 = rng.standard_normal((3, 12))
    >>> p = LayerProblem.from_data(X, X @ W0.T, group_size=1, lam=0.3, alpha=0.5, M=9.0,
    ...                            max_keep=5)
    >>> r = solve_layer(p, time_limit=10)
    >>> r.status, int(r.keep.sum()) <= 5, r.bound <= r.objective
    ('optimal', True, True)
    """
    if method not in LAYER_SOLVERS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}")
    check_limits(time_limit, mip_gap)
    check_memory(problem)
    start = time.perf_counter()
    n = problem.n_groups
    if _trivial(problem):
        value = float(problem.yty.sum())
        return MIPResult(np.zeros(n, bool), np.zeros((problem.n_out, problem.d)), value, value,
                         0.0, "optimal", 0, time.perf_counter() - start,
                         [{"iteration": 0, "lower": value, "upper": value, "seconds": 0.0}])
    return LAYER_SOLVERS[method](problem, time_limit=time_limit, mip_gap=mip_gap,
                                progress=progress)
