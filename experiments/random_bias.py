"""Random bias initialization (Li & Partovi Nia 2019) on Fashion-MNIST: binary MLPs and CNNs
trained from zero bias versus random bias, several seeds.

Models (no BatchNorm, so the bias of each binary layer is the unit's offset before the sign):

- ``mlp``: Flatten -> BinaryLinear(784, H) with float inputs -> 2 x [sign -> BinaryLinear(H, H)]
  -> sign -> float Linear(H, 10);
- ``cnn``: float 3x3 conv (1 -> C) -> sign -> BinaryConv2d(C, C, 3, stride 2) -> sign ->
  BinaryConv2d(C, 2C, 3, stride 2) -> sign -> BinaryConv2d(2C, 2C, 3, stride 2) -> sign ->
  global average pool -> float Linear(2C, 10).

Binary layers: weights ``alpha_i sign(W_i - rowmean)`` (clip STE), inputs ``sign`` (ApproxSign
STE). Bias specs: ``zero``, ``uniform`` (U(-a, a)) and ``normal`` (N(0, s^2)) with the scales
below; latent weight init ``kaiming`` (nn.Linear/Conv2d's default, pre-activations mostly inside
|z| <= 1) and ``unit`` (N(0, 1): alpha ~ 0.8, saturated). Adam, cosine schedule, cross-entropy.

Reported per (model, init, bias): test accuracy per epoch (mean ± std over seeds), and the share of
units with |z| <= 1 per sample on 512 test images at init and after training (mean and minimum
over samples, averaged over the binary layers with ±1 inputs).

    python experiments/random_bias.py [--epochs 5] [--train-samples 4000] [--seeds 5] [--toy]

Writes ``experiments/results/random_bias_cpu.json`` and ``random_bias_cpu.png`` (``_gpu`` on a
GPU; ``-toy`` for ``--toy``); prints a table.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from _common import RESULTS, save_figure, write_json  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from compress_extras.binary import (  # noqa: E402
    BinaryConv2d,
    BinaryLinear,
    RSign,
    band_share,
    preactivations,
)
from spr._training import evaluate, train_epoch  # noqa: E402

BIASES = {"zero": "zero", "uniform": ("uniform", 1.0), "normal": ("normal", 0.5)}


def build(model: str, init: str, bias, width: int) -> nn.Module:
    def binary(layer):
        if init == "unit":
            nn.init.normal_(layer.weight, 0.0, 1.0)
        return layer

    if model == "mlp":
        return nn.Sequential(
            nn.Flatten(), binary(BinaryLinear(784, width, init_bias=bias, binary_input=False)),
            binary(BinaryLinear(width, width, init_bias=bias)),
            binary(BinaryLinear(width, width, init_bias=bias)),
            RSign(width, learnable=False), nn.Linear(width, 10))
    c = width
    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1),
        binary(BinaryConv2d(c, c, 3, 2, 1, init_bias=bias)),
        binary(BinaryConv2d(c, 2 * c, 3, 2, 1, init_bias=bias)),
        binary(BinaryConv2d(2 * c, 2 * c, 3, 2, 1, init_bias=bias)),
        RSign(2 * c, learnable=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(2 * c, 10))


@torch.no_grad()
def band_stats(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Mean and min over samples of the |z| <= 1 share, averaged over binary-input layers."""
    model.eval()
    z = [v for name, v in preactivations(model, x).items()
         if model.get_submodule(name).binary_input]
    shares = [band_share(v) for v in z]
    model.train()
    return {"mean": statistics.fmean(s.mean().item() for s in shares),
            "min": statistics.fmean(s.min().item() for s in shares)}


def run_one(args, model_name, init, bias_name, seed, train, test, probe):
    torch.manual_seed(seed)
    model = build(model_name, init, BIASES[bias_name],
                  args.mlp_width if model_name == "mlp" else args.cnn_width).to(args.device)
    before = band_stats(model, probe)
    loader = train.loader(batch_size=args.batch_size, generator=torch.Generator().manual_seed(seed))
    test_loader = test.loader(batch_size=512, shuffle=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    total = args.epochs * len(loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    curve = []
    for _ in range(args.epochs):
        train_epoch(model, loader, optimizer, schedule, progress=False)
        curve.append(evaluate(model, test_loader))
    return {"model": model_name, "init": init, "bias": bias_name, "seed": seed,
            "accuracy_curve": curve, "accuracy": curve[-1], "band_init": before,
            "band_trained": band_stats(model, probe)}


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    keys = sorted({(r["model"], r["init"], r["bias"]) for r in runs},
                  key=lambda k: (k[0], k[1], list(BIASES).index(k[2])))
    for key in keys:
        group = [r for r in runs if (r["model"], r["init"], r["bias"]) == key]
        acc = [r["accuracy"] for r in group]
        rows.append({
            "model": key[0], "init": key[1], "bias": key[2], "seeds": len(group),
            "accuracy_mean": statistics.fmean(acc),
            "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "curve_mean": [statistics.fmean(c) for c in zip(*(r["accuracy_curve"] for r in group),
                                                          strict=True)],
            **{f"band_{when}_{stat}": statistics.fmean(r[f"band_{when}"][stat] for r in group)
               for when in ("init", "trained") for stat in ("mean", "min")},
        })
    return rows


