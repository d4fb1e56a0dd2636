"""The best weights for a fixed support: box-constrained ridge least squares per output row.

With the support S (a set of kept groups) fixed, z is fixed and the problem separates over the
output rows i of W::

    min_w  w^T (G_SS + lam*alpha*I) w - 2 xty_S,i^T w    s.t.  -M <= w <= M

(``G_SS``: the Gram block of the kept columns). The unconstrained minimiser, the ridge solution
``(G_SS + lam*alpha*I)^-1 xty_S`` (one Cholesky solve for every row), is optimal whenever it lies
in the box, which is the common case (``M`` defaults to twice the largest weight). Only the rows
where it leaves the box are solved again, exactly, by scipy's BVLS active-set method on the stacked
system ``[A_S; sqrt(lam*alpha) I] w ~ [B_i; 0]`` (``A``, ``B``: the factors of
:class:`mip.LayerProblem`). Cost: ``O(|S|^3 + |S|^2 * out)`` for the ridge solve, plus the
eigendecomposition of the Gram matrix the first time a row needs BVLS.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import lsq_linear

from mip._problem import LayerProblem

__all__ = ["fit_support", "ridge_solution"]


def ridge_solution(problem: LayerProblem, columns: NDArray[np.bool_]) -> NDArray[np.float64]:
    """``(G_SS + lam*alpha*I)^-1 xty_S`` (|S|, out) for the column mask ``columns`` (d,): the
    minimiser without the box (the least-squares solution of least norm if the block is singular
    and lam*alpha = 0)."""
    G = problem.gram[np.ix_(columns, columns)]
    C = problem.xty[columns]
    ridge = problem.lam * problem.alpha
    if ridge > 0:
        G[np.diag_indices_from(G)] += ridge
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(G, check_finite=False), C,
                                      check_finite=False)
    except np.linalg.LinAlgError:  # singular block without ridge
        return np.linalg.lstsq(G, C, rcond=None)[0]


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
    W_S = ridge_solution(problem, columns).T  # (out, |S|)
    outside = np.flatnonzero(np.any(np.abs(W_S) > problem.M, axis=1))
    if outside.size:
        A, B, _ = problem.factors
        A_S = A[:, columns]
        ridge = np.sqrt(problem.lam * problem.alpha)
        stacked = np.vstack([A_S, ridge * np.eye(A_S.shape[1])]) if ridge > 0 else A_S
        for i in outside:
            target = np.concatenate([B[:, i], np.zeros(A_S.shape[1])]) if ridge > 0 else B[:, i]
            if stacked.shape[0] == 0:
                W_S[i] = 0.0
                continue
            fit = lsq_linear(stacked, target, bounds=(-problem.M, problem.M), method="bvls",
                             tol=1e-12)
            W_S[i] = fit.x
    W[:, columns] = W_S
    return W
