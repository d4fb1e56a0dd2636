"""One-shot structured pruning of a Llama-style language model's MLPs to a budget, certified.

The language-model front end of :func:`spr.prune_to_budget` (same four steps, same layer MIP,
same knapsack), for models such as SmolLM2 (``compress_extras.llm.load_smollm2``)::

    plan = prune_llm(model, calibration_ids, mlp_params=0.8)   # keep <= 80% of MLP parameters
    small = plan.apply(model)                                  # physically smaller, same class
    plan.certificate.summary()

**Units.** An MLP neuron j of decoder layer i: row j of ``gate_proj`` and ``up_proj`` and column
j of ``down_proj`` (``3 * hidden`` parameters). The SiLU-gated MLP computes
``down_proj(act(gate_proj(x)) * up_proj(x))`` and ``act(0) * 0 = 0``, so zeroing a neuron's
rows removes it exactly; ``down_proj``'s input channels are the neurons (group size 1).

**Attention heads are not pruned** (yet). With grouped-query attention (SmolLM2: 9 query heads
sharing 3 key/value heads) the unit would be a whole key/value group (3 query heads, their key
and value rows and ``o_proj`` columns: 295k parameters, a third of the layer's attention) or query
heads within a group; transformers' attention repeats every key/value head
``num_key_value_groups`` times, so the second only fits its class when every group of a layer
keeps the same number of query heads. Either way a layer offers only 3 to 9 units of coarse size
while its MLP offers 1536 fine ones, and attention is a quarter of the decoder's parameters; the
budget of the issue is the MLP's. The ``o_proj`` problem would be the same layer MIP with groups
of ``head_dim`` columns (9 groups: solved exactly by branch and bound).

**Layer problem** (:mod:`compress_extras.llm._layer_pass`): the reconstruction of ``down_proj``'s
output from calibration activations (token ids, e.g. windows of *Emma*), with target
``"block"`` (the default) also the error the residual stream already carries after attention,
``h_mid_dense - h_mid_pruned``, so that the refit MLP repairs what the pruned layers before it
broke; ``"output"``: ``down_proj``'s dense output alone. Position 0 of each window (the attention
sink) stays in the statistics: its neurons must not be pruned.

**Steps** (docs/mathematics.md §6 and §7):

1. *Curves* (:func:`compress_extras.llm._prune_curves.llm_curves`, one pass of the dense
   model): per layer the greedy elimination's objective at every width offered, as a cost
   weighted by the loss's sensitivity to that layer (``cost="fisher"``, the default).
2. *Allocation*: the widths of least total cost with at most the budgeted MLP parameters, the
   multiple-choice knapsack of :func:`spr._width_allocation.allocate` (sizes linear and exact:
   ``3 * hidden`` per neuron, plus a bias of ``hidden`` where one is compensated); or
   ``allocation="uniform"``: every layer the same width, the largest that fits.
3. *Sequential reconstruction*: layer by layer, the problem again with its inputs from the model
   pruned so far and its targets from the dense one; the support of the allocated width is chosen
   by ``method`` and ``down_proj`` refit on it (least squares, :func:`mip.fit_support`; without
   ``refit`` the dense weights are kept).

``method``: ``"mip"`` (ours: the greedy elimination on the sequential problem, then the swap local
search of the layer MIP for ``time_limit`` seconds per layer when that is > 0, and a proven lower
bound); baselines choose the support by a score and are otherwise treated alike:
``"magnitude"`` (the norm of the neuron's weights in all three matrices), ``"wanda"`` (Wanda's
structured score: ``sum_o |W_oj| * ||x_j||``), ``"flap"`` (FLAP's fluctuation
``var(x_j) * ||W_:j||^2``, with bias compensation: ``down_proj`` gets the bias
``mean(Y) - W mean(X)``, see ``bias``), ``"osscar"`` (OSSCAR's swap local search from the largest
neurons of the full ridge fit, ``time_limit`` seconds per layer).

**Certificate** (:class:`LLMCertificate`): per layer the objective of the MIP at the sequential
step, a proven lower bound and the gap; the knapsack's gap and the budget measured. The bound on
these wide layers (1536 neurons) is the ridge value of all neurons together, a bound on every
support (the perspective relaxation does not beat it in the time a layer could get: the ridge is
tiny, experiments/bench_layer_scale.py). Gaps, perplexities and wall times on SmolLM2:
``experiments/llm_prune.py`` and its results.

**Cost** per layer of d neurons: the greedy pass ``O(d^3)`` (the sequential step stops it at the
allocated width, ``mip._local_search.greedy_backward(stop=k)``), the
statistics ``O(N d^2)`` for N calibration tokens, and two ``d x d`` float64 matrices of memory.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

import mip
from compress_extras.llm._layer_pass import (
    TokenStatistics,
    first_token_weight,
    layer_indices,
    layer_inputs,
    layer_output,
    split_layer,
    token_batches,
)
from compress_extras.llm._prune_curves import LLMCurves, llm_curves
from compress_extras.llm._prune_plan import LLMCertificate, LLMPrunePlan
from compress_extras.llm._pruned_model import decoder_layers, mlp_parameters
from mip._local_search import greedy_backward, swap_search
from mip._result import relative_gap
from mip._solve_layer import full_ridge_value
from spr._budget_size import SizeModel
from spr._layer_decisions import decide
from spr._prune_to_budget import budget_limit
from spr._width_allocation import Allocation, allocate

__all__ = ["ALLOCATIONS", "METHODS", "TARGETS", "prune_llm"]

METHODS = ("mip", "magnitude", "wanda", "flap", "osscar")
ALLOCATIONS = ("knapsack", "uniform")
TARGETS = ("block", "output")


def _per_neuron(mlp: nn.Module) -> int:
    """Parameters one neuron of ``mlp`` carries: its rows of gate/up (and their biases) and its
    column of down."""
    hidden = mlp.gate_proj.in_features
    return (2 * hidden + int(mlp.gate_proj.bias is not None) + int(mlp.up_proj.bias is not None)
            + mlp.down_proj.out_features)


def _scores(method: str, mlp: nn.Module, stats: TokenStatistics) -> np.ndarray:
    """(d,) the baselines' neuron scores (module docstring); zeros for the search methods."""
    W0 = stats.W0.double()
    if method == "magnitude":
        norms = (mlp.gate_proj.weight.double() ** 2).sum(1) + (mlp.up_proj.weight.double() ** 2
                                                               ).sum(1) + (W0**2).sum(0)
        return norms.sqrt().numpy()
    n = stats.inputs.count
    second = torch.diagonal(stats.inputs.gram[0]) / n
    if method == "wanda":
        return (W0.abs().sum(0) * second.clamp_min(0).sqrt()).numpy()
    if method == "flap":
        variance = (second - (stats.inputs.row_sum[0] / n) ** 2).clamp_min(0)
        return (variance * (W0**2).sum(0)).numpy()
    return np.zeros(W0.shape[1])  # mip / osscar: not read