def plot(rows: list[dict], path: Path, label: str) -> None:
    combos = sorted({(r["model"], r["init"]) for r in rows})
    fig, axes = plt.subplots(2, len(combos), figsize=(3.6 * len(combos), 6.4), squeeze=False)
    for j, (m, init) in enumerate(combos):
        group = [r for r in rows if (r["model"], r["init"]) == (m, init)]
        for r in group:
            axes[0, j].plot(range(1, len(r["curve_mean"]) + 1), r["curve_mean"], marker="o",
                            label=r["bias"])
        axes[0, j].set_title(f"{m}, {init} init")
        axes[0, j].set_xlabel("epoch")
        axes[0, j].set_ylabel("test accuracy (%)")
        axes[0, j].legend(fontsize=8)
        names = [r["bias"] for r in group]
        xs = range(len(names))
        axes[1, j].bar([x - 0.2 for x in xs], [r["band_init_min"] for r in group], 0.4,
                       label="min over samples")
        axes[1, j].bar([x + 0.2 for x in xs], [r["band_init_mean"] for r in group], 0.4,
                       label="mean")
        axes[1, j].set_xticks(list(xs), names)
        axes[1, j].set_ylabel("share |z|<=1 at init")
        axes[1, j].legend(fontsize=8)
    fig.suptitle(f"Random bias initialization, Fashion-MNIST ({label})")
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--train-samples", type=int, default=4000)
    p.add_argument("--test-samples", type=int, default=2000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    p.add_argument("--inits", nargs="+", default=["kaiming", "unit"], choices=["kaiming", "unit"])
    p.add_argument("--mlp-width", type=int, default=256)
    p.add_argument("--cnn-width", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--toy", action="store_true", help="tiny run for the smoke test")
    args = p.parse_args(argv)
    if args.toy:
        args.epochs, args.train_samples, args.test_samples, args.seeds = 1, 256, 256, 2
        args.mlp_width, args.cnn_width = 32, 4
    torch.set_num_threads(args.threads)
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    hardware = "gpu" if args.device == "cuda" else "cpu"
    label = hardware + ("-toy" if args.toy else "")
    reduced = hardware == "cpu"

    from spr.data import fashion_mnist
    train = fashion_mnist("train").subset(args.train_samples, seed=0)
    test = fashion_mnist("test").subset(args.test_samples, seed=0)
    probe = test.to_float()[0][:512].to(args.device)

    jobs = [(m, i, b, s) for m in args.models for i in args.inits for b in BIASES
            for s in range(args.seeds)]
    start, runs = time.time(), []
    for job in tqdm(jobs, desc="random bias runs"):
        runs.append(run_one(args, *job, train, test, probe))
    rows = summarise(runs)
    print(f"\nRandom bias initialization on Fashion-MNIST ({label}"
          f"{', CPU-reduced' if reduced else ''}): {args.train_samples} train / "
          f"{args.test_samples} test images, {args.epochs} epochs, {args.seeds} seeds; "
          f"uniform = U(-1, 1), normal = N(0, 0.5^2)")
    print("| model | init | bias | test acc (%) | share in band at init: mean / min over samples "
          "| after training: mean / min |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['init']} | {r['bias']} | {r['accuracy_mean']:.2f} ± "
              f"{r['accuracy_std']:.2f} | {r['band_init_mean']:.3f} / {r['band_init_min']:.3f} | "
              f"{r['band_trained_mean']:.3f} / {r['band_trained_min']:.3f} |")
    payload = {
        "experiment": "random_bias", "label": label, "cpu_reduced": reduced, "toy": args.toy,
        "hardware": hardware, "platform": platform.platform(), "threads": args.threads,
        "biases": {k: list(v) if isinstance(v, tuple) else v for k, v in BIASES.items()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "device")},
        "seconds": time.time() - start, "rows": rows, "runs": runs,
    }
    write_json(args.out / f"random_bias_{label}.json", payload)
    plot(rows, args.out / f"random_bias_{label}.png", label)
    return payload


if __name__ == "__main__":
    main()
