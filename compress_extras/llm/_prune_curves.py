"""The dense keep-k curves of a Llama-style model's MLPs (step 1 of
:func:`compress_extras.llm.prune_llm`), computable once and shared by every budget and method.

One layer-by-layer pass of the dense model over the calibration windows
(:mod:`compress_extras.llm._layer_pass`); for every prunable layer, greedy backward elimination on
its problem (:func:`mip._local_search.greedy_backward`: one ``O(d^3)`` pass gives a nested support
and its ridge objective for *every* width), read at the widths offered (``min_width`` and the
multiples of ``step``). A proven lower bound on every width is the ridge value of all neurons
together (on these wide layers the perspective relaxation does not beat it in the time a layer
could get: the ridge is tiny, experiments/bench_layer_scale.py).

The cost of a width is its objective weighted by how much the loss cares about the layer's
residual stream:

- ``"fisher"`` (the default) multiplies it by ``mean_t ||dL/dh_t||^2`` (:func:`gradient_energy`,
  one backward pass over the calibration windows: the Fisher estimate of the loss increase for an
  error of that energy in no particular direction);
- ``"residual"`` divides it by the residual stream's mean energy (an error relative to what the
  next layers read);
- ``"output"`` by the energy of ``down_proj``'s own output (the CNN version's choice).

Measured on SmolLM2 at 20% of the MLP removed (16 windows of *Emma*): fisher 56, residual 59,
output 84 (the last layers, whose output is small against the stream, are then cut to a few
hundred neurons); a Fisher *matrix* weighting of the layer problems' outputs was worse still
(148: the late layers' errors fall where the sampled Fisher is small, and those layers were
emptied).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from compress_extras._checks import check_int
from compress_extras.llm._layer_pass import (
    TokenStatistics,
    check_structure,
    first_token_weight,
    layer_indices,
    layer_inputs,
    layer_output,
    split_layer,
    token_batches,
)
from compress_extras.llm._pruned_model import decoder_layers
from mip._local_search import greedy_backward
from mip._solve_layer import full_ridge_value

__all__ = ["COSTS", "LLMCurves", "gradient_energy", "llm_curves", "width_options"]

COSTS = ("fisher", "residual", "output")


def width_options(width: int, step: int, min_width: int) -> np.ndarray:
    """The widths a layer of ``width`` neurons is offered: ``min_width`` (at least 1), the
    multiples of ``step`` above it and the full width, increasing."""
    low = max(1, min(width, min_width))
    grid = np.arange(step, width, step)
    return np.unique(np.concatenate([[low], grid[grid >= low], [width]])).astype(np.intp)


@dataclass(frozen=True, eq=False)
class LLMCurves:
    """The dense keep-k curves of step 1 (:func:`llm_curves`), reusable across budgets.

    Attributes:
        layers: the prunable decoder layers' indices.
        ks: per layer, the widths offered (increasing, the full width last).
        objective: per layer, the layer MIP's objective at each width (greedy support, refit).
        floor: per layer, a proven lower bound on the objective of every width (the ridge value
            of all neurons).
        energy: ``{"residual": [...], "output": [...]}`` per layer, the energies a cost can be
            relative to (module docstring).
        cost_kind: the energy :attr:`cost` and :attr:`bound` use (:meth:`with_cost` another).
        settings, seconds: how they were made, and the wall time.
    """

    layers: list[int]
    ks: list[np.ndarray]
    objective: list[np.ndarray]
    floor: list[float]
    energy: dict[str, list[float]]
    cost_kind: str
    settings: dict
    seconds: float

    @property
    def cost(self) -> list[np.ndarray]:
        """Per layer, the relative cost of each width: objective / energy."""
        return [v / e for v, e in zip(self.objective, self.energy[self.cost_kind], strict=True)]

    @property
    def bound(self) -> list[np.ndarray]:
        """Per layer, a proven lower bound on each width's relative cost."""
        return [np.minimum(f, v) / e for v, f, e in zip(
            self.objective, self.floor, self.energy[self.cost_kind], strict=True)]

    def with_cost(self, kind: str) -> LLMCurves:
        """The same curves with costs relative to another energy (no recomputation)."""
        if kind not in COSTS:
            raise ValueError(f"cost must be one of {list(COSTS)}; got {kind!r}")
        if kind not in self.energy:
            raise ValueError(f"these curves have no {kind!r} energies: make them with "
                             f"llm_curves(..., cost={kind!r})")
        return replace(self, cost_kind=kind)

    def rows(self) -> list[dict]:
        return [{"layer": i, "ks": k.tolist(), "cost": c.tolist(), "bound": b.tolist()}
                for i, k, c, b in zip(self.layers, self.ks, self.cost, self.bound, strict=True)]


