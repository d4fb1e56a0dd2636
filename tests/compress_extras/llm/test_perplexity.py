"""Fixed windows and perplexity against models whose perplexity is known in closed form."""

import math

import pytest
import torch
from torch import nn

from compress_extras.llm import fixed_windows, perplexity


def test_windows_are_fixed_disjoint_and_spread():
    ids = torch.arange(1000)
    w = fixed_windows(ids, 50, 5)
    assert w.shape == (5, 50)
    starts = w[:, 0].tolist()
    assert starts[0] == 0 and starts[-1] == 950 and starts == sorted(set(starts))
    assert all(torch.equal(row, torch.arange(s, s + 50)) for row, s in zip(w, starts,
                                                                           strict=True))
    assert torch.equal(fixed_windows(ids, 50, 5), w)  # deterministic
    assert fixed_windows(ids, 50).shape == (20, 50)
    with pytest.raises(ValueError, match="count"):
        fixed_windows(ids, 50, 21)
    with pytest.raises(ValueError, match="window"):
        fixed_windows(ids[:10], 50)


class Uniform(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, ids):
        return torch.zeros(*ids.shape, self.vocab) + self.dummy


class Successor(nn.Module):
    """Puts probability p on token x+1 (mod V) and spreads 1-p over the others."""

    def __init__(self, vocab, p):
        super().__init__()
        self.vocab, self.p = vocab, p
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, ids):
        probs = torch.full((*ids.shape, self.vocab), (1 - self.p) / (self.vocab - 1))
        probs.scatter_(2, ((ids + 1) % self.vocab)[..., None], self.p)
        return probs.log() + self.dummy


def test_known_perplexities():
    ids = torch.arange(600) % 37
    windows = fixed_windows(ids, 30, 12)
    assert perplexity(Uniform(37), windows, progress=False) == pytest.approx(37)
    assert perplexity(Successor(37, 0.9), windows, batch_size=5,
                      progress=False) == pytest.approx(1 / 0.9)
    # on a sequence where the successor is always wrong, every token costs (1-p)/(V-1)
    flat = torch.zeros(300, dtype=torch.long)
    value = perplexity(Successor(37, 0.9), fixed_windows(flat, 30), progress=False)
    assert value == pytest.approx(36 / 0.1)
    assert math.isfinite(value)
