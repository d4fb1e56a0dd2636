"""Perplexity of a causal language model over fixed windows of a token sequence.

The text's token ids (N,) are cut into ``count`` non-overlapping windows of ``window`` tokens,
spread evenly over the text (the same windows for every model compared). Each window is scored on
its own: the model predicts tokens 2..T from their prefixes and::

    perplexity = exp( sum_windows sum_t -log p(x_t | x_<t) / (count * (window - 1)) )

>>> ids = torch.arange(100)
>>> fixed_windows(ids, 10, 3)[:, 0].tolist()   # first, middle and last of the 10 windows
[0, 40, 90]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = ["fixed_windows", "perplexity"]


def fixed_windows(ids: Tensor, window: int, count: int | None = None) -> Tensor:
    """(count, window) windows of ``ids`` (N,): ``count`` of the ``N // window`` consecutive
    non-overlapping windows, evenly spaced (all of them when ``count`` is None)."""
    ids = torch.as_tensor(ids).reshape(-1)
    available = ids.numel() // window
    if window < 2 or available == 0:
        raise ValueError(f"need window >= 2 and at least one window of {window} tokens in "
                         f"{ids.numel()}")
    count = available if count is None else count
    if not 1 <= count <= available:
        raise ValueError(f"count must lie in 1..{available} (windows of {window} tokens in "
                         f"{ids.numel()}); got {count}")
    starts = torch.linspace(0, available - 1, count).round().long() * window
    return torch.stack([ids[s: s + window] for s in starts.tolist()])


@torch.no_grad()
def perplexity(model: nn.Module, windows: Tensor, batch_size: int = 8,
               progress: bool = True) -> float:
    """``exp`` of the mean next-token negative log-likelihood over ``windows`` (count, T)."""
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    batches = windows.split(batch_size)
    for batch in tqdm(batches, desc="perplexity", leave=False, disable=not progress):
        batch = batch.to(device)
        out = model(batch)
        logits = getattr(out, "logits", out)
        nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch[:, 1:].flatten(),
                              reduction="none")
        total += float(nll.double().sum())
        tokens += batch[:, 1:].numel()
    return math.exp(total / tokens)
