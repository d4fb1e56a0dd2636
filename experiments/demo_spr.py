"""A short SPR training demo on scikit-learn's digits (shipped with scikit-learn, nothing to fetch).

Trains the same small conv net twice, without and with ``SPRegularizer`` in the loss, and shows
what SPR does: whole filters (conv filter + BatchNorm scale and shift) collapse towards zero while
the accuracy holds, and zeroing the collapsed filters costs almost nothing.

    python experiments/demo_spr.py [--epochs 20] [--lam 1.0] [--alpha 0.5]

Prints a table; writes ``experiments/results/demo_spr.json`` and ``demo_spr.png``.
"""

from __future__ import annotations

import argparse

import matplotlib.pyplot as plt  # picks a non-interactive backend when there is no display
import torch
import torch.nn.functional as F
from _common import RESULTS, digits_split, save_figure, write_json
from torch import nn
from tqdm import tqdm

import spr

COLLAPSED = 0.01  # y* below this: the group's norm fell below 1% of its starting scale


def convnet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, 10),
    )


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(X).argmax(1) == y).float().mean().item()


def train(model, reg, train_set, epochs: int, label: str) -> list[float]:
    X, y = train_set
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    penalties = []
    for _ in tqdm(range(epochs), desc=label):
        model.train()
        perm = torch.randperm(len(X))
        for i in range(0, len(X), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            if reg is not None:
                loss = loss + reg()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if reg is not None:
            penalties.append(reg().item())
    return penalties


def zero_collapsed(model: nn.Sequential, indicators: dict[str, torch.Tensor]) -> int:
    """Zero every collapsed filter with its BatchNorm scale and shift; return how many."""
    count = 0
    with torch.no_grad():
        for name, y in indicators.items():
            dead = y < COLLAPSED
            conv, bn = model[int(name)], model[int(name) + 1]
            conv.weight[dead] = 0
            bn.weight[dead] = 0
            bn.bias[dead] = 0
            count += int(dead.sum())
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lam", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    args = parser.parse_args()

    train_set, test_set = digits_split()

    torch.manual_seed(0)
    dense, pruned = convnet(), convnet()
    pruned.load_state_dict(dense.state_dict())
    train(dense, None, train_set, args.epochs, "without SPR")
    reg = spr.SPRegularizer(pruned, lam=args.lam, alpha=args.alpha)
    penalties = train(pruned, reg, train_set, args.epochs, f"with SPR (lam={args.lam:g})")

    dense_reg = spr.SPRegularizer(dense, lam=args.lam, alpha=args.alpha, M=reg.M_)
    y_dense, y_spr = dense_reg.indicators(), reg.indicators()
    acc_dense, acc_spr = accuracy(dense, *test_set), accuracy(pruned, *test_set)
    n_groups = sum(len(v) for v in y_spr.values())
    removed = zero_collapsed(pruned, y_spr)
    acc_zeroed = accuracy(pruned, *test_set)

    print(f"\n{'model':<34}{'test accuracy':>14}{'filters with y* < 0.01':>24}")
    collapsed_dense = sum(int((v < COLLAPSED).sum()) for v in y_dense.values())
    print(f"{'without SPR':<34}{acc_dense:>14.4f}{collapsed_dense:>17d} / {n_groups}")
    print(f"{'with SPR':<34}{acc_spr:>14.4f}{removed:>17d} / {n_groups}")
    print(f"{'with SPR, collapsed filters zeroed':<34}{acc_zeroed:>14.4f}")

    result = {
        "data": "scikit-learn digits, 1400 train / 397 test", "epochs": args.epochs,
        "lam": args.lam, "alpha": args.alpha, "groups": n_groups,
        "accuracy_without_spr": acc_dense, "accuracy_with_spr": acc_spr,
        "accuracy_collapsed_zeroed": acc_zeroed, "collapsed_without_spr": collapsed_dense,
        "collapsed_with_spr": removed, "penalty_per_epoch": penalties,
    }
    write_json(RESULTS / "demo_spr.json", result)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    bins = torch.logspace(-5, 0, 41).numpy()
    for label, ys in (("without SPR", y_dense), ("with SPR", y_spr)):
        values = torch.cat(list(ys.values())).clamp(min=1e-5).numpy()
        axes[0].hist(values, bins=bins, alpha=0.6, label=label)
    axes[0].axvline(COLLAPSED, color="k", linestyle="--", linewidth=1, label="collapsed below")
    axes[0].set(xscale="log", xlabel="y*(filter group)", ylabel="filters",
                title="Where the filter groups end up")
    axes[0].legend()
    axes[1].plot(range(1, len(penalties) + 1), penalties, marker="o")
    axes[1].set(xlabel="epoch", ylabel="SPR penalty (lam * weighted mean)",
                title="The penalty during training")
    fig.tight_layout()
    save_figure(RESULTS / "demo_spr.png", fig)
    print(f"wrote {RESULTS / 'demo_spr.json'} and {RESULTS / 'demo_spr.png'}")


if __name__ == "__main__":
    main()
