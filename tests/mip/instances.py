"""Random layer problems for the solver tests."""

from __future__ import annotations

import numpy as np

from mip import LayerProblem


def random_problem(
    rng: np.random.Generator,
    n_groups: int,
    group_size: int = 1,
    n_out: int = 2,
    max_keep: int | None = None,
    budget: bool = False,
    correlated: bool = True,
) -> LayerProblem:
    """Least squares on correlated inputs with targets from a dense W0 of uneven column scales."""
    d = n_groups * group_size
    X = rng.standard_normal((40, d))
    if correlated:
        X = X @ rng.standard_normal((d, d)) * 0.5
    W0 = rng.standard_normal((n_out, d)) * rng.uniform(0.1, 1.0, d)
    cost = rng.uniform(0.5, 2.0, n_groups) if budget else None
    return LayerProblem.from_data(
        X, X @ W0.T, group_size, lam=float(rng.uniform(0.05, 1.0)),
        alpha=float(rng.uniform(0.1, 0.9)), M=2 * float(np.abs(W0).max()), max_keep=max_keep,
        cost=cost, budget=None if cost is None else float(cost.sum() / 2),
    )
