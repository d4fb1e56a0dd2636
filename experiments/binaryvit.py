"""BinaryViT ablation (Le & Li, CVPRW 2023, Table 3) on Fashion-MNIST, at CPU size.

A float teacher (``spr.models.small_cnn``, trained here with cross-entropy, AdamW) distils, with
the pure KD loss (soft cross-entropy against its logits), every binary student:

1. ``baseline``: the binary DeiT-style model (ReActNet-DeiT: class token, no LayerScale),
2. ``+gap``: average pooling of the tokens instead of the class token,
3. ``+multi_branch``: the 3x1/1x3/5x1/1x5 average-pooling branches (zero-initialised scales),
4. ``+affine``: the LayerScale ``alpha x + beta`` (alpha = 0.1) before each residual addition,
5. ``+pyramid``: the tiny pyramid (dims 16/32/64/128, one block per stage, pooled K/V) = BinaryViT,

and a binary ReActNet-style ResNet whose OPs are closest to the pyramid's. Images are padded
28 -> 32; the stem is a float 4x4 patch conv (8x8 tokens). OPs = BOPs/64 + FLOPs per image.
AdamW (weight decay 0), cosine schedule, no augmentation, as in the paper's recipe, for a few
epochs on a subset (the CPU-reduced run is labelled as such).

    python experiments/binaryvit.py [--epochs 6] [--train-samples 6000] [--threads 1] [--toy]

Writes ``experiments/results/binaryvit_cpu.json`` and ``binaryvit_cpu.png`` (``_gpu`` on a GPU,
``-toy`` for ``--toy``); prints a table.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import RESULTS, save_figure, write_json  # noqa: E402
from tqdm import tqdm  # noqa: E402

from compress_extras.binary import (  # noqa: E402
    BinaryViT,
    BinaryViTConfig,
    DistillationLoss,
    binary_resnet,
    count_ops,
)
from spr._training import evaluate  # noqa: E402
from spr.models import small_cnn  # noqa: E402

ROWS = ["baseline", "+gap", "+multi_branch", "+affine", "+pyramid"]


def vit_config(row: str, args) -> BinaryViTConfig:
    step = ROWS.index(row)
    return BinaryViTConfig(
        image_size=32, in_channels=1, num_classes=10, patch_size=4,
        embed_dim=args.flat_dim, depth=args.flat_depth, num_heads=args.flat_heads,
        dims=tuple(args.dims), depths=(1,) * len(args.dims),
        heads=tuple(max(1, d // 16) for d in args.dims),
        sr_ratios=(4, 2, 1, 1)[: len(args.dims)],
        gap=step >= 1, multi_branch=step >= 2, affine=step >= 3, pyramid=step >= 4)


def closest_resnet(target_ops: float):
    """The binary ResNet (depth, width, stem stride) whose OPs are closest to ``target_ops``."""
    best = None
    for stride in (1, 2):
        for depth in (8, 14, 20):
            for width in (4, 8, 12, 16, 24, 32):
                ops = count_ops(binary_resnet(10, 1, depth, width, stride), (1, 32, 32)).ops
                if best is None or abs(ops - target_ops) < abs(best[3] - target_ops):
                    best = (depth, width, stride, ops)
    return best[:3]


def train(model, loader, epochs, lr, teacher=None, desc="train") -> list[float]:
    """AdamW + cosine; pure KD against ``teacher`` logits, or cross-entropy without one."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    total = max(1, epochs * len(loader))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    kd = DistillationLoss()
    device = next(model.parameters()).device
    losses = []
    for epoch in range(epochs):
        model.train()
        bar = tqdm(loader, desc=f"{desc} {epoch + 1}/{epochs}", leave=False)
        running = 0.0
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            if teacher is None:
                loss = F.cross_entropy(logits, y)
            else:
                with torch.no_grad():
                    target = teacher(x)
                loss = kd(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        losses.append(running / len(loader))
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"{desc}: the loss became {losses[-1]}; lower --lr")
    return losses


