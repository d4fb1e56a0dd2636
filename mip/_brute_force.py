"""Brute-force enumeration of supports: the exact oracle for tiny instances.

For every support allowed by the cardinality and budget constraints, the best weights are the
box-constrained ridge least squares of :func:`mip.fit_support`; the optimum is the best of these.
2^n_groups supports: use for n_groups <= ~12.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from mip._problem import LayerProblem
from mip._result import MIPResult
from mip._support_fit import fit_support

__all__ = ["solve_brute_force"]


def solve_brute_force(problem: LayerProblem, max_groups: int = 16) -> MIPResult:
    """Enumerate every feasible support; ``status`` is ``"optimal"``, ``gap`` 0.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 4)); W0 = rng.standard_normal((2, 4))
    >>> p = LayerProblem.from_data(X, X @ W0.T, group_size=1, lam=0.5, alpha=0.5, M=5.0)
    >>> solve_brute_force(p).iterations   # 2^4 supports
    16
    """
    n = problem.n_groups
    if n > max_groups:
        raise ValueError(f"brute force over 2^{n} supports is too many; max_groups={max_groups}")
    start = time.perf_counter()
    best = (np.inf, None, None)
    count = 0
    most = n if problem.max_keep is None else min(problem.max_keep, n)
    for size in range(most + 1):
        for chosen in itertools.combinations(range(n), size):
            keep = np.zeros(n, bool)
            keep[list(chosen)] = True
            if problem.cost is not None and problem.cost @ keep > problem.budget:
                continue
            count += 1
            W = fit_support(problem, keep)
            value = problem.objective(W, keep)
            if value < best[0]:
                best = (value, keep, W)
    value, keep, W = best
    return MIPResult(keep, W, value, value, 0.0, "optimal", count, time.perf_counter() - start,
                     supports_evaluated=count)
