"""Reproduce the SPR paper's pruning protocol at our scale, against the baselines users pick.

    python experiments/reproduce_spr.py --grid experiments/configs/reproduce_spr/cpu
    torchrun --nproc_per_node 2 experiments/reproduce_spr.py --grid ...    (DDP, rank 0 writes)
    python experiments/reproduce_spr.py --grid ... --toy                   (smoke test sizes)

A grid is a folder of small JSON files, one per run::

    {"name": "r20-spr-lam2", "method": "spr", "config": {PruneConfig fields}}
    {"name": "r20-gl-lam2", "method": "group_lasso", "config": {...}}   (also "spr_macs")
    {"name": "r20-tp-lam2", "method": "torch_pruning", "match": "r20-spr-lam2"}

``spr``, ``spr_macs`` (SPR with each block weighted by its MACs per entry) and
``group_lasso`` run :func:`spr.run_pipeline` (dense reference, regularised training
from the same initialisation, threshold search, structural decision, physical removal,
fine-tuning); ``torch_pruning`` prunes the matched run's dense reference with Torch-Pruning's
group-magnitude importance down to that run's MACs and fine-tunes it with the same epochs and
learning rate. Runs whose reference settings agree share one dense reference (trained once). The
dense model itself is reported once per network.

Writes ``experiments/results/reproduce_spr_<grid>.jsonl`` (one JSON line per run: method,
network, lam, alpha, epochs, accuracy before and after fine-tuning, params, MACs, % removed,
seconds, hardware, seed), ``reproduce_spr_<grid>.png`` (accuracy against % parameters and % MACs
removed, one curve per method) and the table in ``experiments/README.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch_pruning as tp
from _common import RESULTS, save_figure, write_atomic

import spr
from spr import PruneConfig
from spr._distributed import barrier, is_main
from spr._pipeline import REFERENCE_FIELDS
from spr._surgery import CUSTOM_PRUNERS

HERE = Path(__file__).resolve().parent
METHODS = ("spr", "spr_macs", "group_lasso", "torch_pruning")
# method -> (PruneConfig.penalty, PruneConfig.penalty_weights)
PENALTY = {"spr": ("spr", "uniform"), "spr_macs": ("spr", "macs"),
           "group_lasso": ("group_lasso", "uniform")}
LABELS = {"spr": "SPR", "spr_macs": "SPR, MAC-weighted", "group_lasso": "group lasso",
          "torch_pruning": "Torch-Pruning (magnitude)", "dense": "dense"}
# CIFAR-10, SPR authors' logs, as published: (params removed %, accuracy %); dense not logged.
PAPER = {
    "resnet56": [(33, 94.00), (46, 93.96), (65, 93.48)],
    "resnet20": [(39, 92.26), (55, 91.74)],
}
TOY = dict(train_samples=256, test_samples=256, threshold_samples=128, epochs_reference=1,
           epochs_spr=1, epochs_finetune=1, threshold_tol=0.05, batch_size=64)
def log(message: str) -> None:
    if is_main():
        print(message, flush=True)


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA), torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, " \
           f"torch {torch.__version__}"


def load_grid(folder: Path, toy: bool, only: set[str] | None) -> list[dict]:
    runs = []
    for path in sorted(folder.glob("*.json")):
        run = json.loads(path.read_text())
        if run.get("method") not in METHODS:
            raise ValueError(f"{path}: method must be one of {METHODS}; got {run.get('method')!r}")
        if only and run["name"] not in only:
            continue
        if run["method"] != "torch_pruning":
            penalty, weights = PENALTY[run["method"]]
            config = PruneConfig.from_dict(run["config"]).replace(
                penalty=penalty, penalty_weights=weights
            )
            run["config"] = config.replace(**TOY) if toy else config
        runs.append(run)
    names = {run["name"] for run in runs}
    for run in runs:
        if run["method"] == "torch_pruning" and run.get("match") not in names:
            raise ValueError(f"{run['name']}: matches {run.get('match')!r}, not in this grid")
    if toy and runs:  # a toy grid must not need Fashion-MNIST where it is absent
        try:
            spr.data.load(next(r for r in runs if "config" in r)["config"].dataset, "test")
        except spr.data.DatasetNotFoundError:
            log("toy run: Fashion-MNIST is absent, using digits")
            for run in runs:
                if "config" in run:
                    run["config"] = run["config"].replace(dataset="digits", data_root=None)
    # regularised runs first: the magnitude baselines take their MAC targets from them
    return sorted(runs, key=lambda r: r["method"] == "torch_pruning")


def share_reference(config: PruneConfig, folder: Path, done: dict[str, tuple]) -> None:
    """Copy an earlier run's dense reference trained under the same settings, if any."""
    key = tuple(getattr(config, f) for f in REFERENCE_FIELDS)
    source = done.get(key)
    if source is not None and not (folder / "dense").exists() and is_main():
        shutil.copytree(source / "dense", folder / "dense")
    barrier()
    done.setdefault(key, folder)


