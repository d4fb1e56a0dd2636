"""spr.solve_mip on Linear and Conv2d layers: exact against brute force and SCIP, certificates,
relaxations, constraints, the unfolded rows, and bad input."""

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

import mip
import spr
from spr._solve_mip import layer_rows


def random_layer(rng: np.random.Generator, index: int):
    """Alternating Linear and Conv2d layers with 4-10 input channels and uneven channel scales."""
    torch.manual_seed(index)
    n = int(rng.integers(4, 11))
    if index % 2 == 0:
        layer = nn.Linear(n, int(rng.integers(1, 4)))
        X = torch.randn(48, n) @ torch.randn(n, n)
    else:
        stride, padding, dilation = (int(rng.integers(1, 3)), int(rng.integers(0, 2)), 1)
        if n <= 6:
            n = max(n, 4)
        layer = nn.Conv2d(n, int(rng.integers(1, 3)), int(rng.choice([1, 3])), stride=stride,
                          padding=padding, dilation=dilation)
        X = torch.randn(6, n, 6, 6)
    with torch.no_grad():
        layer.weight.mul_(torch.rand(n).view(1, n, *([1] * (layer.weight.dim() - 2))) + 0.05)
    max_keep = int(rng.integers(1, n)) if index % 3 == 0 else None
    return layer, X, max_keep


INDICES = list(range(20))


@pytest.mark.parametrize("method", ["auto", "branch_and_bound", "outer_approximation"])
@pytest.mark.parametrize("index", INDICES)
def test_optimal_equals_brute_force_with_certificate(index, method):
    rng = np.random.default_rng(index)
    layer, X, max_keep = random_layer(rng, index)
    sol = spr.solve_mip(layer, X, lam=float(rng.uniform(0.02, 0.3)), alpha=0.5,
                        max_keep=max_keep, time_limit=900.0,  # finish even on a loaded machine
                        method=method)
    oracle = mip.solve_brute_force(sol.problem)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(oracle.objective, rel=1e-6)
    # the objective is the formula at the returned weight, recomputable by the user
    rows, _ = layer_rows(layer, X)
    W = sol.weight.reshape(sol.weight.shape[0], -1).double()
    Y = rows.double() @ layer.weight.detach().reshape(W.shape).double().T
    direct = ((rows.double() @ W.T - Y) ** 2).sum() / rows.shape[0] + sol.problem.lam * (
        0.5 * (W * W).sum() + 0.5 * sol.keep.sum()
    )
    assert sol.objective == pytest.approx(direct.item(), rel=1e-6)
    # constraints: dropped channels are zero, the box holds, max_keep holds
    assert sol.weight.shape == layer.weight.shape
    dropped = torch.from_numpy(~sol.keep)
    assert (sol.weight.transpose(0, 1)[dropped] == 0).all()
    assert sol.weight.abs().max() <= sol.problem.M * (1 + 1e-9)
    if max_keep is not None:
        assert sol.keep.sum() <= max_keep
    # relaxation chain
    big_m, persp = sol.relaxations["big_m"], sol.relaxations["perspective"]
    assert big_m <= persp * (1 + 1e-6) and persp <= sol.objective * (1 + 1e-6)
    assert sol.bound <= sol.objective * (1 + 1e-12) and sol.gap <= 1e-4


@pytest.mark.skipif(importlib.util.find_spec("pyscipopt") is None, reason="pyscipopt not installed")
@pytest.mark.parametrize("index", INDICES[:8])
def test_optimal_equals_scip(index):
    rng = np.random.default_rng(index)
    layer, X, max_keep = random_layer(rng, index)
    sol = spr.solve_mip(layer, X, lam=float(rng.uniform(0.02, 0.3)), alpha=0.5,
                        max_keep=max_keep, relaxations=(), mip_gap=1e-6, time_limit=900.0)
    # a generous limit: the oracle must finish even on a loaded machine (about 25 s when idle)
    scip = mip.solve_scip(sol.problem, mip_gap=1e-6, time_limit=900.0)
    assert scip.status == "optimal"
    assert sol.objective == pytest.approx(scip.objective, rel=1e-5)


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(3, 2, 3, stride=2, padding=1),
        nn.Conv2d(3, 2, (3, 2), stride=(1, 2), padding=(2, 0), dilation=(2, 1)),
        nn.Conv2d(3, 2, 3, padding="same", dilation=2),
        nn.Conv2d(3, 2, 4, padding="same"),
        nn.Conv2d(3, 2, 3, padding="valid", bias=False),
    ],
)
def test_conv_rows_reproduce_the_layer(conv):
    X = torch.randn(2, 3, 9, 8)
    rows, k = layer_rows(conv, X)
    assert k == conv.kernel_size[0] * conv.kernel_size[1]
    out = conv(X).detach()
    if conv.bias is not None:
        out = out - conv.bias.detach().view(1, -1, 1, 1)
    expected = out.permute(0, 2, 3, 1).reshape(-1, out.shape[1])
    W = conv.weight.detach().reshape(conv.out_channels, -1)
    torch.testing.assert_close(rows @ W.T, expected, rtol=1e-5, atol=1e-5)


