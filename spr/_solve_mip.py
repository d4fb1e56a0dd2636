"""``spr.solve_mip``: prune the input channels of one layer exactly (docs/mathematics.md §4).

For a layer with weight W0 and calibration inputs X, the rows of the least-squares problem are
the layer's input vectors (a Linear layer) or its unfolded input patches (a conv: batch x output
positions rows of ``in_channels * kh * kw`` entries), the targets are ``Y = rows @ W0^T``
(the layer's own outputs without bias; rows and sums from :mod:`spr._input_statistics`), and
the groups are the input channels::

    min_{W,z}  (1/N)*||rows W^T - Y||_F^2 + lam * sum_j [alpha*||W_{:,j}||^2 + (1 - alpha)*z_j]
    s.t.       |W_ij| <= M*z_j,  z_j in {0, 1},  optional sum_j z_j <= max_keep,
               sum_j cost_j*z_j <= budget

Dropping input channel j of this layer is dropping output channel j of the layer before it.
"""

from __future__ import annotations

import numbers
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

import mip
from spr._checks import check_alpha, check_nonnegative, check_positive
from spr._input_statistics import InputStatistics, layer_rows

__all__ = ["LayerSolution", "keep_curve", "layer_problem", "layer_rows", "solve_mip"]

_RELAXATION_VARIABLES = 20_000  # above this many weights the reported relaxations are skipped
_SCALE_LIMIT = 1e12  # loss energy over penalty scale above which float64 cannot resolve lam


@dataclass(frozen=True, eq=False)
class LayerSolution:
    """The result of :func:`solve_mip`.

    Attributes:
        keep: (in_channels,) bool numpy array, the kept input channels.
        weight: tensor shaped like ``layer.weight``: refit on the kept channels, zero elsewhere.
        objective: the objective at (weight, keep); ``bound``: a proven lower bound;
        gap: ``(objective - bound) / |objective|``.
        status: ``"optimal"`` (gap <= mip_gap), ``"time_limit"`` or ``"infeasible"``.
        relaxations: ``{"big_m": value, "perspective": value, ...}`` (NaN, with a warning,
            where a relaxation's solver gives up within ``time_limit``).
        iterations, seconds: master problems solved and wall time of the exact solver.
        problem: the :class:`mip.LayerProblem` (to recompute the objective or call other solvers).
        history: the exact solver's bounds per iteration.
    """

    keep: np.ndarray
    weight: Tensor
    objective: float
    bound: float
    gap: float
    status: str
    relaxations: dict[str, float]
    iterations: int
    seconds: float
    problem: mip.LayerProblem
    history: list[dict] = field(default_factory=list)


def _check_layer(layer: nn.Module) -> None:
    if isinstance(layer, nn.Linear):
        return
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise ValueError(
                f"grouped convolutions (groups={layer.groups}) are not supported: their input "
                "channels do not all feed every output; use groups=1"
            )
        if layer.padding_mode != "zeros":
            raise ValueError(f"padding_mode={layer.padding_mode!r} is not supported; use 'zeros'")
        return
    raise ValueError(
        f"solve_mip supports nn.Linear and nn.Conv2d (groups=1); got {type(layer).__name__}"
    )


