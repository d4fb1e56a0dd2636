"""The consumers' layer problems from calibration data, for :func:`spr.prune_to_budget` and
:func:`spr.reconstruct`: one pass over the dense network for the keep-k curves, and the
sequential refit (docs/mathematics.md §6).

A consumer's problem is the layer MIP of its input channels (:class:`mip.LayerProblem`) with the
statistics of :mod:`spr._input_statistics`, output channel o weighted by ``s_o = |gamma_o| /
sqrt(var_o + eps)`` of the BatchNorm after the consumer (the error the next layer sees; 1 without
one), a ridge ``lam * alpha`` of :data:`RIDGE` times the mean diagonal of the Gram matrix and a box
``M`` of four times the largest dense weight. The sequential refit forms it with the inputs of the
network pruned so far and the targets of the dense one; forward passes stop at the consumer.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

import mip
from spr._budget_plan import mask
from spr._channel_groups import ChannelGroup
from spr._input_statistics import InputStatistics, collect_input_statistics
from spr._layer_decisions import curve, decide

__all__ = ["dense_curves", "sequential_refit"]

RIDGE = 1e-3  # the fits' ridge lam*alpha, relative to the mean diagonal of the Gram matrix
ALPHA = 0.5
# the statistics' products in float32 (half the time of float64; a few chunks summed, relative
# error ~1e-6, far below the reconstruction errors compared, >= 1e-3 of the energy)
STATS_DTYPE = torch.float32


class _Stop(Exception):
    """Raised by a hook once the layer's input is captured: the rest of the forward is skipped."""


def _inputs_of(model: nn.Module, layer: nn.Module, x: Tensor) -> Tensor:
    captured: list[Tensor] = []

    def hook(module, args) -> None:
        captured.append(args[0].detach())
        raise _Stop

    handle = layer.register_forward_pre_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured[0]


def _output_scale(model: nn.Module, group: ChannelGroup, out: int) -> np.ndarray:
    norm = model.get_submodule(group.after) if group.after else None
    if norm is None or not norm.affine or norm.running_var is None:
        return np.ones(out)
    scale = (norm.weight.abs() / torch.sqrt(norm.running_var + norm.eps)).double().cpu().numpy()
    return np.maximum(scale, 1e-8 * max(float(scale.max()), 1e-300))


def _problem(stats: InputStatistics, W0: Tensor, columns: int, scale: np.ndarray):
    """The consumer's layer problem with output channel o weighted by ``scale[o]``, the dense
    weights in its coordinates (out, d), and the output energy."""
    count = stats.count
    gram = (stats.gram[0].double() / count).cpu().numpy()
    xty = (stats.xty[0].double() / count).cpu().numpy() * scale[None, :]
    yty = (stats.yty[0].double() / count).cpu().numpy() * scale**2
    W = W0.detach().double().reshape(W0.shape[0], -1).cpu().numpy() * scale[:, None]
    diag = float(np.mean(np.diag(gram)))
    M = 4.0 * float(np.abs(W).max()) or 1.0
    problem = mip.LayerProblem(gram, xty, yty, columns, lam=RIDGE * diag / ALPHA, alpha=ALPHA,
                               M=M)
    return problem, W, float(yty.sum())


def filter_norms(model: nn.Module, group: ChannelGroup) -> np.ndarray:
    weight = model.get_submodule(group.producer).weight.detach()
    return weight.reshape(weight.shape[0], -1).double().norm(dim=1).cpu().numpy()


def dense_curves(dense: nn.Module, groups: list[ChannelGroup], batches: list[Tensor],
                 ks: list[np.ndarray], method: str, refit: bool, seconds: float,
                 progress: bool) -> tuple[list, list]:
    """One forward pass of the dense network over ``batches`` accumulates every consumer's
    statistics; then per group its keep-k curve over ``ks[g]`` (``seconds`` shared by size) and
    ``(problem, W0, energy)``."""
    consumers = [dense.get_submodule(g.consumer) for g in groups]
    names = list(dict.fromkeys(g.consumer for g in groups))
    with collect_input_statistics(dense, names, cross_terms=True, dtype=STATS_DTYPE) as by_name:
        for batch in tqdm(batches, desc="calibration statistics", disable=not progress,
                          leave=False):
            dense(batch)
    stats = [by_name[g.consumer] for g in groups]
    weight = np.array([g.channels * g.columns for g in groups], dtype=float)
    curves, problems = [], []
    for i in tqdm(range(len(groups)), desc=f"keep-k curves ({method})", disable=not progress,
                  leave=False):
        group, layer = groups[i], consumers[i]
        scale = _output_scale(dense, group, layer.weight.shape[0])
        problem, W0, energy = _problem(stats[i], layer.weight, group.columns, scale)
        scores = filter_norms(dense, group)
        share = seconds * weight[i] / weight.sum()
        curves.append(curve(problem, ks[i], method, refit, W0, scores, share))
        problems.append((problem, W0, energy))
    return curves, problems


def sequential_refit(dense: nn.Module, groups: list[ChannelGroup], batches: list[Tensor],
                     widths, method: str, refit: bool, seconds: float, progress: bool,
                     given: dict | None = None) -> tuple[dict, dict, list[dict]]:
    """Step 4 of the module docstring: returns the kept channels, the consumers' new weights and
    one certificate row per group. ``given``: producer name -> kept channels (n,) bool, taken
    as the supports instead of deciding them."""
    work = copy.deepcopy(dense)
    weight = np.array([g.channels * g.columns for g in groups], dtype=float)
    keep, weights, rows = {}, {}, []
    for i in tqdm(range(len(groups)), desc="sequential reconstruction", disable=not progress,
                  leave=False):
        group, k = groups[i], int(widths[i])
        layer, target = work.get_submodule(group.consumer), dense.get_submodule(group.consumer)
        stats = InputStatistics(layer, target.weight, dtype=STATS_DTYPE)
        for batch in batches:
            stats.update(_inputs_of(work, layer, batch), _inputs_of(dense, target, batch))
        scale = _output_scale(dense, group, layer.weight.shape[0])
        problem, W0, energy = _problem(stats, target.weight, group.columns, scale)
        share = seconds * weight[i] / weight.sum()
        fixed = None if given is None else np.asarray(given[group.name], dtype=bool)
        found = decide(problem, k, method, refit, W0, filter_norms(dense, group), share, fixed)
        new = torch.from_numpy(found.weight / scale[:, None]).reshape(layer.weight.shape)
        keep[group.name] = torch.from_numpy(found.keep.copy())
        weights[group.consumer] = new.to(layer.weight.dtype)
        mask(work, [group], {group.name: keep[group.name]}, {group.consumer: weights[
            group.consumer].to(layer.weight.device)})
        rows.append({"name": group.name, "consumer": group.consumer, "channels": group.channels,
                     "k": k, "kept": int(found.keep.sum()), "objective": found.objective,
                     "bound": found.bound, "gap": found.gap, "status": found.status,
                     "relative": found.objective / energy if energy > 0 else 0.0})
    return keep, weights, rows
