"""How many channels each group keeps under a global budget: a multiple-choice knapsack.

Group ``g`` offers widths ``ks[g]`` with costs ``cost[g]`` (its keep-k curve); the sizes are
:class:`spr._budget_size.SizeModel` s (MACs, parameters)::

    min  sum_g cost[g][k_g]    s.t.  size_r(k) <= limit_r  for every resource r

solved by :func:`mip.solve_knapsack`. Where the sizes are linear in the widths (no layer between
two prunable groups, e.g. every ResNet) this is the exact model and the knapsack's bound is a
bound on every allocation. A layer between groups ``a`` and ``b`` adds ``c * k_a * k_b``; it is
charged to ``a`` at an assumed width of ``b``: first ``b``'s full width, which over-counts, so
that answer always meets the budget; then, a few times, the widths just chosen, keeping an answer
only when its exact size meets the budget and its cost is lower. The bound is then the
linearised problem's, and ``sizes == "linearised"`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

import mip
from spr._budget_size import SizeModel

__all__ = ["Allocation", "allocate", "smallest"]

ROUNDS = 4  # re-linearisations at the chosen widths after the conservative first answer


@dataclass(frozen=True)
class Allocation:
    """The chosen widths and the knapsack's certificate."""

    widths: NDArray[np.intp]
    objective: float
    bound: float
    gap: float
    status: str
    sizes: str  # "exact" or "linearised"
    used: tuple[float, ...]  # exact sizes of the answer, one per resource


def smallest(ks: list[NDArray[np.intp]], models: list[SizeModel]) -> tuple[float, ...]:
    """The sizes of the smallest network allowed: every group at its smallest width."""
    widths = np.array([k.min() for k in ks])
    return tuple(m.size(widths) for m in models)


def _table(ks: list[NDArray], model: SizeModel, assumed: NDArray, K: int) -> NDArray:
    """(G, K) size of each option when each pair term is charged to its first group at the
    second group's ``assumed`` width."""
    table = np.zeros((len(ks), K))
    for g, k in enumerate(ks):
        slope = model.linear[g] + sum(c * assumed[b] for (a, b), c in model.pairs.items()
                                      if a == g)
        table[g, :k.size] = slope * k
    return table


def allocate(costs: list[NDArray], ks: list[NDArray[np.intp]], models: list[SizeModel],
             limits: list[float], time_limit: float = 60.0) -> Allocation:
    """The widths (one per group) of least total cost within the ``limits`` (module docstring).
    ``ValueError`` naming the smallest network's size when a limit is below it."""
    G, K = len(ks), max(k.size for k in ks)
    for limit, low in zip(limits, smallest(ks, models), strict=True):
        if limit < low:
            raise ValueError(f"budget {limit:,.0f} is below {low:,.0f}, the size of the smallest "
                             "network allowed")
    cost = np.full((G, K), np.inf)
    for g, c in enumerate(costs):
        cost[g, :c.size] = c
    linear = not any(m.pairs for m in models)
    assumed = np.array([k.max() for k in ks], dtype=np.float64)
    best: Allocation | None = None
    seen: set[tuple[int, ...]] = set()
    for _ in range(1 + (0 if linear else ROUNDS)):
        tables = [_table(ks, m, assumed, K) for m in models]
        budgets = [limit - m.constant for m, limit in zip(models, limits, strict=True)]
        problem = mip.KnapsackProblem(
            cost=cost, size=tables[0], budget=budgets[0],
            extra=np.stack(tables[1:], axis=2) if len(tables) > 1 else None,
            extra_budget=budgets[1:] if len(tables) > 1 else None)
        result = mip.solve_knapsack(problem, time_limit=time_limit)
        widths = np.array([ks[g][i] for g, i in enumerate(result.choice)])
        used = tuple(m.size(widths) for m in models)
        feasible = all(u <= limit * (1 + 1e-12) for u, limit in zip(used, limits, strict=True))
        if feasible and (best is None or result.objective < best.objective):
            best = Allocation(widths, result.objective, result.bound, result.gap, result.status,
                              "exact" if linear else "linearised", used)
        key = tuple(widths.tolist())
        if key in seen:
            break
        seen.add(key)
        assumed = widths.astype(np.float64)
    assert best is not None  # the first, conservative answer always meets the budget
    return best