def layer_problem(
    layer: nn.Linear | nn.Conv2d,
    X: Tensor,
    lam: float,
    alpha: float,
    M: float | None = None,
    max_keep: int | None = None,
    cost: np.ndarray | list[float] | None = None,
    budget: float | None = None,
    chunk_size: int = 256,
) -> mip.LayerProblem:
    """The :class:`mip.LayerProblem` of ``layer`` for inputs ``X`` (arguments as in
    :func:`solve_mip`): the statistics of the unfolded rows, accumulated in float64 over chunks
    of ``chunk_size`` inputs."""
    _check_layer(layer)
    alpha = check_alpha(alpha)
    lam = check_nonnegative("lam", lam)
    W0 = layer.weight.detach()
    if not bool(torch.isfinite(W0).all()):
        raise ValueError("the layer's weight contains NaN or infinite entries")
    W0 = W0.reshape(W0.shape[0], -1).double()
    if M is None:
        M = 2.0 * float(W0.abs().max())
        if M == 0:
            raise ValueError("the layer's weight is all zero, so M=None (2*max|W0|) gives no bound")
    M = check_positive("M", M)
    if not isinstance(X, Tensor) or X.dim() == 0 or X.shape[0] == 0:
        raise ValueError("X must be a non-empty torch.Tensor batch of inputs to the layer")
    # float64 sums over chunks of the batch: a conv's unfolded rows need not fit at once
    stats = InputStatistics(layer, layer.weight, chunk_size=chunk_size)
    stats.update(X)
    group_size = 1 if isinstance(layer, nn.Linear) else layer.kernel_size[0] * layer.kernel_size[1]
    energy = float(stats.yty[0].sum()) / stats.count  # (1/N)||Y||^2, the loss's scale
    penalty = lam * (alpha * float((W0 * W0).sum()) + (1 - alpha) * W0.shape[1] / group_size)
    if penalty > 0 and energy > _SCALE_LIMIT * penalty:
        raise ValueError(
            f"X is scaled so that the layer's outputs have energy {energy:.3g} per row against a "
            f"penalty of {penalty:.3g} at lam={lam}: the penalty is below the float64 round-off "
            "of the loss, so no solver can resolve it; scale X down (e.g. X / X.std()) or raise "
            "lam"
        )
    gram, xty, yty = (mean[0].cpu().numpy() for mean in stats.means())
    return mip.LayerProblem(
        gram, xty, yty, group_size, lam=lam, alpha=alpha, M=M, max_keep=max_keep,
        cost=None if cost is None else np.asarray(cost, float), budget=budget,
    )


def _relaxation_value(name: str, problem: mip.LayerProblem, time_limit: float) -> float:
    """A relaxation's value for the report; NaN with a warning when its solver gives up or no
    time is left (the solution does not depend on it)."""
    if time_limit <= 0:
        warnings.warn(f"solve_mip: the {name} relaxation is not reported: no time left within "
                      "time_limit", stacklevel=3)
        return float("nan")
    size = problem.n_out * problem.d
    if size > _RELAXATION_VARIABLES:
        warnings.warn(f"solve_mip: the {name} relaxation is not reported: {size} weights is "
                      f"more than the {_RELAXATION_VARIABLES} its Pyomo/cvxpy model is built for "
                      "(pass relaxations=() for wide layers)", stacklevel=3)
        return float("nan")
    try:
        return mip.relaxation(problem, name, time_limit=time_limit).value
    except RuntimeError as err:
        warnings.warn(f"solve_mip: the {name} relaxation is not reported: {err}", stacklevel=3)
        return float("nan")


def _check_max_keep(max_keep) -> None:
    if max_keep is not None and (isinstance(max_keep, bool) or not isinstance(
            max_keep, numbers.Integral)):
        raise ValueError(f"max_keep must be an int (or None for no limit); got {max_keep!r}")


