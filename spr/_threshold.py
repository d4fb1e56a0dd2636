"""The global magnitude threshold of the SPR pipeline, found by bisection.

After SPR training most groups are small but not zero. The paper zeroes every regularised entry
with ``|w| <= t`` for the largest ``t`` that keeps training accuracy within ``max_drop`` points of
the unthresholded model, then decides group by group (:func:`spr.structural_decision`).

The search runs over the sorted magnitudes: zeroing the ``k`` smallest entries, ``k`` bisected
between 0 (always acceptable) and all entries, so the answer is one of the entries' magnitudes.
Each step is one evaluation pass over ``loader``; with ``tol`` the bisection stops once the
bracket holds fewer than ``tol * n`` entries (``tol=0``: exact, about ``log2(n)`` passes).

Refused with a ValueError: a non-finite weight (checked before any pass; it would make the
threshold NaN, zeroing nothing, or inf, zeroing everything) and labels that are not class indices
of the model's output (checked batch by batch during the unthresholded pass, before anything is
zeroed; they would make every accuracy 0% and any threshold acceptable).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
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
    blocks = group_parts(model, groups, exclude)
    parts = [p for _, block in blocks for p in block]
    if not parts:
        raise ValueError(f"groups={groups!r} found nothing to threshold in {type(model).__name__}")
    _check_finite(model, blocks)
    saved = [p.detach().clone() for p in parts]
    magnitudes = torch.sort(torch.cat([s.abs().flatten().float().cpu() for s in saved])).values
    n = len(magnitudes)

    def threshold_of(k: int) -> float:
        return 0.0 if k == 0 else float(magnitudes[k - 1])

    history: list[tuple[float, float]] = []

    def accuracy_at(k: int, batches: Batches = loader) -> float:
        t = threshold_of(k)
        try:
            if k:
                with torch.no_grad():
                    for p, s in zip(parts, saved, strict=True):
                        p.masked_fill_(s.abs() <= t, 0.0)
            acc = evaluate(model, batches)
        finally:
            with torch.no_grad():
                for p, s in zip(parts, saved, strict=True):
                    p.copy_(s)
        history.append((t, acc))
        return acc

    checker = _LabelChecker(loader)
    handle = model.register_forward_hook(checker.hook)
    try:
        dense = accuracy_at(0, checker)  # the one pass that checks the labels against the outputs
    finally:
        handle.remove()
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


def _check_finite(model: nn.Module, blocks: list[tuple[str, tuple[Tensor, ...]]]) -> None:
    """Refuse a NaN or inf anywhere in the model's parameters, buffers or thresholded parts."""
    named = [(f"parameter {name!r}", p) for name, p in model.named_parameters()]
    named += [(f"buffer {name!r}", b) for name, b in model.named_buffers()]
    named += [(f"group block {name!r}", p) for name, block in blocks for p in block]
    for what, p in named:
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            bad = int((~torch.isfinite(p)).sum())
            raise ValueError(
                f"threshold_search: {what} has {bad} non-finite (NaN or inf) entries; the search "
                "needs finite weights (a NaN magnitude zeroes nothing, an inf one everything). "
                "The model diverged: retrain it (a smaller lr or lam) or reload a finite checkpoint"
            )


class _LabelChecker:
    """Wraps the loader for the unthresholded pass and checks, at each forward (a hook on the
    model), that the batch's labels are class indices ``0..C-1`` of the ``C`` outputs."""

    def __init__(self, loader) -> None:
        self.loader, self.labels, self.batch = loader, None, -1

    def __iter__(self) -> Iterator:
        for index, (inputs, labels) in enumerate(self.loader):
            self.batch, self.labels = index, labels
            yield inputs, labels

    def hook(self, module: nn.Module, args, output) -> None:
        labels, self.labels = self.labels, None
        if labels is None or not isinstance(output, Tensor) or output.ndim != 2:
            return
        classes = output.shape[1]
        labels = torch.as_tensor(labels)
        if labels.numel() == 0:
            return
        integral = not labels.is_floating_point() or bool((labels == labels.round()).all())
        low, high = float(labels.min()), float(labels.max())
        if not integral or low < 0 or high > classes - 1:
            raise ValueError(
                f"threshold_search: loader batch {self.batch} has labels in [{low:g}, {high:g}]"
                f"{'' if integral else ' (not integers)'}, but the labels must be class indices "
                f"0..{classes - 1} of the model's {classes} classes (its output width); every "
                "accuracy would be wrong and any threshold accepted. Pass the loader of the data "
                "the model was trained on, with integer labels 0..C-1"
            )
