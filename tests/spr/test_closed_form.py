"""The torch closed form: agreement with its numpy twin and with the 1-D oracle, the properties of
docs/mathematics.md §3 (hypothesis), and a backward that is finite everywhere."""

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import mip
import spr
from tests.cases import random_groups
from tests.mip.test_closed_form import perspective_min_over_y

ALPHAS = [0.05, 0.3, 0.5, 0.9]


def padded(groups):
    """(G, 8) matrix of zero-padded groups (zeros change neither norm) and their M."""
    W = np.zeros((len(groups), 8))
    for i, (w, _, _) in enumerate(groups):
        W[i, : len(w)] = w
    return W, np.array([M for _, M, _ in groups])


@pytest.mark.parametrize("alpha", ALPHAS)
def test_torch_equals_numpy_twin_and_oracle(alpha):
    groups = random_groups(np.random.default_rng(1), 600, alpha)
    W, M = padded(groups)
    got = spr.spr_penalty(torch.from_numpy(W), alpha, torch.from_numpy(M)).numpy()
    np.testing.assert_allclose(got, mip.spr_penalty(W, alpha, M), rtol=1e-12)
    oracle = [perspective_min_over_y(w, alpha, m) for w, m, _ in groups[:200]]
    np.testing.assert_allclose(got[:200], oracle, rtol=1e-9)
    y = spr.spr_indicator(torch.from_numpy(W), alpha, torch.from_numpy(M)).numpy()
    np.testing.assert_allclose(y, mip.spr_indicator(W, alpha, M), rtol=1e-12)


def test_three_case_values_by_hand():
    a = 0.2
    b, c = 1 - a, math.sqrt(a / (1 - a))  # c = 0.5
    W = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.6, 0.8], [0.3, 0.1]], dtype=torch.float64)
    M = torch.tensor([1.0, math.inf, 10.0, 0.5], dtype=torch.float64)
    r3, m3 = math.hypot(0.3, 0.1), 0.3  # c*r3 = 0.158 < m3/M = 0.6 < 1: third case
    expected = [0.0, a * 25 + b, 2 * math.sqrt(a * b) * 1.0, a * 0.5 * r3**2 / m3 + b * m3 / 0.5]
    expected = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(spr.spr_penalty(W, a, M), expected)
    torch.testing.assert_close(
        spr.spr_indicator(W, a, M), torch.tensor([0.0, 1.0, c * 1.0, 0.6], dtype=torch.float64)
    )


# ---- properties (hypothesis) -------------------------------------------------------------------

alphas = st.floats(0.02, 0.98)


def value(w, alpha, M=math.inf):
    return spr.spr_penalty(torch.as_tensor(np.atleast_2d(w)), alpha, M).item()


@settings(max_examples=300, deadline=None)
@given(alphas, st.floats(0.2, 5.0), st.data())
def test_convex_jensen(alpha, M, data):
    n = data.draw(st.integers(1, 6))
    x = data.draw(arrays(np.float64, n, elements=st.floats(-M, M)))
    z = data.draw(arrays(np.float64, n, elements=st.floats(-M, M)))
    theta = data.draw(st.floats(0, 1))
    mid = value(theta * x + (1 - theta) * z, alpha, M)
    assert mid <= theta * value(x, alpha, M) + (1 - theta) * value(z, alpha, M) + 1e-12


@settings(max_examples=300, deadline=None)
@given(alphas, st.floats(0.2, 5.0), st.data())
def test_sandwich_big_m_below_l0_above(alpha, M, data):
    a, b = alpha, 1 - alpha
    w = data.draw(arrays(np.float64, data.draw(st.integers(1, 6)), elements=st.floats(-M, M)))
    big_m = a * w @ w + b * np.max(np.abs(w)) / M
    l0 = a * w @ w + b * float(np.any(w != 0))
    got = value(w, alpha, M)
    assert big_m - 1e-12 <= got <= l0 + 1e-12


@settings(max_examples=200, deadline=None)
@given(alphas, st.floats(-20, 20))
@example(0.125, 5e-324)  # the smallest subnormal: c*r underflows to 0 (once gave NaN)
def test_reverse_huber_for_one_entry(alpha, x):
    a, b = alpha, 1 - alpha
    kink = math.sqrt(b / a)
    berhu = 2 * math.sqrt(a * b) * abs(x) if abs(x) < kink else a * x * x + b
    assert value([x], alpha) == pytest.approx(berhu, rel=1e-12, abs=1e-300)
    # For n = 1 the third case needs M < kink: with M >= kink it is reverse Huber too.
    assert value([x], alpha, kink * 1.5) == pytest.approx(berhu, rel=1e-12, abs=1e-300)


def boundary_points(alpha, rng, n=4):
    """Groups on the case-1/2 boundary (c*r = 1) and on the case-2/3 boundary (m/M = c*r)."""
    c = math.sqrt(alpha / (1 - alpha))
    w = rng.standard_normal(n)
    on12 = w / (c * np.linalg.norm(w))
    w = rng.standard_normal(n) * 0.3 / (c * np.linalg.norm(w))  # c*r = 0.3
    on23 = (w, np.max(np.abs(w)) / (c * np.linalg.norm(w)))  # M making m/M = c*r
    return (on12, math.inf), on23


