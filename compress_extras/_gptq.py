"""GPTQ: quantize a layer column by column, compensating each column's error on the later ones.

For a layer ``y = W x`` whose inputs have second moment ``H = E[x x^T]`` (from the shared
:class:`spr._input_statistics.InputStatistics`, :func:`hessian_from_statistics`), quantizing W
(out, d) to W_hat costs the output error ``trace((W - W_hat) H (W - W_hat)^T)``. GPTQ (Frantar,
Ashkboos, Hoefler, Alistarh 2022, after OBQ/OBS) quantizes one column at a time and moves the
columns F not yet quantized to compensate, with the OBS update of the inverse::

    err       = (w_i - q_i) / [H_F^-1]_ii
    W[:, F-i] -= err  (outer)  [H_F^-1]_{i, F-i}
    H_{F-i}^-1 = H_F^-1 - H_F^-1[:, i] H_F^-1[i, :] / [H_F^-1]_ii       (i leaves F)

All these inverses come at once from ``U``, the upper Cholesky factor of ``H^-1 = U^T U``: with
the columns in processing order, ``U[i, i:] = [H_F^-1]_{i, F} / sqrt([H_F^-1]_ii)`` for
``F = {i, ..., d-1}``, so ``err = (w_i - q_i) / U_ii`` and ``W[:, i+1:] -= err U[i, i+1:]``.

Steps (as the reference implementation, float32 with a float64 Cholesky):

1. dead columns (``H_ii = 0``, an input that is always 0) get ``W[:, i] = 0`` and ``H_ii = 1``;
2. damping ``H += damp * mean(diag H) * I``, the mean of the *given* diagonal (the reference takes
   it after setting dead ``H_ii = 1``; the two differ only with dead columns);
3. ``act_order``: columns processed by decreasing ``H_ii`` (stable), permuted back at the end;
4. blocks of ``block_size`` columns: inside a block each quantized column's error updates the
   rest of the block at once; after the block all later columns get the block's errors in one
   product, ``W[:, i2:] -= Err @ U[i1:i2, i2:]`` (lazy batch updates). The result is the one of
   column-by-column updates, up to float rounding, for any block size.

Column quantizers (:class:`ColumnQuantizer`) say how one column is rounded. Their grids are
fitted by groups of consecutive *original* columns (``group_columns`` G): a group's grid is fitted
when the first of its columns comes up for quantization (in processing order), from the current
weights of all its columns -- already updated by the columns quantized before, not yet quantized
themselves -- which is the standard GPTQ groupwise behaviour (with ``act_order`` the group's
columns are spread over the order, and it is the first of them that fits the grid; the grid is
still one per G consecutive original columns, so the storage format is unchanged). With
``group_columns = None`` the grid is fitted once, from the original W (before the dead columns are
zeroed, as the reference's per-channel ``find_params``), and stays fixed.

Adapters: :class:`AsymmetricColumns` (per channel or per group), :class:`UniformColumns`,
:class:`LloydColumns` (a per-row codebook fixed from the original weights),
:class:`ShiftColumns` (DenseShift levels, a per-row scale fixed from the original weights) and
:class:`ICQuantColumns` (outlier mask and both grids fixed from the original weights).

>>> from compress_extras._asymmetric import AsymmetricRTN
>>> g = torch.Generator().manual_seed(0)
>>> X = torch.randn(256, 16, generator=g) @ torch.randn(16, 16, generator=g)
>>> W, H = torch.randn(8, 16, generator=g), X.T @ X / 256
>>> rtn = AsymmetricRTN(3)
>>> W_hat = gptq_quantize(W, H, AsymmetricColumns(rtn))
>>> error = lambda V: float(torch.trace((W - V) @ H @ (W - V).T))
>>> error(W_hat) < error(rtn.quantize(W))   # the output error, below round-to-nearest's
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from compress_extras._asymmetric import AsymmetricRTN, asymmetric_grid, quantize_to_grid
from compress_extras._checks import check_int
from compress_extras._options import UniformQuant
from compress_extras._weighted_lloyd import weighted_lloyd
from compress_extras.icquant._quantizer import ICQuantizer
from compress_extras.icquant._scalar import Lloyd, _nearest
from compress_extras.shift._levels import dequantize, fit_scale, project_codes
from compress_extras.shift._option import ShiftQuant
from spr._input_statistics import InputStatistics

__all__ = [
    "AsymmetricColumns",
    "ColumnQuantizer",
    "ICQuantColumns",
    "LloydColumns",
    "ShiftColumns",
    "UniformColumns",
    "gptq_layer",
    "gptq_quantize",
    "hessian_from_statistics",
]


@runtime_checkable
class ColumnQuantizer(Protocol):
    """How GPTQ rounds one column (module docstring for when grids are fitted).

    - ``group_columns``: G, the grid is fitted per G consecutive original columns from the
      current weights at the group's first processed column; None: once, from the original W.
    - ``fit(weights, columns)``: the grid (any object) of one group from its weights (out, n),
      ``columns`` their original indices (n,) (all of them with ``group_columns = None``).
    - ``quantize(index, column, grid)``: the column (out,) of original index ``index``, rounded
      on ``grid``: (out,) float32.
    """

    @property
    def group_columns(self) -> int | None: ...

    def fit(self, weights: Tensor, columns: Tensor) -> Any: ...

    def quantize(self, index: int, column: Tensor, grid: Any) -> Tensor: ...


def _inverse_cholesky(H: Tensor) -> Tensor:
    """The upper Cholesky factor U of H^-1 (float64), or a ValueError if H is not positive
    definite."""
    lower, info = torch.linalg.cholesky_ex(H)
    if int(info) == 0:
        upper, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(lower), upper=True)
    if int(info) != 0:
        raise ValueError("H (after damping) is not numerically positive definite: raise damp, or "
                         "give more calibration inputs")
    return upper


def gptq_quantize(W: Tensor, H: Tensor, column_quantizer: ColumnQuantizer, *,
                  block_size: int = 128, damp: float = 0.01, act_order: bool = False) -> Tensor:
    """GPTQ-quantized weights (module docstring).

    Args:
        W: (out, d) finite weights.
        H: (d, d) symmetric positive semi-definite input second moment (any positive multiple:
            the result does not change with the scale of H).
        column_quantizer: the grid (:class:`ColumnQuantizer`).
        block_size: columns per block of lazy updates (>= 1; does not change the result).
        damp: relative damping (>= 0), ``H += damp * mean(diag H) * I``.
        act_order: process columns by decreasing ``H_ii``.

    Returns:
        W_hat (out, d) in W's dtype, every column on the quantizer's grid.
    """
    if not isinstance(W, Tensor) or W.ndim != 2 or W.numel() == 0:
        raise ValueError(f"W must be a non-empty (out, d) tensor; got "
                         f"{getattr(W, 'shape', type(W).__name__)}")
    out, d = W.shape
    if not isinstance(H, Tensor) or H.shape != (d, d):
        raise ValueError(f"H must be a ({d}, {d}) tensor; got "
                         f"{getattr(H, 'shape', type(H).__name__)}")
    if not bool(torch.isfinite(W).all()) or not bool(torch.isfinite(H).all()):
        raise ValueError("W and H must be finite (no NaN or inf)")
    if not isinstance(column_quantizer, ColumnQuantizer):
        raise ValueError(f"column_quantizer must implement ColumnQuantizer (group_columns, fit, "
                         f"quantize); got {type(column_quantizer).__name__}")
    check_int("block_size", block_size, 1)
    if isinstance(damp, bool) or not isinstance(damp, int | float) or not damp >= 0:
        raise ValueError(f"damp must be a number >= 0; got {damp!r}")
    group = column_quantizer.group_columns
    if group is not None:
        check_int("group_columns", group, 1)

    W = W.detach()
    weights = W.float().clone()
    H = H.detach().to(W.device, torch.float64).clone()
    diag = H.diagonal().clone()
    if bool((diag < 0).any()):
        raise ValueError("H has a negative diagonal entry: it is not positive semi-definite")
    grids: dict[int, Any] = {}
    if group is None:
        grids[0] = column_quantizer.fit(weights.clone(), torch.arange(d, device=W.device))
    dead = diag == 0
    weights[:, dead] = 0.0
    H.diagonal()[dead] = 1.0
    H.diagonal().add_(damp * float(diag.mean()))
    order = (torch.argsort(diag, descending=True, stable=True) if act_order
             else torch.arange(d, device=W.device))
    position = torch.empty_like(order)
    position[order] = torch.arange(d, device=W.device)
    weights, H = weights[:, order], H[order][:, order]
    U = _inverse_cholesky(H).float()

    Q = torch.empty_like(weights)
    original = order.tolist()
    for i1 in range(0, d, block_size):
        i2 = min(i1 + block_size, d)
        block = weights[:, i1:i2].clone()
        errors = torch.zeros(out, i2 - i1, dtype=weights.dtype, device=W.device)
        for i in range(i2 - i1):
            index = original[i1 + i]
            key = 0 if group is None else index // group
            if key not in grids:  # the group's first column: fit on its current weights
                members = torch.arange(key * group, min(key * group + group, d), device=W.device)
                at = position[members]
                current = torch.empty(out, len(members), dtype=weights.dtype, device=W.device)
                inside = at < i2
                current[:, inside] = block[:, at[inside] - i1]
                later = at[~inside]
                current[:, ~inside] = weights[:, later] - errors[:, :i] @ U[i1:i1 + i, later]
                grids[key] = column_quantizer.fit(current, members)
            column = block[:, i]
            q = column_quantizer.quantize(index, column, grids[key])
            if not isinstance(q, Tensor) or q.shape != (out,):
                raise ValueError(f"the column quantizer must return an ({out},) tensor; got "
                                 f"{getattr(q, 'shape', type(q).__name__)}")
            Q[:, i1 + i] = q
            error = (column - q) / U[i1 + i, i1 + i]
            block[:, i + 1:] -= error[:, None] * U[i1 + i, i1 + i + 1:i2][None, :]
            errors[:, i] = error
        weights[:, i2:] -= errors @ U[i1:i2, i2:]
    return Q[:, position].to(W.dtype)


def hessian_from_statistics(stats: InputStatistics) -> Tensor:
    """``H = gram / count`` (d, d), the mean of ``x x^T`` over the layer's input rows, from the
    shared statistics (for an ``nn.Linear(d, out)``: ``X^T X / N``; for an ungrouped conv: over
    the unfolded patches, in the column order of ``weight.reshape(out, -1)``). GPTQ's factor 2
    (``2 X^T X / N``, the Hessian of the squared error) is left out: it changes nothing.

    >>> stats = InputStatistics(nn.Linear(2, 1)); stats.update(torch.tensor([[1.0, 2.0]]))
    >>> hessian_from_statistics(stats)
    tensor([[1., 2.],
            [2., 4.]], dtype=torch.float64)
    """
    if not isinstance(stats, InputStatistics):
        raise ValueError(f"stats must be an InputStatistics; got {type(stats).__name__}")
    gram = stats.means()[0]
    if gram.shape[0] != 1:
        raise ValueError(f"a grouped conv ({gram.shape[0]} channel groups) has one H per "
                         "group: use stats.means()[0][k]")
    return gram[0]


def gptq_layer(layer: nn.Linear | nn.Conv2d, calibration_inputs: Sequence[Tensor],
               column_quantizer: ColumnQuantizer, *, block_size: int = 128, damp: float = 0.01,
               act_order: bool = False, chunk_size: int | None = 256) -> Tensor:
    """GPTQ weights for ``layer`` (an nn.Linear, or an ungrouped nn.Conv2d) from the inputs it
    receives, one tensor per batch; the layer is not modified.

    Returns:
        W_hat shaped and typed like ``layer.weight``.
    """
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        raise ValueError(f"gptq_layer takes an ungrouped layer; this conv has groups="
                         f"{layer.groups}")
    if isinstance(calibration_inputs, Tensor) or len(calibration_inputs) == 0:
        raise ValueError("calibration_inputs must be a non-empty list of input batches")
    stats = InputStatistics(layer, chunk_size=chunk_size)
    for X in calibration_inputs:
        stats.update(X)
    weight = layer.weight.detach()
    W_hat = gptq_quantize(weight.reshape(weight.shape[0], -1),
                          hessian_from_statistics(stats).to(weight.device), column_quantizer,
                          block_size=block_size, damp=damp, act_order=act_order)
    return W_hat.reshape(weight.shape)


def _nearest_level(column: Tensor, levels: Tensor) -> Tensor:
    """The nearest of each row's sorted ``levels`` (out, L) for ``column`` (out,) (a value on a
    midpoint goes to the lower level, as :func:`compress_extras.icquant._scalar._nearest`)."""
    return levels.gather(1, _nearest(column.float()[:, None], levels))[:, 0]


@dataclass(frozen=True)
class AsymmetricColumns:
    """The integer-zero-point grid of an :class:`AsymmetricRTN` option: per channel (fixed from
    the original W) or per group of ``option.group_size`` columns (fitted on the current weights).
    The result is stored as the option stores it (same codes, scales, zero points, bits)."""

    option: AsymmetricRTN

    @property
    def group_columns(self) -> int | None:
        return self.option.columns_per_group

    def fit(self, weights: Tensor, columns: Tensor) -> tuple[Tensor, Tensor]:
        scale, zero = asymmetric_grid(weights, self.option.bits)
        return scale[:, 0], zero[:, 0]

    def quantize(self, index: int, column: Tensor, grid: tuple[Tensor, Tensor]) -> Tensor:
        return quantize_to_grid(column, *grid, self.option.bits)


@dataclass(frozen=True)
class UniformColumns:
    """The float-minimum grid ``lo + k scale`` of a :class:`compress_extras.UniformQuant` option,
    per channel or per group (as :class:`AsymmetricColumns`)."""

    option: UniformQuant

    @property
    def group_columns(self) -> int | None:
        return self.option.group_size if self.option.per == "group" else None

    def fit(self, weights: Tensor, columns: Tensor) -> tuple[Tensor, Tensor]:
        low, high = weights.float().amin(dim=1), weights.float().amax(dim=1)
        return low, (high - low) / (2**self.option.bits - 1)

    def quantize(self, index: int, column: Tensor, grid: tuple[Tensor, Tensor]) -> Tensor:
        low, scale = grid
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.clamp(torch.round((column.float() - low) / safe), 0,
                        2**self.option.bits - 1)
        return low + q * scale


@dataclass(frozen=True, eq=False)
class LloydColumns:
    """A 2^b-level codebook per output row, fitted once on the original W (float16 levels, as
    ICQuant stores them); each entry goes to the nearest level of its row's codebook. Storage: b
    bits per weight plus 2^b float16 levels per row.

    The codebook is :class:`compress_extras.icquant.Lloyd`'s (plain k-means) or, with
    ``sensitivity``, the sensitivity-weighted one (:func:`compress_extras.weighted_lloyd`, as
    SqueezeLLM): ``sum_ij f_ij (W_ij - c_r(ij))^2`` is minimised, so the levels sit where the
    sensitive weights are. ``sensitivity`` is per entry, (out, d) (a Fisher diagonal ``E[g^2]``
    of the loss gradient, :func:`compress_extras._sensitivities.fisher_diagonal`), or per column,
    (d,): ``H.diagonal()`` weighs each input by its energy on the calibration data (the diagonal of
    the output error GPTQ minimises; no gradients needed), see :meth:`weighted_by`.
    """

    bits: int
    iterations: int = 30
    sensitivity: Tensor | None = None

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise ValueError(f"bits must be an int in 1..8; got {self.bits!r}")
        check_int("iterations", self.iterations, 0)
        f = self.sensitivity
        if f is not None and (not isinstance(f, Tensor) or f.ndim not in (1, 2)
                              or not bool(torch.isfinite(f).all()) or bool((f < 0).any())):
            raise ValueError("sensitivity must be a finite, non-negative (out, d) or (d,) "
                             f"tensor; got {getattr(f, 'shape', type(f).__name__)}")

    @classmethod
    def weighted_by(cls, bits: int, H: Tensor, iterations: int = 30) -> LloydColumns:
        """The codebook weighted by ``H``'s diagonal: each input's energy (class docstring)."""
        return cls(bits, iterations, H.detach().diagonal().float().clone())

    @property
    def group_columns(self) -> None:
        return None

    def fit(self, weights: Tensor, columns: Tensor) -> Tensor:
        if self.sensitivity is None:
            return Lloyd(self.iterations).encode(weights, self.bits)[1].float()
        f = self.sensitivity.to(weights.device)
        f = f[columns].expand_as(weights) if f.ndim == 1 else f[:, columns]
        if f.shape != weights.shape:
            raise ValueError(f"sensitivity {tuple(self.sensitivity.shape)} does not match the "
                             f"weights {tuple(weights.shape)}")
        levels = weighted_lloyd(weights, f, 2**self.bits, self.iterations)
        return levels.half().float().sort(dim=1).values  # float16, as stored

    def quantize(self, index: int, column: Tensor, grid: Tensor) -> Tensor:
        return _nearest_level(column, grid)


@dataclass(frozen=True)
class ShiftColumns:
    """DenseShift's (or the zero-code shift's) power-of-two levels ``alpha_c * {+-2^(p-P)}`` of a
    :class:`compress_extras.ShiftQuant` option: ``alpha_c`` fitted once per output row on the
    original W (:func:`compress_extras.shift._levels.fit_scale`), each entry projected to the
    nearest level (its ``project_codes``). The levels are a fixed set times a per-row scale, so
    the adapter fits GPTQ's column rule directly; it replaces only the post-training projection,
    not DenseShift's latent training."""

    option: ShiftQuant

    @property
    def group_columns(self) -> None:
        return None

    def fit(self, weights: Tensor, columns: Tensor) -> Tensor:
        o = self.option
        return fit_scale(weights.float(), o.bits, o.zero_code, o.scale)

    def quantize(self, index: int, column: Tensor, grid: Tensor) -> Tensor:
        o = self.option
        sign, exponent, nonzero = project_codes(column.float()[:, None], grid, o.bits,
                                                o.zero_code)
        return dequantize(sign, exponent, grid, o.bits, o.zero_code, nonzero)[:, 0]


