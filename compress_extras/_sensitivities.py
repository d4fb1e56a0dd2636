"""How :func:`compress_extras.allocate_bits` measures a layer's distortion: a registry of
sensitivities.

For a layer with weight ``W`` quantized to ``W_hat``, ``D = W_hat - W``:

- ``"output"``: the output error on calibration inputs, ``||X W^T - X W_hat^T||_F^2 =
  tr(D G D^T)`` with ``G = X^T X`` per channel group, the layers' input Gram sums from
  :func:`spr._input_statistics.collect_input_statistics` (the GPTQ objective);
- ``"fisher"``: ``sum_i F_ii D_i^2`` with the empirical Fisher diagonal ``F = mean_n (grad l_n)^2``
  from per-sample gradients of the calibration loss (:func:`fisher_diagonal`);
- ``"hessian"``: ``(Tr(H_l) / n_l) ||D||^2`` (HAWQ-V2/V3), Hutchinson's estimate of the trace of
  the layer's Hessian block (:func:`hutchinson_trace`), clipped below at 1e-12 of the largest;
- ``"none"``: the plain squared weight error ``||D||^2``.

:data:`SENSITIVITIES` maps each name to a :class:`Sensitivity`: ``measure`` gives one scale per
layer (a Gram matrix, a Fisher diagonal, a number) and ``distortion(module, scale, W_hat)`` prices
a quantized weight with it. Every ``measure`` has the same keyword signature::

    measure(model, layers, batches, *, loss, probes, fisher_samples, seed, progress) -> list

with ``layers`` a dict name -> module and ``batches`` a list of ``(inputs, targets or None)``.
Adding a sensitivity is registering one entry (:func:`register_sensitivity`).

>>> from torch import nn
>>> layer = nn.Linear(2, 1, bias=False).requires_grad_(False)
>>> _ = layer.weight.fill_(1.0)
>>> scale = SENSITIVITIES["none"].measure(None, {"fc": layer}, [], loss=None, probes=0,
...                                       fisher_samples=0, seed=0, progress=False)
>>> SENSITIVITIES["none"].distortion(layer, scale[0], layer.weight + 0.5)
0.5
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn
from tqdm.auto import tqdm

from spr._input_statistics import collect_input_statistics

__all__ = ["SENSITIVITIES", "Sensitivity", "fisher_diagonal", "hutchinson_trace",
           "output_distortion", "register_sensitivity", "squared_error"]

Batches = list[tuple[Tensor, Tensor | None]]


@dataclass(frozen=True)
class Sensitivity:
    """One way of measuring distortion (module docstring).

    Attributes:
        measure: per layer, the scale ``distortion`` reads (uniform keyword signature).
        distortion: ``distortion(module, scale, W_hat) -> float``.
        needs_calibration: calibration inputs are required.
        needs_targets: calibration ``(inputs, targets)`` are required (a loss is differentiated).
        gram: ``measure`` gives the layers' input Gram sums ``(groups, d, d)``, which error
            compensation needs.
    """

    measure: Callable[..., list]
    distortion: Callable[[nn.Module, Any, Tensor], float]
    needs_calibration: bool = True
    needs_targets: bool = False
    gram: bool = False


def output_distortion(module: nn.Module, gram: Tensor, W_hat: Tensor) -> float:
    """``||X W^T - X W_hat^T||^2`` from the Gram matrix of the inputs (module docstring).

    Args:
        module: the nn.Linear or nn.Conv2d (its weight is W).
        gram: (groups, d, d) from the forward hooks; groups = 1 for a Linear.
        W_hat: the quantized weight, shaped like W.
    """
    D = (W_hat.detach().double() - module.weight.detach().double())
    groups = gram.shape[0]
    D = D.reshape(groups, D.shape[0] // groups, -1)  # (groups, out/groups, d)
    return float(torch.einsum("god,gde,goe->", D, gram.to(D.device), D))


def squared_error(module: nn.Module, scale: Tensor | float, W_hat: Tensor) -> float:
    """``sum scale * (W_hat - W)^2``, ``scale`` a number or a tensor shaped like W."""
    D2 = (W_hat.double() - module.weight.detach().double()) ** 2
    return float((scale * D2).sum())


@contextmanager
def _with_grad(params: list[Tensor]) -> Iterator[None]:
    """The parameters require grad inside the block (restored afterwards)."""
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in zip(params, saved, strict=True):
            p.requires_grad_(flag)


def hutchinson_trace(
    model: nn.Module, params: list[Tensor], batches: list[tuple[Tensor, Tensor]],
    loss: Callable[[Tensor, Tensor], Tensor], probes: int = 8, seed: int = 0,
    progress: bool = False,
) -> NDArray[np.float64]:
    """(len(params),) Hutchinson estimates of ``Tr(H_pp)``, the Hessian block of each parameter,
    of the calibration loss (the batches' losses weighted by their sizes, i.e. the mean loss).

    ``v`` is Rademacher over all parameters at once; ``(H v)_p`` by double backward;
    ``v_p^T (Hv)_p`` has mean ``Tr(H_pp)`` since ``E[v_p v_q^T] = 0`` for p != q."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    total = sum(len(x) for x, _ in batches)
    traces = np.zeros(len(params))
    with _with_grad(params), torch.enable_grad():
        for _ in tqdm(range(probes), desc="Hutchinson probes", disable=not progress,
                      leave=False):
            vs = [(torch.randint(0, 2, p.shape, generator=generator) * 2.0 - 1.0)
                  .to(p.device, p.dtype) for p in params]
            hv = [torch.zeros_like(p) for p in params]
            for x, y in batches:
                value = loss(model(x), y) * (len(x) / total)
                grads = torch.autograd.grad(value, params, create_graph=True)
                dot = sum((g * v).sum() for g, v in zip(grads, vs, strict=True))
                for acc, h in zip(hv, torch.autograd.grad(dot, params), strict=True):
                    acc += h
            traces += [float((v * h).sum()) for v, h in zip(vs, hv, strict=True)]
    return traces / probes


def fisher_diagonal(
    model: nn.Module, params: list[Tensor], batches: list[tuple[Tensor, Tensor]],
    loss: Callable[[Tensor, Tensor], Tensor], max_samples: int = 256, progress: bool = False,
) -> list[Tensor]:
    """Empirical Fisher diagonal ``mean_n (d l(x_n, y_n) / d p)^2`` per parameter, from per-sample
    gradients of the first ``max_samples`` calibration samples."""
    fisher = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    samples = list(itertools.islice(
        ((x[i:i + 1], y[i:i + 1]) for x, y in batches for i in range(len(x))), max_samples))
    with _with_grad(params), torch.enable_grad():
        for x, y in tqdm(samples, desc="Fisher samples", disable=not progress, leave=False):
            grads = torch.autograd.grad(loss(model(x), y), params)
            for acc, g in zip(fisher, grads, strict=True):
                acc += g.double() ** 2
    return [f / len(samples) for f in fisher]


def _output(model: nn.Module, layers: Mapping[str, nn.Module], batches: Batches, *, loss,
            probes: int, fisher_samples: int, seed: int, progress: bool) -> list[Tensor]:
    """The layers' input Gram sums (groups, d, d) in float64 over the calibration inputs."""
    with collect_input_statistics(model, layers, chunk_size=None) as stats, torch.no_grad():
        for x, _ in tqdm(batches, desc="calibration inputs", disable=not progress, leave=False):
            model(x)
    missing = [name for name, s in stats.items() if s.gram is None]
    if missing:
        raise ValueError(f"layer {missing[0]!r} never ran on the calibration inputs")
    return [s.gram for s in stats.values()]


def _fisher(model: nn.Module, layers: Mapping[str, nn.Module], batches: Batches, *, loss,
            probes: int, fisher_samples: int, seed: int, progress: bool) -> list[Tensor]:
    """The Fisher diagonal of each layer's weight."""
    params = [m.weight for m in layers.values()]
    return fisher_diagonal(model, params, batches, loss, fisher_samples, progress)


def _hessian(model: nn.Module, layers: Mapping[str, nn.Module], batches: Batches, *, loss,
             probes: int, fisher_samples: int, seed: int, progress: bool) -> list[float]:
    """``Tr(H_l) / n_l`` per layer, clipped below at 1e-12 of the largest trace."""
    params = [m.weight for m in layers.values()]
    traces = hutchinson_trace(model, params, batches, loss, probes, seed, progress)
    floor = 1e-12 * max(float(traces.max()), 1e-300)
    return [max(float(t), floor) / p.numel() for t, p in zip(traces, params, strict=True)]


def _none(model: nn.Module, layers: Mapping[str, nn.Module], batches: Batches, *, loss,
          probes: int, fisher_samples: int, seed: int, progress: bool) -> list[float]:
    """1 per layer: the plain squared weight error."""
    return [1.0] * len(layers)


SENSITIVITIES: dict[str, Sensitivity] = {
    "output": Sensitivity(_output, output_distortion, gram=True),
    "fisher": Sensitivity(_fisher, squared_error, needs_targets=True),
    "hessian": Sensitivity(_hessian, squared_error, needs_targets=True),
    "none": Sensitivity(_none, squared_error, needs_calibration=False),
}


def register_sensitivity(name: str, sensitivity: Sensitivity) -> None:
    """Offer ``sensitivity`` to :func:`compress_extras.allocate_bits` as ``name``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string; got {name!r}")
    if not isinstance(sensitivity, Sensitivity):
        raise TypeError(f"sensitivity must be a Sensitivity(measure, distortion, ...); got "
                        f"{sensitivity!r}")
    SENSITIVITIES[name] = sensitivity
