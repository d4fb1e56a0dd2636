"""The result of bit allocation: the budgets, :class:`AllocationPlan`, and the knapsack that
turns measured costs into a plan (:func:`plan_from_costs`).

Given the distortion ``cost[l, k]`` and size ``size[l, k]`` (bits) of every layer ``l`` at every
option ``k`` (``inf`` cost: not allowed), the plan is the solution of::

    min  sum_l cost[l, choice_l]   s.t.  sum_l size[l, choice_l] <= budget,  tied layers alike

by :func:`mip.solve_knapsack`; :meth:`AllocationPlan.with_budget` re-solves it for another
budget without measuring again.

>>> from compress_extras import Float16, UniformQuant
>>> plan = plan_from_costs(("a", "b"), (Float16(), UniformQuant(4)),
...                        np.array([[0.0, 1.0], [0.0, 3.0]]), np.array([[16.0, 4.0]] * 2), [1, 1],
...                        budget=TotalBits(20), sensitivity="none")
>>> plan.options, plan.total_bits
(('int4', 'fp16'), 20.0)
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from compress_extras._options import QuantizerOption

__all__ = ["AllocationPlan", "AverageBits", "Compensator", "TotalBits", "plan_from_costs"]


@dataclass(frozen=True)
class AverageBits:
    """Budget: at most ``bits`` bits per weight on average over the allocated layers."""

    bits: float

    def total(self, n_weights: int) -> float:
        return float(self.bits) * n_weights


@dataclass(frozen=True)
class TotalBits:
    """Budget: at most ``bits`` bits for the allocated layers' weights in all."""

    bits: float

    def total(self, n_weights: int) -> float:
        return float(self.bits)


@runtime_checkable
class Compensator(Protocol):
    """Error compensation of the options' rounding (:class:`compress_extras.Compensation`, GPTQ):
    ``hessian(gram, layer)`` the matrix H it uses from a layer's input Gram sums
    ``(groups, d, d)``, and ``weight(option, W, H)`` the option's compensated weight."""

    def hessian(self, gram: Tensor, layer: str) -> Tensor: ...

    def weight(self, option: QuantizerOption, W: Tensor, H: Tensor) -> Tensor: ...


