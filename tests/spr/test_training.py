"""SPR does its job on real data (scikit-learn's digits, shipped with scikit-learn): whole groups
collapse under SGD with SPRegularizer, and become exactly zero under the proximal step."""

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import spr


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    X = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(data.target)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    X, y = X[perm], y[perm]
    return (X[:1400], y[:1400]), (X[1400:], y[1400:])


def convnet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, 10),
    )


def accuracy(model, X, y) -> float:
    model.eval()
    with torch.no_grad():
        return (model(X).argmax(1) == y).float().mean().item()


def train(model, data, lam: float, epochs: int = 20):
    (X, y), _ = data
    torch.manual_seed(1)
    reg = spr.SPRegularizer(model, lam=lam, alpha=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(epochs):
        model.train()
        for i in range(0, len(X), 64):
            loss = F.cross_entropy(model(X[i : i + 64]), y[i : i + 64]) + reg()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return reg


@pytest.mark.slow
def test_sgd_with_spr_collapses_whole_filters(digits):
    torch.manual_seed(0)
    plain, regularised = convnet(), convnet()
    regularised.load_state_dict(plain.state_dict())
    y_plain = torch.cat(list(train(plain, digits, lam=0.0).indicators().values()))
    reg = train(regularised, digits, lam=2.0)
    y = torch.cat(list(reg.indicators().values()))
    assert (y_plain < 0.01).sum() == 0  # without SPR no filter collapses
    collapsed = y < 0.01  # group norm below 1% of where it started (BN scale 1)
    assert collapsed.float().mean() >= 0.25, y
    test = digits[1]
    acc = accuracy(regularised, *test)
    assert acc >= 0.93  # measured: 41% of filters collapsed, 98.0% (99.2% without SPR)
    # The collapsed filters carry nothing: removing them (filter, BN scale and shift) costs little.
    with torch.no_grad():
        for name, yb in reg.indicators().items():
            index = int(name)
            dead = yb < 0.01
            regularised[index].weight[dead] = 0
            regularised[index + 1].weight[dead] = 0
            regularised[index + 1].bias[dead] = 0
    assert accuracy(regularised, *test) >= acc - 0.02


@pytest.mark.slow
def test_proximal_step_makes_exact_zeros(digits):
    (X, y), test = digits
    X, Xt = X.flatten(1), test[0].flatten(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    hidden = model[0]
    lam, alpha, lr = 2.0, 0.5, 0.05
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(30):
        for i in range(0, len(X), 64):
            loss = F.cross_entropy(model(X[i : i + 64]), y[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():  # prox of lam * mean over rows of SPR, for the hidden rows
                rows = torch.cat([hidden.weight, hidden.bias[:, None]], 1)
                rows = spr.spr_prox(rows, alpha, lam / len(rows), lr)
                hidden.weight.copy_(rows[:, :-1])
                hidden.bias.copy_(rows[:, -1])
    zero_rows = (torch.cat([hidden.weight, hidden.bias[:, None]], 1) == 0).all(1)
    assert zero_rows.float().mean() >= 0.25
    assert accuracy(model, Xt, test[1]) >= 0.88  # measured: 41% rows zero, 91.7% accuracy
