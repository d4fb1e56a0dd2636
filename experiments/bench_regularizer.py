"""Overhead of SPRegularizer in one SGD step of a CIFAR-style ResNet-56 (batch 128).

The same model and optimizer take steps without SPR, with SPR, and with SPR minus its per-step
finiteness check, alternating in one process so that drift of the machine hits every variant
alike. Goal (issue 2): overhead below 5% on a CPU and below 3% on a GPU.

    python experiments/bench_regularizer.py [--device cuda] [--steps 30] [--batch 128]

Prints a table and writes ``experiments/results/bench_regularizer_<device>.json``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from _common import RESULTS, write_json
from tqdm import tqdm

import spr
from spr.models import resnet56


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    model = resnet56(num_classes=10, in_channels=3).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    variants = {
        "no SPR": None,
        "SPR": spr.SPRegularizer(model, lam=0.5, alpha=0.3),
        "SPR, check_finite=False": spr.SPRegularizer(model, lam=0.5, alpha=0.3, check_finite=False),
    }

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(reg) -> float:
        sync()
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        if reg is not None:
            loss = loss + reg()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()
        return time.perf_counter() - start

    def penalty_only(reg) -> float:
        """reg() and its backward alone: the overhead without the noise of a whole step."""
        sync()
        start = time.perf_counter()
        value = reg()
        torch.autograd.grad(value, [p for p in model.parameters()], allow_unused=True)
        sync()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in variants}
    times["SPR alone (forward + backward)"] = []
    names = list(variants)
    for i in tqdm(range(args.warmup + args.steps), desc="steps (all variants)"):
        order = names if i % 2 == 0 else names[::-1]  # alternate to cancel slow drift
        for name in order:
            elapsed = step(variants[name])
            if i >= args.warmup:
                times[name].append(elapsed)
        elapsed = penalty_only(variants["SPR"])
        if i >= args.warmup:
            times["SPR alone (forward + backward)"].append(elapsed)

    base = statistics.median(times["no SPR"])
    rows = []
    for name in times:
        median = statistics.median(times[name])
        # a whole step's overhead is ratio - 1; the penalty alone *is* an overhead: its ratio
        overhead = median / base if name.startswith("SPR alone") else median / base - 1
        rows.append({"variant": name, "median_s": median, "ratio": median / base,
                     "overhead": overhead, "min_s": min(times[name]), "steps": len(times[name])})
    print(f"\nResNet-56, batch {args.batch}, {device.type}, {torch.get_num_threads()} threads")
    print(f"{'variant':<32}{'median s/step':>15}{'ratio':>9}{'overhead':>10}")
    for row in rows:
        print(f"{row['variant']:<32}{row['median_s']:>15.4f}{row['ratio']:>9.3f}"
              f"{100 * row['overhead']:>9.1f}%")
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    payload = {
        "benchmark": "SPRegularizer overhead per SGD step",
        "model": "CIFAR ResNet-56", "batch": args.batch, "device": device.type,
        "hardware": hardware or platform.machine(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "goal_overhead": 0.05 if device.type == "cpu" else 0.03,
        "rows": rows,
    }
    out = RESULTS / f"bench_regularizer_{device.type}.json"
    write_json(out, payload)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
