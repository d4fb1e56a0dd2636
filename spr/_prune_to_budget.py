"""``spr.prune_to_budget``: one-shot structured pruning to a stated size (docs/mathematics.md §6).

1. **Units**: the prunable channel groups (:func:`spr._channel_groups.channel_groups`: a conv's
   output channels with their BatchNorm and their one consumer; residual streams stay whole).
2. **Curves**: for each group, the consumer's layer problem on the dense network's inputs
   (:mod:`spr._input_statistics`), each output channel's error weighted by the scale of the
   BatchNorm after the consumer, if any (``gamma / sqrt(var + eps)``: the error the next layer
   sees); for every allowed k the best support found, its refit objective and (``method="mip"``)
   a proven bound (:mod:`spr._layer_decisions`). Costs are relative: objective over the
   consumer's output energy, so layers of any scale compare.
3. **Allocation**: the widths of least total cost within the budget, a multiple-choice knapsack
   (:mod:`spr._width_allocation`; exact sizes from :mod:`spr._budget_size`).
4. **Sequential reconstruction**: group by group in forward order, the consumer's problem again
   with its inputs from the network pruned so far and its targets from the dense network; the
   support of the allocated k is chosen and the consumer refit on it, so errors do not compound.

The plan (:class:`spr.BudgetPlan`) holds the supports and weights; :meth:`~spr.BudgetPlan.apply`
removes the channels physically and the certificate says how far each decision can be from the
best and that the budget is met (measured on the pruned network).
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor, nn

from spr._budget_plan import BudgetPlan, Certificate
from spr._budget_size import size_models
from spr._channel_groups import ChannelGroup, channel_groups
from spr._consumer_problems import dense_curves, sequential_refit
from spr._counting import count_macs, count_params
from spr._layer_decisions import METHODS
from spr._surgery import PruningError, _check_finite_state, _type_name
from spr._width_allocation import Allocation, allocate, smallest

__all__ = ["prune_to_budget", "reconstruct"]

BATCH = 256  # calibration samples per forward pass when a single tensor is given
ALLOCATIONS = ("knapsack", "uniform")


def budget_limit(name: str, value: object, dense: int) -> int | None:
    """The most the pruned model may have: a fraction of ``dense`` in (0, 1] or a count."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a fraction in (0, 1] of the dense model's or a count "
                        f"(int); got {value!r}")
    if isinstance(value, numbers.Integral):
        if value <= 0:
            raise ValueError(f"{name} must be a positive count; got {value}")
        return int(value)
    if not math.isfinite(value) or not 0 < value <= 1:
        raise ValueError(f"{name} as a float is a fraction of the dense model's {name} and must "
                         f"lie in (0, 1]; got {value} (pass an int for an absolute count)")
    return int(math.floor(value * dense))


def _batches(calibration: object) -> list[Tensor]:
    """The calibration data as a list of finite input batches."""
    if isinstance(calibration, Tensor):
        batches = list(torch.split(calibration, BATCH)) if calibration.dim() else []
    elif isinstance(calibration, Iterable) and not isinstance(calibration, (str, bytes)):
        batches = [b[0] if isinstance(b, (tuple, list)) else b for b in calibration]
    else:
        raise TypeError(f"calibration must be a tensor of inputs or an iterable of batches; got "
                        f"a {_type_name(calibration)}")
    if not batches:
        raise ValueError("calibration is empty: pass a batch of inputs (N, ...) the model takes")
    for i, batch in enumerate(batches):
        if not isinstance(batch, Tensor):
            raise TypeError(f"calibration batch {i} is a {_type_name(batch)}, not a tensor")
        if batch.is_floating_point() and not bool(torch.isfinite(batch).all()):
            raise ValueError(f"calibration batch {i} has NaN or infinite entries")
    return batches


def _check_fits(model: nn.Module, batch: Tensor) -> None:
    try:
        with torch.no_grad():
            out = model(batch)
    except Exception as err:  # the model's forward raises whatever it raises
        raise ValueError(f"the model cannot take the calibration batch of shape "
                         f"{tuple(batch.shape)}: {type(err).__name__}: {err}") from err
    if not isinstance(out, Tensor):
        raise TypeError(f"the model's forward returns a {_type_name(out)}; prune_to_budget "
                        "needs one tensor (wrap the model so that it returns its main output)")


