"""The least-squares rows of a layer's inputs and their Gram statistics, in one place.

Used by :func:`spr.layer_problem` (so :func:`spr.solve_mip` and :func:`spr.keep_curve`) and by
:func:`compress_extras.allocate_bits` (``sensitivity="output"``): a conv's padding, stride,
dilation and channel groups are handled here and nowhere else.

The rows ``R`` of a layer are the vectors its outputs are linear functions of, so that the layer's
output without bias is ``Y_k = R_k W_k^T`` for each channel group ``k``:

- ``nn.Linear(in, out)``: ``X (..., in) -> R (1, N, in)``, N the product of the leading dims;
- ``nn.Conv2d(C, O, (kh, kw), stride, padding, dilation, groups=g)``: ``X (B, C, H, W)`` padded
  as the layer pads it (an int, a tuple, ``"same"`` or ``"valid"``; ``padding_mode`` too) and
  unfolded into patches, ``R (g, B*L, d)`` with ``d = C/g * kh * kw`` (channel-major, as
  ``F.unfold``) and L the output positions; group k reads input channels ``k*C/g .. (k+1)*C/g-1``
  and ``W_k = weight[k*O/g:(k+1)*O/g].reshape(O/g, d)``.

:class:`InputStatistics` accumulates over batches (each split into chunks of ``chunk_size``
samples, so a conv's unfolded rows need not fit in memory at once), for target weights ``T``
(optional; ``T_k`` as ``W_k``)::

    gram[k] = sum R_k^T R_k              (g, d, d)
    xty[k]  = sum R_k^T (S_k T_k^T)      (g, d, O/g)
    yty[k]  = sum_rows (S_k T_k^T)**2    (g, O/g)     the diagonal of Y_k^T Y_k

with ``S = R`` (the layer's own outputs) unless other target inputs are given (``S`` their rows:
the dense network's inputs to the layer, say, while ``R`` are the pruned network's).
    count   = number of rows N per group
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["InputStatistics", "conv_padding", "grouped_rows", "layer_rows"]


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


class InputStatistics:
    """Sums of the Gram matrix of ``layer``'s rows over batches, and optionally the cross terms
    for target weights (module docstring for the formulas and shapes).

    Args:
        layer: the nn.Linear or nn.Conv2d whose inputs are passed to :meth:`update`.
        weight: target weights shaped like ``layer.weight`` (usually the layer's own): also
            accumulate ``xty`` and ``yty``; the sums then live on its device.
        dtype: the dtype of the products and sums (float64 by default).
        chunk_size: samples per chunk of a batch (None: the whole batch at once).

    Attributes ``gram``, ``xty``, ``yty`` (None before the first update, ``xty``/``yty`` also
    without ``weight``) and ``count`` (rows so far); divide by ``count`` for the means.

    >>> stats = InputStatistics(nn.Linear(3, 2))
    >>> stats.update(torch.ones(4, 3)); stats.update(torch.ones(2, 3))
    >>> stats.gram.shape, stats.count, float(stats.gram[0, 0, 0])
    (torch.Size([1, 3, 3]), 6, 6.0)
    """

    def __init__(self, layer: nn.Linear | nn.Conv2d, weight: Tensor | None = None, *,
                 dtype: torch.dtype = torch.float64, chunk_size: int | None = 256) -> None:
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(
                chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be an int >= 1 or None; got {chunk_size!r}")
        self.layer, self.dtype, self.chunk_size = layer, dtype, chunk_size
        self.target: Tensor | None = None
        if weight is not None:
            if weight.shape != layer.weight.shape:
                raise ValueError(f"weight must have the layer's weight shape "
                                 f"{tuple(layer.weight.shape)}; got {tuple(weight.shape)}")
            g = _groups(layer)
            self.target = weight.detach().to(dtype).reshape(g, weight.shape[0] // g, -1)
        self.gram: Tensor | None = None
        self.xty: Tensor | None = None
        self.yty: Tensor | None = None
        self.count = 0

    def update(self, X: Tensor, target_inputs: Tensor | None = None) -> None:
        """Add the statistics of the inputs ``X`` (one batch, as the layer receives it).

        ``target_inputs``: the inputs the *targets* are computed from, when they differ from
        ``X`` (same shape; needs ``weight``): ``Y = rows(target_inputs) @ T^T``. Sequential
        reconstruction passes the pruned network's inputs as ``X`` and the dense network's as
        ``target_inputs``, so the fit maps what the layer now receives to what it produced."""
        if not isinstance(X, Tensor):
            raise ValueError(f"X must be a torch.Tensor; got {type(X).__name__}")
        X = X.detach()
        if target_inputs is not None:
            if self.target is None:
                raise ValueError("target_inputs needs target weights: pass weight=...")
            if not isinstance(target_inputs, Tensor) or target_inputs.shape != X.shape:
                raise ValueError(f"target_inputs must be a tensor shaped like X {tuple(X.shape)}")
            target_inputs = target_inputs.detach()
        size = X.shape[0] if self.chunk_size is None else self.chunk_size
        for start in range(0, X.shape[0], size):
            rows = grouped_rows(self.layer, X[start:start + size])
            device = rows.device if self.target is None else self.target.device
            rows = rows.to(device, self.dtype)
            self.gram = _add(self.gram, rows.mT @ rows)
            if self.target is not None:
                source = rows
                if target_inputs is not None:
                    source = grouped_rows(self.layer, target_inputs[start:start + size])
                    source = source.to(device, self.dtype)
                Y = source @ self.target.mT  # (g, N, O/g)
                self.xty = _add(self.xty, rows.mT @ Y)
                self.yty = _add(self.yty, (Y * Y).sum(dim=1))
            self.count += rows.shape[1]


def _add(total: Tensor | None, term: Tensor) -> Tensor:
    return term if total is None else total + term
