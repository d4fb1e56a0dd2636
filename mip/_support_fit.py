"""The best weights for a fixed support: box-constrained ridge least squares per output row.

With the support S (a set of kept groups) fixed, z is fixed and the problem separates over the
output rows i of W::

    min_w  ||A_S w - B[:, i]||^2 + lam*alpha*||w||^2    s.t.  -M <= w <= M

(``A_S``: the columns of the factor ``A`` belonging to S; see :class:`mip.LayerProblem`), a
bounded-variable least-squares problem solved exactly by scipy's BVLS active-set method on the
stacked system ``[A_S; sqrt(lam*alpha) I] w ~ [B_i; 0]``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import lsq_linear

from mip._problem import LayerProblem

__all__ = ["fit_support"]


def fit_support(problem: LayerProblem, keep: ArrayLike) -> NDArray[np.float64]:
    """W (out, d), optimal for the support ``keep`` (n_groups,) and zero off it.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((40, 4)); W0 = rng.standard_normal((2, 4))
    >>> p = LayerProblem.from_data(X, X @ W0.T, group_size=1, lam=1e-9, alpha=0.5, M=10.0)
    >>> np.allclose(fit_support(p, np.ones(4, bool)), W0, atol=1e-6)
    True
    """
    keep = np.asarray(keep, dtype=bool)
    columns = problem.group_columns(keep)
    W = np.zeros((problem.n_out, problem.d))
    if not columns.any():
        return W
    A, B, _ = problem.factors
    A_S = A[:, columns]
    ridge = np.sqrt(problem.lam * problem.alpha)
    stacked = np.vstack([A_S, ridge * np.eye(A_S.shape[1])]) if ridge > 0 else A_S
    for i in range(problem.n_out):
        target = np.concatenate([B[:, i], np.zeros(A_S.shape[1])]) if ridge > 0 else B[:, i]
        if stacked.shape[0] == 0:
            break
        fit = lsq_linear(stacked, target, bounds=(-problem.M, problem.M), method="bvls", tol=1e-12)
        W[i, columns] = fit.x
    return W
