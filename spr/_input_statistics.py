"""The least-squares rows of a layer's inputs and their Gram statistics, in one place.

Every torch-side Gram / cross-term accumulation goes through :class:`InputStatistics`:
:func:`spr.layer_problem` (so :func:`spr.solve_mip` and :func:`spr.keep_curve`),
:func:`compress_extras.allocate_bits` (``sensitivity="output"``), GPTQ's Hessian
(:func:`compress_extras.hessian_from_statistics`, :func:`compress_extras.gptq_layer`) and the
language-model layer problems of :func:`compress_extras.llm.prune_llm`. A conv's padding, stride,
dilation and channel groups are handled here and nowhere else; :func:`collect_input_statistics`
records the statistics of named layers of a model with forward pre-hooks.

The rows ``R`` of a layer are the vectors its outputs are linear functions of, so that the layer's
output without bias is ``Y_k = R_k W_k^T`` for each channel group ``k``:

- ``nn.Linear(in, out)``: ``X (..., in) -> R (1, N, in)``, N the product of the leading dims;
- ``nn.Conv2d(C, O, (kh, kw), stride, padding, dilation, groups=g)``: ``X (B, C, H, W)`` padded
  as the layer pads it (an int, a tuple, ``"same"`` or ``"valid"``; ``padding_mode`` too) and
  unfolded into patches, ``R (g, B*L, d)`` with ``d = C/g * kh * kw`` (channel-major, as
  ``F.unfold``) and L the output positions; group k reads input channels ``k*C/g .. (k+1)*C/g-1``
  and ``W_k = weight[k*O/g:(k+1)*O/g].reshape(O/g, d)``.

:class:`InputStatistics` accumulates over batches (each split into chunks of ``chunk_size``
samples, so a conv's unfolded rows need not fit in memory at once), every batch's rows counted
``w`` times (its ``weight``, 1 by default), for targets ``Y`` (optional)::

    gram[k]       = sum w R_k^T R_k              (g, d, d)
    xty[k]        = sum w R_k^T Y_k              (g, d, O/g)
    yty[k]        = sum_rows w Y_k**2            (g, O/g)     the diagonal of Y_k^T Y_k
    row_sum[k]    = sum_rows w R_k               (g, d)
    target_sum[k] = sum_rows w Y_k               (g, O/g)
    count         = sum_rows w                   (the number of rows N per group when w = 1)

with ``Y_k = S_k T_k^T`` for target weights ``T`` (``T_k`` as ``W_k``) and ``S = R`` (the
layer's own outputs) unless other target inputs are given (``S`` their rows: the dense network's
inputs to the layer, say, while ``R`` are the pruned network's), or ``Y`` given directly as
outputs of the layer's shape (any targets: the dense output plus a correction, say).
:meth:`InputStatistics.means` divides by ``count`` (and centres, for a fit with an intercept).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["InputStatistics", "collect_input_statistics", "conv_padding", "grouped_outputs",
           "grouped_rows", "layer_rows", "linear_or_conv"]


def conv_padding(layer: nn.Conv2d) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding equivalent to the layer's ``padding``: ``"valid"`` is
    none, ``"same"`` (stride 1) pads ``dilation*(k-1)`` in all with the extra pixel on the
    right/bottom (as torch), an int or a tuple ``(ph, pw)`` pads both sides alike."""
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            return (0, 0, 0, 0)
        pads = []
        for k, dil in zip(layer.kernel_size, layer.dilation, strict=True):
            total = dil * (k - 1)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return (left, right, top, bottom)
    ph, pw = layer.padding
    return (pw, pw, ph, ph)


def _groups(layer: nn.Module) -> int:
    return layer.groups if isinstance(layer, nn.Conv2d) else 1