def plot(rows: list[dict], path: Path, label: str) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for r in rows:
        marker = "*" if r["name"] == "float teacher" else ("s" if "ResNet" in r["name"] else "o")
        ax.scatter(r["ops"], r["accuracy"], marker=marker, s=60)
        ax.annotate(r["name"], (r["ops"], r["accuracy"]), fontsize=8, xytext=(4, 3),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("OPs per image = BOPs/64 + FLOPs (log)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"BinaryViT ablation, Fashion-MNIST ({label})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--teacher-epochs", type=int, default=15)
    p.add_argument("--teacher-lr", type=float, default=3e-3)
    p.add_argument("--train-samples", type=int, default=6000)
    p.add_argument("--test-samples", type=int, default=2000)
    p.add_argument("--flat-dim", type=int, default=32)
    p.add_argument("--flat-depth", type=int, default=2)
    p.add_argument("--flat-heads", type=int, default=2)
    p.add_argument("--dims", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--teacher-width", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--toy", action="store_true", help="tiny run for the smoke test")
    args = p.parse_args(argv)
    if args.toy:
        args.epochs, args.teacher_epochs, args.train_samples, args.test_samples = 1, 1, 128, 128
        args.flat_dim, args.flat_depth, args.dims, args.teacher_width = 16, 1, [8, 16], 4
    teacher_epochs = args.teacher_epochs
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    hardware = "gpu" if device == "cuda" else "cpu"
    label = hardware + ("-toy" if args.toy else "")
    reduced = hardware == "cpu"

    from spr.data import fashion_mnist
    train_split = fashion_mnist("train").subset(args.train_samples, seed=0)
    test_split = fashion_mnist("test").subset(args.test_samples, seed=0)
    loader = train_split.loader(batch_size=args.batch_size, pad_to=32,
                                generator=torch.Generator().manual_seed(args.seed))
    test_loader = test_split.loader(batch_size=256, shuffle=False, pad_to=32)

    start, rows = time.time(), []

    def record(name, model, losses, seconds, **extra):
        c = count_ops(model, (1, 32, 32))
        rows.append({"name": name, "accuracy": evaluate(model, test_loader), **c.to_dict(),
                     "train_loss": losses, "seconds": seconds, **extra})

    torch.manual_seed(args.seed)
    teacher = small_cnn(10, 1, args.teacher_width).to(device)
    t0 = time.time()
    losses = train(teacher, loader, teacher_epochs, args.teacher_lr, desc="float teacher")
    record("float teacher", teacher, losses, time.time() - t0, config=None)
    teacher.eval()

    configs = {row: vit_config(row, args) for row in ROWS}
    for row in tqdm(ROWS, desc="ablation rows"):
        torch.manual_seed(args.seed)
        model = BinaryViT(configs[row]).to(device)
        t0 = time.time()
        losses = train(model, loader, args.epochs, args.lr, teacher, desc=row)
        record(row, model, losses, time.time() - t0, config=configs[row].to_dict())

    depth, width, stride = closest_resnet(rows[-1]["ops"])
    torch.manual_seed(args.seed)
    resnet = binary_resnet(10, 1, depth, width, stride).to(device)
    t0 = time.time()
    losses = train(resnet, loader, args.epochs, args.lr, teacher, desc="binary ResNet")
    record(f"binary ResNet-{depth} (width {width}, stem stride {stride})", resnet, losses,
           time.time() - t0, config={"depth": depth, "width": width, "stem_stride": stride})

    print(f"\nBinaryViT ablation on Fashion-MNIST ({label}{', CPU-reduced' if reduced else ''}): "
          f"{args.train_samples} train / {args.test_samples} test images padded to 32x32, "
          f"{args.epochs} epochs (teacher {teacher_epochs}), KD from the float teacher")
    print("| model | test acc (%) | params | BOPs | FLOPs | OPs |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['accuracy']:.2f} | {r['params']:,} | {r['bops']:,} | "
              f"{r['flops']:,} | {r['ops']:,.0f} |")
    payload = {
        "experiment": "binaryvit", "label": label, "cpu_reduced": reduced, "toy": args.toy,
        "hardware": hardware, "platform": platform.platform(), "threads": args.threads,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "ops_formula": "OPs = BOPs/64 + FLOPs per image", "seconds": time.time() - start,
        "rows": rows,
    }
    write_json(args.out / f"binaryvit_{label}.json", payload)
    plot(rows, args.out / f"binaryvit_{label}.png", label)
    return payload


if __name__ == "__main__":
    main()