@torch.no_grad()
def llm_curves(model: nn.Module, calibration: Tensor | Iterable[Tensor], *,
               layers: Iterable[int] | None = None, step: int = 16, min_width: int = 16,
               cost: str = "fisher", first_token: str | float = "include",
               batch_size: int = 4,
               progress: bool = True) -> LLMCurves:
    """Step 1 of the module docstring: one layer-by-layer pass of the dense model over the
    calibration windows, and for every prunable layer its keep-k curve at the widths
    ``min_width, step, 2*step, ..., width`` (greedy backward elimination: every width from one
    pass). Arguments as in :func:`prune_llm`."""
    started = time.perf_counter()
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {list(COSTS)}; got {cost!r}")
    first_weight = first_token_weight(first_token)
    check_int("step", step, 1)
    check_int("min_width", min_width, 1)
    batches = token_batches(calibration, batch_size)
    indices = layer_indices(model, layers)
    all_layers = decoder_layers(model)
    stream = layer_inputs(model, batches)
    check_structure(all_layers[0], *stream[0])
    ks, objectives, floors = [], [], []
    energies: dict[str, list[float]] = {"residual": [], "output": []}
    if cost == "fisher":  # the loss's sensitivity to each layer's residual stream
        energies["fisher"] = [1.0 / max(g, 1e-300) for g in
                              gradient_energy(model, batches, indices, progress)]
    bar = tqdm(range(indices[-1] + 1), desc="keep-k curves", disable=not progress, leave=False)
    for i in bar:
        layer = all_layers[i]
        stats = TokenStatistics(layer.mlp.down_proj, first_weight) if i in indices else None
        new_stream = []
        for hidden, kwargs in stream:
            if stats is None:
                new_stream.append((layer_output(layer(hidden, **kwargs)), kwargs))
                continue
            h_mid, X = split_layer(layer, hidden, kwargs)
            out = h_mid + layer.mlp.down_proj(X)
            stats.update(X, X, out)
            new_stream.append((out, kwargs))
        stream = new_stream
        if stats is None:
            continue
        problem = stats.problem()
        path = greedy_backward(problem)
        options = width_options(problem.n_groups, step, min_width)
        ks.append(options)
        objectives.append(np.minimum.accumulate(path.values[options]))  # non-increasing in k
        floors.append(full_ridge_value(problem, path))
        for kind in ("residual", "output"):
            energies[kind].append(stats.energy(kind))
    settings = {"step": step, "min_width": min_width, "first_token": first_token,
                "tokens": sum(b.numel() for b in batches), "windows": sum(len(b) for b in batches)}
    return LLMCurves(indices, ks, objectives, floors, energies, cost, settings,
                     time.perf_counter() - started)


@torch.no_grad()
def gradient_energy(model: nn.Module, batches: list[Tensor], indices: list[int],
                    progress: bool = False) -> list[float]:
    """Per decoder layer in ``indices``, ``mean_t ||g_t||^2``, g_t the gradient of the
    calibration windows' next-token cross-entropy (summed over tokens) with respect to the
    residual stream after the layer at token t (positions >= 1): one backward pass per batch, no
    parameter gradients. An error e_t added there changes the loss by about ``g_t . e_t``; for
    errors of a given energy in no particular direction ``E (g . e)^2`` is this times the error's
    mean energy over hidden (the Fisher approximation of the loss's curvature, isotropic)."""
    layers = decoder_layers(model)
    embed = model.get_input_embeddings()
    sums = {i: 0.0 for i in indices}
    count = 0
    flags = [(p, p.requires_grad) for p in model.parameters()]
    grads: dict[int, Tensor] = {}

    def keep_grad(i):
        def hook(module, args, output):
            layer_output(output).register_hook(lambda g: grads.__setitem__(i, g.detach()))
        return hook

    handles = [layers[i].register_forward_hook(keep_grad(i)) for i in indices]
    handles.append(embed.register_forward_hook(
        lambda m, a, out: out.detach().requires_grad_(True)))
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        device = embed.weight.device
        for batch in tqdm(batches, desc="loss sensitivity", disable=not progress, leave=False):
            batch = batch.to(device)
            with torch.enable_grad():
                logits = model(input_ids=batch, use_cache=False).logits
                loss = torch.nn.functional.cross_entropy(
                    logits[:, :-1].flatten(0, 1).float(), batch[:, 1:].flatten(), reduction="sum")
                loss.backward()
            for i in indices:
                sums[i] += float((grads[i][:, 1:].double() ** 2).sum())
            count += batch[:, 1:].numel()
    finally:
        for h in handles:
            h.remove()
        for p, flag in flags:
            p.requires_grad_(flag)
    return [sums[i] / count for i in indices]
