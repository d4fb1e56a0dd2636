"""The layer-wise input-group selection problem as sufficient statistics (docs/mathematics.md §4).

For calibration inputs ``X`` (N x d) and targets ``Y`` (N x out) the problem is::

    min_{W, z}  (1/N)*||X W^T - Y||_F^2 + lam * sum_j [alpha*||W_{:,j}||^2 + (1 - alpha)*z_j]
    s.t.        |W_ie| <= M*z_j  for every entry e of group j,   z_j in {0, 1}
                optional: sum_j z_j <= max_keep,   sum_j cost_j*z_j <= budget

where group j owns the ``group_size`` consecutive columns ``j*k .. (j+1)*k - 1`` of W (an input
channel of a conv, unfolded, or an input feature of a Linear layer). Only
``gram = X^T X / N`` (d x d), ``xty = X^T Y / N`` (d x out) and ``yty = diag(Y^T Y) / N`` (out,)
enter, so the model size does not grow with N.

Factorisation used by every solver: with ``gram = Q diag(l) Q^T`` (eigenvalues below
``1e-12 * max(l)`` dropped, r kept), ``A = diag(sqrt(l)) Q^T`` (r x d) and
``B = diag(1/sqrt(l)) Q^T xty`` (r x out), the loss of output row i is
``||A w_i - B[:, i]||^2 + (yty_i - ||B[:, i]||^2)``: a sum of one-dimensional squares.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mip._checks import check_alpha, check_nonnegative, check_positive

__all__ = ["LayerProblem"]


def _finite_array(name: str, value: ArrayLike, ndim: int) -> NDArray[np.float64]:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return array


@dataclass(frozen=True, eq=False)
class LayerProblem:
    """One layer's pruning MIP. Build with :meth:`from_data` or from the statistics directly.

    Shapes: ``gram`` (d, d), ``xty`` (d, out), ``yty`` (out,), ``cost`` (n_groups,);
    ``d = n_groups * group_size``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((50, 6)); W0 = rng.standard_normal((2, 6))
        >>> p = LayerProblem.from_data(X, X @ W0.T, group_size=2, lam=0.1, alpha=0.5, M=5.0)
        >>> p.n_groups, p.n_out, round(p.objective(W0, np.ones(3, bool)), 4)
        (3, 2, 1.017)
    """

    gram: NDArray[np.float64]
    xty: NDArray[np.float64]
    yty: NDArray[np.float64]
    group_size: int
    lam: float
    alpha: float
    M: float
    max_keep: int | None = None
    cost: NDArray[np.float64] | None = None
    budget: float | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        gram = _finite_array("gram", self.gram, 2)
        xty = _finite_array("xty (X^T Y / N)", self.xty, 2)
        yty = _finite_array("yty (diag(Y^T Y) / N)", self.yty, 1)
        d = gram.shape[0]
        if gram.shape != (d, d) or xty.shape[0] != d or yty.shape != (xty.shape[1],):
            raise ValueError(
                f"inconsistent statistics: gram {gram.shape}, xty {xty.shape}, yty {yty.shape}; "
                "need (d, d), (d, out), (out,)"
            )
        k = int(self.group_size)
        if k < 1 or d % k:
            raise ValueError(f"group_size must divide d = {d}; got {self.group_size}")
        n_groups = d // k
        if self.max_keep is not None and (
            isinstance(self.max_keep, bool) or not isinstance(self.max_keep, numbers.Integral)
            or self.max_keep < 0
        ):
            raise ValueError(
                f"max_keep must be an int >= 0 (or None for no limit); got {self.max_keep!r}"
            )
        if (self.cost is None) != (self.budget is None):
            raise ValueError("cost and budget go together: pass both or neither")
        if self.cost is not None:
            cost = _finite_array("cost", self.cost, 1)
            if cost.shape != (n_groups,) or np.any(cost < 0):
                raise ValueError(
                    f"cost must hold one value >= 0 per group ({n_groups}); got {cost.tolist()}"
                )
            set_(self, "cost", cost)
            set_(self, "budget", check_nonnegative("budget", self.budget))
        symmetric = gram + gram.T
        symmetric *= 0.5  # in place: a wide layer's d x d statistics are hundreds of MB
        set_(self, "gram", symmetric)
        set_(self, "xty", xty)
        set_(self, "yty", yty)
        set_(self, "group_size", k)
        set_(self, "lam", check_nonnegative("lam", self.lam))
        set_(self, "alpha", check_alpha(self.alpha))
        set_(self, "M", check_positive("M", self.M))
        if self.max_keep is not None:
            set_(self, "max_keep", int(self.max_keep))

    @classmethod
    def from_data(cls, X: ArrayLike, Y: ArrayLike, group_size: int, **settings) -> LayerProblem:
        """Statistics from calibration inputs ``X`` (N, d) and targets ``Y`` (N, out)."""
        X = _finite_array("X", X, 2)
        Y = _finite_array("Y", Y, 2)
        if X.shape[0] != Y.shape[0] or X.shape[0] == 0:
            raise ValueError(
                f"X and Y need the same number N >= 1 of rows; got {X.shape}, {Y.shape}"
            )
        N = X.shape[0]
        return cls(X.T @ X / N, X.T @ Y / N, np.sum(Y * Y, axis=0) / N, group_size, **settings)

    # ---- sizes ---------------------------------------------------------------------------------
    @property
    def d(self) -> int:
        return self.gram.shape[0]

    @property
    def n_out(self) -> int:
        return self.xty.shape[1]

    @property
    def n_groups(self) -> int:
        return self.d // self.group_size

    def group_columns(self, keep: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Column mask (d,) of the groups marked in ``keep`` (n_groups,)."""
        return np.repeat(np.asarray(keep, dtype=bool), self.group_size)

    # ---- the factorisation ---------------------------------------------------------------------
    @cached_property
    def factors(self) -> tuple[NDArray, NDArray, NDArray]:
        """``(A, B, offset)``: loss of row i = ||A w_i - B[:, i]||^2 + offset[i]."""
        eigval, eigvec = np.linalg.eigh(self.gram)
        top = max(float(eigval.max()), 0.0)
        keep = eigval > 1e-12 * top if top > 0 else np.zeros(eigval.shape, dtype=bool)
        root = np.sqrt(eigval[keep])
        A = root[:, None] * eigvec[:, keep].T
        B = (eigvec[:, keep].T @ self.xty) / root[:, None]
        offset = np.maximum(self.yty - np.sum(B * B, axis=0), 0.0)
        return A, B, offset

    # ---- evaluation ----------------------------------------------------------------------------
    def loss(self, W: ArrayLike) -> float:
        """(1/N)||X W^T - Y||_F^2 for W of shape (out, d)."""
        W = np.asarray(W, dtype=np.float64)
        return float(
            np.sum(W * (W @ self.gram)) - 2.0 * np.sum(W * self.xty.T) + np.sum(self.yty)
        )

    def objective(self, W: ArrayLike, keep: ArrayLike) -> float:
        """The MIP objective at (W, z = keep); feasibility is :meth:`violation`'s job."""
        W = np.asarray(W, dtype=np.float64)
        keep = np.asarray(keep, dtype=bool)
        a = self.alpha
        return self.loss(W) + self.lam * (a * float(np.sum(W * W)) + (1 - a) * int(keep.sum()))

    def violation(self, W: ArrayLike, keep: ArrayLike) -> float:
        """Largest violation of the constraints by (W, keep); 0 for a feasible point."""
        W = np.asarray(W, dtype=np.float64)
        keep = np.asarray(keep, dtype=bool)
        bound = self.M * self.group_columns(keep)
        worst = float(np.max(np.abs(W) - bound[None, :], initial=0.0))
        if self.max_keep is not None:
            worst = max(worst, float(keep.sum() - self.max_keep))
        if self.cost is not None:
            worst = max(worst, float(self.cost @ keep - self.budget))
        return max(worst, 0.0)