@dataclass(frozen=True, eq=False)
class AllocationPlan:
    """Which option each layer takes, what it costs, and the solver's certificate.

    Attributes:
        layers: (L,) module names.
        options: (L,) the chosen option's name per layer.
        quantizers: (L,) the chosen option objects (``apply`` uses them).
        layer_bits: (L,) bits of each layer at its option.
        layer_weights: (L,) weights per layer.
        layer_distortion: (L,) predicted distortion per layer at its option.
        total_bits, average_bits: ``sum(layer_bits)`` and that over ``sum(layer_weights)``.
        budget_bits: the budget in bits.
        predicted_distortion: ``sum(layer_distortion)``, the knapsack objective.
        sensitivity: how distortion was measured.
        option_names: (K,) every option offered.
        cost: (L, K) distortion of every (layer, option), ``inf`` where not allowed.
        size: (L, K) bits of every (layer, option).
        solver: ``{"objective", "bound", "gap", "status", "seconds", "method"}``.
        option_objects: (K,) every option offered; ties: tied layers, as index tuples.
        compensation: the GPTQ settings when the costs were measured after error compensation
            (``allocate_bits(..., compensate=Compensation())``), else None; hessians: (L,) the
            layers' input Gram matrices (d, d) float32 it compensates with (``apply`` again).

    ``with_budget(budget)`` re-solves the knapsack on the measured ``cost`` and ``size`` for
    another budget (no re-measurement), e.g. to trace distortion against bits.

    ``apply(model)`` writes the dequantized weights into ``model`` in place; ``to_dict()`` is
    JSON-ready (``to_json()`` writes it).
    """

    layers: tuple[str, ...]
    options: tuple[str, ...]
    quantizers: tuple[QuantizerOption, ...]
    layer_bits: tuple[float, ...]
    layer_weights: tuple[int, ...]
    layer_distortion: tuple[float, ...]
    total_bits: float
    average_bits: float
    budget_bits: float
    predicted_distortion: float
    sensitivity: str
    option_names: tuple[str, ...]
    cost: NDArray[np.float64]
    size: NDArray[np.float64]
    solver: dict = field(default_factory=dict)
    option_objects: tuple[QuantizerOption, ...] = ()
    ties: tuple[tuple[int, ...], ...] = ()
    compensation: Compensator | None = None
    hessians: tuple[Tensor, ...] = field(default=(), repr=False)

    def distortion_of(self, choice: Sequence[int] | Sequence[str]) -> float:
        """Predicted distortion of another allocation (option indices or names per layer), e.g.
        the uniform one, to compare with ``predicted_distortion``."""
        index = [self.option_names.index(k) if isinstance(k, str) else int(k) for k in choice]
        return math.fsum(float(self.cost[i, k]) for i, k in enumerate(index))

    def bits_of(self, choice: Sequence[int] | Sequence[str]) -> float:
        """Total bits of another allocation (option indices or names per layer)."""
        index = [self.option_names.index(k) if isinstance(k, str) else int(k) for k in choice]
        return math.fsum(float(self.size[i, k]) for i, k in enumerate(index))

    def with_budget(self, budget: AverageBits | TotalBits, time_limit: float = 60.0,
                    mip_gap: float = 1e-6) -> AllocationPlan:
        """The plan for ``budget`` over the same measured options (module docstring)."""
        if not isinstance(budget, AverageBits | TotalBits):
            raise TypeError(f"budget must be AverageBits or TotalBits; got {budget!r}")
        if len(self.option_objects) != len(self.option_names):
            raise ValueError("this plan does not carry its options; build it with allocate_bits")
        return plan_from_costs(
            self.layers, self.option_objects, np.asarray(self.cost), np.asarray(self.size),
            list(self.layer_weights), ties=self.ties, budget=budget, sensitivity=self.sensitivity,
            time_limit=time_limit, mip_gap=mip_gap, compensation=self.compensation,
            hessians=self.hessians)

    @torch.no_grad()
    def apply(self, model: nn.Module) -> nn.Module:
        """Replace each planned layer's weight by its option's dequantized weight, in place
        (with :attr:`compensation`, the compensated one the costs were measured on)."""
        for i, (name, quantizer) in enumerate(zip(self.layers, self.quantizers, strict=True)):
            weight = model.get_submodule(name).weight
            W_hat = (quantizer.quantize(weight) if self.compensation is None else
                     self.compensation.weight(quantizer, weight, self.hessians[i]))
            if W_hat.shape != weight.shape:
                raise ValueError(f"{quantizer.name} returned shape {tuple(W_hat.shape)} for "
                                 f"{name}'s weight {tuple(weight.shape)}")
            weight.copy_(W_hat)
        return model

    def to_dict(self) -> dict:
        return {
            "layers": [
                {"name": n, "option": o, "bits": b, "weights": w, "distortion": d,
                 "quantizer": repr(q)}
                for n, o, b, w, d, q in zip(self.layers, self.options, self.layer_bits,
                                            self.layer_weights, self.layer_distortion,
                                            self.quantizers, strict=True)
            ],
            "total_bits": self.total_bits, "average_bits": self.average_bits,
            "budget_bits": self.budget_bits, "predicted_distortion": self.predicted_distortion,
            "sensitivity": self.sensitivity, "option_names": list(self.option_names),
            "cost": [[_json_float(v) for v in row] for row in self.cost],
            "size": self.size.tolist(), "solver": dict(self.solver),
            "compensation": None if self.compensation is None else dataclasses.asdict(
                self.compensation),
        }

    def to_json(self, path=None, indent: int = 2) -> str:
        """The plan as JSON text (``inf`` written as null); also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text)
        return text


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def plan_from_costs(
    layer_names: Sequence[str], options: Sequence[QuantizerOption], cost: NDArray[np.float64],
    size: NDArray[np.float64], n_weights: Sequence[int], *, budget: AverageBits | TotalBits,
    sensitivity: str, ties: Sequence[tuple[int, ...]] = (), time_limit: float = 60.0,
    mip_gap: float = 1e-6, compensation: Compensator | None = None,
    hessians: tuple[Tensor, ...] = (),
) -> AllocationPlan:
    """The knapsack over measured ``cost`` (L, K) (``inf``: not allowed) and ``size`` (L, K) of
    layers with ``n_weights`` weights, as a plan (module docstring); ValueError naming the
    minimum feasible budget when ``budget`` is below it."""
    import mip

    names = tuple(option.name for option in options)
    budget_bits = budget.total(sum(n_weights))
    problem = mip.KnapsackProblem(np.where(np.isfinite(cost), cost, 0.0), size, budget_bits,
                                  available=np.isfinite(cost), ties=list(ties))
    try:
        problem.check_budgets()
    except ValueError:
        minimum = problem.min_budget
        raise ValueError(
            f"budget {budget} = {budget_bits!r} bits is below the minimum feasible budget "
            f"{minimum!r} bits ({minimum / sum(n_weights):.6g} bits per weight: every layer at "
            "its smallest allowed option)") from None
    result = mip.solve_knapsack(problem, time_limit=time_limit, mip_gap=mip_gap)
    choice = result.choice.tolist()
    layer_bits = tuple(float(size[i, k]) for i, k in enumerate(choice))
    layer_distortion = tuple(float(cost[i, k]) for i, k in enumerate(choice))
    cost, size = cost.copy(), size.copy()
    cost.setflags(write=False)
    size.setflags(write=False)
    return AllocationPlan(
        layers=tuple(layer_names), options=tuple(names[k] for k in choice),
        quantizers=tuple(options[k] for k in choice), layer_bits=layer_bits,
        layer_weights=tuple(n_weights), layer_distortion=layer_distortion,
        total_bits=result.size_used, average_bits=result.size_used / sum(n_weights),
        budget_bits=budget_bits, predicted_distortion=result.objective, sensitivity=sensitivity,
        option_names=names, cost=cost, size=size,
        solver={"objective": result.objective, "bound": result.bound, "gap": result.gap,
                "status": result.status, "seconds": result.seconds, "method": result.method},
        option_objects=tuple(options), ties=tuple(ties), compensation=compensation,
        hessians=hessians,
    )