def splits(config: PruneConfig):
    train = spr.data.load(config.dataset, "train", root=config.data_root)
    test = spr.data.load(config.dataset, "test", root=config.data_root)
    if config.train_samples and config.train_samples < len(train):
        train = train.subset(config.train_samples, seed=config.seed)
    if config.test_samples and config.test_samples < len(test):
        test = test.subset(config.test_samples, seed=config.seed)
    return train, test


def magnitude_pruned(dense: torch.nn.Module, example: torch.Tensor, target_macs: int):
    """Torch-Pruning's group-magnitude pruning of ``dense`` to at most ``target_macs``."""

    def prune(ratio: float) -> torch.nn.Module:
        model = copy.deepcopy(dense)
        tp.pruner.MetaPruner(
            model, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio, ignored_layers=[model.fc],
            customized_pruners=CUSTOM_PRUNERS,
        ).step()
        return model

    if spr.count_macs(dense, example) <= target_macs:
        return copy.deepcopy(dense), 0.0  # the matched run removed nothing
    lo, hi = 0.0, 0.99
    best = prune(hi)
    for _ in range(14):  # bisection on the per-layer channel ratio
        mid = (lo + hi) / 2
        model = prune(mid)
        if spr.count_macs(model, example) <= target_macs:
            hi, best = mid, model
        else:
            lo = mid
    return best, hi


def record(method, config, summary_like, seconds, grid, toy, **extra) -> dict:
    return {
        "method": method, "network": config.arch, "dataset": config.dataset,
        "train_samples": config.train_samples, "lam": config.lam if method != "dense" else None,
        "alpha": config.alpha if method != "dense" else None,
        "epochs": {"reference": config.epochs_reference, "regularised": config.epochs_spr,
                   "finetune": config.epochs_finetune},
        **summary_like, "seconds": round(seconds, 1), "hardware": hardware(),
        "seed": config.seed, "grid": grid, "toy": toy, **extra,
    }


def run_regularised(run: dict, folder: Path, grid: str, toy: bool) -> tuple[dict, dict]:
    config = run["config"]
    start = time.perf_counter()
    summary = spr.run_pipeline(config, folder, progress=False, log=log)
    row = record(run["method"], config, {
        "accuracy_before_finetune": summary["accuracy_pruned"],
        "accuracy": summary["accuracy_finetuned"], "accuracy_dense": summary["accuracy_dense"],
        "params": summary["params_pruned"], "macs": summary["macs_pruned"],
        "params_removed_percent": summary["params_removed_percent"],
        "macs_removed_percent": summary["macs_removed_percent"],
    }, max(summary["seconds"], time.perf_counter() - start), grid, toy, name=run["name"])
    return row, summary  # seconds: the run's own, also when it was resumed or already done


def run_magnitude(run: dict, matched: dict, grid: str, toy: bool) -> dict:
    config: PruneConfig = matched["config"]
    summary, folder = matched["summary"], matched["folder"]
    start = time.perf_counter()
    train, test = splits(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pad = spr.models.INPUT_SIZE.get(config.arch)
    torch.manual_seed(config.seed)
    dense = spr.load_pruned(folder / "dense", spr.models.build(
        config.arch, len(train.classes), train.images.shape[1])).to(device)
    size = pad or train.images.shape[-1]
    example = torch.zeros(1, train.images.shape[1], size, size, device=device)
    model, ratio = magnitude_pruned(dense, example, summary["macs_pruned"])
    test_loader = test.loader(512, shuffle=False, pad_to=pad)
    before = spr.evaluate(model, test_loader)
    loader = train.loader(config.batch_size, pad_to=pad, augment=config.augment,
                          generator=torch.Generator().manual_seed(config.seed + 7))
    spr.train(model, loader, config.epochs_finetune, lr=config.lr_finetune or config.lr,
              momentum=config.momentum, weight_decay=config.weight_decay, progress=False)
    size_dense, size_pruned = spr.measure(dense, example), spr.measure(model, example)
    return record("torch_pruning", config, {
        "accuracy_before_finetune": before, "accuracy": spr.evaluate(model, test_loader),
        "accuracy_dense": summary["accuracy_dense"],
        "params": size_pruned.params, "macs": size_pruned.macs,
        "params_removed_percent": 100 * (1 - size_pruned.params / size_dense.params),
        "macs_removed_percent": 100 * (1 - size_pruned.macs / size_dense.macs),
    }, time.perf_counter() - start, grid, toy, name=run["name"], matched=run["match"],
        pruning_ratio=ratio)


def dense_row(summary: dict, config: PruneConfig, grid: str, toy: bool) -> dict:
    return record("dense", config, {
        "accuracy_before_finetune": summary["accuracy_dense"],
        "accuracy": summary["accuracy_dense"], "accuracy_dense": summary["accuracy_dense"],
        "params": summary["params_dense"], "macs": summary["macs_dense"],
        "params_removed_percent": 0.0, "macs_removed_percent": 0.0,
    }, 0.0, grid, toy, name=f"{config.arch}-dense")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    networks = sorted({r["network"] for r in rows})
    fig, axes = plt.subplots(len(networks), 2, figsize=(11, 4 * len(networks)), squeeze=False)
    for row_axes, network in zip(axes, networks, strict=True):
        mine = [r for r in rows if r["network"] == network]
        for ax, key, what in zip(row_axes, ("params_removed_percent", "macs_removed_percent"),
                                 ("parameters", "MACs"), strict=True):
            for method in ("spr", "spr_macs", "group_lasso", "torch_pruning"):
                points = sorted((r[key], r["accuracy"]) for r in mine if r["method"] == method)
                if points:
                    ax.plot(*zip(*points, strict=True), marker="o", label=LABELS[method])
            for r in mine:
                if r["method"] == "dense":
                    ax.axhline(r["accuracy"], color="0.5", linestyle="--", label="dense")
            ax.set(xlabel=f"% {what} removed", ylabel="test accuracy (%)",
                   title=f"{network} on {mine[0]['dataset']}")
            ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(path, fig)


def table(rows: list[dict], grid: str) -> str:
    first = rows[0]
    lines = [
        f"### Grid `{grid}` ({'toy sizes, a smoke run' if first['toy'] else 'measured'}; "
        f"{first['hardware']})",
        "",
        f"{first['dataset']}, {first['train_samples'] or 'all'} training images; epochs: "
        f"reference {first['epochs']['reference']}, regularised {first['epochs']['regularised']}"
        f", fine-tuning {first['epochs']['finetune']}.",
        "",
        "| network | method | lam | acc. before FT | acc. after FT | params | % params removed "
        "| MACs | % MACs removed | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["network"], r["method"] != "dense", r["method"],
                                         r["macs"])):
        lam = "" if r["lam"] is None or r["method"] == "torch_pruning" else f"{r['lam']:g}"
        label = LABELS[r["method"]]
        if r["method"] == "torch_pruning":
            label += f", at the MACs of {r['matched']}"
        lines.append(
            f"| {r['network']} | {label} | {lam} | "
            f"{r['accuracy_before_finetune']:.2f} | {r['accuracy']:.2f} | {r['params']:,} | "
            f"{r['params_removed_percent']:.1f} | {r['macs']:,} | "
            f"{r['macs_removed_percent']:.1f} | {r['seconds']:.0f} |"
        )
    paper = "; ".join(f"{net} {acc:.2f}% at {removed}% params removed"
                      for net, points in PAPER.items() for removed, acc in points)
    lines += ["", f"The paper, CIFAR-10 (SPR authors' logs; best fine-tuning accuracy): {paper}."]
    return "\n".join(lines) + "\n"