@settings(max_examples=100, deadline=None)
@given(alphas, st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_continuous_and_c1_across_interior_boundaries(alpha, n, seed):
    for w, M in boundary_points(alpha, np.random.default_rng(seed), n):
        for scale in (1 - 1e-7, 1 + 1e-7):  # r moves across the boundary, m/M along with it
            inside, outside = torch.tensor(w * scale, requires_grad=True), torch.tensor(w)
            f = spr.spr_penalty(inside[None], alpha, M)
            (g,) = torch.autograd.grad(f.sum(), inside)
            assert f.item() == pytest.approx(value(outside, alpha, M), rel=1e-6)
            at = torch.tensor(w, requires_grad=True)
            (g0,) = torch.autograd.grad(spr.spr_penalty(at[None], alpha, M).sum(), at)
            torch.testing.assert_close(g, g0, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_gradcheck_away_from_kinks(alpha):
    rng = np.random.default_rng(11)
    groups = [g for g in random_groups(rng, 60, alpha) if len(g[0]) > 1]
    W, M = padded(groups)
    W += rng.uniform(-1e-3, 1e-3, W.shape) * np.abs(W).max(axis=1, keepdims=True)  # no ties
    W = torch.from_numpy(W).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda X: spr.spr_penalty(X, alpha, torch.from_numpy(M)), (W,), eps=1e-8, atol=1e-6
    )


def test_gradient_is_adaptive_weight_decay_in_second_case():
    alpha = 0.3
    w = torch.tensor([[0.1, -0.2, 0.05]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(spr.spr_penalty(w, alpha).sum(), w)
    y = spr.spr_indicator(w, alpha)
    assert 0 < y.item() < 1
    torch.testing.assert_close(g, 2 * alpha * w.detach() / y)


# ---- finite backward ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("M", [math.inf, 1.0, 1e-3])
def test_backward_finite_at_kinks_and_extremes(dtype, M):
    tiny = torch.finfo(dtype).tiny
    big = torch.finfo(dtype).max ** 0.5 * 10  # r^2 overflows, the gradient must not
    rows = [
        [0.0, 0.0, 0.0],  # W = 0
        [0.5, -0.5, 0.5],  # ties of the max entry
        [tiny, 0.0, -tiny],  # smallest normal numbers
        [tiny / 8, tiny / 16, 0.0],  # subnormal
        [1e-30, 2e-30, -1e-30],
        [big, -big, 1.0],
        [1e15, 2e15, 0.0],
    ]
    W = torch.tensor(rows, dtype=dtype, requires_grad=True)
    out = spr.spr_penalty(W, 0.4, M)
    assert not torch.isnan(out).any() and (out >= 0).all(), out
    assert torch.isfinite(out[:5]).all()
    (g,) = torch.autograd.grad(out.sum(), W)
    assert torch.isfinite(g).all(), g
    assert (g[0] == 0).all()
    # Below the kink the gradient stays within the group-lasso bound 2*sqrt(ab) (+ the box term).
    assert g[2:5].abs().max() <= 2 * math.sqrt(0.4 * 0.6) + (0.6 / M if M < 1 else 0) + 1e-6


@pytest.mark.parametrize("alpha", [0.2, 0.6])
def test_backward_finite_on_case_boundaries(alpha):
    rng = np.random.default_rng(5)
    for w, M in boundary_points(alpha, rng):
        W = torch.tensor(w[None], requires_grad=True)
        (g,) = torch.autograd.grad(spr.spr_penalty(W, alpha, M).sum(), W)
        assert torch.isfinite(g).all()
    # the case-1/3 boundary m = M
    W = torch.tensor([[1.0, 0.1]], requires_grad=True)
    (g,) = torch.autograd.grad(spr.spr_penalty(W, alpha, 1.0).sum(), W)
    assert torch.isfinite(g).all()


def test_ties_share_the_box_subgradient():
    alpha, M = 0.1, 1.0  # c = 1/3: small groups are in the third case
    W = torch.tensor([[0.3, -0.3, 0.1]], dtype=torch.float64, requires_grad=True)
    assert spr.spr_indicator(W, alpha, M).item() == pytest.approx(0.3)
    (g,) = torch.autograd.grad(spr.spr_penalty(W, alpha, M).sum(), W)
    assert g[0, 0] == pytest.approx(-g[0, 1])  # symmetric split between the tied entries
    f = lambda X: spr.spr_penalty(X, alpha, M).item()  # noqa: E731
    # Along d = sign(w) on the tied entries both maxima grow together and f is smooth, so a valid
    # subgradient must reproduce that directional derivative (a full box term on each tied entry
    # would count it twice).
    d = torch.tensor([[1.0, -1.0, 0.0]], dtype=torch.float64)
    eps = 1e-7
    directional = (f(W.detach() + eps * d) - f(W.detach() - eps * d)) / (2 * eps)
    assert (g * d).sum().item() == pytest.approx(directional, rel=1e-6)


def test_low_precision_inputs_evaluate_in_float32():
    W = torch.randn(5, 7, dtype=torch.bfloat16, requires_grad=True)
    out = spr.spr_penalty(W, 0.5, 1.0)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert W.grad.dtype == torch.bfloat16 and torch.isfinite(W.grad.float()).all()
    torch.testing.assert_close(out, spr.spr_penalty(W.detach().float(), 0.5, 1.0))


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": "x"}, "alpha"),
        ({"M": 0.0}, "M must be"),
        ({"M": float("nan")}, "M must be"),
        ({"M": torch.tensor([1.0, -1.0])}, "M must be"),
        ({"M": torch.ones(3)}, "broadcastable"),
        ({"W": torch.ones(4)}, r"shape \(G, n\)"),
        ({"W": torch.ones(2, 0)}, r"shape \(G, n\)"),
        ({"W": torch.ones(2, 2, dtype=torch.int64)}, "floating-point"),
        ({"W": torch.tensor([[1.0, float("inf")]])}, "NaN or infinite"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"W": torch.ones(2, 2), "alpha": 0.5, "M": 1.0} | kwargs
    for fn in (spr.spr_penalty, spr.spr_indicator):
        with pytest.raises(ValueError, match=match):
            fn(**args)
