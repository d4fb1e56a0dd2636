"""spr.prune_to_budget and spr.reconstruct: the budget holds on the pruned model, the allocation
against brute force, refit against none on a trained CNN, determinism, the input model kept,
and bad input."""

import copy
import itertools
import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import spr
from spr._budget_size import size_models
from spr.data import digits
from spr.models import CifarResNet, resnet20, small_cnn


def _state(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(model: nn.Module, state: dict) -> bool:
    now = model.state_dict()
    return now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)


def _measured(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    return spr.count_macs(model, example), spr.count_params(model)


CASES = [  # (model builder, input shape, budget keywords)
    (lambda: resnet20(in_channels=1, shortcut="A"), (1, 28, 28), {"macs": 0.5}),
    (lambda: resnet20(in_channels=1, shortcut="A"), (1, 28, 28), {"macs": 9_000_000}),
    (lambda: resnet20(in_channels=1, shortcut="B"), (1, 28, 28), {"params": 0.6}),
    (lambda: resnet20(in_channels=1, shortcut="B"), (1, 28, 28),
     {"macs": 0.7, "params": 150_000}),
    (lambda: torchvision.models.resnet18(num_classes=10), (3, 32, 32), {"macs": 0.4}),
    (lambda: torchvision.models.resnet18(num_classes=10), (3, 32, 32),
     {"params": 6_000_000}),
]


@pytest.mark.parametrize("index", range(len(CASES)))
def test_budget_holds_on_the_pruned_model(index):
    build, shape, budget = CASES[index]
    torch.manual_seed(index)
    net = build().eval()
    calibration = torch.randn(16, *shape)
    example = calibration[:1]
    dense = _measured(net, example)
    before = _state(net)
    plan = spr.prune_to_budget(net, calibration, method="magnitude", refit=False,
                               max_options=4, progress=False, **budget)
    small = plan.apply(net)
    macs, params = _measured(small, example)
    limits = {"macs": dense[0], "params": dense[1]}
    for name, value in budget.items():
        limit = math.floor(value * limits[name]) if isinstance(value, float) else value
        assert (macs if name == "macs" else params) <= limit
    assert plan.certificate.budget["macs"] == macs and plan.certificate.budget["params"] == params
    assert plan.certificate.budget["met"] and macs < dense[0]
    assert _same_state(net, before)  # neither planning nor apply edits the input model
    with torch.no_grad():  # the physically smaller model computes what the masked one does
        masked = plan.masked(net)
        assert torch.allclose(small(calibration), masked(calibration), atol=1e-4, rtol=1e-4)


def _resnet8() -> nn.Module:
    """One block per stage: three prunable groups of 16, 32 and 64 channels."""
    return CifarResNet(8, num_classes=10, in_channels=1)


def test_knapsack_choice_equals_brute_force_over_k():
    torch.manual_seed(0)
    net = _resnet8().eval()
    calibration = torch.randn(24, 1, 16, 16)
    plan = spr.prune_to_budget(net, calibration, macs=0.45, method="osscar", max_options=5,
                               progress=False)
    curves = plan.curves
    assert len(curves) == 3 and plan.certificate.knapsack["sizes"] == "exact"
    macs_model, _ = size_models(net, plan.groups, calibration[:1])
    limit = plan.certificate.budget["macs_limit"]
    best, best_widths = math.inf, None
    for options in itertools.product(*[range(len(c["ks"])) for c in curves]):
        widths = [c["ks"][i] for c, i in zip(curves, options, strict=True)]
        if macs_model.size(widths) <= limit:
            cost = sum(c["cost"][i] for c, i in zip(curves, options, strict=True))
            if cost < best - 1e-12:
                best, best_widths = cost, widths
    assert plan.certificate.knapsack["objective"] == pytest.approx(best, rel=1e-9, abs=1e-12)
    assert [row["k"] for row in plan.certificate.layers] == best_widths


def test_size_model_counts_what_the_pruned_network_has():
    """The size model (pair terms included, small_cnn is a chain) against count_macs and
    count_params of physically pruned networks at random widths."""
    rng = np.random.default_rng(0)
    for net, shape in ((small_cnn(width=6), (1, 12, 12)), (_resnet8(), (1, 16, 16))):
        net.eval()
        x = torch.randn(1, *shape)
        groups, _ = spr.channel_groups(net, x)
        macs_model, params_model = size_models(net, groups, x)
        for _ in range(3):
            keep = {}
            for g in groups:
                k = int(rng.integers(1, g.channels + 1))
                mask = torch.zeros(g.channels, dtype=torch.bool)
                mask[torch.from_numpy(rng.permutation(g.channels)[:k])] = True
                keep[g.name] = mask
            plan = spr.reconstruct(net, torch.randn(8, *shape), keep, refit=False,
                                   progress=False)
            small = plan.apply(net)
            widths = [int(keep[g.name].sum()) for g in groups]
            assert macs_model.size(widths) == spr.count_macs(small, x)
            assert params_model.size(widths) == spr.count_params(small)


@pytest.fixture(scope="module")
def trained_digits_cnn():
    (X, y), (Xt, yt) = (digits(split).to_float() for split in ("train", "test"))
    torch.manual_seed(0)
    net = small_cnn(width=8)
    batches = [(X[i:i + 64], y[i:i + 64]) for i in range(0, len(X), 64)]
    spr.train(net, batches, epochs=15, lr=0.05, progress=False)
    return net.eval(), (X, y), (Xt, yt)


def _accuracy(model, X, y) -> float:
    with torch.no_grad():
        return float((model.eval()(X).argmax(1) == y).float().mean())


def test_refit_beats_the_same_supports_without_refit(trained_digits_cnn):
    net, (X, _), (Xt, yt) = trained_digits_cnn
    dense = _accuracy(net, Xt, yt)
    assert dense > 0.9
    plan = spr.prune_to_budget(net, X[:512], macs=0.4, progress=False, time_limit=20)
    unfit = spr.reconstruct(net, X[:512], plan.keep, refit=False, progress=False)
    assert all(torch.equal(plan.keep[k], unfit.keep[k]) for k in plan.keep)
    with_refit, without = _accuracy(plan.apply(net), Xt, yt), _accuracy(unfit.apply(net), Xt, yt)
    assert with_refit > without + 0.02, (with_refit, without, dense)
    # the consumers' reconstruction errors are lower with the refit, layer by layer
    for a, b in zip(plan.certificate.layers, unfit.certificate.layers, strict=True):
        assert a["objective"] <= b["objective"] * (1 + 1e-9)


def test_certificate_bounds_below_objectives(trained_digits_cnn):
    net, (X, _), _ = trained_digits_cnn
    plan = spr.prune_to_budget(net, X[:256], macs=0.5, progress=False, time_limit=20)
    for row in plan.certificate.layers:
        assert row["bound"] <= row["objective"] * (1 + 1e-9) and 1 <= row["kept"] <= row["k"]
    knapsack = plan.certificate.knapsack
    assert knapsack["bound"] <= knapsack["objective"] * (1 + 1e-9)
    assert plan.certificate.knapsack["sizes"] == "linearised"  # small_cnn is a chain
    for curve in plan.curves:
        assert np.all(np.asarray(curve["bound"]) <= np.asarray(curve["cost"]) * (1 + 1e-9))
    table = plan.certificate.table()
    assert "knapsack" in table and plan.groups[0].name in table


def test_plan_is_deterministic(trained_digits_cnn):
    net, (X, _), _ = trained_digits_cnn
    plans = [spr.prune_to_budget(net, X[:256], macs=0.5, method=method, progress=False,
                                 time_limit=20) for method in ("mip", "mip", "osscar", "osscar")]
    for a, b in (plans[:2], plans[2:]):
        assert [r["k"] for r in a.certificate.layers] == [r["k"] for r in b.certificate.layers]
        assert all(torch.equal(a.keep[k], b.keep[k]) for k in a.keep)
        assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


def test_uniform_allocation_keeps_one_fraction():
    torch.manual_seed(1)
    net = resnet20(in_channels=1).eval()
    plan = spr.prune_to_budget(net, torch.randn(8, 1, 16, 16), macs=0.5, method="magnitude",
                               allocation="uniform", refit=False, progress=False)
    fractions = {row["k"] / row["channels"] for row in plan.certificate.layers}
    assert max(fractions) - min(fractions) <= 1 / 16 + 1e-9
    assert plan.certificate.budget["met"]


class _NumpyDetour(nn.Module):
    """Runs without gradients, fails when traced (``numpy()`` of a tensor that needs grad)."""

    def forward(self, x):
        return torch.from_numpy(x.numpy() * 2.0)


class _DictOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3),
                                  nn.Flatten(), nn.Linear(64, 2))

    def forward(self, x):
        return {"logits": self.body(x)}