def write_readme_section(text: str, grid: str) -> None:
    path = HERE / "README.md"
    begin, end = f"<!-- reproduce_spr:{grid}:begin -->", f"<!-- reproduce_spr:{grid}:end -->"
    current = path.read_text() if path.exists() else "# Experiments\n"
    block = f"{begin}\n{text}{end}"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    write_atomic(path, lambda tmp: Path(tmp).write_text(current))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=HERE / "configs" / "reproduce_spr" / "cpu")
    parser.add_argument("--out", type=Path, default=Path("runs") / "reproduce_spr",
                        help="run folders (resumable)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where JSON/PNG go")
    parser.add_argument("--toy", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--runs", default=None, help="comma-separated run names (default: all)")
    parser.add_argument("--no-readme", action="store_true", help="leave experiments/README.md")
    args = parser.parse_args()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    grid = args.grid.name + ("-toy" if args.toy else "")
    runs = load_grid(args.grid, args.toy, set(args.runs.split(",")) if args.runs else None)
    out = args.out / grid
    rows, done, references = [], {}, {}
    started = time.perf_counter()
    for run in runs:
        log(f"== {run['name']} ({run['method']})")
        if run["method"] == "torch_pruning":
            r = run_magnitude(run, done[run["match"]], grid, args.toy)
            rows.append(r)
        else:
            folder = out / run["name"]
            share_reference(run["config"], folder, references)
            r, summary = run_regularised(run, folder, grid, args.toy)
            rows.append(r)
            done[run["name"]] = {"config": run["config"], "summary": summary, "folder": folder}
            if run["config"].arch not in {r["network"] for r in rows if r["method"] == "dense"}:
                rows.append(dense_row(summary, run["config"], grid, args.toy))
        log(f"   accuracy {r['accuracy']:.2f}% (before fine-tuning "
            f"{r['accuracy_before_finetune']:.2f}%), {r['params_removed_percent']:.1f}% params "
            f"and {r['macs_removed_percent']:.1f}% MACs removed, {r['seconds']:.0f} s")
    if is_main() and rows:
        args.results.mkdir(parents=True, exist_ok=True)
        jsonl = "".join(json.dumps(r) + "\n" for r in rows)
        write_atomic(args.results / f"reproduce_spr_{grid}.jsonl",
                     lambda tmp: Path(tmp).write_text(jsonl))
        plot(rows, args.results / f"reproduce_spr_{grid}.png")
        text = table(rows, grid)
        print("\n" + text)
        if not args.no_readme:
            write_readme_section(text, grid)
        print(f"{len(rows)} rows in {time.perf_counter() - started:.0f} s; wrote "
              f"{args.results / f'reproduce_spr_{grid}.jsonl'} and .png")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
