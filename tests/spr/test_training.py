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


def test_train_and_evaluate_learn_digits():
    """The plain loop of the pipeline: accuracy on held-out digits well above chance."""
    from spr.data import digits as digits_split
    from spr.models import small_cnn

    torch.manual_seed(0)
    train_split, test_split = digits_split("train"), digits_split("test")
    model = small_cnn(in_channels=1, width=8)
    history = spr.train(model, train_split.loader(64), epochs=3, lr=0.05, progress=False)
    assert len(history) == 3 and history[-1]["loss"] < history[0]["loss"]
    assert history[0]["penalty"] == 0.0
    model.train()
    assert spr.evaluate(model, test_split.loader(256, shuffle=False)) > 80.0
    assert model.training  # evaluate restores the mode


def test_evaluate_refuses_an_empty_loader():
    with pytest.raises(ValueError, match="no samples"):
        spr.evaluate(nn.Linear(2, 2), [])


def test_diverging_loss_is_reported():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    data = [(torch.full((2, 4), float("nan")), torch.tensor([0, 1]))]
    with pytest.raises(FloatingPointError, match="learning rate"):
        spr.train(model, data, epochs=1, progress=False)