def _options(n: int, max_options: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(1, n, min(n, max_options))).astype(np.intp))


def prune_to_budget(
    model: nn.Module,
    calibration: Tensor | Iterable,
    *,
    macs: float | int | None = None,
    params: float | int | None = None,
    example_inputs: Tensor | tuple[Tensor, ...] | None = None,
    method: str = "mip",
    refit: bool = True,
    time_limit: float = 120.0,
    max_options: int = 32,
    allocation: str = "knapsack",
    progress: bool = True,
) -> BudgetPlan:
    """Plan the structured pruning of ``model`` to at most ``macs`` MACs and/or ``params``
    parameters (module docstring); ``model`` is never edited.

    Args:
        model: a network Torch-Pruning can trace (conv / Linear / BatchNorm layers).
        calibration: inputs (N, ...) or an iterable of batches (or of ``(x, y)`` pairs).
        macs, params: the most the pruned model may have: a float in (0, 1] is a fraction of the
            dense model's, an int an absolute count. At least one.
        example_inputs: a batch of one for counting MACs per sample and tracing (default: the
            first calibration sample).
        method: the layer decisions: ``"mip"`` (certified), ``"osscar"`` or ``"magnitude"``.
        refit: refit each consumer on its kept channels (least squares), else keep its weights.
        time_limit: seconds for the layer solves (half for the curves, half for the sequential
            step, shared among the groups by size).
        max_options: at most this many widths per group (evenly spaced from 1 to full).
        allocation: ``"knapsack"`` (the widths of least total curve cost) or ``"uniform"``
            (every group keeps the same fraction, the largest that meets the budget: a
            baseline that isolates the allocation; no curves are computed).
        progress: tqdm bars.

    Returns:
        :class:`spr.BudgetPlan`: ``plan.apply(model)`` is the pruned network,
        ``plan.certificate`` its certificate.

    Raises:
        ValueError: no budget, a fraction outside (0, 1], a count <= 0, a budget below the
            smallest network allowed (named), calibration with NaN or that the model cannot take.
        PruningError: Torch-Pruning cannot trace the model (the layer named), NaN weights, or
            no prunable group.

    Example:
        >>> from spr.models import resnet20
        >>> net = resnet20(in_channels=1).eval()
        >>> plan = prune_to_budget(net, torch.randn(32, 1, 28, 28), macs=0.5, method="magnitude",
        ...                        progress=False)
        >>> small = plan.apply(net)
        >>> count_macs(small, torch.zeros(1, 1, 28, 28)) <= 0.5 * count_macs(net, torch.zeros(
        ...     1, 1, 28, 28)), plan.certificate.budget["met"]
        (True, True)
    """
    started = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}")
    if not isinstance(refit, bool):
        raise TypeError(f"refit must be True or False; got {refit!r}")
    if isinstance(time_limit, bool) or not isinstance(time_limit, numbers.Real) or not (
            time_limit > 0 and math.isfinite(time_limit)):
        raise ValueError(f"time_limit must be a positive number of seconds; got {time_limit!r}")
    if isinstance(max_options, bool) or not isinstance(max_options, int) or max_options < 2:
        raise ValueError(f"max_options must be an int >= 2; got {max_options!r}")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {list(ALLOCATIONS)}; got {allocation!r}")
    if macs is None and params is None:
        raise ValueError("state a budget: macs=... and/or params=... (a fraction in (0, 1] of the "
                         "dense model's, or an absolute count)")
    batches, dense, example, groups, kept_whole = _prepare(model, calibration, example_inputs)
    ks = [_options(g.channels, max_options) for g in groups]
    limits, resources = _limits(dense, groups, example, macs, params, ks)
    sizes, caps = [m for _, m, _ in resources], [r for _, _, r in resources]
    curve_rows: list[dict] = []
    with torch.no_grad():
        if allocation == "uniform":
            chosen, global_bound = _uniform(groups, sizes, caps), math.nan
        else:
            curves, problems = dense_curves(dense, groups, batches, ks, method, refit,
                                            0.5 * time_limit, progress)
            energy = [max(e, 1e-300) for _, _, e in problems]  # relative costs compare layers
            costs = [c.objective / e for c, e in zip(curves, energy, strict=True)]
            bounds = [c.bound / e for c, e in zip(curves, energy, strict=True)]
            chosen = allocate(costs, ks, sizes, caps, time_limit=max(10.0, 0.1 * time_limit))
            global_bound = _global_bound(bounds, ks, sizes, caps, chosen)
            curve_rows = [{"ks": k.tolist(), "cost": c.tolist(), "bound": b.tolist()}
                          for k, c, b in zip(ks, costs, bounds, strict=True)]
        keep, weights, rows = sequential_refit(dense, groups, batches, chosen.widths, method,
                                               refit, 0.5 * time_limit, progress)
    knapsack = {"objective": chosen.objective, "bound": chosen.bound, "gap": chosen.gap,
                "status": chosen.status, "sizes": chosen.sizes, "global_bound": global_bound}
    plan = _finish(model, groups, kept_whole, keep, weights, rows, knapsack, limits, example,
                   method, refit, started)
    return replace(plan, curves=curve_rows)


