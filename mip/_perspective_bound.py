"""A lower bound on the layer MIP from its perspective relaxation, valid wherever it stops.

The relaxation (:mod:`mip._relaxations`, z in [0, 1]) with the cardinality and budget
constraints kept::

    min_{W, z}  f(W) + lam * sum_j [alpha*||W_j||^2 / z_j + (1-alpha)*z_j]
    s.t.        |W_j| <= M*z_j,  0 <= z <= 1,  sum_j z_j <= k,  cost . z <= budget

with ``f(W) = loss(W) = sum_i w_i^T G w_i - 2 C_i^T w_i + sum(yty)`` (G = gram, C = xty).

**The bound.** f is convex, so for any point ``Wb`` and its gradient ``Gam = 2 (Wb G - C^T)``,
``f(W) >= f(Wb) + <Gam, W - Wb>``. Minimising the right-hand side plus the penalty over W group by
group, for fixed z_j, gives ``z_j * (b - g_j)`` with ``a = lam*alpha``, ``b = lam*(1-alpha)`` and::

    g_j = sum_{e in group j} psi(Gam_e),  psi(x) = x^2/(4a) if |x| <= 2aM,  M|x| - aM^2 otherwise

(the box enters through psi; for a = 0, psi(x) = M|x|). What is left is a linear program in z::

    bound(Wb) = f(Wb) - <Gam, Wb> + min { sum_j z_j (b - g_j) : z in [0,1], sum z <= k,
                                                                    cost . z <= budget }

which is a valid lower bound on the MIP for *every* Wb, and equals the relaxation's value at its
optimum (there ``-Gam`` is a subgradient of the penalty). The LP is solved in closed form without a
budget (take the k most negative ``b - g_j``) and by HiGHS with one; in both cases the value used
is the Lagrangian ``sum_j min(0, b - g_j + mu + nu*cost_j) - mu*k - nu*budget`` at the LP's
multipliers ``(mu, nu) >= 0``, a lower bound for any multipliers, so the solver's tolerance cannot
make it invalid. Fixing groups (a branch-and-bound node) keeps the same form: a group fixed out
has ``W_j = 0`` and no term, a group fixed in has ``z_j = 1`` and contributes ``b - g_j``, and the
LP runs over the free groups with what is left of k and the budget.

**The first-order method** that moves ``Wb`` towards the relaxation's optimum is accelerated
proximal gradient (FISTA with adaptive restart) on ``f(W) + sum_j h_j(W_j)``, where for a free
group ``h_j`` is z projected out of ``a||w||^2/z + (b + mu + nu*cost_j)*z`` (the reverse-Huber
penalty, prox in closed form: docs/mathematics.md §3) at the current LP multipliers, for a fixed-in
group ``a||w||^2 + b``; the box is imposed by clipping. One iteration costs a product
``W G_UU`` (out x m x m, m the free and fixed-in columns); the bound is evaluated every few
iterations and the best one is kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mip._problem import LayerProblem

__all__ = ["PerspectiveBound", "bounds_at", "perspective_bound"]


@dataclass(frozen=True, eq=False)
class PerspectiveBound:
    """``value``: the best lower bound found (``inf`` for an infeasible node); ``weight``:
    (out, d) the last iterate (a warm start for a child node); ``iterations``; ``seconds``."""

    value: float
    weight: NDArray[np.float64]
    iterations: int
    seconds: float


def _psi(x: NDArray, a: float, M: float) -> NDArray:
    ax = np.abs(x)
    if a <= 0:
        return M * ax
    return np.where(ax <= 2 * a * M, x * x / (4 * a), M * ax - a * M * M)


def _lp(values: NDArray, cost: NDArray | None, slots: float, budget: float | None):
    """Lower bound on ``min sum z_j v_j`` over z in [0,1], sum z <= slots, cost.z <= budget, and
    the multipliers (mu, nu) it was evaluated at."""
    if values.size == 0:
        return 0.0, 0.0, 0.0
    if cost is None:
        order = np.sort(values)
        k = int(min(max(slots, 0), values.size))
        mu = max(0.0, -float(order[k])) if k < values.size else 0.0
        return float(np.sum(np.minimum(values + mu, 0.0)) - mu * slots), mu, 0.0
    from scipy.optimize import linprog

    A = np.vstack([np.ones(values.size), cost])
    res = linprog(values, A_ub=A, b_ub=[slots, budget], bounds=(0, 1), method="highs")
    if res.status == 0:
        mu, nu = (max(0.0, -float(m)) for m in res.ineqlin.marginals)
    else:  # fall back on the cardinality alone (nu = 0 is always valid)
        mu, nu = _lp(values, None, slots, None)[1], 0.0
    value = np.sum(np.minimum(values + mu + nu * cost, 0.0)) - mu * slots - nu * budget
    return float(value), mu, nu


def _group_rows(V: NDArray, n_local: int) -> NDArray:
    """The entries of each group as one row: (out, m) -> (n_local, out * g); the columns of
    V come group after group."""
    return V.reshape(V.shape[0], n_local, -1).transpose(1, 0, 2).reshape(n_local, -1)


def _from_group_rows(R: NDArray, out: int) -> NDArray:
    """The inverse of :func:`_group_rows`: (n_local, out * g) -> (out, m)."""
    return R.reshape(R.shape[0], out, -1).transpose(1, 0, 2).reshape(out, -1)


def _penalty(r: NDArray, m: NDArray, a: float, b: NDArray, M: float) -> NDArray:
    """``min_{z in [m/M, 1]} a r^2/z + b z`` per group (the boxed perspective penalty, SPR)."""
    lo = m / M
    with np.errstate(divide="ignore", invalid="ignore"):
        c_r = np.sqrt(a / np.maximum(b, 1e-300)) * r
        full = a * r * r + b
        linear = 2.0 * np.sqrt(a * np.maximum(b, 0.0)) * r
        boxed = np.where(lo > 0, a * r * r / np.maximum(lo, 1e-300) + b * lo, 0.0)
    value = np.select([r == 0, np.maximum(lo, c_r) >= 1, lo <= c_r], [0.0 * r, full, linear],
                      default=boxed)
    return np.where(m > M * (1 + 1e-12), np.inf, value)


def _project_l1(R: NDArray, radius: NDArray) -> NDArray:
    """Each row of R projected onto the l1 ball of its radius (Duchi et al. 2008)."""
    A = np.abs(R)
    inside = A.sum(axis=1) <= radius
    S = -np.sort(-A, axis=1)
    cums = np.cumsum(S, axis=1) - radius[:, None]
    idx = np.arange(1, R.shape[1] + 1)
    cond = S - cums / idx > 0
    rho = R.shape[1] - 1 - np.argmax(cond[:, ::-1], axis=1)
    theta = np.maximum(cums[np.arange(R.shape[0]), rho] / (rho + 1), 0.0)
    P = np.sign(R) * np.maximum(A - theta[:, None], 0.0)
    return np.where(inside[:, None], R, P)


def _prox(V: NDArray, a: float, b_free: NDArray, free: NDArray, t: float,
          M: float) -> NDArray:
    """An approximate prox of t*h for every group at once (V: out x m, columns group after
    group): per free group the best, by ``0.5||w - v||^2 + t*h(w)`` with the boxed penalty
    h, of three closed forms: the reverse-Huber prox (box ignored), the prox of the box term
    ``b*||w||_inf/M`` (v minus its projection on an l1 ball) shrunk for the ridge, and the
    kept-group shrink ``v/(1 + 2ta)``; fixed-in groups take the last. Any choice keeps the
    bound valid; a better one moves FISTA closer to the relaxation's optimum."""
    out, n_local = V.shape[0], b_free.size
    R = _group_rows(V, n_local)
    kept = R / (1.0 + 2.0 * t * a)
    norms = np.linalg.norm(R, axis=1)
    candidates = [kept]
    if a > 0:
        s = np.sqrt(a * b_free)
        kk = np.sqrt(b_free / a)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(norms <= 2 * t * s, 0.0,
                             np.where(norms <= kk + 2 * t * s, 1.0 - 2.0 * t * s / norms,
                                      1.0 / (1.0 + 2.0 * t * a)))
        berhu = R * np.nan_to_num(scale)[:, None]
        r, m = np.linalg.norm(berhu, axis=1), np.max(np.abs(berhu), axis=1, initial=0.0)
        if np.all(m <= M * np.minimum(1.0, np.sqrt(a / b_free) * r)):
            # the box is inactive at the reverse-Huber prox: it is the exact prox of h
            best = np.where(free[:, None], berhu, np.clip(kept, -M, M))
            return _from_group_rows(best, out)
        candidates.append(berhu)
    candidates.append((R - _project_l1(R, t * b_free / M)) / (1.0 + 2.0 * t * a))
    best, best_value = kept, np.full(n_local, np.inf)
    for C in candidates:
        C = np.clip(C, -M, M)
        value = 0.5 * np.sum((C - R) ** 2, axis=1) + t * _penalty(
            np.linalg.norm(C, axis=1), np.max(np.abs(C), axis=1, initial=0.0), a, b_free, M)
        better = free & (value < best_value)
        best = np.where(better[:, None], C, best)
        best_value = np.where(better, value, best_value)
    best = np.where(free[:, None], best, np.clip(kept, -M, M))
    return _from_group_rows(best, out)