def _decide(problem: mip.LayerProblem, k: int, method: str, refit: bool, W0: np.ndarray,
            scores: np.ndarray, time_limit: float) -> tuple[np.ndarray, np.ndarray, float, float,
                                                            str]:
    """(keep, weight (out, d), objective, bound, status) for one layer at width k."""
    if method == "mip":
        path = greedy_backward(problem, stop=k)  # stopped at k: most of the O(d^3) saved
        keep, floor = path.support(k), full_ridge_value(problem, path)
        if time_limit > 0:
            keep, _ = swap_search(problem, keep, max_keep=k,
                                  deadline=time.perf_counter() + time_limit)
        W = mip.fit_support(problem, keep) if refit else W0 * keep[None, :]
        value = problem.objective(W, keep)
        bound = min(floor, value) if refit else math.nan
        return keep, W, value, bound, "heuristic" if refit else "no refit"
    decision = decide(problem, k, "osscar" if method == "osscar" else "magnitude", refit, W0,
                      scores, time_limit)
    return decision.keep, decision.weight, decision.objective, math.nan, decision.status


@torch.no_grad()
def _sequential(model, batches, indices, widths, method, refit, bias, first_token, time_limit,
                progress, target_kind) -> tuple[dict, dict, dict, list[dict]]:
    all_layers = decoder_layers(model)
    dense = layer_inputs(model, batches)
    pruned = [(h.clone(), kw) for h, kw in dense]
    keeps, weights, biases, rows = {}, {}, {}, []
    target = dict(zip(indices, widths, strict=True))
    bar = tqdm(range(indices[-1] + 1), desc=f"sequential reconstruction ({method})",
               disable=not progress, leave=False)
    for i in bar:
        layer = all_layers[i]
        if i not in target:
            dense = [(layer_output(layer(h, **kw)), kw) for h, kw in dense]
            pruned = [(layer_output(layer(h, **kw)), kw) for h, kw in pruned]
            continue
        started = time.perf_counter()
        down = layer.mlp.down_proj
        stats = TokenStatistics(down, first_token_weight(first_token))
        mids, inputs, new_dense = [], [], []
        for (hd, kw), (hp, _) in zip(dense, pruned, strict=True):
            d_mid, Xd = split_layer(layer, hd, kw)
            p_mid, Xp = split_layer(layer, hp, kw)
            out = d_mid + down(Xd)
            stats.update(Xp, Xd, out, d_mid - p_mid if target_kind == "block" else None)
            new_dense.append((out, kw))
            mids.append(p_mid)
            inputs.append(Xp)
        problem = stats.problem(center=bias)
        W0 = stats.W0.double().numpy()
        k = int(target[i])
        keep, W, value, bound, status = _decide(problem, k, method, refit, W0,
                                                _scores(method, layer.mlp, stats), time_limit)
        weight = torch.from_numpy(W).to(down.weight.dtype)
        keeps[i] = torch.from_numpy(np.asarray(keep, dtype=bool).copy())
        weights[i] = weight
        b = None
        if bias:
            sums, n = stats.inputs, stats.inputs.count
            b = (sums.target_sum[0] / n - torch.from_numpy(W) @ (sums.row_sum[0] / n)).to(
                down.weight.dtype)
            biases[i] = b
        mask = keeps[i].to(down.weight.device)
        w_dev = weight.to(down.weight.device)
        pruned = []
        for p_mid, Xp, (_, kw) in zip(mids, inputs, dense, strict=True):
            out = p_mid + (Xp * mask) @ w_dev.T
            if b is not None:
                out = out + b.to(out.device)
            pruned.append((out, kw))
        dense = new_dense
        energy = float(problem.yty.sum())
        rows.append({"layer": i, "channels": int(problem.n_groups), "k": k,
                     "kept": int(keeps[i].sum()), "objective": float(value), "bound": bound,
                     "gap": relative_gap(value, bound) if math.isfinite(bound) else math.nan,
                     "status": status, "relative": value / energy if energy > 0 else 0.0,
                     "seconds": time.perf_counter() - started})
    return keeps, weights, biases, rows