def test_budget_and_default_M():
    torch.manual_seed(0)
    layer = nn.Linear(6, 2)
    cost = [1.0, 2.0, 1.0, 3.0, 1.0, 2.0]
    sol = spr.solve_mip(layer, torch.randn(40, 6), lam=0.01, alpha=0.5, cost=cost, budget=3.0,
                        relaxations=("big_m", "perspective", "perspective_lp"))
    assert np.dot(cost, sol.keep) <= 3.0
    assert sol.problem.M == pytest.approx(2 * layer.weight.abs().max().item())
    assert sol.relaxations["perspective_lp"] == pytest.approx(sol.relaxations["perspective"],
                                                             rel=1e-5)


@pytest.mark.parametrize(
    "make, kwargs, match",
    [
        (lambda: (nn.Linear(4, 2), torch.randn(8, 5)), {}, r"shape \(N, 4\)"),
        (lambda: (nn.Conv2d(3, 2, 3), torch.randn(8, 4, 5, 5)), {}, r"\(N, 3, H, W\)"),
        (lambda: (nn.Conv2d(3, 2, 3), torch.randn(8, 3, 2, 2)), {}, "smaller than the kernel"),
        (lambda: (nn.Linear(4, 2), torch.full((8, 4), float("nan"))), {}, "NaN"),
        (lambda: (nn.Conv2d(4, 2, 3, groups=2), torch.randn(2, 4, 5, 5)), {}, "grouped"),
        (lambda: (nn.ConvTranspose2d(3, 2, 3), torch.randn(2, 3, 5, 5)), {}, "supports nn.Linear"),
        (lambda: (nn.Conv2d(3, 2, 3, padding_mode="reflect"), torch.randn(2, 3, 5, 5)), {},
         "padding_mode"),
        (lambda: (nn.Linear(4, 2), torch.randn(8, 4)), {"max_keep": -1}, "max_keep"),
        (lambda: (nn.Linear(4, 2), torch.randn(8, 4)), {"max_keep": 2.5}, "must be an int"),
        (lambda: (nn.Linear(4, 2), torch.randn(8, 4)), {"max_keep": "3"}, "must be an int"),
        (lambda: (nn.Linear(4, 2), torch.randn(8, 4)), {"cost": [1] * 4, "budget": -1}, "budget"),
        (lambda: (nn.Linear(4, 2), torch.randn(8, 4)), {"alpha": 1.5}, "alpha"),
        (lambda: (nn.Linear(4, 2), torch.randn(8, 4)), {"M": -1.0}, "M must be"),
        (lambda: (nn.Linear(4, 2), torch.randn(8, 4)), {"relaxations": ("sdp",)}, "unknown"),
        (lambda: (nn.Linear(4, 2), torch.randn(8, 4)), {"method": "gurobi"}, "method"),
        (lambda: (nn.Linear(4, 2), torch.randn(0, 4)), {}, "non-empty"),
        (lambda: (nn.Linear(4, 2), torch.randn(8, 4) * 1e20), {}, "scale X down"),
    ],
)
def test_bad_input(make, kwargs, match):
    layer, X = make()
    args = {"lam": 0.1, "alpha": 0.5} | kwargs
    with pytest.raises(ValueError, match=match):
        spr.solve_mip(layer, X, **args)


def test_non_finite_weights():
    layer = nn.Linear(4, 2)
    with torch.no_grad():
        layer.weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match="weight contains NaN"):
        spr.solve_mip(layer, torch.randn(8, 4), lam=0.1, alpha=0.5)


def test_statistics_accumulate_over_chunks():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 2, 3, padding=1)
    X = torch.randn(7, 3, 6, 6)
    whole = spr.layer_problem(conv, X, lam=0.1, alpha=0.5, chunk_size=100)
    chunked = spr.layer_problem(conv, X, lam=0.1, alpha=0.5, chunk_size=2)
    rows, _ = layer_rows(conv, X)
    rows = rows.double().numpy()
    np.testing.assert_allclose(whole.gram, rows.T @ rows / len(rows), rtol=1e-12)
    for name in ("gram", "xty", "yty"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=1e-10)


def test_all_zero_inputs_return_at_once_and_the_call_honours_time_limit():
    """All-zero calibration: nothing to reconstruct, so nothing kept, proven at once; the whole
    call (relaxations included) stays within time_limit (no relaxation runs to its own limit)."""
    layer = nn.Conv2d(6, 3, 3, padding=1)
    sol = spr.solve_mip(layer, torch.zeros(4, 6, 5, 5), lam=0.1, alpha=0.5, time_limit=5.0)
    assert sol.status == "optimal" and not sol.keep.any() and sol.gap == 0
    assert sol.iterations == 0  # no solver iteration was needed


def test_keep_curve_matches_brute_force_per_k():
    torch.manual_seed(3)
    layer = nn.Conv2d(7, 2, 3, padding=1)
    X = torch.randn(6, 7, 5, 5)
    curve = spr.keep_curve(layer, X, ks=[1, 3, 5, 7], lam=0.05, time_limit=120)
    assert curve.ks.tolist() == [1, 3, 5, 7]
    for i, k in enumerate(curve.ks):
        oracle = mip.solve_brute_force(dataclasses.replace(curve.problem, max_keep=int(k)))
        assert curve.objective[i] == pytest.approx(oracle.objective, rel=1e-6)
        assert curve.bound[i] <= oracle.objective * (1 + 1e-9)
        assert curve.keep[i].sum() <= k
        assert curve.weight(i).reshape(layer.weight.shape).shape == layer.weight.shape