@dataclass(frozen=True)
class ICQuantColumns:
    """ICQuant's two grids with the outlier mask FIXED before the updates: :class:`ICQuantizer`
    codes the original W (blocks of a row, ``settings.group_size`` dividing ``d`` or None), and
    its mask (the ``k`` largest magnitudes per block) and inlier and outlier grids (float16
    metadata, power-of-two exponent) are kept; GPTQ then rounds each entry to the nearest level
    of the grid its mask bit selects.

    Why fixed: a column must be rounded before the later columns of its row's block have their
    final values, yet whether an entry is an outlier, and both grids, depend on the magnitudes of
    the whole block. For the default one block per row the block's first column is column 0, so
    "fitted at the block's first column" is the original W anyway; for blocks inside rows the
    alternative (mask and grids from the updated weights at the block's first column) was not
    tried. Keeping ICQuantizer's own choice also keeps its stored size exactly: the index stream
    and the metadata are those of plain ICQuant on W, only the codes change, so the bits are
    known before GPTQ runs."""

    settings: ICQuantizer

    @property
    def group_columns(self) -> None:
        return None

    def fit(self, weights: Tensor, columns: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        out, d = weights.shape
        n = d if self.settings.group_size is None else self.settings.group_size
        if d % n:
            raise ValueError(f"ICQuant blocks must lie inside rows for GPTQ: group_size {n} does "
                             f"not divide the {d} columns")
        coded = self.settings.quantize(weights)
        mask = torch.from_numpy(coded.outlier_mask()).reshape(out, d).to(weights.device)
        inliers, outliers = (None if table is None else
                             table.sort(dim=1).values.reshape(out, d // n, -1).to(weights.device)
                             for table in coded.levels())
        return mask, inliers, outliers

    def quantize(self, index: int, column: Tensor,
                 grid: tuple[Tensor, Tensor | None, Tensor | None]) -> Tensor:
        mask, inliers, outliers = grid
        n_blocks = (inliers if inliers is not None else outliers).shape[1]
        block = index // (mask.shape[1] // n_blocks)
        rounded = [_nearest_level(column, levels[:, block])
                   for levels in (inliers, outliers) if levels is not None]
        if len(rounded) == 1:
            return rounded[0]
        return torch.where(mask[:, index], rounded[1], rounded[0])
