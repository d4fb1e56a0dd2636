"""Exact layer-wise channel selection on toy nets, and the strength of the relaxations.

1. An MLP and a small CNN are trained on scikit-learn's digits. ``spr.solve_mip`` chooses which
   input channels of a hidden layer to keep (= output channels of the layer before) under
   ``max_keep``; the net is rebuilt with those channels and the refit weights, and its test
   accuracy is compared with magnitude selection of the same number of channels (largest column
   norms), with and without the same least-squares refit.
2. Over random and real layers: big-M bound, perspective bound, optimum, the share of the root
   gap closed by the perspective relaxation, time and iterations.
3. A plot of the exact solver's lower and upper bounds against the iteration.

    python experiments/layerwise_mip.py [--quick]

Writes ``experiments/results/layerwise_mip.json`` and ``layerwise_mip_bounds.png``.
"""

from __future__ import annotations

import argparse
import copy

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from _common import RESULTS, digits_split, save_figure, write_json
from torch import nn
from tqdm import tqdm

import mip
import spr

LAM, ALPHA = 1e-3, 0.5


def mlp(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width),
                         nn.ReLU(), nn.Linear(width, 10))


def cnn(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * width, 10))


def train(model, train_set, epochs: int) -> nn.Module:
    X, y = train_set
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(X))
        for i in range(0, len(X), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model, data) -> float:
    X, y = data
    return (model(X).argmax(1) == y).float().mean().item()


@torch.no_grad()
def rebuild(model: nn.Sequential, prev: int, layer: int, keep: np.ndarray, weight: torch.Tensor):
    """A copy of ``model`` with output channels ``~keep`` of module ``prev`` physically removed and
    module ``layer`` given the refit ``weight`` on the kept input channels."""
    pruned = copy.deepcopy(model)
    index = torch.from_numpy(np.flatnonzero(keep))
    before, after = pruned[prev], pruned[layer]
    if isinstance(before, nn.Linear):
        new_before = nn.Linear(before.in_features, len(index))
    else:
        new_before = nn.Conv2d(before.in_channels, len(index), before.kernel_size,
                               before.stride, before.padding)
    new_before.weight.copy_(before.weight[index])
    new_before.bias.copy_(before.bias[index])
    if isinstance(after, nn.Linear):
        new_after = nn.Linear(len(index), after.out_features)
    else:
        new_after = nn.Conv2d(len(index), after.out_channels, after.kernel_size, after.stride,
                              after.padding)
    new_after.weight.copy_(weight[:, index])
    new_after.bias.copy_(after.bias)
    pruned[prev], pruned[layer] = new_before, new_after
    return pruned


@torch.no_grad()
def layer_input(model: nn.Sequential, layer: int, X: torch.Tensor) -> torch.Tensor:
    return model[:layer](X)


def magnitude_keep(weight: torch.Tensor, count: int) -> np.ndarray:
    norms = weight.transpose(0, 1).reshape(weight.shape[1], -1).norm(dim=1)
    keep = np.zeros(weight.shape[1], bool)
    keep[norms.argsort(descending=True)[:count].numpy()] = True
    return keep


def toy_net_table(quick: bool) -> list[dict]:
    train_set, test_set = digits_split()
    width = 10 if quick else 12
    nets = [("MLP", mlp(width), 1, 3), ("CNN", cnn(8 if quick else 10), 0, 2)]
    rows = []
    for name, model, prev, layer in nets:
        train(model, train_set, epochs=8 if quick else 20)
        dense = accuracy(model, test_set)
        X = layer_input(model, layer, train_set[0][:256 if quick else 512])
        target = model[layer]
        for count in tqdm((3, 5) if quick else (3, 5, 7), desc=f"{name} keep counts"):
            sol = spr.solve_mip(target, X, lam=LAM, alpha=ALPHA, max_keep=count, time_limit=120)
            by_mip = accuracy(rebuild(model, prev, layer, sol.keep, sol.weight), test_set)
            keep = magnitude_keep(target.weight.detach(), count)
            plain = accuracy(rebuild(model, prev, layer, keep, target.weight.detach()), test_set)
            refit = torch.from_numpy(mip.fit_support(sol.problem, keep)).reshape(
                target.weight.shape).float()
            magnitude_refit = accuracy(rebuild(model, prev, layer, keep, refit), test_set)
            rows.append({
                "net": name, "channels": target.weight.shape[1], "kept": count,
                "dense_accuracy": dense, "mip_accuracy": by_mip, "magnitude_accuracy": plain,
                "magnitude_refit_accuracy": magnitude_refit, "mip_status": sol.status,
                "mip_gap": sol.gap, "mip_seconds": sol.seconds,
                "mip_objective": sol.objective,
                "magnitude_refit_objective": sol.problem.objective(
                    refit.reshape(refit.shape[0], -1).double().numpy(), keep),
            })
    return rows, (nets, train_set)