def prune_llm(
    model: nn.Module,
    calibration: Tensor | Iterable[Tensor],
    *,
    mlp_params: float | int,
    method: str = "mip",
    refit: bool = True,
    allocation: str = "knapsack",
    layers: Iterable[int] | None = None,
    bias: bool | None = None,
    curves: LLMCurves | None = None,
    step: int = 16,
    min_width: int = 16,
    cost: str = "fisher",
    first_token: str | float = "include",
    time_limit: float = 0.0,
    target: str = "block",
    batch_size: int = 4,
    progress: bool = True,
) -> LLMPrunePlan:
    """Plan the pruning of the MLP neurons of a Llama-style causal LM (module docstring) to at
    most ``mlp_params`` MLP parameters; ``model`` is never edited.

    Args:
        model: a transformers Llama-style model (``model.model.layers[i].mlp`` with
            ``gate_proj``, ``up_proj``, ``down_proj``), e.g. SmolLM2 from
            :func:`compress_extras.llm.load_smollm2`.
        calibration: token ids (windows, T) or an iterable of such batches (e.g. windows of
            *Emma* from :func:`compress_extras.llm.fixed_windows`).
        mlp_params: the most MLP parameters (all layers, biases included) the pruned model may
            have: a float in (0, 1] is a fraction of the dense model's (0.8: remove 20%), an int
            a count.
        method: ``"mip"`` (ours) or a baseline's support: ``"magnitude"``, ``"wanda"``,
            ``"flap"``, ``"osscar"`` (module docstring).
        refit: refit each ``down_proj`` on its kept neurons (least squares), else keep its
            dense weights there.
        allocation: ``"knapsack"`` (the widths of least total curve cost) or ``"uniform"`` (every
            prunable layer the same width, the largest that fits).
        layers: the decoder layers to prune (default all); the others stay whole.
        bias: give ``down_proj`` a bias (default: for ``"flap"``): the layer problem is then
            that of the centred statistics, a least-squares fit with an intercept
            ``b = mean(Y) - W mean(X)`` (with ``refit``, W and b jointly; without it, b
            compensates the dropped neurons' mean, FLAP's bias compensation).
        curves: the dense curves of :func:`llm_curves` (same model, calibration and layers),
            to share them between budgets and methods; computed when None (knapsack only).
        step, min_width: the widths the knapsack offers each layer: ``min_width`` and the
            multiples of ``step`` up to the full width.
        cost: how the curve costs weigh a layer's error: ``"fisher"``, ``"residual"`` or
            ``"output"`` (module docstring).
        target: ``"block"`` (``down_proj``'s dense output plus the residual stream's error so
            far) or ``"output"`` (its dense output alone).
        first_token: the weight of position 0's rows in the statistics: ``"include"`` (1, like
            any token; the scales from the other positions), ``"skip"`` (0) or a number
            (module docstring).
        time_limit: seconds per layer of swap local search (``"mip"``: after the greedy
            support; ``"osscar"``: from the magnitude start; 0 for ``"osscar"`` means 5 s).
        batch_size: windows per forward pass when ``calibration`` is one tensor.
        progress: tqdm bars.

    Returns:
        :class:`LLMPrunePlan`: ``plan.apply(model)`` is the smaller model.

    Raises:
        ValueError / TypeError: a malformed budget, one below the smallest model allowed (every
            prunable layer at its smallest width) or an unknown method, allocation or cost;
            a model that is not Llama-style.
    """
    started = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {list(ALLOCATIONS)}; got {allocation!r}")
    if not isinstance(refit, bool):
        raise TypeError(f"refit must be True or False; got {refit!r}")
    if isinstance(time_limit, bool) or not isinstance(time_limit, numbers.Real) or not (
            0 <= time_limit < math.inf):
        raise ValueError(f"time_limit must be seconds >= 0; got {time_limit!r}")
    if method == "osscar" and time_limit == 0:
        time_limit = 5.0
    if target not in TARGETS:
        raise ValueError(f"target must be one of {list(TARGETS)}; got {target!r}")
    bias = (method == "flap") if bias is None else bool(bias)
    first_token_weight(first_token)
    batches = token_batches(calibration, batch_size)
    indices = layer_indices(model, layers)
    all_layers = decoder_layers(model)
    per_neuron = [_per_neuron(all_layers[i].mlp) for i in indices]
    full = [all_layers[i].mlp.gate_proj.out_features for i in indices]
    dense_mlp = mlp_parameters(model)
    limit = budget_limit("mlp_params", mlp_params, dense_mlp)
    hidden_out = [all_layers[i].mlp.down_proj.out_features for i in indices]
    added_bias = sum(h for h, i in zip(hidden_out, indices, strict=True)
                     if bias and all_layers[i].mlp.down_proj.bias is None)
    constant = dense_mlp - sum(p * n for p, n in zip(per_neuron, full, strict=True)) + added_bias
    size = SizeModel(float(constant), np.array(per_neuron, dtype=float))
    timings, shared = {}, False
    if allocation == "uniform":
        chosen = _uniform(full, size, limit, min_width)
        knapsack = {"objective": math.nan, "bound": math.nan, "gap": math.nan,
                    "status": "uniform", "sizes": "exact", "global_bound": math.nan}
    else:
        shared = curves is not None
        if curves is None:
            curves = llm_curves(model, batches, layers=indices, step=step, min_width=min_width,
                                cost=cost, first_token=first_token, progress=progress)
        elif curves.layers != indices:
            raise ValueError(f"the curves are for layers {curves.layers}, not {indices}")
        timings["curves"] = curves.seconds
        low = size.size([k.min() for k in curves.ks])
        if limit < low:
            raise ValueError(f"mlp_params={limit:,} is below {low:,.0f} ({low / dense_mlp:.1%} "
                             f"of the dense {dense_mlp:,}), the MLP parameters of the smallest "
                             "model allowed (every prunable layer at its smallest width)")
        curves = curves.with_cost(cost)
        t = time.perf_counter()
        chosen = allocate(curves.cost, curves.ks, [size], [limit])
        global_bound = math.nan
        if all(np.all(np.isfinite(b)) for b in curves.bound):
            global_bound = min(allocate(curves.bound, curves.ks, [size], [limit]).bound,
                               chosen.objective)
        knapsack = {"objective": chosen.objective, "bound": chosen.bound, "gap": chosen.gap,
                    "status": chosen.status, "sizes": chosen.sizes,
                    "global_bound": global_bound}
        timings["allocation"] = time.perf_counter() - t
    t = time.perf_counter()
    keep, weights, biases, rows = _sequential(model, batches, indices, chosen.widths, method,
                                              refit, bias, first_token, time_limit,
                                              progress, target)
    timings["sequential"] = time.perf_counter() - t
    measured = constant + sum(p * int(keep[i].sum()) for p, i in
                              zip(per_neuron, indices, strict=True))
    params_dense = sum(p.numel() for p in model.parameters())
    budget = {"mlp_params_limit": limit, "mlp_params_dense": dense_mlp,
              "mlp_params": int(measured), "params_dense": params_dense,
              "params": int(params_dense - dense_mlp + measured), "met": measured <= limit}
    # the wall time from scratch: curves computed before this call (shared) count too
    seconds = time.perf_counter() - started + (curves.seconds if shared else 0.0)
    certificate = LLMCertificate(rows, knapsack, budget, method, refit, seconds)
    return LLMPrunePlan(keep, weights, biases, certificate,
                        curves if allocation == "knapsack" else None, timings)


def _uniform(full: Sequence[int], size: SizeModel, limit: int, min_width: int) -> Allocation:
    """Every prunable layer at the same width (capped at its own), the largest that fits."""
    top = max(full)
    best = None
    for k in range(top, 0, -1):
        widths = np.minimum(np.array(full), k)
        if size.size(widths) <= limit:
            best = widths
            break
    if best is None:
        raise ValueError(f"mlp_params={limit:,} is below the MLP parameters of one neuron per "
                         "prunable layer")
    return Allocation(best.astype(np.intp), math.nan, math.nan, math.nan, "uniform", "exact",
                      (size.size(best),))
