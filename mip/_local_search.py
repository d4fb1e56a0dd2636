"""Primal heuristics for the layer MIP: greedy backward elimination and a swap local search.

Both score a support S (the kept groups) by its ridge value without the box (the value of
:func:`mip.fit_support` whenever the box is inactive, which is the usual case)::

    value(S) = sum(yty) - E(S) + lam*(1-alpha)*|S|,      E(S) = tr(C_S^T (G_SS + rho*I)^-1 C_S)

(``G = gram``, ``C = xty``, ``rho = lam*alpha``, or a tiny jitter when that is 0), and they keep
``P = (G_SS + rho*I)^-1`` and the ridge coefficients ``beta = P C_S`` up to date with low-rank
block updates instead of refitting:

- dropping group i (its block of ``g = group_size`` rows) loses
  ``rem_i = tr(beta_i^T P_ii^-1 beta_i)`` and downdates ``P <- P_RR - P_Ri P_ii^-1 P_iR``;
- adding group j gains ``add_j = tr(R_j^T S_j^-1 R_j)`` with the Schur complement
  ``S_j = G_jj + rho*I - G_jS P G_Sj`` and the residual correlation ``R_j = C_j - G_jS beta``,
  and borders P (block Sherman-Morrison);
- exchanging i in S for j outside gains ``add_j - rem_i(S + j)``, where ``rem_i(S + j)`` uses
  ``beta' = beta - u S_j^-1 R_j`` and ``P'_ii = P_ii + u_i S_j^-1 u_i^T`` with ``u = P G_Sj``.

Greedy backward elimination starts from every group and drops the cheapest (by ``rem_i``, or by
``rem_i / cost_i`` while the budget is exceeded) until one group is left: one pass gives a nested
support for every size, the warm start of every k. Above 256 groups it drops the
``floor(m / 256)`` cheapest of the m groups at once (one block downdate), which keeps the pass at
``O(d^3)``. The swap search moves from a support to its best neighbour (drop one, add one, or
exchange one kept for one dropped group) while that improves the value, under the cardinality and
budget constraints. A move costs ``O((k*g)^2 * (n-k)*g)`` for the Schur complements of every
outside group plus ``O(k * g^2 * out)`` per exchange candidate, never a refit. Exchange candidates
are tried first among the 16 outside groups with the largest ``add_j``, then among all of them
before the search declares a local optimum.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg
from numpy.typing import NDArray

from mip._problem import LayerProblem

__all__ = ["GreedyPath", "greedy_backward", "removal_costs_of_all", "shrink_support", "swap_search"]


def heuristic_ridge(problem: LayerProblem) -> float:
    """``rho``: lam*alpha, or a jitter of 1e-10 times the mean Gram diagonal when that is 0."""
    rho = problem.lam * problem.alpha
    scale = float(np.trace(problem.gram)) / max(problem.d, 1)
    return max(rho, 1e-10 * scale, 1e-300)


def _blocks(n: int, g: int) -> NDArray[np.intp]:
    return np.arange(n)[:, None] * g + np.arange(g)[None, :]


def _removal_costs(P: NDArray, beta: NDArray, g: int) -> NDArray[np.float64]:
    """``rem_i = tr(beta_i^T P_ii^-1 beta_i)`` for every block i of the current support."""
    m = P.shape[0] // g
    if g == 1:
        return np.sum(beta * beta, axis=1) / np.diag(P)
    idx = _blocks(m, g)
    Pb = P[idx[:, :, None], idx[:, None, :]]
    bb = beta.reshape(m, g, -1)
    return np.sum(np.linalg.solve(Pb, bb) * bb, axis=(1, 2))


def _inverse(G: NDArray) -> NDArray:
    factor = scipy.linalg.cho_factor(G, check_finite=False)
    return scipy.linalg.cho_solve(factor, np.eye(G.shape[0]), check_finite=False)


class _Support:
    """The kept groups in order, with ``P = (G_SS + rho I)^-1`` and ``beta = P C_S``."""

    def __init__(self, problem: LayerProblem, groups: list[int], rho: float) -> None:
        self.problem, self.rho, self.g = problem, rho, problem.group_size
        self.groups = list(groups)
        self.refresh()

    def columns(self, groups=None) -> NDArray[np.intp]:
        groups = self.groups if groups is None else groups
        return (np.asarray(groups, dtype=np.intp)[:, None] * self.g
                + np.arange(self.g)[None, :]).ravel()

    def refresh(self) -> None:
        cols = self.columns()
        G = self.problem.gram[np.ix_(cols, cols)]
        G[np.diag_indices_from(G)] += self.rho
        self.P = _inverse(G) if cols.size else np.zeros((0, 0))
        self.beta = self.P @ self.problem.xty[cols]
        self.moves = 0

    def explained(self) -> float:
        return float(np.sum(self.problem.xty[self.columns()] * self.beta))

    def drop(self, positions: NDArray[np.intp]) -> None:
        """Remove the groups at these positions of ``self.groups`` (block downdate)."""
        g, m = self.g, len(self.groups)
        gone = np.zeros(m, bool)
        gone[positions] = True
        Q = _blocks(m, g)[gone].ravel()
        R = _blocks(m, g)[~gone].ravel()
        PRQ = self.P[np.ix_(R, Q)]
        X = np.linalg.solve(self.P[np.ix_(Q, Q)], PRQ.T)
        self.beta = self.beta[R] - X.T @ self.beta[Q]
        P = self.P[np.ix_(R, R)]
        for rows in range(0, R.size, 512):  # in place, a 512-row temporary at a time
            P[rows:rows + 512] -= PRQ[rows:rows + 512] @ X
        self.P = P
        self.groups = [grp for grp, out in zip(self.groups, gone, strict=True) if not out]
        self._count_move()

    def add(self, j: int, u: NDArray, schur: NDArray, residual: NDArray) -> None:
        """Border P with group j: ``u = P G_Sj``, ``schur = S_j``, ``residual = R_j``."""
        inv = np.linalg.inv(schur)
        uS = u @ inv
        top = self.P + uS @ u.T
        self.P = np.block([[top, -uS], [-uS.T, inv]])
        coef = inv @ residual
        self.beta = np.vstack([self.beta - u @ coef, coef])
        self.groups.append(int(j))
        self._count_move()

    def _count_move(self) -> None:
        self.moves += 1
        if self.moves >= 50:  # bound the round-off of repeated up/downdates
            self.refresh()


def _outside_terms(support: _Support, outside: NDArray[np.intp]):
    """For every group j outside: ``u_j = P G_Sj``, ``S_j`` (g x g), ``R_j`` (g x out) and the
    gain ``add_j``."""
    problem, g = support.problem, support.g
    colsS, colsN = support.columns(), support.columns(outside)
    GSN = problem.gram[np.ix_(colsS, colsN)]
    U = support.P @ GSN
    residual = problem.xty[colsN] - GSN.T @ support.beta
    q = len(outside)
    if g == 1:
        schur = (problem.gram[colsN, colsN] + support.rho - np.sum(GSN * U, axis=0))[:, None, None]
    else:
        idx = _blocks(q, g)
        GNN = problem.gram[np.ix_(colsN, colsN)] if q * g <= 4096 else None
        diag = (GNN[idx[:, :, None], idx[:, None, :]] if GNN is not None else
                np.stack([problem.gram[np.ix_(c, c)] for c in support.columns(outside)
                          .reshape(q, g)]))
        cross = np.einsum("sja,sjb->jab", GSN.reshape(-1, q, g), U.reshape(-1, q, g))
        schur = diag + support.rho * np.eye(g) - cross
    schur = 0.5 * (schur + np.swapaxes(schur, 1, 2))
    Rb = residual.reshape(q, g, -1)
    gains = np.sum(np.linalg.solve(schur, Rb) * Rb, axis=(1, 2))
    return U, schur, Rb, np.maximum(gains, 0.0)


def _exchange_values(support: _Support, U: NDArray, schur: NDArray, Rb: NDArray,
                     j: int) -> NDArray[np.float64]:
    """``rem_i(S + j)`` for every i in S, for the j-th outside candidate."""
    g = support.g
    u = U[:, j * g:(j + 1) * g]
    inv = np.linalg.inv(schur[j])
    beta = support.beta - u @ (inv @ Rb[j])
    m = len(support.groups)
    if g == 1:
        diag = np.diag(support.P) + (u[:, 0] ** 2) * inv[0, 0]
        return np.sum(beta * beta, axis=1) / diag
    idx = _blocks(m, g)
    Pb = support.P[idx[:, :, None], idx[:, None, :]]
    ub = u.reshape(m, g, g)
    Pb = Pb + ub @ inv @ np.swapaxes(ub, 1, 2)
    bb = beta.reshape(m, g, -1)
    return np.sum(np.linalg.solve(Pb, bb) * bb, axis=(1, 2))


def removal_costs_of_all(problem: LayerProblem, rho: float | None = None) -> NDArray[np.float64]:
    """``rem_j`` of every group from the full support: the ridge value lost when j alone is
    dropped (one inverse of the full Gram matrix)."""
    rho = heuristic_ridge(problem) if rho is None else rho
    support = _Support(problem, list(range(problem.n_groups)), rho)
    return _removal_costs(support.P, support.beta, problem.group_size)


def shrink_support(problem: LayerProblem, keep: NDArray[np.bool_], size: int,
                   rho: float | None = None) -> NDArray[np.bool_]:
    """``keep`` less its groups of smallest removal cost ``rem_i`` (all judged at ``keep``) down
    to ``size`` groups: the warm start of a smaller k from a larger k's support."""
    kept = np.flatnonzero(keep)
    if kept.size <= size:
        return np.asarray(keep, dtype=bool).copy()
    rho = heuristic_ridge(problem) if rho is None else rho
    support = _Support(problem, kept.tolist(), rho)
    rem = _removal_costs(support.P, support.beta, problem.group_size)
    smaller = np.asarray(keep, dtype=bool).copy()
    smaller[kept[np.argsort(rem, kind="stable")[: kept.size - size]]] = False
    return smaller


