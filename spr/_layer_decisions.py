"""Which input channels of a consumer layer to keep, for every k or one k: the layer decisions
that :func:`spr.prune_to_budget` allocates over (numpy on :class:`mip.LayerProblem`).

``method``:

- ``"mip"``: the layer MIP (:func:`mip.keep_curve` for the curve, :func:`mip.solve_layer` for one
  k): local search, perspective bound, branch and bound; a proven bound per k.
- ``"osscar"``: the swap local search from the largest groups of the full ridge fit (the
  OSSCAR-style decision, :func:`mip._local_search.swap_search`), no bound.
- ``"magnitude"``: the k channels whose producer filters have the largest norm (Li et al.'s
  filter pruning), no bound.

``refit=True``: the kept channels' consumer weights are the least-squares fit
(:func:`mip.fit_support`); ``False``: the dense weights on the kept channels. The objective is
the layer MIP's at those weights, so the three methods are compared on one scale; ``bound`` is
NaN where none is proven.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

import mip
from mip._local_search import swap_search
from mip._result import relative_gap
from mip._solve_layer import magnitude_support

__all__ = ["METHODS", "Curve", "Decision", "curve", "decide"]

METHODS = ("mip", "osscar", "magnitude")


@dataclass(frozen=True)
class Curve:
    """Per k in ``ks``: the support ``keep`` (K, n), ``objective`` and ``bound`` (K,)."""

    ks: NDArray[np.intp]
    keep: NDArray[np.bool_]
    objective: NDArray[np.float64]
    bound: NDArray[np.float64]


@dataclass(frozen=True)
class Decision:
    """One k: the support, the consumer's weights (out, d) in the problem's coordinates, the
    objective, a bound (NaN: none), the gap and the solver's status."""

    keep: NDArray[np.bool_]
    weight: NDArray[np.float64]
    objective: float
    bound: float
    gap: float
    status: str


def _top(scores: NDArray, k: int) -> NDArray[np.bool_]:
    keep = np.zeros(scores.size, bool)
    keep[np.argsort(-scores, kind="stable")[:k]] = True
    return keep


def _weight(problem: mip.LayerProblem, keep: NDArray[np.bool_], W0: NDArray,
            refit: bool) -> NDArray[np.float64]:
    if refit:
        return mip.fit_support(problem, keep)
    return W0 * problem.group_columns(keep)[None, :]


def _support(problem, k, method, scores, deadline) -> NDArray[np.bool_]:
    if method == "magnitude":
        return _top(scores, k)
    start = magnitude_support(problem, k)
    found, _ = swap_search(problem, start, max_keep=k, deadline=deadline,
                           candidates=problem.n_groups)
    return found


def curve(problem: mip.LayerProblem, ks: NDArray[np.intp], method: str, refit: bool,
          W0: NDArray, scores: NDArray, time_limit: float) -> Curve:
    """The keep-k curve of ``problem`` by ``method`` (module docstring); ``W0`` (out, d) the
    dense weights, ``scores`` (n,) the producer filters' norms (for ``"magnitude"``)."""
    if method == "mip":
        found = mip.keep_curve(problem, ks, time_limit=time_limit)
        keep, bound = found.keep, found.bound
        if refit:
            return Curve(found.ks, keep, found.objective, bound)
    else:
        deadline = time.perf_counter() + time_limit
        keep = np.stack([_support(problem, int(k), method, scores,
                                  time.perf_counter() + (deadline - time.perf_counter())
                                  / (len(ks) - i)) for i, k in enumerate(ks)])
        bound = np.full(len(ks), np.nan)
    objective = np.array([problem.objective(_weight(problem, row, W0, refit), row)
                          for row in keep])
    if not refit:
        bound = np.full(len(ks), np.nan)  # the bound is on the refit optimum, not this one
    return Curve(np.asarray(ks), keep, objective, bound)


def decide(problem: mip.LayerProblem, k: int, method: str, refit: bool, W0: NDArray,
           scores: NDArray, time_limit: float, keep: NDArray[np.bool_] | None = None
           ) -> Decision:
    """The support of ``k`` channels by ``method`` and its weights (module docstring); a given
    ``keep`` (n,) is taken as the support instead (``method`` then only names it)."""
    if keep is not None:
        W, bound, status = _weight(problem, keep, W0, refit), float("nan"), "given"
    elif method == "mip":
        result = mip.solve_layer(replace(problem, max_keep=int(k)), time_limit=time_limit)
        keep, bound, status = result.keep, result.bound, result.status
        W = result.weight if refit else _weight(problem, keep, W0, False)
    else:
        keep = _support(problem, int(k), method, scores, time.perf_counter() + time_limit)
        W, bound, status = _weight(problem, keep, W0, refit), float("nan"), "heuristic"
    value = problem.objective(W, keep)
    if not refit:
        bound, status = float("nan"), "no refit"
    gap = relative_gap(value, bound) if np.isfinite(bound) else float("nan")
    return Decision(keep, W, value, float(bound), float(gap), status)