def _prepare(model: nn.Module, calibration, example_inputs):
    """Validated calibration batches, the dense copy (eval), the example and the groups."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got a {_type_name(model)}")
    batches = _batches(calibration)
    _check_finite_state(model)
    dense = copy.deepcopy(model).eval()
    _check_fits(dense, batches[0])
    example = (batches[0][:1],) if example_inputs is None else (
        example_inputs if isinstance(example_inputs, tuple) else (example_inputs,))
    groups, kept_whole = channel_groups(dense, example)
    if not groups:
        raise PruningError(f"{type(model).__name__} has no prunable channel group; kept whole: "
                           + "; ".join(f"{k.name} ({k.reason})" for k in kept_whole))
    return batches, dense, example, groups, kept_whole


def _limits(dense, groups, example, macs, params, ks):
    """The limits (``{"macs": int | None, "params": int | None}``) and the constrained resources
    ``[(name, SizeModel, limit)]``; ValueError when a limit is below the smallest network."""
    size_macs, size_params = size_models(dense, groups, example)
    dense_macs, dense_params = count_macs(dense, example), count_params(dense)
    if size_macs.size([g.channels for g in groups]) != dense_macs:
        raise PruningError("the MAC model of the prunable groups does not reproduce the dense "
                           f"count {dense_macs:,}; please report the architecture")
    limits = {"macs": budget_limit("macs", macs, dense_macs),
              "params": budget_limit("params", params, dense_params)}
    resources = [(name, model_, limits[name]) for name, model_ in
                 (("macs", size_macs), ("params", size_params)) if limits[name] is not None]
    low = smallest(ks, [m for _, m, _ in resources])
    for (name, _, limit), value in zip(resources, low, strict=True):
        if limit < value:
            dense_value = dense_macs if name == "macs" else dense_params
            raise ValueError(
                f"{name}={limit:,} is below {value:,.0f} ({value / dense_value:.1%} of the dense "
                f"{dense_value:,}), the {name} of the smallest network allowed: one channel in "
                f"each of the {len(groups)} prunable groups, the residual streams and other "
                "groups kept whole; raise the budget")
    return limits, resources


def check_budget(model: nn.Module, example_inputs: Tensor | tuple[Tensor, ...],
                 macs: float | int | None = None, params: float | int | None = None) -> None:
    """The checks :func:`prune_to_budget` makes of a budget, before any calibration (so a run
    can refuse a budget before it trains): ValueError when it is malformed or below the smallest
    network ``model``'s architecture allows."""
    example = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    dense = copy.deepcopy(model).eval()
    groups, _ = channel_groups(dense, example)
    if not groups:
        raise PruningError(f"{type(model).__name__} has no prunable channel group")
    _limits(dense, groups, example, macs, params, [np.array([1, g.channels]) for g in groups])


def _finish(model, groups, kept_whole, keep, weights, rows, knapsack, limits, example, method,
            refit, started) -> BudgetPlan:
    """The plan with its certificate: the budget measured on the pruned network."""
    budget = {"macs_limit": limits["macs"], "params_limit": limits["params"],
              "macs_dense": count_macs(model, example), "params_dense": count_params(model)}
    certificate = Certificate(rows, knapsack, budget, method, refit, 0.0)
    plan = BudgetPlan(groups, kept_whole, keep, weights, certificate, example)
    pruned = plan.apply(model)
    measured = {"macs": count_macs(pruned, example), "params": count_params(pruned)}
    met = all(limits[k] is None or measured[k] <= limits[k] for k in measured)
    if not met:  # the size model is exact for the units it accepts: this is a bug
        raise PruningError(f"the pruned model has {measured} against the limits {limits}: the "
                           "size model does not describe this network; please report it")
    certificate = replace(certificate, budget={**budget, **measured, "met": met},
                          seconds=time.perf_counter() - started)
    return replace(plan, certificate=certificate)


