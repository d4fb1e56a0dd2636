"""Data loading: PNG files + PIL transforms vs packed shards (CPU workers / on-device augmentation).

Three pipelines deliver the same training batches (Fashion-MNIST 28x28 padded to 32x32, random
crop with 4 pixels of padding, horizontal flip, normalisation, batch 128) for ResNet-20:

    (a) torchvision: ImageFolder over PNG files, PIL transforms (Pad(2), RandomCrop(32,
        padding=4), RandomHorizontalFlip, ToTensor, Normalize), DataLoader(num_workers=2);
    (b) packed shards (spr.data), DataLoader worker processes (2) gathering uint8 batches from
        the memory-mapped shards and augmenting them as whole batches on the CPU;
    (c) packed shards, batches gathered in the main process, moved as uint8 and augmented on
        the device (the GPU when there is one; here the same tensor ops on the CPU).

Measured, in one process, round-robin over the pipelines to share the machine's drift:
loading alone (iterate an epoch, move each batch to the device, touch it) in images/s, and
one training epoch (SGD, cross-entropy) of ResNet-20 over a subset (``--train-images``), with
the same epoch made of batches already on the device as the no-loading floor. The one-off
costs (writing the PNGs, converting them to shards) are timed separately.

    python experiments/bench_data.py [--images 10000] [--train-images N] [--repeats 3]

Writes ``experiments/results/bench_data_<device>.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import RESULTS, save_figure, write_json
from PIL import Image
from torchvision import datasets, transforms

from spr.data import fashion_mnist, image_folder_to_shards
from spr.models import resnet20

BATCH = 128
PIPELINES = {
    "a": "(a) PNG + PIL transforms, DataLoader(2 workers)",
    "b": "(b) shards, 2 worker processes, CPU batch augmentation",
    "c": "(c) shards, augmentation on the device",
}


# loading alone also for (c) with one intra-op thread: on a small, busy CPU the batch ops of
# (c) in the main process lose most of their time synchronising two OpenMP threads
LOAD_ONLY = {"c1": "(c) with torch.set_num_threads(1) while loading"}


@contextlib.contextmanager
def intraop_threads(n: int | None):
    old = torch.get_num_threads()
    torch.set_num_threads(n or old)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_pngs(images: np.ndarray, labels: np.ndarray, root: Path) -> None:
    """One PNG per image, class-per-subfolder (``root/<label>/<i>.png``)."""
    for k in np.unique(labels):
        (root / f"{k}").mkdir(parents=True, exist_ok=True)
    for i, (a, k) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(a[0], "L").save(root / f"{k}" / f"{i:05d}.png")


def gray(path: str) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("L")


def make_loaders(png_root, shards, device, mean, std, workers, seed, indices=None):
    """The three pipelines' loaders (over ``indices`` of the dataset, if given)."""
    pil = transforms.Compose(
        [
            transforms.Pad(2),
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((mean,), (std,)),
        ]
    )
    folder = datasets.ImageFolder(png_root, transform=pil, loader=gray)
    if indices is not None:
        folder = torch.utils.data.Subset(folder, indices.tolist())
    kw = dict(pad_to=32, augment=True, normalize=(mean, std), device=device, indices=indices)
    return {
        "a": torch.utils.data.DataLoader(
            folder,
            batch_size=BATCH,
            shuffle=True,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
        ),
        "b": shards.loader(
            BATCH,
            generator=torch.Generator().manual_seed(seed),
            workers=workers,
            worker_type="process",
            augment_on="cpu",
            **kw,
        ),
        "c": shards.loader(BATCH, generator=torch.Generator().manual_seed(seed), **kw),
    }


def load_epoch(loader, device) -> tuple[float, int]:
    """Seconds to iterate one epoch, each batch on the device and touched; images seen."""
    sync(device)
    start = time.perf_counter()
    n, check = 0, torch.zeros((), device=device)
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        check += x[:, 0, 0, 0].sum() + y.to(device, non_blocking=True).sum()
        n += len(x)
    float(check)  # waits for the device
    return time.perf_counter() - start, n


def summary(times: list[float], n: int) -> dict:
    """Median and best (shortest) of the epoch times, and the images per second they give."""
    med, low = statistics.median(times), min(times)
    return {
        "epoch_s": times,
        "median_s": med,
        "best_s": low,
        "median_images_per_s": n / med,
        "best_images_per_s": n / low,
    }


