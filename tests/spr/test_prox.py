"""spr_prox: optimality of the proximal step, exact zeros, and its bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import spr


def objective(w: torch.Tensor, v: torch.Tensor, alpha, lam, step) -> torch.Tensor:
    """0.5*||w - v||^2 + step*lam*SPR(w) per row (M = inf)."""
    return 0.5 * ((w - v) ** 2).sum(1) + step * lam * spr.spr_penalty(w, alpha)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.05, 0.95),
    st.floats(0.0, 5.0),
    st.floats(0.01, 2.0),
    st.data(),
)
def test_prox_is_optimal(alpha, lam, step, data):
    n = data.draw(st.integers(1, 5))
    v = torch.from_numpy(data.draw(arrays(np.float64, n, elements=st.floats(-4, 4))))[None]
    p = spr.spr_prox(v, alpha, lam, step)
    best = objective(p, v, alpha, lam, step)
    rng = np.random.default_rng(0)
    for scale in (1e-1, 1e-3, 1e-6):
        moves = torch.from_numpy(rng.standard_normal((64, n)) * scale)
        trial = objective(p + moves, v.expand(64, n), alpha, lam, step)
        assert (trial >= best - 1e-12).all()
    assert objective(torch.zeros_like(v), v, alpha, lam, step) >= best - 1e-12


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.8])
def test_three_branches_and_exact_zeros(alpha):
    a, b = alpha, 1 - alpha
    lam, step = 2.0, 0.05
    threshold = 2 * step * lam * math.sqrt(a * b)
    kink = math.sqrt(b / a)
    direction = torch.tensor([0.6, -0.8], dtype=torch.float64)
    edge = kink + threshold  # where the soft-threshold branch meets the ridge branch
    norms = [0.5 * threshold, threshold, 0.5 * (threshold + edge), 2 * edge]
    V = torch.stack([direction * s for s in norms])
    P = spr.spr_prox(V, alpha, lam, step)
    assert (P[:2] == 0).all()  # exact zeros up to the threshold
    torch.testing.assert_close(P[2], V[2] * (1 - threshold / norms[2]))
    torch.testing.assert_close(P[3], V[3] / (1 + 2 * step * lam * a))
    # continuous where the soft-threshold branch meets the ridge branch
    edge = direction[None] * edge
    below = spr.spr_prox(edge * (1 - 1e-9), alpha, lam, step)
    above = spr.spr_prox(edge * (1 + 1e-9), alpha, lam, step)
    torch.testing.assert_close(below, above, rtol=1e-6, atol=1e-8)


def test_lam_zero_is_identity():
    V = torch.randn(4, 3)
    torch.testing.assert_close(spr.spr_prox(V, 0.5, 0.0, 1.0), V)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 1.0}, "alpha"),
        ({"lam": -0.1}, "lam"),
        ({"lam": float("nan")}, "lam"),
        ({"step": 0.0}, "step"),
        ({"step": float("inf")}, "step"),
        ({"V": torch.ones(3)}, r"V must have shape \(G, n\)"),
        ({"V": torch.tensor([[float("nan")]])}, "NaN"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"V": torch.ones(2, 2), "alpha": 0.5, "lam": 1.0, "step": 0.1} | kwargs
    with pytest.raises(ValueError, match=match):
        spr.spr_prox(**args)