def reconstruct(
    model: nn.Module,
    calibration: Tensor | Iterable,
    keep: dict[str, Tensor],
    *,
    refit: bool = True,
    example_inputs: Tensor | tuple[Tensor, ...] | None = None,
    progress: bool = True,
) -> BudgetPlan:
    """The sequential reconstruction alone, for supports chosen elsewhere (another pruner's):
    ``keep`` maps a prunable group's producer name to the (channels,) bool mask of the channels
    it keeps (groups not named keep all); every consumer is refit in forward order on the
    network pruned so far (``refit=False``: only masked). The certificate has no knapsack (NaN)
    and no limits.

    >>> from spr.models import resnet20
    >>> net = resnet20(in_channels=1).eval()
    >>> mask_ = torch.arange(16) < 8
    >>> plan = reconstruct(net, torch.randn(16, 1, 28, 28), {"layer1.0.conv1": mask_},
    ...                    progress=False)
    >>> plan.apply(net).layer1[0].conv1.out_channels
    8
    """
    started = time.perf_counter()
    if not isinstance(refit, bool):
        raise TypeError(f"refit must be True or False; got {refit!r}")
    batches, dense, example, groups, kept_whole = _prepare(model, calibration, example_inputs)
    names = {g.name: g for g in groups}
    unknown = sorted(set(keep) - set(names))
    if unknown:
        raise ValueError(f"keep names {unknown}, which are not prunable groups; the prunable "
                         f"groups are {sorted(names)}")
    given = {}
    for name, group in names.items():
        mask_ = torch.as_tensor(keep.get(name, torch.ones(group.channels, dtype=torch.bool)))
        if mask_.shape != (group.channels,) or mask_.dtype != torch.bool or not mask_.any():
            raise ValueError(f"keep[{name!r}] must be a ({group.channels},) bool mask with at "
                             f"least one True; got {tuple(mask_.shape)} {mask_.dtype}")
        given[name] = mask_.cpu().numpy()
    widths = [int(given[g.name].sum()) for g in groups]
    with torch.no_grad():
        kept, weights, rows = sequential_refit(dense, groups, batches, widths, "given", refit, 1.0,
                                          progress, given)
    nan = math.nan
    knapsack = {"objective": nan, "bound": nan, "gap": nan, "status": "given", "sizes": "given",
                "global_bound": nan}
    return _finish(model, groups, kept_whole, kept, weights, rows, knapsack,
                   {"macs": None, "params": None}, example, "given", refit, started)


def _global_bound(bounds, ks, sizes, caps, allocation: Allocation) -> float:
    """The knapsack over the curves' proven (relative) bounds: no allocation within the budget
    has a lower total cost (with exact sizes; NaN otherwise)."""
    if allocation.sizes != "exact" or not all(np.all(np.isfinite(b)) for b in bounds):
        return math.nan
    return min(allocate(bounds, ks, sizes, caps).bound, allocation.objective)


def _uniform(groups: list[ChannelGroup], models, limits) -> Allocation:
    """Every group at ``max(1, round(r * n))`` channels, ``r`` the largest fraction (bisection
    to 1e-6) whose exact sizes meet the limits."""
    n = np.array([g.channels for g in groups])

    def widths(r: float) -> np.ndarray:
        return np.maximum(1, np.round(r * n)).astype(np.intp)

    def fits(r: float) -> bool:
        return all(m.size(widths(r)) <= limit for m, limit in zip(models, limits, strict=True))

    low, high = 0.0, 1.0
    if fits(high):
        low = high
    while high - low > 1e-6:
        middle = 0.5 * (low + high)
        low, high = (middle, high) if fits(middle) else (low, middle)
    chosen = widths(low)
    return Allocation(chosen, math.nan, math.nan, math.nan, "uniform", "exact",
                      tuple(m.size(chosen) for m in models))


