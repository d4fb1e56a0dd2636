"""The plan :func:`compress_extras.llm.prune_llm` returns: the neurons each MLP keeps, the refit
``down_proj`` weights and the certificate; :meth:`LLMPrunePlan.apply` makes the smaller model."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from compress_extras.llm._prune_curves import LLMCurves
from compress_extras.llm._pruned_model import decoder_layers, shrink_mlp
from spr._budget_plan import Certificate, layer_gaps

__all__ = ["LLMCertificate", "LLMPrunePlan"]


@dataclass(frozen=True)
class LLMCertificate(Certificate):
    """How good the plan is, and that it meets the budget (:class:`spr.Certificate`'s fields, for
    MLP neurons).

    Attributes:
        layers: one dict per pruned layer: ``layer``, ``channels`` (its MLP width), ``k``
            (allocated), ``kept``, ``objective`` (the layer MIP's objective at the sequential
            step), ``bound`` (a proven lower bound on every support of at most k neurons; NaN
            without refit), ``gap``, ``status``, ``relative`` (objective over the energy of the
            dense ``down_proj`` output), ``seconds``.
        knapsack: ``objective`` (the chosen curve costs' sum), ``bound``, ``gap``, ``status``,
            ``sizes`` ("exact"), ``global_bound`` (the knapsack over the curves' bounds: no
            allocation within the budget has a lower total cost); NaN for a uniform allocation.
        budget: ``mlp_params_limit``, ``mlp_params_dense``, ``mlp_params`` (measured on the
            plan's widths), ``params_dense``, ``params``, ``met``.
        method, refit, seconds: how the plan was made and its wall time (curves included).
    """

    def summary(self) -> dict:
        """Median and max layer gap, the knapsack's gap, the budget (for tables)."""
        return {
            **layer_gaps(self.layers),
            "knapsack_gap": self.knapsack["gap"], "knapsack_status": self.knapsack["status"],
            "mlp_params": self.budget["mlp_params"],
            "mlp_params_limit": self.budget["mlp_params_limit"],
            "removed": 1.0 - self.budget["mlp_params"] / self.budget["mlp_params_dense"],
            "met": self.budget["met"], "seconds": self.seconds,
        }

    def table(self) -> str:
        """A plain-text table of the layers and the totals."""
        lines = [f"{'layer':<7}{'k / n':>12}{'rel. error':>12}{'bound':>11}{'gap':>8}"]
        for row in self.layers:
            bound = "-" if not math.isfinite(row["bound"]) else f"{row['bound']:.3g}"
            gap = "-" if not math.isfinite(row["gap"]) else f"{row['gap']:.0%}"
            lines.append(f"{row['layer']:<7}{row['kept']:>5} / {row['channels']:<5}"
                         f"{row['relative']:>12.4f}{bound:>11}{gap:>8}")
        k, b = self.knapsack, self.budget
        lines.append(f"knapsack: cost {k['objective']:.4g}, bound {k['bound']:.4g}, gap "
                     f"{k['gap']:.2%} ({k['status']})")
        lines.append(f"MLP parameters: {b['mlp_params']:,} of {b['mlp_params_dense']:,} "
                     f"({b['mlp_params'] / b['mlp_params_dense']:.1%}; limit "
                     f"{b['mlp_params_limit']:,}); model {b['params']:,} of {b['params_dense']:,}")
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class LLMPrunePlan:
    """The neurons each layer keeps and its new ``down_proj`` (module docstring).

    Attributes:
        keep: layer index -> (width,) bool tensor, the MLP neurons kept.
        down_weight: layer index -> (hidden, width) new ``down_proj`` weight (zero on dropped
            neurons).
        down_bias: layer index -> (hidden,) ``down_proj`` bias, where one is compensated.
        certificate: :class:`LLMCertificate`.
        curves: the curves the allocation read (None for a uniform allocation).
        timings: seconds of each phase (``curves``, ``allocation``, ``sequential``).
    """

    keep: dict[int, Tensor]
    down_weight: dict[int, Tensor]
    down_bias: dict[int, Tensor]
    certificate: LLMCertificate
    curves: LLMCurves | None = field(default=None, repr=False)
    timings: dict = field(default_factory=dict)

    @property
    def widths(self) -> dict[int, int]:
        return {i: int(k.sum()) for i, k in self.keep.items()}

    @torch.no_grad()
    def masked(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` with the dropped neurons' rows of ``gate_proj``/``up_proj`` zeroed
        and each ``down_proj`` replaced (its weight, and a bias where compensated): same shapes,
        same function as :meth:`apply`'s result."""
        copy_ = copy.deepcopy(model)
        layers = decoder_layers(copy_)
        for i, keep in self.keep.items():
            mlp = layers[i].mlp
            drop = ~keep.to(mlp.gate_proj.weight.device)
            if drop.numel() != mlp.gate_proj.out_features:
                raise ValueError(f"layer {i}'s MLP has width {mlp.gate_proj.out_features}; the "
                                 f"plan was made for {drop.numel()}")
            for lin in (mlp.gate_proj, mlp.up_proj):
                lin.weight[drop] = 0
                if lin.bias is not None:
                    lin.bias[drop] = 0
            down = mlp.down_proj
            if i in self.down_bias and down.bias is None:
                new = nn.Linear(down.in_features, down.out_features, bias=True,
                                device=down.weight.device, dtype=down.weight.dtype)
                mlp.down_proj = down = new
            down.weight.copy_(self.down_weight[i])
            if i in self.down_bias:
                down.bias.copy_(self.down_bias[i])
        return copy_

    def apply(self, model: nn.Module) -> nn.Module:
        """A physically smaller copy of ``model`` (each MLP at its kept width; ``model`` is not
        edited): :meth:`masked` with the dropped rows and columns removed."""
        return shrink_mlp(self.masked(model), self.keep)
