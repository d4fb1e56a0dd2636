"""Continuous relaxations of the layer MIP (z in [0, 1]), each a lower bound on the optimum.

* big-M: ``loss(W) + lam*sum_j [alpha*||W_j||^2 + (1-alpha)*z_j]`` with ``|W| <= M z``: a convex
  QP, solved by HiGHS.
* perspective: the ridge term replaced by its perspective ``alpha*||W_j||^2 / z_j`` (the convex
  hull of each group's on/off set), solved exactly as a conic program by cvxpy
  (``quad_over_lin``). Without cardinality or budget constraints, projecting z out group by group
  gives ``loss(W) + lam*sum_j SPR(W_j)`` (docs/mathematics.md §3): the relaxation *is*
  SPR-regularised least squares.
* perspective LP: the same relaxation by cutting planes with HiGHS LPs (tangent cuts for the loss,
  perspective cuts for the ridge terms), converging to the conic value from below.

Each returns a :class:`Relaxation` with ``value``, ``weight`` (out, d) and ``z`` (n_groups,).
:data:`RELAXATIONS` maps their names (``"big_m"``, ``"perspective"``, ``"perspective_lp"``) to
the functions, which all accept ``(problem, *, time_limit=...)``; :func:`relaxation` solves one by
name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mip._extended_model import ExtendedModel
from mip._layer_model import layer_model
from mip._problem import LayerProblem
from mip._solver import highs, require
from mip._support_fit import fit_support

__all__ = [
    "RELAXATIONS",
    "Relaxation",
    "big_m_relaxation",
    "perspective_lp_relaxation",
    "perspective_relaxation",
    "relaxation",
]


@dataclass(frozen=True, eq=False)
class Relaxation:
    value: float
    weight: NDArray[np.float64]
    z: NDArray[np.float64]
    seconds: float
    iterations: int = 1
    converged: bool = True  # False: a cutting-plane bound stopped by its iteration or time limit


def perspective_objective(problem: LayerProblem, W: NDArray, z: NDArray) -> float:
    """``loss(W) + lam*sum_j [alpha*||W_j||^2/z_j + (1-alpha)*z_j]`` (0/0 = 0)."""
    blocks = (W * W).reshape(problem.n_out, problem.n_groups, problem.group_size)
    norms = np.sum(blocks, axis=(0, 2))
    ratio = np.where(norms > 0, norms / np.maximum(z, 1e-300), 0.0)
    a = problem.alpha
    return problem.loss(W) + problem.lam * float(np.sum(a * ratio + (1 - a) * z))


def big_m_relaxation(problem: LayerProblem, time_limit: float = 60.0) -> Relaxation:
    """The big-M relaxation, a convex QP solved by HiGHS: :func:`mip.layer_model` with
    ``z`` in [0, 1]::

        min  sum_i [w_i^T (gram + lam*alpha*I) w_i - 2 xty_i^T w_i + yty_i] + lam*(1-alpha)*sum z
        s.t. |w_ie| <= M*z_j,  0 <= z <= 1,  cardinality and budget as given.
    """
    start = time.perf_counter()
    out, d = problem.n_out, problem.d
    m = layer_model(problem, binary=False)
    solver = highs()
    solver.config.time_limit = time_limit
    solver.config.raise_exception_on_nonoptimal_result = False
    results = solver.solve(m)
    if results.termination_condition.name != "convergenceCriteriaSatisfied":
        raise RuntimeError(
            f"HiGHS did not solve the big-M relaxation ({results.termination_condition.name})"
        )
    W = np.array([[m.w[i, e].value for e in range(d)] for i in range(out)])
    z = np.array([m.z[j].value for j in m.J])
    return Relaxation(float(results.incumbent_objective), W, z, time.perf_counter() - start)


def perspective_relaxation(problem: LayerProblem, time_limit: float = 60.0) -> Relaxation:
    """The perspective relaxation solved as a conic program by cvxpy (Clarabel, stopped after
    ``time_limit`` seconds: RuntimeError then)."""
    cp = require("cvxpy", "cvxpy", "the perspective relaxation")
    start = time.perf_counter()
    A, B, offset = problem.factors
    n, k, out = problem.n_groups, problem.group_size, problem.n_out
    W = cp.Variable((out, problem.d))
    z = cp.Variable(n)
    scale = max(1.0, float(np.sum(B * B)))  # keeps the conic solver's tolerances relative
    loss = cp.sum_squares(A @ W.T - B) + float(offset.sum())
    a = problem.alpha
    ridge = sum(cp.quad_over_lin(W[:, j * k : (j + 1) * k], z[j]) for j in range(n))
    objective = loss + problem.lam * (a * ridge + (1 - a) * cp.sum(z))
    bound = problem.M * np.kron(np.eye(n), np.ones((1, k)))  # (n, d): column e -> M * z_j(e)
    box = np.ones((out, 1)) @ cp.reshape(z @ bound, (1, -1), order="C")
    constraints = [z >= 0, z <= 1, cp.abs(W) <= box]
    if problem.max_keep is not None:
        constraints.append(cp.sum(z) <= problem.max_keep)
    if problem.cost is not None:
        constraints.append(problem.cost @ z <= problem.budget)
    program = cp.Problem(cp.Minimize(objective / scale), constraints)
    program.solve(solver=cp.CLARABEL, tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9,
                  time_limit=float(time_limit))
    if program.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"cvxpy could not solve the perspective relaxation ({program.status})")
    W_value = np.clip(W.value, -problem.M, problem.M)
    z_value = np.clip(z.value, 0.0, 1.0)
    return Relaxation(float(program.value) * scale, W_value, z_value, time.perf_counter() - start)


def perspective_lp_relaxation(
    problem: LayerProblem, tol: float = 1e-6, max_iterations: int = 500, time_limit: float = 60.0
) -> Relaxation:
    """The perspective relaxation by cutting planes over HiGHS LPs, to relative accuracy ``tol``.

    Returns the last LP value (a valid lower bound, within ``tol`` of the relaxation when it
    converged) and the LP's point.
    """
    start = time.perf_counter()
    model = ExtendedModel(problem)
    model.add_cuts_at(fit_support(problem, np.ones(problem.n_groups, bool)))
    value, point, iteration, converged = -np.inf, None, 0, False
    for iteration in range(1, max_iterations + 1):  # noqa: B007 (iteration is reported)
        remaining = time_limit - (time.perf_counter() - start)
        status, value = model.solve(max(remaining, 1e-3))
        if status != "optimal":
            raise RuntimeError(f"HiGHS did not solve the perspective LP ({status})")
        point = model.point()
        W, z = point["w"], point["z"]
        true_value = perspective_objective(problem, W, z)
        converged = true_value - value <= tol * max(abs(true_value), 1e-12)
        if converged or remaining <= 0:
            break
        scale = tol * max(abs(true_value), 1e-12) * 1e-3
        s = point["s"]
        model.add_loss_cuts(s, point["eta"] < s * s - scale)
        zc = z[np.arange(problem.d) // problem.group_size]
        ratio = np.where(zc > 1e-12, W / np.maximum(zc, 1e-12), 0.0)  # the cut is tight on the
        ridge = problem.alpha * W * ratio  # ray w/z = ratio, where v must reach alpha*w^2/z
        model.add_ridge_cuts(ratio, point["v"] < ridge - scale)
    return Relaxation(value, point["w"], point["z"], time.perf_counter() - start, iteration,
                      converged)


RELAXATIONS: dict[str, Callable[..., Relaxation]] = {
    "big_m": big_m_relaxation,
    "perspective": perspective_relaxation,
    "perspective_lp": perspective_lp_relaxation,
}


def relaxation(problem: LayerProblem, name: str, *, time_limit: float = 60.0) -> Relaxation:
    """The relaxation ``name`` (a key of :data:`RELAXATIONS`) of ``problem``, its solver stopped
    after ``time_limit`` seconds (RuntimeError where it gives up without a bound).

    >>> from mip._problem import LayerProblem
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((40, 4)); W0 = rng.standard_normal((2, 4))
    >>> p = LayerProblem.from_data(X, X @ W0.T, group_size=1, lam=0.5, alpha=0.5, M=5.0)
    >>> r = relaxation(p, "big_m", time_limit=10)
    >>> r.value <= relaxation(p, "perspective_lp", time_limit=10).value + 1e-6
    True
    """
    if name not in RELAXATIONS:
        raise ValueError(f"relaxation must be one of {list(RELAXATIONS)}; got {name!r}")
    return RELAXATIONS[name](problem, time_limit=time_limit)