def train_epoch(loader, device, lr=0.1) -> float:
    """Seconds for one epoch of ResNet-20 (fresh, seeded) with SGD over ``loader``."""
    torch.manual_seed(0)
    model = resnet20(num_classes=10, in_channels=1).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    sync(device)
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    float(loss.detach())
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=10000, help="Fashion-MNIST images used")
    parser.add_argument(
        "--train-images",
        type=int,
        default=None,
        help="images in the timed training epoch (default: 2560 on a CPU, all on a GPU)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed loading epochs each")
    parser.add_argument("--train-repeats", type=int, default=4, help="timed training epochs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads of this process (default: torch's); on a small, shared "
        "CPU one thread is faster and far steadier than two",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    n_train = args.train_images or (2560 if device.type == "cpu" else args.images)
    load0 = os.getloadavg()

    split = fashion_mnist("train").subset(args.images, seed=args.seed)
    images, labels = split.images.numpy(), split.labels.numpy()
    mean = float(split.images.float().div(255).mean())
    std = float(split.images.float().div(255).std())
    results: dict = {
        "config": {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "images": args.images,
            "train_images": n_train,
            "batch": BATCH,
            "workers": args.workers,
            "repeats": args.repeats,
            "train_repeats": args.train_repeats,
            "mean": mean,
            "std": std,
            "pipelines": PIPELINES | LOAD_ONLY,
            "load_average_start": load0,
        }
    }
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        png_root, shard_root = Path(tmp) / "png", Path(tmp) / "shards"
        t = time.perf_counter()
        write_pngs(images, labels, png_root)
        t_png = time.perf_counter() - t
        t = time.perf_counter()
        shards = image_folder_to_shards(png_root, shard_root, mode="L", progress=False)
        t_shards = time.perf_counter() - t
        # ImageFolder's order is (class, file name); the shards must hold those same bytes
        order = np.lexsort((np.arange(len(labels)), labels))
        x_all, y_all = shards[:]
        assert np.array_equal(x_all.numpy(), images[order]), "shards differ from the source"
        assert np.array_equal(y_all.numpy(), labels[order])
        png_bytes = sum(p.stat().st_size for p in png_root.rglob("*.png"))
        shard_bytes = sum(p.stat().st_size for p in shard_root.iterdir())
        results["one_off"] = {
            "write_png_s": t_png,
            "png_files": len(images),
            "png_bytes": png_bytes,
            "convert_to_shards_s": t_shards,
            "shard_bytes": shard_bytes,
            "shards": len(shards.shard_files),
        }
        print(
            f"one-off: {len(images)} PNGs written in {t_png:.1f} s ({png_bytes / 1e6:.1f} MB); "
            f"decoded once into {len(shards.shard_files)} shard(s) in {t_shards:.1f} s "
            f"({shard_bytes / 1e6:.1f} MB)"
        )

        # ---- loading alone; the order within a round is shuffled (seeded) against drift
        order_rng = np.random.default_rng(args.seed)
        loaders = make_loaders(png_root, shards, device, mean, std, args.workers, args.seed)
        times: dict[str, list[float]] = {k: [] for k in PIPELINES | LOAD_ONLY}
        for r in range(args.repeats + 1):  # round 0: warm-up (worker start, lazy checksums)
            for k in order_rng.permutation(list(times)):
                with intraop_threads(1 if k == "c1" else None):
                    dt, n = load_epoch(loaders[k[0]], device)
                assert n == args.images
                times[k].append(dt)
                print(f"  load round {r} {k}: {dt:.2f} s ({n / dt:,.0f} img/s)")
        load = {
            k: summary(ts[1:], args.images) | {"first_epoch_s": ts[0]} for k, ts in times.items()
        }
        results["loading"] = load
        del loaders

        # ---- one training epoch, over a random subset of n_train images
        idx = np.sort(
            torch.randperm(args.images, generator=torch.Generator().manual_seed(1))[
                :n_train
            ].numpy()
        )
        loaders = make_loaders(png_root, shards, device, mean, std, args.workers, args.seed, idx)
        floor_batches = [(x.clone(), y.clone()) for x, y in loaders["c"]]  # already on device
        loaders["floor"] = floor_batches
        train_epoch(floor_batches[:2], device)  # warm-up: first calls, allocator, kernels
        ttimes: dict[str, list[float]] = {k: [] for k in loaders}
        for r in range(args.train_repeats):
            for k in order_rng.permutation(list(loaders)):
                dt = train_epoch(loaders[k], device)
                ttimes[k].append(dt)
                print(f"  train round {r} {k}: {dt:.2f} s ({n_train / dt:,.0f} img/s)")
        train = {k: summary(ts, n_train) for k, ts in ttimes.items()}
        results["training"] = train

    steps = -(-n_train // BATCH)
    ratios, analysis = {}, {"train_steps": steps}
    for est in ("median", "best"):
        a_load, a_train = load["a"][f"{est}_images_per_s"], train["a"][f"{est}_s"]
        floor = train["floor"][f"{est}_s"]
        for k in ("b", "c", "c1"):
            ratios[f"{est}_loading_{k}_over_a"] = load[k][f"{est}_images_per_s"] / a_load
        for k in ("b", "c"):
            ratios[f"{est}_epoch_{k}_shorter_than_a"] = 1 - train[k][f"{est}_s"] / a_train
        analysis[est] = {
            "model_step_s": floor / steps,
            "loading_a_per_batch_s": BATCH / a_load,
            # (a)'s epoch beyond the same steps on batches already on the device
            "epoch_a_over_floor": a_train / floor - 1,
            "epoch_b_over_floor": train["b"][f"{est}_s"] / floor - 1,
            "epoch_c_over_floor": train["c"][f"{est}_s"] / floor - 1,
        }
    med = analysis["median"]
    analysis["loading_is_bottleneck_a"] = med["loading_a_per_batch_s"] > med["model_step_s"]
    analysis["goal_loading_2x"] = {
        k: ratios[f"median_loading_{k}_over_a"] >= 2 for k in ("b", "c", "c1")
    }
    analysis["goal_epoch_20pct_shorter"] = {
        k: ratios[f"median_epoch_{k}_shorter_than_a"] >= 0.2 for k in ("b", "c")
    }
    results["ratios"] = ratios
    results["analysis"] = analysis
    results["config"]["load_average_end"] = os.getloadavg()

    print(f"\n{'pipeline: median of rounds (best)':58s} {'load img/s':>17s} {'epoch s':>12s}")
    rows = [*PIPELINES.items(), *LOAD_ONLY.items()]
    for k, name in [*rows, ("floor", "no loading (batches already on the device)")]:
        lo = (
            f"{load[k]['median_images_per_s']:8,.0f} ({load[k]['best_images_per_s']:,.0f})"
            if k in load
            else ""
        )
        ep = f"{train[k]['median_s']:5.2f} ({train[k]['best_s']:.2f})" if k in train else ""
        print(f"{name:58s} {lo:>17s} {ep:>12s}")
    print(
        f"\nloading alone: (b)/(a) = {ratios['median_loading_b_over_a']:.1f}x, (c)/(a) = "
        f"{ratios['median_loading_c_over_a']:.1f}x, (c, 1 thread)/(a) = "
        f"{ratios['median_loading_c1_over_a']:.1f}x (goal >= 2x)\n"
        f"epoch over {n_train} images ({steps} steps): (b) "
        f"{ratios['median_epoch_b_shorter_than_a']:+.0%}, (c) "
        f"{ratios['median_epoch_c_shorter_than_a']:+.0%} shorter than (a) (goal >= 20% where "
        f"loading is the bottleneck)\n"
        f"a model step takes {med['model_step_s'] * 1e3:.0f} ms; (a) loads a batch in "
        f"{med['loading_a_per_batch_s'] * 1e3:.0f} ms with {args.workers} workers, so its "
        f"loading is {'' if analysis['loading_is_bottleneck_a'] else 'NOT '}the bottleneck "
        f"on this {device.type}; measured, (a)'s epoch is {med['epoch_a_over_floor']:+.0%} over "
        f"the no-loading floor, (b) {med['epoch_b_over_floor']:+.0%}, (c) "
        f"{med['epoch_c_over_floor']:+.0%} (load average {load0[0]:.1f} at the start, "
        f"{results['config']['load_average_end'][0]:.1f} at the end, "
        f"{os.cpu_count()} CPUs)"
    )

    tag = f"_threads{torch.get_num_threads()}" if device.type == "cpu" else ""
    out = RESULTS / f"bench_data_{device.type}{tag}"
    write_json(out.with_suffix(".json"), results)
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out}.json and .png")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(PIPELINES)
    cfg = results["config"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    ips = [results["loading"][k]["median_images_per_s"] for k in [*keys, *LOAD_ONLY]]
    ax1.bar([*keys, "c\n1 thread"], ips, color=["#999999", "#4c72b0", "#55a868", "#8fd19e"])
    for i, v in enumerate(ips):
        ax1.text(i, v, f"{v:,.0f}\n({v / ips[0]:.1f}x)", ha="center", va="bottom", fontsize=9)
    ax1.set_ylabel("images / s")
    ax1.set_title(f"loading alone, median ({cfg['images']} images, batch {cfg['batch']})")
    ax1.set_ylim(0, max(ips) * 1.25)
    ep = [results["training"][k]["median_s"] for k in [*keys, "floor"]]
    ax2.bar([*keys, "no\nloading"], ep, color=["#999999", "#4c72b0", "#55a868", "#dddddd"])
    for i, v in enumerate(ep):
        ax2.text(i, v, f"{v:.1f} s", ha="center", va="bottom", fontsize=9)
    for i, k in enumerate([*keys, "floor"]):  # every round, to show the spread
        ts = results["training"][k]["epoch_s"]
        ax2.plot([i] * len(ts), ts, "k.", markersize=4)
    ax2.set_ylabel("seconds")
    ax2.set_title(f"ResNet-20 training epoch, median ({cfg['train_images']} images)")
    ax2.set_ylim(0, max(ep) * 1.2)
    fig.suptitle(
        f"{cfg['device']} ({cfg['device_name']}, {cfg['cpu_count']} CPUs, "
        f"{cfg['torch_threads']} torch threads): (a) PNG+PIL, "
        "(b) shards + CPU workers, (c) shards + on-device augmentation",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)


if __name__ == "__main__":
    main()
