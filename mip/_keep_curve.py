"""``mip.keep_curve``: the layer MIP for every number of kept groups k, each with a certificate.

For each k in ``ks`` the problem is ``problem`` with ``max_keep = k`` (its budget, if any, still
applies). One greedy backward elimination gives a nested warm start for every k; each k then gets
the swap local search (full neighbourhoods) from the greedy support, from the magnitude support
(:func:`mip._solve_layer.magnitude_support`) and from the support found for the next larger k less
its weakest group, and, when the layer is small enough, branch and bound. Bounds come
from the perspective relaxation at a few anchor values of k (FISTA, warm-started from the
neighbouring anchor), and every iterate found is evaluated for *all* k at once
(:func:`mip._perspective_bound.bounds_at`: one gradient and a prefix sum). Two monotonicity facts
tighten the curve for free: a support allowed k groups is allowed k + 1, so
``objective(k + 1) <= objective(k)``; and ``optimum(k) >= optimum(k + 1)``, so a bound for
k + 1 is a bound for k.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray
from tqdm.auto import tqdm

from mip._branch_and_bound import solve_branch_and_bound
from mip._checks import check_limits
from mip._local_search import greedy_backward, shrink_support, swap_search
from mip._perspective_bound import bounds_at, perspective_bound
from mip._problem import LayerProblem
from mip._result import relative_gap
from mip._solve_layer import (
    BRANCH_AND_BOUND_GROUPS,
    check_memory,
    full_fit_norms,
    magnitude_support,
    start_sizes,
)
from mip._support_fit import fit_support

__all__ = ["KeepCurve", "keep_curve"]


@dataclass(frozen=True, eq=False)
class KeepCurve:
    """The keep-k curve of a layer problem.

    Attributes:
        ks: (K,) the numbers of groups allowed.
        keep: (K, n_groups) bool, the best support found for each k (at most k groups).
        objective: (K,) its MIP objective, non-increasing in k.
        bound: (K,) a proven lower bound on the optimum for each k, non-increasing in k.
        gap: (K,) ``(objective - bound) / |objective|``.
        status: (K,) ``"optimal"`` where the gap is at most ``mip_gap``, else ``"time_limit"``.
        seconds: wall time of the whole curve.
        problem: the :class:`mip.LayerProblem` (``weight(i)`` refits row i's support).
    """

    ks: NDArray[np.intp]
    keep: NDArray[np.bool_]
    objective: NDArray[np.float64]
    bound: NDArray[np.float64]
    gap: NDArray[np.float64]
    status: list[str]
    seconds: float
    problem: LayerProblem

    def weight(self, index: int) -> NDArray[np.float64]:
        """The weights (out, d) of the support for ``ks[index]`` (:func:`mip.fit_support`)."""
        return fit_support(self.problem, self.keep[index])


def _check_ks(ks: ArrayLike | None, n: int) -> NDArray[np.intp]:
    if ks is None:
        return np.arange(1, n + 1)
    values = np.asarray(ks)
    if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"ks must be a non-empty 1-D sequence of ints; got {ks!r}")
    if values.min() < 0 or values.max() > n:
        raise ValueError(f"every k must lie in [0, {n}] (the number of groups); got {ks!r}")
    return np.unique(values.astype(np.intp))


def keep_curve(
    problem: LayerProblem,
    ks: ArrayLike | None = None,
    time_limit: float = 60.0,
    mip_gap: float = 1e-4,
    progress: bool = False,
) -> KeepCurve:
    """Solve ``problem`` with ``max_keep = k`` for every k in ``ks`` (default 1..n_groups)
    within ``time_limit`` seconds for the whole curve (module docstring).

    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((80, 8)); W0 = rng.standard_normal((3, 8))
    >>> p = LayerProblem.from_data(X, X @ W0.T, group_size=1, lam=0.01, alpha=0.5, M=9.0)
    >>> c = keep_curve(p, ks=[2, 4, 6], time_limit=20)
    >>> bool(np.all(np.diff(c.objective) <= 0)), bool(np.all(c.bound <= c.objective))
    (True, True)
    """
    check_limits(time_limit, mip_gap)
    check_memory(problem)
    start = time.perf_counter()
    deadline = start + time_limit
    n = problem.n_groups
    ks = _check_ks(ks, n)
    if problem.max_keep is not None:
        ks = ks[ks <= problem.max_keep] if np.any(ks <= problem.max_keep) else ks[:0]
        if ks.size == 0:
            raise ValueError(f"every k exceeds the problem's max_keep={problem.max_keep}")
    K = ks.size
    path = greedy_backward(problem, start + 0.2 * time_limit)
    norms = full_fit_norms(problem, path)
    keeps = np.zeros((K, n), bool)
    values = np.full(K, np.inf)
    weights: dict[int, NDArray] = {}
    bar = tqdm(total=2 * K, desc="keep-k curve", disable=not progress, leave=False)
    # primal, from the largest k down (each warm-starts the next smaller k)
    share = 0.5 * time_limit / K
    previous = None
    for index in range(K - 1, -1, -1):
        k = int(ks[index])
        sizes = start_sizes(problem, path, k)
        starts = [path.support(size) for size in sizes]
        magnitude = magnitude_support(problem, max(sizes), norms)
        if problem.cost is None or problem.cost @ magnitude <= problem.budget:
            starts.append(magnitude)
        if previous is not None:  # the next larger k's support, less its weakest groups
            smaller = shrink_support(problem, previous, k)
            if problem.cost is None or problem.cost @ smaller <= problem.budget:
                starts.append(smaller)
        best = None
        for begin in starts:
            found, _ = swap_search(problem, begin, max_keep=k, candidates=n,
                                   deadline=min(deadline, time.perf_counter()
                                                + share / len(starts)))
            for keep in (begin, found):
                W = fit_support(problem, keep)
                value = problem.objective(W, keep)
                if best is None or value < best[1]:
                    best = (keep, value, W)
        keeps[index], values[index], weights[index] = best
        previous = keeps[index]
        bar.update()
    # objectives non-increasing in k: a smaller k's support is feasible for a larger k
    for index in range(1, K):
        if values[index - 1] < values[index]:
            keeps[index], values[index] = keeps[index - 1], values[index - 1]
            weights[index] = weights[index - 1]
    # bounds: FISTA at anchors, every iterate evaluated for all k
    bounds = np.full(K, -np.inf)
    anchors = np.unique(np.linspace(0, K - 1, min(K, 8)).round().astype(int))[::-1]
    remaining = max(deadline - time.perf_counter(), 0.0)
    warm = None
    for position, index in enumerate(anchors):
        k = int(ks[index])
        target = values[index] - mip_gap * abs(values[index])
        result = perspective_bound(
            problem, max_keep=k, start=weights[index] if warm is None else warm,
            iterations=400, target=target,
            deadline=time.perf_counter() + 0.6 * remaining / (len(anchors) - position) / 1.0)
        warm = result.weight
        bounds[index] = max(bounds[index], result.value)
        for W in (result.weight, weights[index]):
            bounds = np.maximum(bounds, bounds_at(problem, W, ks))
        bar.update(K / len(anchors))
    bounds = np.maximum.accumulate(bounds[::-1])[::-1]  # a bound for k + 1 holds for k
    # small layers: branch and bound on each k still open, largest gap first, in the time left
    if n <= BRANCH_AND_BOUND_GROUPS:
        open_ks = [i for i in range(K) if relative_gap(values[i], bounds[i]) > mip_gap]
        for position, index in enumerate(open_ks):
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            sub = replace(problem, max_keep=int(ks[index]))
            result = solve_branch_and_bound(
                sub, mip_gap=mip_gap, incumbent=keeps[index], root_bound=bounds[index],
                deadline=time.perf_counter() + left / (len(open_ks) - position))
            if result.objective < values[index]:
                keeps[index], values[index] = result.keep, result.objective
            bounds[index] = max(bounds[index], min(result.bound, values[index]))
        for index in range(1, K):
            if values[index - 1] < values[index]:
                keeps[index], values[index] = keeps[index - 1], values[index - 1]
        bounds = np.maximum.accumulate(bounds[::-1])[::-1]
    bar.close()
    bounds = np.minimum(bounds, values)
    gaps = np.array([relative_gap(v, b) for v, b in zip(values, bounds, strict=True)])
    status = ["optimal" if gap <= mip_gap else "time_limit" for gap in gaps]
    return KeepCurve(ks, keeps, values, bounds, gaps, status, time.perf_counter() - start,
                     problem)
