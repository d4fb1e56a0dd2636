"""Reference solvers for experiments/bench_mip.py, run on the same :class:`mip.LayerProblem`
instances as our own solvers and returning :class:`mip.MIPResult` like them.

    solve_gurobi    the MIQP in Gurobi (package ``gurobipy``): optimum, bound and gap
    solve_osscar    OSSCAR-style local search of swaps (Meng et al., ICML 2024), the plain
                    "swap search from the magnitude support" baseline: no bound
    solve_abess     best-subset selection by the ``abess`` library (splicing): no bound

Every result's ``objective`` is recomputed with ``problem.objective`` on the returned weight,
``seconds`` is the wall time of the whole call (imports and model building included). A
reference that cannot take an instance (package missing, the free Gurobi licence refusing the
model size, a constraint the method cannot express) raises :class:`ReferenceUnavailable`, so
the bench can record why instead of a number.

The free (pip) Gurobi licence admits 2000 variables and 2000 linear constraints, but a model
with quadratic terms at most 200 variables (measured with gurobipy 13.0.3: 200 pass, 201 fail
with error 10010). The MIQP here has ``n_out*d + n_groups`` variables, so under that licence
Linear layers with 4 outputs fit up to 40 groups and 3x3 convs with 2 outputs up to 10 groups.
"""

from __future__ import annotations

import time

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import solve_triangular

import mip
from mip._result import relative_gap

__all__ = ["ReferenceUnavailable", "solve_abess", "solve_gurobi", "solve_osscar"]


