"""Bit allocation: one quantizer option per layer under a bit budget, as a multiple-choice knapsack.

For layers ``l`` (every Linear and Conv2d by default) and options ``k`` (quantizers implementing
:class:`compress_extras.QuantizerOption`) the allocator measures a distortion ``c[l, k]`` and a size
``s[l, k] = option_k.storage_bits(W_l)`` (bits, overhead included) and solves::

    min  sum_l c[l, choice_l]   s.t.  sum_l s[l, choice_l] <= budget,  tied layers share an option

with :func:`mip.solve_knapsack` (Pyomo + HiGHS; exact, with bound and gap;
:mod:`compress_extras._allocation_plan`). The distortion of ``W_hat = Q_k(W)`` with
``D = W_hat - W`` is, by ``sensitivity`` (a registry, :mod:`compress_extras._sensitivities`):

- ``"output"`` (default): the output error on calibration inputs, ``||X W^T - X W_hat^T||_F^2 =
  tr(D G D^T)`` with ``G = X^T X`` accumulated by forward hooks (X the layer's inputs, flattened to
  (N, in); for a conv the unfolded patches (N*L, in/groups*kh*kw) per channel group, padded as the
  layer pads -- the GPTQ objective; rows and sums by ``spr._input_statistics.InputStatistics``,
  shared with ``spr.solve_mip``);
- ``"fisher"``: ``sum_i F_ii D_i^2`` with the empirical Fisher diagonal ``F = mean_n (grad l_n)^2``
  from per-sample gradients of the calibration loss (elementwise, so it also suits row groups);
- ``"hessian"``: ``(Tr(H_l) / n_l) ||D||^2`` (HAWQ-V2/V3), the trace of the layer's Hessian block
  estimated by Hutchinson's method ``Tr(H_ll) = E[v_l^T (H v)_l]`` with Rademacher probes v over all
  layers at once (cross terms have mean 0), a few probes, clipped below at 1e-12 of the largest;
- ``"none"``: the plain squared weight error ``||D||^2`` (n_l times the weight MSE, so layers add).

The budget is :class:`AverageBits` (bits per weight over the allocated layers' weights; biases stay
in float and are not counted) or :class:`TotalBits`. A budget below what the cheapest options need
raises ValueError naming that minimum.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from compress_extras._allocation_inputs import (
    allocated_layers,
    calibration_batches,
    check_allowed,
    check_options,
    model_device,
    tie_indices,
)
from compress_extras._allocation_plan import (
    AllocationPlan,
    AverageBits,
    Compensator,
    TotalBits,
    plan_from_costs,
)
from compress_extras._code_bits import storage_bits
from compress_extras._options import QuantizerOption
from compress_extras._sensitivities import SENSITIVITIES

__all__ = ["AllocationPlan", "AverageBits", "TotalBits", "allocate_bits"]


def allocate_bits(
    model: nn.Module,
    options: Sequence[QuantizerOption],
    budget: AverageBits | TotalBits,
    sensitivity: str = "output",
    calibration=None,
    ties: Iterable[Sequence[str]] = (),
    layers: Sequence[str] | None = None,
    *,
    allowed: Mapping[str, Collection[str]] | None = None,
    loss: Callable[[Tensor, Tensor], Tensor] | None = None,
    probes: int = 8,
    fisher_samples: int = 256,
    seed: int = 0,
    time_limit: float = 60.0,
    mip_gap: float = 1e-6,
    compensate: Compensator | None = None,
    progress: bool = True,
) -> AllocationPlan:
    """Choose one option per layer minimising the predicted distortion within ``budget``.

    Args:
        model: the trained network (left unchanged; ``plan.apply(model)`` quantizes it).
        options: K quantizer options with distinct names (:class:`UniformQuant`, :class:`Float16`,
            :class:`Pruned`, or any :class:`QuantizerOption`).
        budget: :class:`AverageBits` (per weight of the allocated layers) or :class:`TotalBits`.
        sensitivity: ``"output"``, ``"fisher"``, ``"hessian"`` or ``"none"`` (module docstring),
            or any name registered in :data:`compress_extras._sensitivities.SENSITIVITIES`.
        calibration: model inputs (N, ...) for ``"output"``; ``(inputs, targets)`` for
            ``"fisher"`` and ``"hessian"``; or an iterable of such batches.
        ties: tuples of layer names that must take the same option (e.g. Q/K/V).
        layers: module names to allocate; default every nn.Linear and nn.Conv2d.
        allowed: option name -> the layers that may take it (an option not named here is allowed
            everywhere), e.g. ``{"pruned": ["fc2"]}`` where SPR may remove the layer.
        loss: ``loss(outputs, targets)`` for fisher/hessian; default cross-entropy.
        probes: Hutchinson probes (``"hessian"``).
        fisher_samples: calibration samples whose gradients form the Fisher diagonal.
        seed: seed of the Hutchinson probes.
        time_limit, mip_gap: passed to :func:`mip.solve_knapsack`.
        compensate: measure (and ``plan.apply``) every option after GPTQ error compensation
            with these settings (:class:`compress_extras.Compensation`: the option's grid and
            storage, its weights rounded column by column on the layer's input Gram matrix);
            needs ``sensitivity="output"``. None: every option rounds on its own.
        progress: show tqdm bars over calibration and the (layer, option) distortions.

    Returns:
        An :class:`AllocationPlan`; ``plan.total_bits <= plan.budget_bits``.

    Raises:
        ValueError: bad arguments, or a budget below the least the options allow (the message
            names that minimum in bits and in bits per weight).

    >>> torch.manual_seed(0) is not None
    True
    >>> net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    >>> from compress_extras import UniformQuant, Float16
    >>> plan = allocate_bits(net, [UniformQuant(2), UniformQuant(4), Float16()],
    ...                      AverageBits(4.0), calibration=torch.randn(64, 16), progress=False)
    >>> plan.layers, plan.total_bits <= plan.budget_bits, plan.solver["status"]
    (('0', '2'), True, 'optimal')
    """
    if sensitivity not in SENSITIVITIES:
        raise ValueError(f"sensitivity must be one of {tuple(SENSITIVITIES)}; got "
                         f"{sensitivity!r}")
    how = SENSITIVITIES[sensitivity]
    if compensate is not None:
        if not isinstance(compensate, Compensator):
            raise TypeError(f"compensate must be a Compensation(...) or None; got {compensate!r}")
        if not how.gram:
            raise ValueError(f'compensate needs sensitivity="output" (the layers\' input Gram '
                             f"matrices); got sensitivity={sensitivity!r}")
    if not isinstance(budget, AverageBits | TotalBits):
        raise TypeError(f"budget must be AverageBits(bits per weight) or TotalBits(bits); got "
                        f"{budget!r}")
    options = check_options(options)
    names = tuple(option.name for option in options)
    modules = allocated_layers(model, layers)
    layer_names = list(modules)
    allowed = check_allowed(allowed, names, layer_names)
    tie_sets = tie_indices(ties, layer_names)
    batches = calibration_batches(calibration)
    if how.needs_calibration and not batches:
        raise ValueError(f'sensitivity="{sensitivity}" needs calibration data: pass '
                         "calibration=inputs (N, ...) of the model, or sensitivity=\"none\"")
    if how.needs_targets and any(y is None for _, y in batches):
        raise ValueError(f'sensitivity="{sensitivity}" needs calibration (inputs, targets) to '
                         "differentiate a loss")
    loss = F.cross_entropy if loss is None else loss
    device = model_device(model)
    batches = [(x.to(device), None if y is None else y.to(device)) for x, y in batches]

    modes = [(m, m.training) for m in model.modules()]  # restored afterwards, module by module
    model.eval()
    try:
        scale = how.measure(model, modules, batches, loss=loss, probes=probes,
                            fisher_samples=fisher_samples, seed=seed, progress=progress)
        hessians = () if compensate is None else tuple(
            compensate.hessian(gram, name) for gram, name in zip(scale, layer_names, strict=True))
        cost, size = _measure(modules, options, scale, how.distortion, compensate, hessians,
                              progress)
    finally:
        for m, mode in modes:
            m.training = mode

    available = np.ones(cost.shape, bool)
    for option_name, where in allowed.items():
        k = names.index(option_name)
        available[:, k] = [name in set(where) for name in layer_names]
    n_weights = [int(m.weight.numel()) for m in modules.values()]
    masked = np.where(available, cost, np.inf)
    return plan_from_costs(layer_names, options, masked, size, n_weights, ties=tuple(tie_sets),
                           budget=budget, sensitivity=sensitivity, time_limit=time_limit,
                           mip_gap=mip_gap, compensation=compensate, hessians=hessians)


@torch.no_grad()
def _measure(modules: Mapping[str, nn.Module], options: Sequence[QuantizerOption], scale: list,
             distortion: Callable, compensate: Compensator | None, hessians: tuple[Tensor, ...],
             progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """(L, K) distortion and bits of every (layer, option)."""
    L, K = len(modules), len(options)
    cost, size = np.empty((L, K)), np.empty((L, K))
    bar = tqdm(total=L * K, desc="distortion per (layer, option)", disable=not progress,
               leave=False)
    for i, module in enumerate(modules.values()):
        W = module.weight.detach()
        for k, option in enumerate(options):
            W_hat = option.quantize(W) if compensate is None else compensate.weight(
                option, W, hessians[i])
            size[i, k] = storage_bits(option, W)  # old-style options: bits(W), with a warning
            cost[i, k] = distortion(module, scale[i], W_hat)
            bar.update(1)
    bar.close()
    return cost, size