def solve_mip(
    layer: nn.Linear | nn.Conv2d,
    X: Tensor,
    lam: float,
    alpha: float,
    M: float | None = None,
    max_keep: int | None = None,
    cost: np.ndarray | list[float] | None = None,
    budget: float | None = None,
    time_limit: float = 60.0,
    mip_gap: float = 1e-4,
    relaxations: tuple[str, ...] = ("big_m", "perspective"),
    progress: bool = False,
    method: str = "auto",
) -> LayerSolution:
    """Choose the input channels of ``layer`` to keep by solving the layer MIP exactly.

    Args:
        layer: ``nn.Linear`` or ``nn.Conv2d`` (any stride, padding, dilation; groups=1).
        X: a batch of inputs to the layer, (N, in) or (N, C, H, W).
        lam, alpha: the regularisation (lam >= 0, alpha in (0, 1)).
        M: the big-M bound; default ``2 * max |W0|``.
        max_keep: at most this many channels kept; cost, budget: ``sum cost_j z_j <= budget``.
        time_limit, mip_gap: stop at this wall time or relative gap.
        relaxations: which relaxation values to report (``"big_m"``, ``"perspective"``,
            ``"perspective_lp"``).
        method: passed to :func:`mip.solve_layer`: ``"auto"`` (local search, a perspective
            bound, then branch and bound on layers of up to 64 input channels: proven where it
            can be, an incumbent and a valid bound at any width), ``"branch_and_bound"``,
            ``"local_search"`` or ``"outer_approximation"``.

    ``time_limit`` covers the whole call: the solve and the relaxations reported after it (a
    relaxation with no time left is reported as NaN with a warning).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> layer = nn.Linear(6, 3)
        >>> sol = solve_mip(layer, torch.randn(64, 6), lam=0.05, alpha=0.5, max_keep=4)
        >>> sol.status, int(sol.keep.sum()) <= 4, sol.weight.shape
        ('optimal', True, torch.Size([3, 6]))
    """
    start = time.perf_counter()
    check_positive("time_limit", time_limit)
    check_nonnegative("mip_gap", mip_gap)
    _check_max_keep(max_keep)
    if method not in mip.LAYER_SOLVERS:
        raise ValueError(f"method must be one of {list(mip.LAYER_SOLVERS)}; got {method!r}")
    # reading mip.RELAXATIONS loads Pyomo: not for relaxations=()
    known = mip.RELAXATIONS if relaxations else {}
    unknown = sorted(set(relaxations) - set(known))
    if unknown:
        raise ValueError(f"relaxations: unknown {unknown}; choose from {sorted(known)}")
    problem = layer_problem(layer, X, lam, alpha, M, max_keep, cost, budget)
    left = time_limit - (time.perf_counter() - start)
    if left <= 0:
        raise TimeoutError(f"building the layer statistics used the whole time_limit={time_limit}")
    result = mip.solve_layer(problem, time_limit=left, mip_gap=mip_gap, method=method,
                             progress=progress)
    values = {}
    for name in relaxations:
        values[name] = _relaxation_value(name, problem,
                                         time_limit - (time.perf_counter() - start))
    weight = torch.from_numpy(result.weight).reshape(layer.weight.shape)
    return LayerSolution(
        keep=result.keep,
        weight=weight.to(device=layer.weight.device, dtype=layer.weight.dtype),
        objective=result.objective,
        bound=result.bound,
        gap=result.gap,
        status=result.status,
        relaxations=values,
        iterations=result.iterations,
        seconds=result.seconds,
        problem=problem,
        history=result.history,
    )


def keep_curve(
    layer: nn.Linear | nn.Conv2d,
    X: Tensor,
    ks: list[int] | np.ndarray | None = None,
    *,
    lam: float = 1e-4,
    alpha: float = 0.5,
    M: float | None = None,
    cost: np.ndarray | list[float] | None = None,
    budget: float | None = None,
    time_limit: float = 60.0,
    mip_gap: float = 1e-4,
    progress: bool = False,
) -> mip.KeepCurve:
    """For every k in ``ks`` (default 1..in_channels): the best ``k`` input channels of
    ``layer`` to keep, the reconstruction objective, a proven lower bound and the gap
    (:func:`mip.keep_curve` on :func:`layer_problem`'s statistics; ``time_limit`` for the whole
    curve). ``curve.weight(i)`` is the refit weight of ``ks[i]``, shaped (out, in*kh*kw): reshape
    it with ``.reshape(layer.weight.shape)``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> curve = keep_curve(nn.Linear(8, 4), torch.randn(128, 8), ks=[2, 4, 8], time_limit=20)
        >>> curve.ks.tolist(), bool((curve.bound <= curve.objective).all())
        ([2, 4, 8], True)
    """
    start = time.perf_counter()
    check_positive("time_limit", time_limit)
    problem = layer_problem(layer, X, lam, alpha, M, None, cost, budget)
    left = time_limit - (time.perf_counter() - start)
    if left <= 0:
        raise TimeoutError(f"building the layer statistics used the whole time_limit={time_limit}")
    return mip.keep_curve(problem, ks, time_limit=left, mip_gap=mip_gap, progress=progress)
