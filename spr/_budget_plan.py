"""The result of :func:`spr.prune_to_budget`: which channels stay, the refit weights, and the
certificate; :meth:`BudgetPlan.apply` makes the physically smaller network."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from spr._channel_groups import ChannelGroup, KeptWhole
from spr._surgery import remove_pruned

__all__ = ["BudgetPlan", "Certificate"]


def layer_gaps(layers: list[dict]) -> dict:
    """``layer_gap_median`` and ``layer_gap_max`` over the rows' finite ``gap`` (NaN if none)."""
    gaps = np.array([row["gap"] for row in layers], dtype=float)
    finite = gaps[np.isfinite(gaps)]
    return {"layer_gap_median": float(np.median(finite)) if finite.size else math.nan,
            "layer_gap_max": float(finite.max()) if finite.size else math.nan}


@dataclass(frozen=True)
class Certificate:
    """How good the plan is, and that it meets the budget.

    Attributes:
        layers: one dict per group: ``name`` (producer), ``consumer``, ``channels``, ``k`` (the
            width allocated), ``kept`` (channels kept), ``objective`` (the consumer's
            reconstruction objective at the sequential step), ``bound`` (a proven lower bound,
            NaN where the method proves none), ``gap``, ``status``, ``relative`` (objective over
            the consumer's output energy).
        knapsack: ``objective`` (sum of the chosen curve costs), ``bound`` and ``gap`` of the
            allocation, ``status``, ``sizes`` (``"exact"``: the knapsack's sizes are the network's;
            ``"linearised"``: layers between two groups were linearised, module
            :mod:`spr._width_allocation`), and ``global_bound``: a lower bound on the total
            curve cost of every allocation within the budget (the knapsack over the curves' proven
            bounds; NaN without bounds or with linearised sizes).
        budget: ``macs_limit``/``params_limit`` (None: not constrained), ``macs_dense``,
            ``params_dense``, and ``macs``/``params`` measured on the pruned model, ``met``.
        method, refit, seconds: how the plan was made and its wall time.
    """

    layers: list[dict]
    knapsack: dict
    budget: dict
    method: str
    refit: bool
    seconds: float

    def summary(self) -> dict:
        """Median and max layer gap, the knapsack's gap, the budget met (for tables)."""
        return {
            **layer_gaps(self.layers),
            "knapsack_gap": self.knapsack["gap"], "sizes": self.knapsack["sizes"],
            "macs": self.budget["macs"], "params": self.budget["params"],
            "met": self.budget["met"],
        }

    def table(self) -> str:
        """A plain-text table of the layers and the totals."""
        lines = [f"{'group (producer)':<24}{'k / n':>9}{'rel. error':>12}{'bound':>11}"
                 f"{'gap':>8}"]
        for row in self.layers:
            bound = "-" if not math.isfinite(row["bound"]) else f"{row['bound']:.3g}"
            gap = "-" if not math.isfinite(row["gap"]) else f"{row['gap']:.0%}"
            lines.append(f"{row['name']:<24}{row['kept']:>4} / {row['channels']:<3}"
                         f"{row['relative']:>12.4f}{bound:>11}{gap:>8}")
        k, b = self.knapsack, self.budget
        lines.append(f"knapsack: cost {k['objective']:.4g}, bound {k['bound']:.4g}, gap "
                     f"{k['gap']:.2%} ({k['status']}, sizes {k['sizes']})")
        for name in ("macs", "params"):
            limit = b[f"{name}_limit"]
            room = "no limit" if limit is None else f"limit {limit:,}"
            lines.append(f"{name}: {b[name]:,} of {b[f'{name}_dense']:,} dense "
                         f"({b[name] / b[f'{name}_dense']:.1%}; {room})")
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class BudgetPlan:
    """The channels each group keeps and the refit consumer weights (module docstring).

    Attributes:
        groups: the prunable groups; ``kept_whole``: the groups never pruned, with the reason.
        keep: producer name -> (channels,) bool tensor, the channels kept.
        weights: consumer name -> its new weight (the consumer's shape; zero on dropped inputs).
        certificate: :class:`Certificate`.
        example_inputs: the batch the pruned model is traced and checked with.
        curves: per group, the keep-k curve the allocation read: ``ks`` (the widths offered),
            ``cost`` (the relative objective of each) and ``bound`` (relative; NaN where none is
            proven); empty for a uniform allocation or given supports.
    """

    groups: list[ChannelGroup]
    kept_whole: list[KeptWhole]
    keep: dict[str, Tensor]
    weights: dict[str, Tensor]
    certificate: Certificate
    example_inputs: tuple[Tensor, ...] = field(repr=False)
    curves: list[dict] = field(default_factory=list, repr=False)

    def masked(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` with the dropped channels zeroed (producer rows, bias, BatchNorm
        scale and shift) and the consumers' weights replaced; same shapes, same function as
        :meth:`apply`'s result."""
        copy_ = copy.deepcopy(model)
        mask(copy_, self.groups, self.keep, self.weights)
        return copy_

    def apply(self, model: nn.Module) -> nn.Module:
        """A physically smaller copy of ``model`` (through :func:`spr.remove_pruned`, which checks
        that it computes what the masked model does); ``model`` is not edited."""
        return remove_pruned(self.masked(model), self.example_inputs, inplace=True)


def _module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as err:
        raise ValueError(f"the model has no layer {name!r}: apply the plan to the model it was "
                         "made for") from err


@torch.no_grad()
def mask(model: nn.Module, groups: list[ChannelGroup], keep: dict[str, Tensor],
         weights: dict[str, Tensor]) -> None:
    """Zero the dropped channels of ``groups`` in ``model`` and set the consumers' weights, in
    place (the edits of a plan, or of one step of the sequential reconstruction)."""
    for group in groups:
        if group.name not in keep:
            continue
        drop = ~keep[group.name]
        producer = _module(model, group.producer)
        if producer.weight.shape[0] != drop.numel():
            raise ValueError(f"layer {group.producer!r} has {producer.weight.shape[0]} output "
                             f"channels; the plan was made for {drop.numel()}")
        producer.weight[drop.to(producer.weight.device)] = 0
        if producer.bias is not None:
            producer.bias[drop.to(producer.bias.device)] = 0
        for name in group.norms:
            norm = _module(model, name)
            for p in (norm.weight, norm.bias):
                if p is not None:
                    p[drop.to(p.device)] = 0
        if group.consumer in weights:
            consumer = _module(model, group.consumer)
            new = weights[group.consumer]
            if consumer.weight.shape != new.shape:
                raise ValueError(f"layer {group.consumer!r} has weight shape "
                                 f"{tuple(consumer.weight.shape)}; the plan was made for "
                                 f"{tuple(new.shape)}")
            consumer.weight.copy_(new)
