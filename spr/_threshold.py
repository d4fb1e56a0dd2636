"""The global magnitude threshold of the SPR pipeline, found by bisection.

After SPR training most groups are small but not zero. The paper zeroes every regularised entry
with ``|w| <= t`` for the largest ``t`` that keeps training accuracy within ``max_drop`` points of
the unthresholded model, then decides group by group (:func:`spr.structural_decision`).

The search runs over the sorted magnitudes: zeroing the ``k`` smallest entries, ``k`` bisected
between 0 (always acceptable) and all entries, so the answer is one of the entries' magnitudes.
Each step is one evaluation pass over ``loader``; with ``tol`` the bisection stops once the
bracket holds fewer than ``tol * n`` entries (``tol=0``: exact, about ``log2(n)`` passes).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from spr._groups import UserGroups, group_parts
from spr._training import Batches, evaluate


@dataclass(frozen=True)
class ThresholdResult:
    """Outcome of :func:`threshold_search`. Accuracies in percent of the loader's samples.

    ``threshold``: entries with ``|w| <= threshold`` are zeroed (0.0: nothing is);
    ``zeroed`` of ``entries`` regularised entries fall below it; ``history`` holds every
    ``(threshold, accuracy)`` the bisection evaluated.
    """

    threshold: float
    zeroed: int
    entries: int
    accuracy_dense: float
    accuracy: float
    max_drop: float
    history: list[tuple[float, float]] = field(default_factory=list)

    @property
    def drop(self) -> float:
        return self.accuracy_dense - self.accuracy


def threshold_search(
    model: nn.Module,
    loader: Batches,
    max_drop: float = 0.05,
    *,
    groups: str | UserGroups = "conv_bn",
    exclude: Iterable | None = None,
    tol: float = 0.0,
    progress: bool = True,
) -> ThresholdResult:
    """Largest global magnitude threshold whose zeroing drops accuracy by less than ``max_drop``.

    Args:
        model: the SPR-trained network; left exactly as it was (values restored after each try).
        loader: ``(inputs, labels)`` batches, the training set in the paper; iterated once per
            bisection step, so pass a fixed (non-augmented) order.
        max_drop: accepted accuracy loss in percentage points, >= 0 (the paper: 0.05).
        groups, exclude: which entries are thresholded, as in :class:`spr.SPRegularizer`.
        tol: stop when the bracket holds fewer than ``tol * entries`` entries (0: exact).

    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
    ...                     nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    >>> data = [(torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,)))]
    >>> result = threshold_search(net, data, max_drop=100.0, progress=False)
    >>> result.zeroed == result.entries     # dropping < 100 points: everything may go
    True
    """
    max_drop = float(max_drop)
    if not max_drop >= 0:
        raise ValueError(
            f"max_drop is an accuracy loss in percentage points and must be >= 0; got {max_drop}"
        )
    if not 0 <= tol < 1:
        raise ValueError(f"tol must be in [0, 1); got {tol}")
    parts = [p for _, block in group_parts(model, groups, exclude) for p in block]
    if not parts:
        raise ValueError(f"groups={groups!r} found nothing to threshold in {type(model).__name__}")
    saved = [p.detach().clone() for p in parts]
    magnitudes = torch.sort(torch.cat([s.abs().flatten().float().cpu() for s in saved])).values
    n = len(magnitudes)

    def threshold_of(k: int) -> float:
        return 0.0 if k == 0 else float(magnitudes[k - 1])

    history: list[tuple[float, float]] = []

    def accuracy_at(k: int) -> float:
        t = threshold_of(k)
        try:
            if k:
                with torch.no_grad():
                    for p, s in zip(parts, saved, strict=True):
                        p.masked_fill_(s.abs() <= t, 0.0)
            acc = evaluate(model, loader)
        finally:
            with torch.no_grad():
                for p, s in zip(parts, saved, strict=True):
                    p.copy_(s)
        history.append((t, acc))
        return acc

    dense = accuracy_at(0)
    bar = tqdm(desc="threshold search", total=max(1, n.bit_length()), disable=not progress)
    lo, hi, acc_lo = 0, n, dense
    acc_hi = accuracy_at(n)
    bar.update()
    if dense - acc_hi < max_drop:
        lo, acc_lo = n, acc_hi
    while hi - lo > max(1, int(tol * n)):
        mid = (lo + hi) // 2
        acc = accuracy_at(mid)
        bar.update()
        if dense - acc < max_drop:
            lo, acc_lo = mid, acc
        else:
            hi = mid
    bar.close()
    # Ties: every entry with the threshold's magnitude is zeroed along with the k-th.
    threshold = threshold_of(lo)
    zeroed = int((magnitudes <= threshold).sum()) if lo else 0
    return ThresholdResult(threshold, zeroed, n, dense, acc_lo, max_drop, history)