class GreedyPath:
    """The supports of greedy backward elimination, one per size.

    Attributes:
        order: (n_groups,) groups in the order they were dropped (the last one is kept longest).
        values: (n_groups + 1,) heuristic value (module docstring) of the support of each size
            m = 0..n (``values[m]``).
        rho: the ridge the values were computed with.
        full_norms: (n_groups,) the norm of each group in the ridge fit of every group (the
            coefficients the elimination starts from).
    """

    def __init__(self, order: NDArray[np.intp], values: NDArray[np.float64], rho: float,
                 full_norms: NDArray[np.float64]) -> None:
        self.order, self.values, self.rho, self.full_norms = order, values, rho, full_norms

    def support(self, size: int) -> NDArray[np.bool_]:
        """The kept groups (n_groups,) bool of the support with ``size`` groups."""
        n = len(self.order)
        keep = np.zeros(n, bool)
        keep[self.order[n - size:]] = True
        return keep


def greedy_backward(problem: LayerProblem, deadline: float = np.inf,
                    rho: float | None = None, stop: int = 0) -> GreedyPath:
    """Greedy backward elimination from every group to ``stop`` groups (default none; module
    docstring).

    Stops early at ``deadline`` (a ``time.perf_counter()`` value) or once ``stop`` groups are
    left (the wide steps cost ``O(m^2)`` each, so a large ``stop`` saves most of the pass); then
    the groups not yet dropped are ordered by their removal cost at that point, and the values
    of the sizes below are NaN.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 5)); W0 = rng.standard_normal((2, 5)) * [1, 0, 1, 0, 1]
    >>> p = LayerProblem.from_data(X, X @ W0.T, group_size=1, lam=1e-3, alpha=0.5, M=9.0)
    >>> sorted(greedy_backward(p).support(3).nonzero()[0].tolist())
    [0, 2, 4]
    """
    n, g = problem.n_groups, problem.group_size
    rho = heuristic_ridge(problem) if rho is None else rho
    per_group = problem.lam * (1 - problem.alpha)
    support = _Support(problem, list(range(n)), rho)
    full_norms = np.sqrt(np.sum((support.beta * support.beta).reshape(n, -1), axis=1))
    total = float(problem.yty.sum())
    values = np.full(n + 1, np.nan)
    values[n] = total - support.explained() + per_group * n
    order: list[int] = []
    cost = problem.cost
    spent = None if cost is None else float(cost.sum())
    while support.groups:
        m = len(support.groups)
        rem = _removal_costs(support.P, support.beta, g)
        if m <= stop or time.perf_counter() > deadline:
            order.extend(np.asarray(support.groups)[np.argsort(rem, kind="stable")].tolist())
            break
        score = rem
        if cost is not None and spent > problem.budget:
            score = rem / np.maximum(cost[support.groups], 1e-12)
        count = min(max(1, m // 256), m - stop)
        positions = np.argsort(score, kind="stable")[:count]
        explained = support.explained() if count > 1 else None
        dropped = [support.groups[p] for p in positions]
        support.drop(positions)
        order.extend(dropped)
        if cost is not None:
            spent -= float(cost[dropped].sum())
        if count == 1:
            values[m - 1] = values[m] + float(rem[positions[0]]) - per_group
        else:  # a block drop: the intermediate sizes get the value after the whole block
            explained = support.explained()
            values[m - count:m] = total - explained + per_group * (m - count)
    if len(order) == n:
        values[0] = total
    return GreedyPath(np.asarray(order, dtype=np.intp), values, rho, full_norms)


def _feasible(problem: LayerProblem, keep: NDArray[np.bool_], max_keep: int) -> bool:
    if keep.sum() > max_keep:
        return False
    return problem.cost is None or float(problem.cost @ keep) <= problem.budget * (1 + 1e-12)


def swap_search(
    problem: LayerProblem,
    keep: NDArray[np.bool_],
    max_keep: int | None = None,
    deadline: float = np.inf,
    rho: float | None = None,
    candidates: int = 16,
) -> tuple[NDArray[np.bool_], int]:
    """Local search from the feasible support ``keep``: drop, add and exchange moves (module
    docstring) while the value improves. Returns the final support and the moves made.

    ``max_keep`` overrides ``problem.max_keep`` (the keep-k curve asks for each k);
    the budget of ``problem`` always applies.
    """
    n, g = problem.n_groups, problem.group_size
    rho = heuristic_ridge(problem) if rho is None else rho
    limit = problem.max_keep if max_keep is None else max_keep
    limit = n if limit is None else min(int(limit), n)
    keep = np.asarray(keep, dtype=bool).copy()
    if not _feasible(problem, keep, limit):
        raise ValueError("swap_search needs a feasible starting support")
    per_group = problem.lam * (1 - problem.alpha)
    cost = problem.cost
    support = _Support(problem, np.flatnonzero(keep).tolist(), rho)
    total_value = float(problem.yty.sum())
    value = total_value - support.explained() + per_group * len(support.groups)
    tol = 1e-12 * max(abs(value), 1e-300)
    moves = 0
    while time.perf_counter() < deadline:
        S = np.asarray(support.groups, dtype=np.intp)
        outside = np.setdiff1d(np.arange(n), S)
        spent = 0.0 if cost is None else float(cost[S].sum())
        best_gain, best_move = tol, None
        rem = _removal_costs(support.P, support.beta, g) if S.size else np.zeros(0)
        if S.size:  # drop one
            i = int(np.argmin(rem))
            if per_group - rem[i] > best_gain:
                best_gain, best_move = per_group - rem[i], ("drop", i, None)
        if outside.size and S.size:
            U, schur, Rb, gains = _outside_terms(support, outside)
        elif outside.size:
            U = np.zeros((0, outside.size * g))
            schur = np.stack([problem.gram[np.ix_(c, c)] + rho * np.eye(g)
                              for c in support.columns(outside).reshape(-1, g)])
            Rb = problem.xty[support.columns(outside)].reshape(outside.size, g, -1)
            gains = np.sum(np.linalg.solve(schur, Rb) * Rb, axis=(1, 2))
        else:
            gains = np.zeros(0)
        fits = np.ones(outside.size, bool)
        if cost is not None:
            fits = spent + cost[outside] <= problem.budget * (1 + 1e-12)
        if len(S) < limit and outside.size:  # add one
            allowed = np.where(fits, gains - per_group, -np.inf)
            j = int(np.argmax(allowed))
            if allowed[j] > best_gain:
                best_gain, best_move = allowed[j], ("add", None, j)
        if S.size and outside.size:  # exchange one for one
            by_gain = np.argsort(-gains, kind="stable")
            for block in (by_gain[:candidates], by_gain[candidates:]):
                for j in block:
                    if gains[j] <= best_gain:
                        break  # add_j bounds the exchange's gain from above
                    if time.perf_counter() > deadline:
                        break
                    after = _exchange_values(support, U, schur, Rb, int(j))
                    allowed = np.ones(S.size, bool)
                    if cost is not None:
                        allowed = spent - cost[S] + cost[outside[j]] <= problem.budget * (1 + 1e-12)
                    swap_gain = np.where(allowed, gains[j] - after, -np.inf)
                    i = int(np.argmax(swap_gain))
                    if swap_gain[i] > best_gain:
                        best_gain, best_move = swap_gain[i], ("swap", i, int(j))
                if best_move is not None and best_move[0] == "swap":
                    break  # an improving exchange among the best candidates: take it
        if best_move is None:
            break
        kind, i, j = best_move
        if kind in ("add", "swap"):
            g_ = g
            support.add(outside[j], U[:, j * g_:(j + 1) * g_], schur[j], Rb[j])
        if kind in ("drop", "swap"):
            support.drop(np.array([i]))
        value -= best_gain
        moves += 1
    result = np.zeros(n, bool)
    result[support.groups] = True
    return result, moves