def grouped_rows(layer: nn.Linear | nn.Conv2d, X: Tensor) -> Tensor:
    """The rows of ``layer`` for inputs ``X``, one block per channel group (module docstring):
    ``(1, N, in)`` for a Linear with X ``(..., in)``; ``(groups, B*L, C/groups*kh*kw)`` for a
    Conv2d with X ``(B, C, H, W)``. In X's dtype; ValueError on a non-finite or misshapen X."""
    if not isinstance(layer, nn.Linear | nn.Conv2d):
        raise ValueError(f"input rows are defined for nn.Linear and nn.Conv2d; got "
                         f"{type(layer).__name__}")
    if not isinstance(X, Tensor):
        raise ValueError(f"X must be a torch.Tensor; got {type(X).__name__}")
    if X.is_floating_point() and not bool(torch.isfinite(X).all()):
        raise ValueError("X contains NaN or infinite entries")
    if isinstance(layer, nn.Linear):
        if X.dim() < 2 or X.shape[-1] != layer.in_features:
            raise ValueError(f"X for a Linear layer must have shape (N, {layer.in_features}) "
                             f"or (..., {layer.in_features}); got {tuple(X.shape)}")
        return X.reshape(1, -1, X.shape[-1])
    if X.dim() != 4 or X.shape[1] != layer.in_channels:
        raise ValueError(f"X for a Conv2d layer must have shape (N, {layer.in_channels}, H, W); "
                         f"got {tuple(X.shape)}")
    pads = conv_padding(layer)
    if layer.padding_mode == "zeros":
        X = F.pad(X, pads)
    else:
        X = F.pad(X, pads, mode=layer.padding_mode)
    for size, k, dil in zip(X.shape[2:], layer.kernel_size, layer.dilation, strict=True):
        if size < dil * (k - 1) + 1:
            raise ValueError(f"X of padded spatial size {tuple(X.shape[2:])} is smaller than the "
                             f"kernel {layer.kernel_size} with dilation {layer.dilation}")
    patches = F.unfold(X, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)
    n, width, length = patches.shape  # (B, C*kh*kw, L)
    g = layer.groups
    patches = patches.reshape(n, g, width // g, length).permute(1, 0, 3, 2)  # (g, B, L, d)
    return patches.reshape(g, n * length, width // g)


def layer_rows(layer: nn.Linear | nn.Conv2d, X: Tensor) -> tuple[Tensor, int]:
    """The least-squares rows of an ungrouped ``layer`` for inputs ``X`` and the size of one
    input channel's block of columns (the MIP's group size).

    Linear: X (N, in) -> (N, in), block size 1. Conv2d (groups=1): X (N, C, H, W) ->
    (N * positions, C*kh*kw) unfolded patches, block size kh*kw (channel-major, as F.unfold).
    A grouped conv has one block of rows per group: use :func:`grouped_rows`.
    """
    if _groups(layer) != 1:
        raise ValueError(f"layer_rows takes an ungrouped layer; this conv has groups="
                         f"{layer.groups}: use grouped_rows for its rows per channel group")
    rows = grouped_rows(layer, X)[0]
    return rows, (1 if isinstance(layer, nn.Linear) else layer.kernel_size[0] *
                  layer.kernel_size[1])




def grouped_outputs(layer: nn.Linear | nn.Conv2d, Y: Tensor) -> Tensor:
    """Outputs ``Y`` of ``layer`` as rows per channel group, row for row with
    :func:`grouped_rows`: ``(1, N, out)`` for a Linear with Y ``(..., out)``;
    ``(groups, B*L, O/groups)`` for a Conv2d with Y ``(B, O, H', W')``."""
    if isinstance(layer, nn.Linear):
        if Y.dim() < 2 or Y.shape[-1] != layer.out_features:
            raise ValueError(f"targets for a Linear layer must have shape (..., "
                             f"{layer.out_features}); got {tuple(Y.shape)}")
        return Y.reshape(1, -1, Y.shape[-1])
    if not isinstance(layer, nn.Conv2d):
        raise ValueError(f"outputs are defined for nn.Linear and nn.Conv2d; got "
                         f"{type(layer).__name__}")
    if Y.dim() != 4 or Y.shape[1] != layer.out_channels:
        raise ValueError(f"targets for a Conv2d layer must have shape (N, {layer.out_channels}, "
                         f"H', W'); got {tuple(Y.shape)}")
    n, out, g = Y.shape[0], Y.shape[1], layer.groups
    return Y.reshape(n, g, out // g, -1).permute(1, 0, 3, 2).reshape(g, -1, out // g)


def _check_weight(weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not (
            0 <= weight < math.inf):
        raise ValueError(f"weight must be a number >= 0; got {weight!r}")
    return weight


class InputStatistics:
    """Sums of the Gram matrix of ``layer``'s rows over batches, and optionally the cross terms
    for targets (module docstring for the formulas and shapes).

    Args:
        layer: the nn.Linear or nn.Conv2d whose inputs are passed to :meth:`update`.
        weight: target weights shaped like ``layer.weight`` (usually the layer's own): also
            accumulate ``xty``, ``yty`` and ``target_sum``; the sums then live on its device.
        dtype: the dtype of the sums (float64 by default).
        chunk_size: samples per chunk of a batch (None: the whole batch at once).
        compute_dtype: the dtype of each chunk's products (default ``dtype``): float32 products
            summed in float64 halve the time of float64 throughout.
        device: where the products and sums are computed (default: the target weights', else
            the inputs').

    Attributes ``gram``, ``xty``, ``yty``, ``row_sum``, ``target_sum`` (None before the first
    update, the target terms also without targets) and ``count`` (the rows' total weight so far:
    the number of rows when every weight is 1); :meth:`means` divides by ``count``.

    >>> stats = InputStatistics(nn.Linear(3, 2))
    >>> stats.update(torch.ones(4, 3)); stats.update(torch.ones(2, 3))
    >>> stats.gram.shape, stats.count, float(stats.gram[0, 0, 0])
    (torch.Size([1, 3, 3]), 6, 6.0)
    >>> stats.update(torch.ones(1, 3), weight=4.0); stats.count   # a row counted 4 times
    10.0
    """

    def __init__(self, layer: nn.Linear | nn.Conv2d, weight: Tensor | None = None, *,
                 dtype: torch.dtype = torch.float64, chunk_size: int | None = 256,
                 compute_dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(
                chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be an int >= 1 or None; got {chunk_size!r}")
        self.layer, self.dtype, self.chunk_size = layer, dtype, chunk_size
        self.compute_dtype = dtype if compute_dtype is None else compute_dtype
        self.device = None if device is None else torch.device(device)
        self.target: Tensor | None = None
        if weight is not None:
            if weight.shape != layer.weight.shape:
                raise ValueError(f"weight must have the layer's weight shape "
                                 f"{tuple(layer.weight.shape)}; got {tuple(weight.shape)}")
            g = _groups(layer)
            target = weight.detach().to(self.compute_dtype).reshape(g, weight.shape[0] // g, -1)
            self.target = target if self.device is None else target.to(self.device)
        self.gram: Tensor | None = None
        self.xty: Tensor | None = None
        self.yty: Tensor | None = None
        self.row_sum: Tensor | None = None
        self.target_sum: Tensor | None = None
        self.count: float = 0

    def update(self, X: Tensor, target_inputs: Tensor | None = None, *,
               targets: Tensor | None = None, weight: float = 1.0) -> None:
        """Add the statistics of the inputs ``X`` (one batch, as the layer receives it).

        Args:
            X: the layer's inputs.
            target_inputs: the inputs the *targets* are computed from, when they differ from
                ``X`` (same shape; needs ``weight`` in the constructor):
                ``Y = rows(target_inputs) @ T^T``. Sequential reconstruction passes the pruned
                network's inputs as ``X`` and the dense network's as ``target_inputs``, so the
                fit maps what the layer now receives to what it produced.
            targets: the targets themselves, shaped like the layer's outputs for ``X`` (any
                function of anything: the dense output plus a correction, say); instead of
                ``target_inputs`` and of target weights.
            weight: how many times each row of this batch counts (>= 0; 0 leaves it out).
        """
        if not isinstance(X, Tensor):
            raise ValueError(f"X must be a torch.Tensor; got {type(X).__name__}")
        X = X.detach()
        weight = _check_weight(weight)
        if target_inputs is not None:
            if targets is not None:
                raise ValueError("pass target_inputs or targets, not both")
            if self.target is None:
                raise ValueError("target_inputs needs target weights: pass weight=...")
            if not isinstance(target_inputs, Tensor) or target_inputs.shape != X.shape:
                raise ValueError(f"target_inputs must be a tensor shaped like X {tuple(X.shape)}")
            target_inputs = target_inputs.detach()
        if targets is not None:
            if not isinstance(targets, Tensor) or targets.dim() == 0 or (
                    targets.shape[0] != X.shape[0]):
                raise ValueError(f"targets must be the layer's outputs for X {tuple(X.shape)}")
            targets = targets.detach()
        if weight == 0:
            return
        size = X.shape[0] if self.chunk_size is None else self.chunk_size
        for start in range(0, X.shape[0], size):
            chunk = slice(start, start + size)
            rows = grouped_rows(self.layer, X[chunk])
            device = self._device(rows)
            rows = rows.to(device, self.compute_dtype)
            self.gram = self._sum(self.gram, rows.mT @ rows, weight)
            self.row_sum = self._sum(self.row_sum, rows.sum(dim=1), weight)
            Y = None
            if targets is not None:
                Y = grouped_outputs(self.layer, targets[chunk]).to(device, self.compute_dtype)
                if Y.shape[1] != rows.shape[1]:
                    raise ValueError(f"targets must be the layer's outputs for X: "
                                     f"{Y.shape[1]} output rows for {rows.shape[1]} input rows")
            elif self.target is not None:
                source = rows
                if target_inputs is not None:
                    source = grouped_rows(self.layer, target_inputs[chunk])
                    source = source.to(device, self.compute_dtype)
                Y = source @ self.target.mT  # (g, N, O/g)
            if Y is not None:
                self.xty = self._sum(self.xty, rows.mT @ Y, weight)
                self.yty = self._sum(self.yty, (Y * Y).sum(dim=1), weight)
                self.target_sum = self._sum(self.target_sum, Y.sum(dim=1), weight)
            self.count += rows.shape[1] if weight == 1 else weight * rows.shape[1]

    def means(self, center: bool = False) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``(gram, xty, yty) / count`` (the targets' terms None without targets).

        ``center``: the statistics of the centred rows and targets, ``R - mean(R)`` and
        ``Y - mean(Y)``, i.e. of a least-squares fit with an intercept
        ``b = mean(Y) - W mean(R)`` fitted jointly with every W (``yty`` clipped at 0)."""
        if self.gram is None or self.count == 0:
            raise ValueError("the statistics have seen no inputs: call stats.update(X) first")
        n = self.count
        gram = self.gram / n
        xty = None if self.xty is None else self.xty / n
        yty = None if self.yty is None else self.yty / n
        if center:
            mx = self.row_sum / n
            gram = gram - mx[:, :, None] * mx[:, None, :]
            if xty is not None:
                my = self.target_sum / n
                xty = xty - mx[:, :, None] * my[:, None, :]
                yty = (yty - my * my).clamp_min(0.0)
        return gram, xty, yty

    def _device(self, rows: Tensor) -> torch.device:
        if self.device is not None:
            return self.device
        return rows.device if self.target is None else self.target.device

    def _sum(self, total: Tensor | None, term: Tensor, weight: float) -> Tensor:
        term = term.to(self.dtype)
        if weight != 1:
            term = term * weight
        return term if total is None else total + term


def linear_or_conv(model: nn.Module, name: str, purpose: str) -> nn.Linear | nn.Conv2d:
    """The submodule ``name`` of ``model``, or a ValueError naming it when there is none or it is
    not an nn.Linear / nn.Conv2d (``purpose`` says what needs one)."""
    try:
        layer = model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"model has no layer named {name!r}") from None
    if not isinstance(layer, nn.Linear | nn.Conv2d):
        raise ValueError(f"layer {name!r} is a {type(layer).__name__}; {purpose} is defined for "
                         "nn.Linear and nn.Conv2d")
    return layer


@contextmanager
def collect_input_statistics(
    model: nn.Module, names: Iterable[str], *, cross_terms: bool = False,
    dtype: torch.dtype = torch.float64, chunk_size: int | None = 256,
    compute_dtype: torch.dtype | None = None, device: torch.device | str | None = None,
) -> Iterator[dict[str, InputStatistics]]:
    """Within the block, every input of the layers ``names`` of ``model`` is added to the layer's
    :class:`InputStatistics` (by a forward pre-hook, removed on leaving the block).

    ``cross_terms``: also ``xty``, ``yty`` for the layer's own weights (its outputs without bias
    as targets); the other keywords as :class:`InputStatistics`'. A bad input raises ValueError
    naming the layer.

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> with collect_input_statistics(net, ["0", "2"]) as stats:
    ...     _ = net(torch.randn(5, 3))
    >>> stats["2"].gram.shape, stats["2"].count
    (torch.Size([1, 4, 4]), 5)
    """
    stats: dict[str, InputStatistics] = {}
    for name in names:
        layer = linear_or_conv(model, name, "input statistics")
        stats[name] = InputStatistics(layer, layer.weight if cross_terms else None, dtype=dtype,
                                      chunk_size=chunk_size, compute_dtype=compute_dtype,
                                      device=device)

    def record(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            try:
                stats[name].update(args[0])
            except ValueError as err:
                raise ValueError(f"layer {name!r}: its calibration inputs: {err}") from None
        return hook

    handles = [s.layer.register_forward_pre_hook(record(n)) for n, s in stats.items()]
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()
