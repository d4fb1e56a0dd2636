"""Sensitivity-weighted 1-D k-means codebooks per row (SqueezeLLM-style non-uniform levels).

For each row ``r`` with values ``v_i`` and weights ``f_i >= 0`` (a Fisher diagonal, say), the
codebook ``c_1 <= ... <= c_L`` locally minimises the weighted squared error::

    sum_i f_i (v_i - c_{a(i)})^2,   a(i) = argmin_j |v_i - c_j|

by Lloyd's algorithm: assign every value to its nearest level (cells split at the midpoints of
neighbouring levels; a value on a midpoint goes to the upper cell, so levels that coincide -- a
heavy weight can put several starting quantiles on one value -- split their values there), then
move each level to the weighted mean of its cell,
``c_j = sum_{i in cell j} f_i v_i / sum_{i in cell j} f_i`` (a cell with no weight keeps its level),
until nothing moves or ``iterations`` rounds. Initialisation: the weighted quantiles
``(j + 0.5) / L`` of the values (the first sorted value whose cumulative weight exceeds that share
of the row's total). With equal weights every step is the unweighted
:class:`compress_extras.icquant.Lloyd`'s, so the codebook is its codebook before the float16
rounding. A row whose weights are all 0 is treated as equally weighted.

Shapes: values, weights (rows, m) -> codebook (rows, levels) float32, sorted per row (not rounded
to float16: round it for storage).

>>> v = torch.tensor([[0.0, 0.1, 0.2, 1.0, 1.1, 5.0]])
>>> weighted_lloyd(v, torch.ones_like(v), 2)
tensor([[0.4800, 5.0000]])
>>> weighted_lloyd(v, torch.tensor([[1.0, 1.0, 1.0, 100.0, 100.0, 1.0]]), 2)
tensor([[0.9738, 1.1386]])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from compress_extras._checks import check_int

__all__ = ["weighted_lloyd"]


def weighted_lloyd(values: Tensor, weights: Tensor, levels: int, iterations: int = 30) -> Tensor:
    """The weighted Lloyd codebook of each row (module docstring).

    Args:
        values: (rows, m) finite values, m >= 1.
        weights: (rows, m) finite non-negative weights (sensitivities).
        levels: L >= 1 codebook levels per row (``2^b`` for b bits).
        iterations: at most this many Lloyd rounds (>= 0).

    Returns:
        (rows, L) float32 codebook, sorted per row.
    """
    if not isinstance(values, Tensor) or values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"values must be a (rows, m) tensor with m >= 1; got "
                         f"{getattr(values, 'shape', type(values).__name__)}")
    if not isinstance(weights, Tensor) or weights.shape != values.shape:
        raise ValueError(f"weights must be a tensor shaped like values {tuple(values.shape)}; "
                         f"got {getattr(weights, 'shape', type(weights).__name__)}")
    if not bool(torch.isfinite(values).all()) or not bool(torch.isfinite(weights).all()):
        raise ValueError("values and weights must be finite (no NaN or inf)")
    if bool((weights < 0).any()):
        raise ValueError("weights must be >= 0")
    check_int("levels", levels, 1)
    check_int("iterations", iterations, 0)
    values = values.detach().float().contiguous()
    weights = weights.detach().double()
    weights = torch.where(weights.sum(dim=1, keepdim=True) > 0, weights,
                          torch.ones_like(weights))
    rows, m = values.shape
    ordered, order = values.sort(dim=1)
    w = weights.gather(1, order)
    cumulative = w.cumsum(dim=1)
    share = (torch.arange(levels, dtype=torch.float64, device=values.device) + 0.5) / levels
    targets = share[None, :] * cumulative[:, -1:]
    first = torch.searchsorted(cumulative.contiguous(), targets.contiguous(), right=True)
    centers = ordered.gather(1, first.clamp(max=m - 1))
    # Each cell is a contiguous run of the sorted values: a Lloyd round is a search for the cell
    # boundaries and differences of prefix sums, O(rows L log m).
    weight_prefix = F.pad(cumulative, (1, 0))
    value_prefix = F.pad((w * ordered.double()).cumsum(dim=1), (1, 0))
    last = torch.full((rows, 1), m, device=values.device)
    for _ in range(iterations):
        midpoints = ((centers[:, 1:] + centers[:, :-1]) / 2).contiguous()
        ends = torch.cat([torch.searchsorted(ordered, midpoints), last], dim=1)
        starts = F.pad(ends[:, :-1], (1, 0))
        mass = weight_prefix.gather(1, ends) - weight_prefix.gather(1, starts)
        sums = value_prefix.gather(1, ends) - value_prefix.gather(1, starts)
        updated = torch.where(mass > 0, sums / torch.where(mass > 0, mass, 1.0),
                              centers.double())
        updated = updated.float().sort(dim=1).values
        if torch.equal(updated, centers):
            break
        centers = updated
    return centers
