"""Train a dense CIFAR-style ResNet on Fashion-MNIST and save its weights for pruning benchmarks.

    python experiments/train_dense.py --model resnet56 --epochs 2 [--threads 1]
        [--batch-size 128] [--seed 0] [--limit-minutes 40] [--train-samples N]
        [--test-samples N] [--out experiments/weights] [--no-progress]

Reuses the project's pieces: :func:`spr.data.fashion_mnist` (the 60000/10000 split, read
offline), :meth:`spr.data.ImageSplit.loader` (28x28 zero-padded to 32x32, centred; random crop
with 4 pixels of zero padding and a horizontal flip; pixels in [0, 1], no normalisation) and
:mod:`spr._training` (SGD with momentum 0.9, weight decay 5e-4, learning rate 0.1 with a per-step
cosine decay to zero over the planned epochs, cross-entropy). The model is
``spr.models.build(name, num_classes=10, in_channels=1)`` (option-A shortcuts), initialised with
``torch.manual_seed(seed)``; the batch order and the augmentation come from a generator seeded
with ``seed``, so on one thread a fixed seed gives the same weights.

Writes, atomically, under ``--out``:

    <model>_fashion_mnist.safetensors   the state dict (CPU, float32; buffers included)
    <model>_fashion_mnist.json          architecture, shortcut, input padding/size, epochs, seed,
                                        optimiser, test accuracy, per-epoch records, wall time,
                                        torch version, machine, sha256 of the weights

``--train-samples`` trains on a fixed, seeded, class-balanced subset (recorded in the JSON);
``--limit-minutes`` stops cleanly after the epoch during which the limit is passed (the cosine
schedule then has not reached zero; the JSON says ``stopped_early``). Load the weights with
:func:`load_dense`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

import safetensors.torch
import torch
from _common import write_atomic, write_json
from torch import nn
from tqdm.auto import tqdm

from spr import models
from spr._training import evaluate, make_optimizer, train_epoch
from spr.data import fashion_mnist

WEIGHTS = Path(__file__).resolve().parent / "weights"
ARCHS = ("resnet56", "resnet20")
SHORTCUT = "A"  # spr.models.build's default: parameter-free zero-padding shortcut
DATASET = "fashion_mnist"
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 5e-4
TEST_BATCH = 512


def weights_path(out: Path, model: str) -> Path:
    return Path(out) / f"{model}_{DATASET}.safetensors"


def build(model: str) -> nn.Module:
    """The dense network as trained here: 10 classes, 1 input channel, option-A shortcuts."""
    return models.build(model, num_classes=10, in_channels=1)


def load_dense(path: str | os.PathLike, model: str | None = None) -> nn.Module:
    """The network saved at ``path`` (``model`` read from the file's metadata when None)."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    name = model or meta.get("model")
    if name is None:
        raise ValueError(f"{path}: no model name in the metadata; pass model=")
    net = build(name)
    net.load_state_dict(safetensors.torch.load_file(str(path)))
    return net.eval()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine() -> dict:
    return {
        "processor": platform.processor(),
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
    }


def train_dense(
    model: str = "resnet56",
    epochs: int = 2,
    *,
    batch_size: int = 128,
    seed: int = 0,
    threads: int = 1,
    limit_minutes: float | None = None,
    train_samples: int | None = None,
    test_samples: int | None = None,
    out: str | os.PathLike = WEIGHTS,
    progress: bool = True,
    data_root: str | os.PathLike | None = None,
    command: str | None = None,
) -> tuple[nn.Module, dict]:
    """Train ``model`` on Fashion-MNIST, save weights + JSON under ``out``; return both.

    Raises :class:`spr.data.DatasetNotFoundError` when Fashion-MNIST is not installed.
    """
    if model not in ARCHS:
        raise ValueError(f"model must be one of {ARCHS}; got {model!r}")
    if epochs < 1 or batch_size < 1 or threads < 1:
        raise ValueError("epochs, batch_size and threads must be >= 1")
    torch.set_num_threads(threads)
    start = time.perf_counter()
    machine_start = machine()

    train_split = fashion_mnist("train", root=data_root)
    test_split = fashion_mnist("test", root=data_root)
    full_train, full_test = len(train_split), len(test_split)
    if train_samples is not None and train_samples < full_train:
        train_split = train_split.subset(train_samples, seed=seed)
    if test_samples is not None and test_samples < full_test:
        test_split = test_split.subset(test_samples, seed=seed)
    image_size = int(train_split.images.shape[-1])
    pad_to = models.INPUT_SIZE[model]

    torch.manual_seed(seed)
    net = build(model)
    loader = train_split.loader(batch_size, shuffle=True, pad_to=pad_to, augment=True,
                                generator=torch.Generator().manual_seed(seed))
    optimizer, schedule = make_optimizer(net, epochs, len(loader), LR, MOMENTUM, WEIGHT_DECAY)

    records: list[dict] = []
    stopped_early = False
    bar = tqdm(range(epochs), desc=f"{model} epochs", disable=not progress)
    for epoch in bar:
        t0 = time.perf_counter()
        record = train_epoch(net, loader, optimizer, schedule, progress=progress,
                             desc=f"{model} {epoch + 1}/{epochs}")
        record = {"epoch": epoch + 1, "loss": record["loss"],
                  "train_accuracy": record["accuracy"],
                  "seconds": round(time.perf_counter() - t0, 2),
                  "lr_end": optimizer.param_groups[0]["lr"]}
        records.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['train_accuracy']:.1f}")
        tqdm.write(f"{model} epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f}, train acc "
                   f"{record['train_accuracy']:.2f}% (augmented), {record['seconds']:.0f} s",
                   file=sys.stderr)
        elapsed = (time.perf_counter() - start) / 60
        if limit_minutes is not None and elapsed > limit_minutes and epoch + 1 < epochs:
            stopped_early = True
            tqdm.write(f"{model}: {elapsed:.1f} min > --limit-minutes {limit_minutes}; "
                       f"stopping after epoch {epoch + 1}", file=sys.stderr)
            break
    bar.close()

    t0 = time.perf_counter()
    accuracy = evaluate(net, test_split.loader(TEST_BATCH, shuffle=False, pad_to=pad_to))
    eval_seconds = time.perf_counter() - t0
    net.eval()

    out = Path(out)
    path = weights_path(out, model)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    meta = {"model": model, "shortcut": SHORTCUT, "dataset": DATASET, "in_channels": "1",
            "num_classes": "10", "pad_to": str(pad_to), "seed": str(seed),
            "test_accuracy": f"{accuracy:.2f}"}
    # serialised in memory and written into write_atomic's file (save_file would recreate it 0600)
    data = safetensors.torch.save(tensors, metadata=meta)
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))
    wall = time.perf_counter() - start
    payload = {
        "model": model,
        "shortcut": SHORTCUT,
        "num_classes": 10,
        "in_channels": 1,
        "params": sum(p.numel() for p in net.parameters()),
        "dataset": "fashion-mnist",
        "input": {"image_size": image_size, "pad_to": pad_to,
                  "padding": f"zero, centred, {image_size}x{image_size} -> {pad_to}x{pad_to}",
                  "scale": "pixels / 255 in [0, 1], no normalisation",
                  "train_augmentation": "random crop (4 px zero padding) + horizontal flip",
                  "eval": "padded only"},
        "train_samples": len(train_split),
        "train_subset": len(train_split) < full_train,
        "test_samples": len(test_split),
        "test_subset": len(test_split) < full_test,
        "epochs": epochs,
        "epochs_completed": len(records),
        "stopped_early": stopped_early,
        "limit_minutes": limit_minutes,
        "batch_size": batch_size,
        "optimizer": {"name": "SGD", "lr": LR, "momentum": MOMENTUM, "nesterov": False,
                      "weight_decay": WEIGHT_DECAY,
                      "schedule": "per-step cosine to 0 over the planned epochs, no warm-up"},
        "seed": seed,
        "threads": threads,
        "test_accuracy": accuracy,
        "final_train_loss": records[-1]["loss"],
        "history": records,
        "eval_seconds": round(eval_seconds, 2),
        "wall_seconds": round(wall, 2),
        "torch": torch.__version__,
        "machine_start": machine_start,
        "machine": machine(),
        "weights": path.name,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "command": command,
    }
    write_json(path.with_suffix(".json"), payload)
    return net, payload


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=ARCHS, default="resnet56")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-minutes", type=float, default=None,
                        help="stop after the epoch during which this many minutes have passed")
    parser.add_argument("--train-samples", type=int, default=None,
                        help="train on a fixed seeded subset of this size (default: all 60000)")
    parser.add_argument("--test-samples", type=int, default=None,
                        help="evaluate on a fixed seeded subset (default: all 10000)")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    _, payload = train_dense(
        args.model, args.epochs, batch_size=args.batch_size, seed=args.seed,
        threads=args.threads, limit_minutes=args.limit_minutes,
        train_samples=args.train_samples, test_samples=args.test_samples, out=args.out,
        progress=not args.no_progress,
        command=" ".join(["experiments/train_dense.py", *(sys.argv[1:] if argv is None else argv)]),
    )
    print(f"{payload['model']}: test accuracy {payload['test_accuracy']:.2f}% after "
          f"{payload['epochs_completed']}/{payload['epochs']} epochs on "
          f"{payload['train_samples']} images, {payload['wall_seconds'] / 60:.1f} min -> "
          f"{Path(args.out) / payload['weights']}")
    return payload


if __name__ == "__main__":
    main()