class ReferenceUnavailable(RuntimeError):
    """This reference cannot solve this instance here; ``reason`` says why (for the bench)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _check_k(problem: mip.LayerProblem, k: int) -> int:
    k = int(k)
    if not 0 <= k <= problem.n_groups:
        raise ValueError(f"k must lie in [0, n_groups = {problem.n_groups}]; got {k}")
    if problem.max_keep is not None and k > problem.max_keep:
        raise ValueError(f"k = {k} exceeds the problem's max_keep = {problem.max_keep}")
    return k


def _no_budget(problem: mip.LayerProblem, method: str) -> None:
    if problem.cost is not None:
        raise ReferenceUnavailable(
            f"{method} handles a cardinality constraint only, not the cost/budget constraint"
        )


def _heuristic_result(problem, keep, W, start, iterations, evaluated, history) -> mip.MIPResult:
    value = problem.objective(W, keep)
    return mip.MIPResult(keep, W, value, -np.inf, relative_gap(value, -np.inf), "time_limit",
                         iterations, time.perf_counter() - start, history, evaluated)


# ---- Gurobi ------------------------------------------------------------------------------------
def solve_gurobi(problem: mip.LayerProblem, time_limit: float = 60.0,
                 mip_gap: float = 1e-4) -> mip.MIPResult:
    """The MIQP in Gurobi, one thread, written compactly with the Gram matrix::

        min  sum_i [w_i^T (gram + lam*alpha*I) w_i - 2 xty_i^T w_i + yty_i] + lam*(1-alpha)*sum z
        s.t. -M z_j <= w_ie <= M z_j  (e in group j),  -M <= w <= M,  z binary,
             sum z <= max_keep,  cost^T z <= budget   (when given)

    ``weight`` is Gurobi's incumbent, clipped to the box and zeroed off its support (as for
    SCIP); ``bound`` is Gurobi's ``ObjBound`` (the constant sum(yty) is in the objective, so
    Gurobi's relative gap is the gap of the true objective); ``iterations`` are B&B nodes.

    Raises:
        ReferenceUnavailable: gurobipy is not installed, no licence is usable, or the licence
            refuses the model size.
    """
    start = time.perf_counter()
    try:
        import gurobipy as gp
        from gurobipy import GRB
    except ImportError as err:
        raise ReferenceUnavailable(f"gurobipy is not installed ({err})") from err

    out, d, n, k, M = problem.n_out, problem.d, problem.n_groups, problem.group_size, problem.M
    lam_a = problem.lam * problem.alpha
    count = problem.lam * (1 - problem.alpha)
    Q = problem.gram + lam_a * np.eye(d)
    columns_group = np.repeat(np.arange(n), k)
    with gp.Env(empty=True) as env:
        env.setParam("OutputFlag", 0)  # also hides the licence banner
        try:
            env.start()
        except gp.GurobiError as err:
            raise ReferenceUnavailable(f"no usable Gurobi licence ({err})") from err
        with gp.Model("layer_pruning", env=env) as model:
            model.Params.Threads = 1
            model.Params.TimeLimit = float(time_limit)
            model.Params.MIPGap = float(mip_gap)
            W = model.addMVar((out, d), lb=-M, ub=M, name="w")
            z = model.addMVar(n, vtype=GRB.BINARY, name="z")
            model.addConstr(W <= M * z[columns_group], name="big_m_upper")
            model.addConstr(-W <= M * z[columns_group], name="big_m_lower")
            if problem.max_keep is not None:
                model.addConstr(z.sum() <= problem.max_keep, name="cardinality")
            if problem.cost is not None:
                model.addConstr(problem.cost @ z <= problem.budget, name="budget")
            quadratic = gp.quicksum(W[i, :] @ Q @ W[i, :] for i in range(out))
            linear = -2.0 * (problem.xty.T * W).sum()
            model.setObjective(quadratic + linear + float(problem.yty.sum()) + count * z.sum(),
                               GRB.MINIMIZE)
            try:
                model.optimize()
            except gp.GurobiError as err:
                if err.errno == GRB.Error.SIZE_LIMIT_EXCEEDED or "size-limited" in str(err):
                    raise ReferenceUnavailable(
                        f"not admitted by the free Gurobi licence: {model.NumVars} variables "
                        f"({out}x{d} weights + {n} binaries), {model.NumConstrs} constraints; "
                        f"a quadratic model may have at most 200 variables ({err})"
                    ) from err
                raise
            code = model.Status
            nodes = int(model.NodeCount)
            if code in (GRB.INFEASIBLE, GRB.INF_OR_UNBD):
                nan = np.full((out, d), np.nan)
                return mip.MIPResult(np.zeros(n, bool), nan, np.inf, np.inf, np.inf,
                                     "infeasible", nodes, time.perf_counter() - start)
            bound = float(model.ObjBound)
            if model.SolCount == 0:
                nan = np.full((out, d), np.nan)
                return mip.MIPResult(np.zeros(n, bool), nan, np.inf, bound, np.inf,
                                     "time_limit", nodes, time.perf_counter() - start)
            keep = np.asarray(z.X) > 0.5
            weight = np.asarray(W.X, dtype=np.float64)
    weight = np.clip(weight, -M, M) * problem.group_columns(keep)[None, :]
    value = problem.objective(weight, keep)
    status = "optimal" if code == GRB.OPTIMAL else "time_limit"
    return mip.MIPResult(keep, weight, value, bound, relative_gap(value, bound), status, nodes,
                         time.perf_counter() - start)


# ---- OSSCAR-style swap search ------------------------------------------------------------------
def _start_support(problem: mip.LayerProblem, k: int, ridge: float) -> NDArray[np.bool_]:
    """The k groups of largest Frobenius norm in the (ridge) least-squares fit on every group."""
    if ridge > 0:
        W = np.linalg.solve(problem.gram + ridge * np.eye(problem.d), problem.xty).T
    else:
        W = np.linalg.lstsq(problem.gram, problem.xty, rcond=None)[0].T
    norms = np.sum((W * W).reshape(problem.n_out, problem.n_groups, problem.group_size),
                   axis=(0, 2))
    keep = np.zeros(problem.n_groups, bool)
    keep[np.argsort(-norms, kind="stable")[:k]] = True
    return keep


def _explained(gram: NDArray, xty: NDArray, cols: NDArray, ridge: float) -> NDArray:
    """``tr(xty_S^T (gram_SS + ridge I)^{-1} xty_S)`` for a batch of column sets ``cols`` (b, s):
    the loss decrease of the ridge fit on S, by one batched Cholesky factorisation per call."""
    if cols.shape[1] == 0:
        return np.zeros(cols.shape[0])
    G = gram[cols[:, :, None], cols[:, None, :]] + ridge * np.eye(cols.shape[1])
    b = xty[cols]  # (batch, s, out)
    try:
        L = np.linalg.cholesky(G)
    except np.linalg.LinAlgError:  # a singular block without ridge: least squares, per candidate
        values = np.empty(cols.shape[0])
        for c in range(cols.shape[0]):
            x = np.linalg.lstsq(G[c], b[c], rcond=None)[0]
            values[c] = np.sum(b[c] * x)
        return values
    # L^{-1} b: scipy's batched triangular solve loops over the batch in Python, numpy's batched
    # general solve does not; the latter is faster for small blocks (measured), the former beyond
    if cols.shape[1] > 48:
        V = solve_triangular(L, b, lower=True, check_finite=False)
    else:
        V = np.linalg.solve(L, b)
    return np.sum(V * V, axis=(1, 2))


def solve_osscar(problem: mip.LayerProblem, k: int, time_limit: float = 60.0,
                 start: ArrayLike | None = None) -> mip.MIPResult:
    """OSSCAR-style local search over supports of size k (the plain baseline).

    The search minimises the layer's ridge least-squares loss over supports (no box; ridge
    ``lam*alpha``): every candidate support is scored by a fresh Cholesky factorisation of its
    Gram block (``tr(xty_S^T (gram_SS + lam*alpha I)^{-1} xty_S)``, batched over the groups
    swapped in for one group swapped out), with no low-rank updates. It starts from the k groups
    of largest weight norm in the least-squares fit on all groups (or from ``start``, a bool mask
    of n_groups or group indices, whose size is kept). Each sweep evaluates every exchange of one
    kept with one dropped group and accepts the **best** improving swap (best improvement);
    it stops when no swap improves the score by more than 1e-12 relative, or when time is up
    (checked after each chunk of at most ~256 MB of Gram blocks).

    The returned weight is the exact box-constrained fit :func:`mip.fit_support` on the final
    support; if that is worse in the true objective than the start's (possible only when the
    box binds), the start is returned, so the result is never worse than its start.
    ``bound`` is -inf (no certificate) and ``status`` is ``"time_limit"``.
    ``iterations``: sweeps; ``supports_evaluated``: candidates scored;
    ``history``: per sweep ``{"iteration", "ridge_objective", "swap", "seconds"}``.

    Raises:
        ReferenceUnavailable: the problem has a cost/budget constraint.
    """
    t0 = time.perf_counter()
    k = _check_k(problem, k)
    _no_budget(problem, "OSSCAR's swap search")
    n, gsize = problem.n_groups, problem.group_size
    ridge = problem.lam * problem.alpha
    if start is None:
        keep = _start_support(problem, k, ridge)
    else:
        start = np.asarray(start)
        keep = np.zeros(n, bool)
        if start.dtype == bool:
            if start.shape != (n,):
                raise ValueError(f"start mask must have shape ({n},); got {start.shape}")
            keep[:] = start
        else:
            keep[start.astype(int)] = True
        if keep.sum() > k:
            raise ValueError(f"start keeps {int(keep.sum())} groups, more than k = {k}")
    start_keep = keep.copy()
    # a tiny jitter only where the score would otherwise need a singular block
    score_ridge = ridge if ridge > 0 else 1e-12 * max(float(np.trace(problem.gram)), 1e-300)
    offsets = np.arange(gsize)

    def columns(groups: NDArray) -> NDArray:  # (b, m) groups -> (b, m*gsize) their columns
        return (groups[..., None] * gsize + offsets).reshape(groups.shape[0], -1)

    gram, xty = problem.gram, problem.xty
    current = float(_explained(gram, xty, columns(np.flatnonzero(keep)[None]), score_ridge)[0])
    constant = float(problem.yty.sum()) + problem.lam * (1 - problem.alpha) * int(keep.sum())
    history = [{"iteration": 0, "ridge_objective": constant - current, "swap": None,
                "seconds": time.perf_counter() - t0}]
    sweeps = evaluated = 0
    timed_out = False
    while keep.any() and not keep.all() and not timed_out:
        kept, dropped = np.flatnonzero(keep), np.flatnonzero(~keep)
        best_value, best_swap = current, None
        for j in kept:
            others = kept[kept != j]
            candidates = np.column_stack([np.broadcast_to(others, (dropped.size, others.size)),
                                          dropped])
            # chunks of at most ~256 MB of Gram blocks, the clock checked after each
            chunk = max(1, 32_000_000 // max(1, candidates.shape[1] * problem.group_size) ** 2)
            values = np.full(dropped.size, -np.inf)
            for lo in range(0, dropped.size, chunk):
                values[lo:lo + chunk] = _explained(gram, xty, columns(candidates[lo:lo + chunk]),
                                                   score_ridge)
                evaluated += min(chunk, dropped.size - lo)
                if time.perf_counter() - t0 > time_limit:
                    break
            c = int(np.argmax(values))
            if values[c] > best_value:
                best_value, best_swap = float(values[c]), (int(j), int(dropped[c]))
            if time.perf_counter() - t0 > time_limit:
                timed_out = True
                break
        sweeps += 1
        if best_swap is None or best_value <= current + 1e-12 * max(abs(current), 1e-300):
            break
        keep[best_swap[0]], keep[best_swap[1]] = False, True
        current = best_value
        history.append({"iteration": sweeps, "ridge_objective": constant - current,
                        "swap": best_swap, "seconds": time.perf_counter() - t0})
    W = mip.fit_support(problem, keep)
    if not np.array_equal(keep, start_keep):
        W_start = mip.fit_support(problem, start_keep)
        if problem.objective(W_start, start_keep) < problem.objective(W, keep):
            keep, W = start_keep, W_start
    return _heuristic_result(problem, keep, W, t0, sweeps, evaluated, history)


# ---- abess -------------------------------------------------------------------------------------
def solve_abess(problem: mip.LayerProblem, k: int, time_limit: float = 60.0,
                **options) -> mip.MIPResult:
    """Best-subset selection of k groups by abess's splicing (``abess.MultiTaskRegression``).

    The outputs share one support (multi-task regression) and the ``group_size`` columns of a
    group are one abess group, so with the factors ``A, B`` of ``problem.factors`` the call
    solves (heuristically) ``min ||A W^T - B||_F^2 + lam*alpha ||W||_F^2`` over supports of k
    groups, no intercept, no normalisation (abess's ``alpha`` is exactly our ridge ``lam*alpha``;
    checked against the closed-form ridge fit). abess knows no box: the weight returned is the
    exact box-constrained fit :func:`mip.fit_support` on its support. ``bound`` is -inf,
    ``status`` ``"time_limit"``. abess has no time limit: ``time_limit`` is not enforced
    (``seconds`` reports what it took). The splicing runs with abess's default settings
    (``exchange_num=5``, ``max_iter=20``, ...) unless ``options`` (keyword arguments of
    ``MultiTaskRegression``) say otherwise; one thread.

    Raises:
        ReferenceUnavailable: abess is not installed, or the problem has a cost/budget.
    """
    t0 = time.perf_counter()
    k = _check_k(problem, k)
    _no_budget(problem, "abess")
    try:
        from abess import MultiTaskRegression
    except ImportError as err:
        raise ReferenceUnavailable(f"abess is not installed ({err})") from err
    n = problem.n_groups
    keep = np.zeros(n, bool)
    A, B, _ = problem.factors
    if k == n:
        keep[:] = True
    elif k > 0 and A.shape[0] > 0:
        model = MultiTaskRegression(
            support_size=[k], group=np.repeat(np.arange(n), problem.group_size),
            alpha=problem.lam * problem.alpha, fit_intercept=False, **{"thread": 1, **options},
        )
        model.fit(A, B, is_normal=False)
        coef = np.asarray(model.coef_).reshape(problem.d, problem.n_out)
        used = np.any(coef != 0, axis=1).reshape(n, problem.group_size).any(axis=1)
        keep[used] = True
    W = mip.fit_support(problem, keep)
    return _heuristic_result(problem, keep, W, t0, 1, 1, [])