@pytest.mark.parametrize("budget, message", [
    ({}, "state a budget"),
    ({"macs": 1.5}, "fraction"),
    ({"macs": 0.0}, "fraction"),
    ({"macs": -3}, "positive count"),
    ({"params": 0}, "positive count"),
    ({"macs": 0.001}, "smallest network allowed"),
    ({"params": 100}, "smallest network allowed"),
])
def test_bad_budgets_are_refused(budget, message):
    net = resnet20(in_channels=1).eval()
    before = _state(net)
    with pytest.raises(ValueError, match=message):
        spr.prune_to_budget(net, torch.randn(4, 1, 16, 16), progress=False, **budget)
    assert _same_state(net, before)


def test_bad_calibration_and_untraceable_models_are_refused():
    net = resnet20(in_channels=1).eval()
    before = _state(net)
    bad = torch.randn(4, 1, 16, 16)
    bad[1, 0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        spr.prune_to_budget(net, bad, macs=0.5, progress=False)
    with pytest.raises(ValueError, match="cannot take the calibration batch"):
        spr.prune_to_budget(net, torch.randn(4, 3, 16, 16), macs=0.5, progress=False)
    with pytest.raises(TypeError, match="calibration"):
        spr.prune_to_budget(net, np.zeros((4, 1, 16, 16)), macs=0.5, progress=False)
    with pytest.raises(ValueError, match="method"):
        spr.prune_to_budget(net, torch.randn(4, 1, 16, 16), macs=0.5, method="lasso")
    assert _same_state(net, before)
    odd = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), _NumpyDetour(), nn.Conv2d(4, 4, 3),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 2)).eval()
    before = _state(odd)
    with pytest.raises(spr.PruningError, match="at layer '2'"):
        spr.prune_to_budget(odd, torch.randn(4, 1, 8, 8), macs=0.5, progress=False)
    assert _same_state(odd, before)
    with pytest.raises(TypeError, match="returns a dict"):
        spr.prune_to_budget(_DictOutput().eval(), torch.randn(4, 1, 8, 8), macs=0.5,
                            progress=False)


def test_reconstruct_refuses_unknown_groups_and_bad_masks():
    net = resnet20(in_channels=1).eval()
    x = torch.randn(4, 1, 16, 16)
    with pytest.raises(ValueError, match="not prunable groups"):
        spr.reconstruct(net, x, {"conv1": torch.ones(16, dtype=torch.bool)}, progress=False)
    with pytest.raises(ValueError, match="bool mask"):
        spr.reconstruct(net, x, {"layer1.0.conv1": torch.zeros(16, dtype=torch.bool)},
                        progress=False)


def test_apply_refuses_another_architecture():
    torch.manual_seed(0)
    net = _resnet8().eval()
    plan = spr.prune_to_budget(net, torch.randn(8, 1, 16, 16), macs=0.5, method="magnitude",
                               refit=False, progress=False)
    wider = CifarResNet(14, num_classes=10, in_channels=1)
    other = copy.deepcopy(wider)
    with torch.no_grad():
        other.layer1[0].conv1 = nn.Conv2d(16, 8, 3, padding=1, bias=False)
    with pytest.raises(ValueError, match="made for"):
        plan.apply(other)