def bounds_table(quick: bool, real_layers) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(0)
    instances = []
    for i in range(3 if quick else 6):
        n, k = int(rng.integers(6, 11)), int(rng.choice([1, 4]))
        X = rng.standard_normal((60, n * k)) @ rng.standard_normal((n * k, n * k)) * 0.5
        W0 = rng.standard_normal((2, n * k)) * rng.uniform(0.1, 1.0, n * k)
        max_keep = n // 2 if i % 2 else None
        problem = mip.LayerProblem.from_data(X, X @ W0.T, k, lam=float(rng.uniform(0.05, 0.5)),
                                             alpha=0.5, M=2 * float(np.abs(W0).max()),
                                             max_keep=max_keep)
        label = f"random {i} ({n} x {k}{', keep ' + str(max_keep) if max_keep else ''})"
        instances.append((label, problem))
    (nets, train_set) = real_layers
    for name, model, _, layer in nets:
        X = layer_input(model, layer, train_set[0][:256])
        problem = spr.layer_problem(model[layer], X, lam=0.02, alpha=0.5)
        instances.append((f"{name} layer {layer} (lam=0.02)", problem))
    rows, histories = [], []
    for label, problem in tqdm(instances, desc="bounds"):
        exact = mip.solve_outer_approximation(problem, time_limit=300)
        big_m = mip.big_m_relaxation(problem).value
        persp = mip.perspective_relaxation(problem).value
        closed = (persp - big_m) / (exact.objective - big_m) if exact.objective > big_m else 1.0
        rows.append({"instance": label, "groups": problem.n_groups, "big_m": big_m,
                     "perspective": persp, "optimum": exact.objective, "bound": exact.bound,
                     "status": exact.status, "gap_closed": closed, "seconds": exact.seconds,
                     "iterations": exact.iterations})
        histories.append({"instance": label, "history": exact.history})
    return rows, histories


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller nets and fewer instances")
    args = parser.parse_args()
    torch.manual_seed(0)

    toy, real_layers = toy_net_table(args.quick)
    print(f"\n{'net':<5}{'kept':>10}{'dense':>8}{'MIP':>8}{'magnitude':>11}{'mag.+refit':>12}"
          f"{'MIP obj':>10}{'mag.+refit obj':>16}")
    for r in toy:
        print(f"{r['net']:<5}{r['kept']:>4} / {r['channels']:<3}{r['dense_accuracy']:>8.3f}"
              f"{r['mip_accuracy']:>8.3f}{r['magnitude_accuracy']:>11.3f}"
              f"{r['magnitude_refit_accuracy']:>12.3f}{r['mip_objective']:>10.4f}"
              f"{r['magnitude_refit_objective']:>16.4f}")

    bounds, histories = bounds_table(args.quick, real_layers)
    print(f"\n{'instance':<32}{'big-M':>10}{'persp.':>10}{'optimum':>10}{'closed':>8}"
          f"{'s':>7}{'iters':>7}")
    for r in bounds:
        print(f"{r['instance']:<32}{r['big_m']:>10.4f}{r['perspective']:>10.4f}"
              f"{r['optimum']:>10.4f}{100 * r['gap_closed']:>7.1f}%{r['seconds']:>7.2f}"
              f"{r['iterations']:>7d}")

    result = {"lam": LAM, "alpha": ALPHA, "quick": args.quick, "toy_nets": toy,
              "bounds": bounds}
    write_json(RESULTS / "layerwise_mip.json", result)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    longest = max(histories, key=lambda h: len(h["history"]))
    its = [h["iteration"] for h in longest["history"]]
    ax.plot(its, [h["upper"] for h in longest["history"]], label="upper bound (incumbent)")
    ax.plot(its, [h["lower"] for h in longest["history"]], label="lower bound (master)")
    ax.set(xlabel="outer-approximation iteration", ylabel="objective",
           title=f"Bounds of the exact solver: {longest['instance']}")
    ax.legend()
    fig.tight_layout()
    save_figure(RESULTS / "layerwise_mip_bounds.png", fig)
    print(f"wrote {RESULTS / 'layerwise_mip.json'} and {RESULTS / 'layerwise_mip_bounds.png'}")


if __name__ == "__main__":
    main()