def largest_eigenvalue(G: NDArray) -> float:
    """The largest eigenvalue of the PSD matrix G (power iteration above 64 rows, with a 10%
    margin: it only sets FISTA's step)."""
    if G.shape[0] <= 64:
        return float(np.linalg.eigvalsh(G)[-1]) if G.size else 0.0
    rng = np.random.default_rng(0)
    v = rng.standard_normal(G.shape[0])
    value = 0.0
    for _ in range(40):
        w = G @ v
        value = float(np.linalg.norm(w))
        if value == 0:
            return 0.0
        v = w / value
    return 1.1 * value  # power iteration approaches from below; the margin keeps FISTA stable


def perspective_bound(
    problem: LayerProblem,
    *,
    max_keep: int | None = None,
    fixed_in: NDArray[np.bool_] | None = None,
    fixed_out: NDArray[np.bool_] | None = None,
    start: NDArray | None = None,
    iterations: int = 200,
    deadline: float = np.inf,
    lipschitz: float | None = None,
    evaluate_every: int = 5,
    target: float = np.inf,
) -> PerspectiveBound:
    """A valid lower bound on ``problem`` (with ``max_keep`` overriding its cardinality, and the
    groups of ``fixed_in`` / ``fixed_out`` fixed), improved by FISTA for ``iterations`` steps or
    until ``deadline`` (a ``time.perf_counter()`` value) or until it reaches ``target``.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 6)); W0 = rng.standard_normal((2, 6))
    >>> p = LayerProblem.from_data(X, X @ W0.T, group_size=1, lam=0.5, alpha=0.5, M=5.0)
    >>> from mip import solve_brute_force
    >>> perspective_bound(p).value <= solve_brute_force(p).objective
    True
    """
    start_time = time.perf_counter()
    n, g, out = problem.n_groups, problem.group_size, problem.n_out
    limit = problem.max_keep if max_keep is None else int(max_keep)
    limit = n if limit is None else min(limit, n)
    fixed_in = np.zeros(n, bool) if fixed_in is None else np.asarray(fixed_in, bool)
    fixed_out = np.zeros(n, bool) if fixed_out is None else np.asarray(fixed_out, bool)
    a, b, M = problem.lam * problem.alpha, problem.lam * (1 - problem.alpha), problem.M
    cost = problem.cost
    slots = limit - int(fixed_in.sum())
    budget = None if cost is None else problem.budget - float(cost[fixed_in].sum())
    W = np.zeros((out, problem.d)) if start is None else np.array(start, dtype=np.float64)
    if slots < 0 or (budget is not None and budget < -1e-12 * max(1.0, problem.budget)):
        return PerspectiveBound(np.inf, W, 0, time.perf_counter() - start_time)
    used = ~fixed_out
    local = np.flatnonzero(used)  # the groups in play, in order
    cols = problem.group_columns(used)
    every = bool(used.all())
    G = problem.gram if every else problem.gram[np.ix_(cols, cols)]
    C = problem.xty if every else problem.xty[cols]
    total = float(problem.yty.sum())
    n_local = local.size
    group_of = np.repeat(np.arange(n_local), g)
    free_local = ~fixed_in[local]
    cost_free = None if cost is None else cost[local][free_local]
    if n_local == 0:
        return PerspectiveBound(total, W, 0, time.perf_counter() - start_time)

    def evaluate(Wu: NDArray, WG: NDArray) -> tuple[float, float, float, NDArray]:
        f = float(np.sum(Wu * WG) - 2.0 * np.sum(Wu * C.T) + total)
        gam = 2.0 * (WG - C.T)
        base = f - float(np.sum(gam * Wu))
        per_group = np.bincount(group_of, weights=np.sum(_psi(gam, a, M), axis=0),
                                minlength=n_local)
        values = b - per_group
        fixed = float(np.sum(values[~free_local]))
        lp, mu, nu = _lp(values[free_local], cost_free, slots, budget)
        return base + fixed + lp, mu, nu, gam

    Wu = W[:, cols]
    if start is not None:
        Wu = Wu * (~fixed_out[np.arange(problem.d) // g])[cols][None, :]
    L = 2.0 * (largest_eigenvalue(G) if lipschitz is None else lipschitz)
    t = 1.0 / max(L, 1e-300)
    WG = Wu @ G
    best, mu_lp, nu, _ = evaluate(Wu, WG)
    b_free = np.full(n_local, b)
    done = 0

    def fista(Wu: NDArray, WG: NDArray, mu: float, nu: float, steps: int):
        """``steps`` FISTA iterations at fixed multipliers; returns the iterate, its product
        with G and the indicator sum ``sum_j z_j`` of the free groups there."""
        nonlocal best, done
        b_free[:] = b + mu + (0.0 if cost is None else nu * cost[local])
        Y, YG, theta, previous = Wu, WG, 1.0, Wu
        for step_index in range(1, steps + 1):
            if best >= target or time.perf_counter() > deadline or done >= iterations:
                break
            done += 1
            step = Y - t * 2.0 * (YG - C.T)
            new = _prox(step, a, b_free, free_local, t, M)
            new_G = new @ G
            theta_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * theta * theta))
            if np.sum((Y - new) * (new - previous)) > 0:  # adaptive restart (O'Donoghue-Candes)
                theta_next, momentum = 1.0, 0.0
            else:
                momentum = (theta - 1.0) / theta_next
            Y = new + momentum * (new - previous)
            YG = new_G + momentum * (new_G - WG) if momentum else new_G
            previous, WG, theta = new, new_G, theta_next
            if step_index % evaluate_every == 0 or step_index == steps:
                best = max(best, evaluate(new, new_G)[0])
        rows = _group_rows(previous, n_local)
        norms = np.linalg.norm(rows, axis=1)
        z = np.minimum(1.0, np.maximum(np.max(np.abs(rows), axis=1, initial=0.0) / M,
                                       np.sqrt(a / np.maximum(b_free, 1e-300)) * norms))
        return previous, WG, float(np.sum(z[free_local]))

    # The cardinality multiplier by bisection on the dual's slope sum_j z_j - k (a concave
    # one-dimensional dual); the budget's multiplier follows the LP's, damped.
    inner = max(20, min(200, iterations // 8))
    Wu, WG, used_slots = fista(Wu, WG, 0.0, nu, inner)
    lo, hi = 0.0, max(mu_lp, 1e-12)
    if used_slots > slots:
        while done < iterations and best < target and time.perf_counter() < deadline:
            Wu, WG, used_slots = fista(Wu, WG, hi, nu, inner)
            if used_slots <= slots:
                break
            lo, hi = hi, 2.0 * hi
        while done < iterations and best < target and time.perf_counter() < deadline:
            mu = 0.5 * (lo + hi)
            Wu, WG, used_slots = fista(Wu, WG, mu, nu, inner)
            if cost is not None:
                nu = 0.8 * nu + 0.2 * evaluate(Wu, WG)[2]
            lo, hi = (mu, hi) if used_slots > slots else (lo, mu)
            if hi - lo <= 1e-9 * max(hi, 1e-300):
                break
    elif cost is not None:
        while done < iterations and best < target and time.perf_counter() < deadline:
            nu = 0.8 * nu + 0.2 * evaluate(Wu, WG)[2]
            Wu, WG, used_slots = fista(Wu, WG, 0.0, nu, inner)
    else:
        Wu, WG, used_slots = fista(Wu, WG, 0.0, nu, iterations)
    previous = Wu
    W = np.zeros((out, problem.d))
    W[:, cols] = previous
    return PerspectiveBound(best, W, done, time.perf_counter() - start_time)


def bounds_at(problem: LayerProblem, W: NDArray, ks: NDArray) -> NDArray[np.float64]:
    """The bound of the module docstring at one point ``W`` (out, d) for every cardinality in
    ``ks`` at once (no fixings): one gradient, then prefix sums of the sorted ``b - g_j`` (a
    linear program per k when there is a budget). Valid for any ``W``.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 6)); W0 = rng.standard_normal((2, 6))
    >>> p = LayerProblem.from_data(X, X @ W0.T, group_size=1, lam=0.5, alpha=0.5, M=5.0)
    >>> b = bounds_at(p, W0, np.arange(1, 7))
    >>> bool(np.all(np.diff(b) <= 1e-12))   # fewer groups allowed: a larger bound
    True
    """
    a, b, M = problem.lam * problem.alpha, problem.lam * (1 - problem.alpha), problem.M
    W = np.asarray(W, dtype=np.float64)
    WG = W @ problem.gram
    f = float(np.sum(W * WG) - 2.0 * np.sum(W * problem.xty.T) + problem.yty.sum())
    gam = 2.0 * (WG - problem.xty.T)
    base = f - float(np.sum(gam * W))
    group_of = np.arange(problem.d) // problem.group_size
    values = b - np.bincount(group_of, weights=np.sum(_psi(gam, a, M), axis=0),
                             minlength=problem.n_groups)
    ks = np.asarray(ks, dtype=np.intp)
    if problem.cost is None:
        prefix = np.concatenate([[0.0], np.cumsum(np.minimum(np.sort(values), 0.0))])
        return base + prefix[np.minimum(ks, problem.n_groups)]
    return np.array([base + _lp(values, problem.cost, int(k), problem.budget)[0] for k in ks])
