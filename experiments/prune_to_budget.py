"""One-shot structured pruning to a MAC budget: ``spr.prune_to_budget`` against its own ablations
and Torch-Pruning's global pruners, on the dense Fashion-MNIST ResNet-20 and ResNet-56.

    python experiments/prune_to_budget.py [--models resnet20 resnet56] [--budgets 0.7 0.5 0.3]
        [--seeds 0 1 2] [--seeds-side 0] [--side-models ...] [--methods ...]
        [--calibration 512] [--finetune-samples N] [--test-samples N] [--time-limit S]
        [--threads 1] [--out experiments/results/prune_to_budget.json] [--resume] [--replot]
        [--quick] [--no-progress] [--note TEXT]

``--seeds-side``: the seeds run at the budgets other than 0.5 (default: ``--seeds``), to fit a
time budget while keeping every seed at 50%.

Each (model, budget, method, calibration seed) is one record; at every budget all methods get
the same MAC limit (``floor(budget * dense MACs)`` per sample, counted on a batch of one), the
same calibration images and the same test images (so the comparisons are paired):

- ``ours``: ``spr.prune_to_budget(method="mip", refit=True)`` (keep-k curves by the layer MIP,
  knapsack allocation, sequential least-squares refit; certified);
- ``magnitude+alloc`` / ``osscar+alloc``: the same with filter-norm / swap-search layer decisions;
- ``uniform-mip``: ``method="mip", allocation="uniform"`` (every block keeps the same fraction);
- ``tp-magnitude`` / ``tp-taylor``: Torch-Pruning's ``MetaPruner`` with
  ``MagnitudeImportance(p=2)`` / ``TaylorImportance()`` (one backward of the cross-entropy on the
  calibration batch), ``global_pruning=True``, restricted to the same prunable units (every conv /
  Linear that is not a prunable group's producer is in ``ignored_layers``; the residual-stream
  widths are checked unchanged); the number of channels it prunes is bisected so that the pruned
  model's MACs are at most the limit and as close to it as the pruner allows (``tp`` in the
  record: how close). No refit: Torch-Pruning's pruned model as is;
- ``tp-magnitude+refit`` / ``tp-taylor+refit``: the channels Torch-Pruning kept, handed to
  ``spr.reconstruct(dense, calibration, keep)`` (our sequential least-squares refit).

Every pruned model is tested one-shot and after one fine-tuning pass (SGD, lr 0.01 with a
per-step cosine decay to zero, momentum 0.9, weight decay 5e-4, batch 128, train_dense's
augmentation) over a seeded subset of the training split. Inputs as in
``experiments/train_dense.py``: 28x28 zero-padded to 32x32, pixels in [0, 1].

Writes ``--out`` (JSON, rewritten atomically after every record; ``--resume`` keeps the records
already there and runs the rest) and the plot next to it (``.png``): accuracy against the
measured MACs fraction, one column per model (all methods; below, zoomed, the methods with a
refit), one-shot and fine-tuned, mean +- std over seeds.
Values that do not apply (a certificate's gap for a method that proves no bound) are ``null``.
``--quick`` is a smoke run (ResNet-20, budget 0.5, seed 0, tiny sizes) written to ``--out`` or a
temporary folder, never to the committed results.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import torch_pruning as tp
from _common import RESULTS, save_figure, write_json
from torch import nn
from tqdm.auto import tqdm
from train_dense import WEIGHTS, load_dense, machine, weights_path

import spr
from spr._surgery import CUSTOM_PRUNERS
from spr._training import make_optimizer, train_epoch
from spr.data import DatasetNotFoundError, fashion_mnist

MODELS = ("resnet20", "resnet56")
BUDGETS = (0.7, 0.5, 0.3)
SEEDS = (0, 1, 2)
SPR_METHODS = {
    "ours": {"method": "mip"},
    "magnitude+alloc": {"method": "magnitude"},
    "osscar+alloc": {"method": "osscar"},
    "uniform-mip": {"method": "mip", "allocation": "uniform"},
}
TP_METHODS = {  # name -> (importance, refit)
    "tp-magnitude": ("magnitude", False),
    "tp-taylor": ("taylor", False),
    "tp-magnitude+refit": ("magnitude", True),
    "tp-taylor+refit": ("taylor", True),
}
METHODS = (*SPR_METHODS, *TP_METHODS)
TIME_LIMIT = {"resnet20": 60.0, "resnet56": 120.0}
PAD_TO = 32
CALIBRATION = 512
FINETUNE = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128,
            "schedule": "per-step cosine decay to 0 over the one pass", "augment": True}
FINETUNE_SEED_OFFSET = 1000  # fine-tuning subset seed = calibration seed + this
TEST_SEED = 0
TEST_BATCH = 500
OUT = RESULTS / "prune_to_budget.json"
UNDERTRAINED = {"resnet56": "trained for only 2 epochs (83.04% on the full test split): "
                            "undertrained, its accuracies are not those of a converged ResNet-56"}
QUICK = {"models": ["resnet20"], "budgets": [0.5], "seeds": [0], "calibration": 64,
         "test_samples": 200, "finetune_samples": 128, "time_limit": 4.0}


# ---- data ---------------------------------------------------------------------------------------
class Data:
    """The training split (calibration and fine-tuning subsets) and the fixed test subset."""

    def __init__(self, test_samples: int | None) -> None:
        self.train = fashion_mnist("train")
        test = fashion_mnist("test")
        self.test_full = len(test)
        if test_samples is not None and test_samples < len(test):
            test = test.subset(test_samples, seed=TEST_SEED)
        self.test = test

    def calibration(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.train.subset(n, seed=seed).to_float(pad_to=PAD_TO)

    def test_loader(self):
        return self.test.loader(TEST_BATCH, shuffle=False, pad_to=PAD_TO)

    def finetune_loader(self, n: int, seed: int):
        split = self.train.subset(n, seed=seed + FINETUNE_SEED_OFFSET)
        return split.loader(FINETUNE["batch_size"], shuffle=True, pad_to=PAD_TO, augment=True,
                            generator=torch.Generator().manual_seed(seed))


def finetune(model: nn.Module, loader, progress: bool, desc: str) -> dict:
    """One pass over ``loader`` (in place); the training record."""
    optimizer, schedule = make_optimizer(model, 1, len(loader), FINETUNE["lr"],
                                         FINETUNE["momentum"], FINETUNE["weight_decay"])
    record = train_epoch(model, loader, optimizer, schedule, progress=progress, desc=desc)
    model.eval()
    return record


# ---- Torch-Pruning ------------------------------------------------------------------------------
def _producers(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    groups, _ = spr.channel_groups(model, (example,))
    return {g.producer: g.channels for g in groups}


def _widths(model: nn.Module) -> dict[str, int]:
    """Output width of every conv / Linear and input width of every Linear."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = m.out_channels
        elif isinstance(m, nn.Linear):
            out[name] = m.out_features
            out[name + ":in"] = m.in_features
    return out


def taylor_gradients(dense: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The gradients of the mean cross-entropy on the calibration batch (one backward, eval
    mode: BatchNorm with its running statistics, as the pruned network runs)."""
    model = copy.deepcopy(dense).eval()
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        F.cross_entropy(model(x), y).backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()
            if p.grad is not None}


def tp_prune(dense: nn.Module, example: torch.Tensor, n_pruned: int, importance: str,
             grads: dict[str, torch.Tensor] | None, producers: dict[str, int]):
    """Torch-Pruning's global pruner on a copy of ``dense``, asked to remove ``n_pruned`` of the
    prunable groups' channels; returns the pruned copy and, per producer, the kept mask."""
    model = copy.deepcopy(dense).eval()
    if grads is not None:
        for name, p in model.named_parameters():
            p.grad = grads[name].clone() if name in grads else None
    imp = (tp.importance.MagnitudeImportance(p=2) if importance == "magnitude"
           else tp.importance.TaylorImportance())
    ignored = [m for name, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)) and name not in producers]
    total = sum(producers.values())
    names = {m: name for name, m in model.named_modules()}
    keep = {name: torch.ones(n, dtype=torch.bool) for name, n in producers.items()}
    if n_pruned > 0:
        # n_pruned = total - int(total * (1 - ratio)) in TP: ratio (n - 1/2) / total gives n
        ratio = (n_pruned - 0.5) / total
        pruner = tp.pruner.MetaPruner(model, example, importance=imp, global_pruning=True,
                                      pruning_ratio=ratio, ignored_layers=ignored,
                                      customized_pruners=CUSTOM_PRUNERS)
        for group in pruner.step(interactive=True):
            dep, idxs = group[0]
            name = names[dep.target.module]
            if name not in keep:
                raise RuntimeError(f"Torch-Pruning pruned {name}, not a prunable group's producer")
            keep[name][list(idxs)] = False
            group.prune()
    model.zero_grad(set_to_none=True)
    return model.eval(), keep


def tp_to_budget(dense: nn.Module, example: torch.Tensor, limit: int, importance: str,
                 grads, producers: dict[str, int]):
    """Bisect the number of channels Torch-Pruning removes for the largest MACs <= ``limit``.

    Torch-Pruning skips a group whose every channel falls below the global threshold (it would
    empty a layer), so MACs need not fall monotonically in n; the best feasible n seen is kept
    and the non-monotone steps are counted."""
    total = sum(producers.values())
    seen: dict[int, int] = {}

    def macs(n: int):
        model, keep = tp_prune(dense, example, n, importance, grads, producers)
        seen[n] = spr.count_macs(model, example)
        return model, keep, seen[n]

    best = None
    low, high = 0, total  # macs(low) > limit; search the smallest n with macs(n) <= limit
    model, keep, m = macs(high)
    if m <= limit:
        best = (high, model, keep, m)
    while high - low > 1:
        mid = (low + high) // 2
        model, keep, m = macs(mid)
        if m <= limit:
            high = mid
            if best is None or m > best[3]:
                best = (mid, model, keep, m)
        else:
            low = mid
    if best is None:
        raise RuntimeError(f"Torch-Pruning found no pruning within {limit:,} MACs")
    ordered = [seen[n] for n in sorted(seen)]
    nonmono = sum(b > a for a, b in zip(ordered, ordered[1:], strict=False))
    n, model, keep, m = best
    return model, keep, {"n_pruned": n, "channels_total": total, "evaluations": len(seen),
                         "macs_over_limit": m / limit, "nonmonotone_steps": nonmono,
                         "macs_at_n_minus_1": seen.get(n - 1)}


def check_residual_widths(dense: nn.Module, pruned: nn.Module, producers) -> bool:
    """Every conv / Linear other than the producers keeps its output width (and the classifier its
    input width): only block-internal channels were pruned."""
    a, b = _widths(dense), _widths(pruned)
    return a.keys() == b.keys() and all(a[k] == b[k] for k in a if k not in producers)


# ---- one record ---------------------------------------------------------------------------------
def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _certificate(plan) -> dict:
    s = plan.certificate.summary()
    k = plan.certificate.knapsack
    return {"layer_gap_median": _num(s["layer_gap_median"]),
            "layer_gap_max": _num(s["layer_gap_max"]), "knapsack_gap": _num(s["knapsack_gap"]),
            "knapsack_status": k["status"], "sizes": s["sizes"],
            "global_bound": _num(k.get("global_bound")), "knapsack_objective": _num(
                k["objective"]), "met": s["met"], "seconds": plan.certificate.seconds}


NO_CERTIFICATE = {"layer_gap_median": None, "layer_gap_max": None, "knapsack_gap": None}


class Runner:
    """Prunes, tests and fine-tunes; caches Torch-Pruning's supports so that ``tp-X`` and
    ``tp-X+refit`` share one bisection (and magnitude, which reads no data, one per budget)."""

    def __init__(self, args, data: Data) -> None:
        self.args, self.data = args, data
        self._tp_cache: dict[tuple, tuple] = {}
        self._grads: dict[tuple, dict] = {}

    def tp_support(self, name, dense, example, limit, importance, seed, x, y, producers):
        key = (name, limit, importance, None if importance == "magnitude" else seed)
        if key not in self._tp_cache:
            t0 = time.perf_counter()
            grads = None
            if importance == "taylor":
                grads = taylor_gradients(dense, x, y)
            grad_seconds = time.perf_counter() - t0
            model, keep, info = tp_to_budget(dense, example, limit, importance, grads, producers)
            info["gradient_seconds"] = grad_seconds
            info["seconds"] = time.perf_counter() - t0
            self._tp_cache.clear()  # one (model, budget, importance, seed) at a time
            self._tp_cache[key] = (model, keep, info)
        model, keep, info = self._tp_cache[key]
        return copy.deepcopy(model), keep, dict(info)

    def prune(self, name, dense, method, budget, seed, x, y, example, producers):
        """(pruned model, extra fields of the record, pruning seconds)."""
        args = self.args
        limit = int(math.floor(budget * spr.count_macs(dense, example)))
        if method in SPR_METHODS:
            t0 = time.perf_counter()
            plan = spr.prune_to_budget(dense, x, macs=float(budget), example_inputs=example,
                                       refit=True, time_limit=args.time_limit_for(name),
                                       max_options=32, progress=args.progress,
                                       **SPR_METHODS[method])
            pruned = plan.apply(dense)
            seconds = time.perf_counter() - t0
            extra = {"certificate": _certificate(plan), "widths": [
                int(plan.keep[g.producer].sum()) for g in plan.groups]}
            assert plan.certificate.budget["macs_limit"] == limit, "budget mismatch"
            return pruned, extra, seconds
        importance, refit = TP_METHODS[method]
        model, keep, info = self.tp_support(name, dense, example, limit, importance, seed, x, y,
                                            producers)
        seconds = info["seconds"]
        extra = {"tp": info, "residual_widths_unchanged": check_residual_widths(
            dense, model, producers), "widths": [int(keep[p].sum()) for p in producers],
            "certificate": dict(NO_CERTIFICATE)}
        if not extra["residual_widths_unchanged"]:
            raise RuntimeError(f"{method}: Torch-Pruning changed a residual-stream width")
        if not refit:
            return model, extra, seconds
        t0 = time.perf_counter()
        plan = spr.reconstruct(dense, x, keep, refit=True, example_inputs=example,
                               progress=args.progress)
        pruned = plan.apply(dense)
        seconds += time.perf_counter() - t0
        extra["reconstruct_seconds"] = time.perf_counter() - t0
        cert = _certificate(plan)
        extra["certificate"] = {**NO_CERTIFICATE, "layer_gap_median": cert["layer_gap_median"],
                                "layer_gap_max": cert["layer_gap_max"]}
        return pruned, extra, seconds

    def record(self, name, dense, method, budget, seed) -> dict:
        args, data = self.args, self.data
        x, y = data.calibration(args.calibration, seed)
        example = x[:1]
        producers = _producers(dense, example)
        dense_macs, dense_params = spr.count_macs(dense, example), spr.count_params(dense)
        limit = int(math.floor(budget * dense_macs))
        pruned, extra, seconds = self.prune(name, dense, method, budget, seed, x, y, example,
                                            producers)
        macs, params = spr.count_macs(pruned, example), spr.count_params(pruned)
        if macs > limit:
            raise RuntimeError(f"{name} {method} {budget}: {macs:,} MACs > limit {limit:,}")
        t0 = time.perf_counter()
        one_shot = spr.evaluate(pruned, data.test_loader())
        test_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        train = finetune(pruned, data.finetune_loader(args.finetune_samples, seed),
                         args.progress, f"{name} {method} {budget} fine-tune")
        finetune_seconds = time.perf_counter() - t0
        tuned = spr.evaluate(pruned, data.test_loader())
        return {"model": name, "budget": budget, "method": method, "seed": seed,
                "one_shot_accuracy": one_shot, "finetuned_accuracy": tuned,
                "prune_seconds": seconds, "macs": macs, "params": params, "macs_limit": limit,
                "macs_dense": dense_macs, "params_dense": dense_params,
                "macs_fraction": macs / dense_macs, "params_fraction": params / dense_params,
                "macs_over_limit": macs / limit, **extra,
                "finetune_loss": train["loss"], "finetune_train_accuracy": train["accuracy"],
                "finetune_seconds": finetune_seconds, "test_seconds": test_seconds}


# ---- aggregate, plot ----------------------------------------------------------------------------
def _stats(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def aggregate(records: list[dict]) -> list[dict]:
    keys = sorted({(r["model"], r["budget"], r["method"]) for r in records},
                  key=lambda k: (MODELS.index(k[0]) if k[0] in MODELS else 9, -k[1],
                                 METHODS.index(k[2]) if k[2] in METHODS else 99))
    rows = []
    for model, budget, method in keys:
        rs = [r for r in records if (r["model"], r["budget"], r["method"]) == (model, budget,
                                                                                method)]
        cert = [r["certificate"] for r in rs]
        rows.append({
            "model": model, "budget": budget, "method": method,
            "seeds": sorted(r["seed"] for r in rs),
            "one_shot": _stats([r["one_shot_accuracy"] for r in rs]),
            "finetuned": _stats([r["finetuned_accuracy"] for r in rs]),
            "prune_seconds": _stats([r["prune_seconds"] for r in rs]),
            "macs_fraction": _stats([r["macs_fraction"] for r in rs]),
            "params_fraction": _stats([r["params_fraction"] for r in rs]),
            "macs_over_limit": _stats([r["macs_over_limit"] for r in rs]),
            "layer_gap_median": _stats([c["layer_gap_median"] for c in cert]),
            "layer_gap_max": _stats([c["layer_gap_max"] for c in cert]),
            "knapsack_gap": _stats([c["knapsack_gap"] for c in cert]),
        })
    return rows


def comparisons(records: list[dict], reference: str = "ours") -> list[dict]:
    """Per (model, budget, baseline): ``reference`` minus the baseline, paired over seeds, one-shot
    and fine-tuned; ``beats_2std``: the mean difference exceeds twice both methods' stds (and the
    paired difference's std)."""
    out = []
    index = {(r["model"], r["budget"], r["method"], r["seed"]): r for r in records}
    for model, budget in sorted({(r["model"], r["budget"]) for r in records}):
        for method in METHODS:
            if method == reference:
                continue
            seeds = sorted(s for (m, b, me, s) in index if (m, b, me) == (model, budget, method)
                           and (model, budget, reference, s) in index)
            if not seeds:
                continue
            row = {"model": model, "budget": budget, "baseline": method, "seeds": seeds}
            for key in ("one_shot_accuracy", "finetuned_accuracy"):
                ours = [index[(model, budget, reference, s)][key] for s in seeds]
                base = [index[(model, budget, method, s)][key] for s in seeds]
                diff = _stats([a - b for a, b in zip(ours, base, strict=True)])
                so, sb = _stats(ours)["std"], _stats(base)["std"]
                row[key] = {"difference": diff,
                            "beats_2std": diff["mean"] > 2 * max(so, sb, diff["std"]),
                            "at_or_above": diff["mean"] >= 0}
            out.append(row)
    return out


JITTER = 0.006
REFIT = ("ours", "magnitude+alloc", "osscar+alloc", "uniform-mip", "tp-magnitude+refit",
         "tp-taylor+refit")
STYLE = {"ours": ("C3", "o"), "magnitude+alloc": ("C0", "s"), "osscar+alloc": ("C1", "D"),
         "uniform-mip": ("C2", "^"), "tp-magnitude": ("C4", "v"), "tp-taylor": ("C5", "<"),
         "tp-magnitude+refit": ("C6", ">"), "tp-taylor+refit": ("C7", "P")}


def _panel(ax, payload: dict, model: str, mine: list[dict], zoom: bool, legend: bool) -> None:
    methods = [m for m in METHODS if any(r["method"] == m for r in mine)]
    shown = []
    for j, method in enumerate(methods):
        if zoom and method not in REFIT:
            continue
        color, marker = STYLE.get(method, ("k", "x"))
        rs = sorted((r for r in mine if r["method"] == method), key=lambda r: r["budget"])
        shift = (j - (len(methods) - 1) / 2) * JITTER  # spread the markers of one budget
        xs = [r["macs_fraction"]["mean"] + shift for r in rs]
        for key, fill, style in (("one_shot", "none", "--"), ("finetuned", color, "-")):
            ys = [r[key]["mean"] for r in rs]
            shown += ys
            ax.errorbar(xs, ys, yerr=[r[key]["std"] for r in rs], color=color, marker=marker,
                        markerfacecolor=fill, linestyle=style, linewidth=1, markersize=6,
                        capsize=2, label=method if key == "finetuned" and legend else None)
    dense = payload.get("dense", {}).get(model, {}).get("test_accuracy")
    if dense is not None:
        ax.axhline(dense, color="k", linewidth=0.8, linestyle=":",
                   label="dense (same test images)" if legend else None)
        shown.append(dense)
    for budget in sorted({r["budget"] for r in mine}):
        ax.axvline(budget, color="0.6", linewidth=0.8, linestyle="-.", zorder=0)
    if zoom and shown:
        ax.set_ylim(min(shown) - 1.0, max(shown) + 1.0)
    seeds = ", ".join(f"{b:g}: {max(len(r['seeds']) for r in mine if r['budget'] == b)}"
                      for b in sorted({r["budget"] for r in mine}))
    what = "zoom on the methods with a refit" if zoom else "all methods"
    ax.set_title(f"{model}, {what}\n({payload['config']['test_samples']} test images; seeds "
                 f"per budget {seeds})", fontsize=9)
    ax.set_xlabel(f"measured MACs / dense MACs (methods offset by {JITTER} for legibility)",
                  fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)


def plot(payload: dict, path: Path) -> None:
    """Per model: accuracy against the MACs fraction, all methods (top) and, zoomed, those with
    a refit (bottom; Torch-Pruning without refit is far below)."""
    rows = payload["aggregate"]
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    if not models:
        return
    fig, axes = plt.subplots(2, len(models), figsize=(6.5 * len(models), 9.5), squeeze=False)
    for col, model in enumerate(models):
        mine = [r for r in rows if r["model"] == model]
        for row in (0, 1):
            _panel(axes[row][col], payload, model, mine, zoom=row == 1,
                   legend=row == 0 and col == 0)
    fig.legend(loc="lower center", ncol=5, fontsize=8, frameon=False,
               title="filled markers, solid lines: after one fine-tuning pass; hollow, dashed: "
                     "one-shot; error bars: std over seeds; dash-dot: the MAC budgets",
               title_fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_figure(path, fig)
    plt.close(fig)


# ---- main ---------------------------------------------------------------------------------------
def _key(r: dict) -> tuple:
    return (r["model"], float(r["budget"]), r["method"], int(r["seed"]))


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--budgets", nargs="+", type=float, default=list(BUDGETS))
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--seeds-side", nargs="+", type=int, default=None,
                   help="seeds at the budgets other than 0.5 (default: --seeds); 0.5 always "
                        "runs --seeds")
    p.add_argument("--side-models", nargs="+", choices=MODELS, default=None,
                   help="the models --seeds-side applies to (default: all)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--calibration", type=int, default=CALIBRATION)
    p.add_argument("--finetune-samples", type=int, default=4000)
    p.add_argument("--test-samples", type=int, default=2000)
    p.add_argument("--time-limit", type=float, default=None,
                   help="prune_to_budget's time_limit (default 60 s ResNet-20, 120 s ResNet-56)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--resume", action="store_true",
                   help="keep the records already in --out and run only the missing ones")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (never the default out)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--replot", action="store_true",
                   help="only redraw the plot from the JSON at --out")
    p.add_argument("--note", default=None, help="why these settings (recorded in the JSON)")
    args = p.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
        if args.out is None:
            args.out = Path(tempfile.mkdtemp(prefix="prune_to_budget_quick_")) / "quick.json"
        if args.out.resolve() == OUT.resolve():
            p.error("--quick never writes the committed results; give another --out")
    if args.out is None:
        args.out = OUT
    if not all(0 < b <= 1 for b in args.budgets):
        p.error("--budgets are fractions in (0, 1]")
    args.progress = not args.no_progress
    args.time_limit_for = lambda name: (args.time_limit if args.time_limit is not None
                                        else TIME_LIMIT[name])
    return args


def plan_records(args) -> list[tuple]:
    todo = []
    for name in args.models:
        for budget in args.budgets:
            seeds = args.seeds
            if (args.seeds_side is not None and budget != 0.5
                    and (args.side_models is None or name in args.side_models)):
                seeds = args.seeds_side
            for seed in seeds:
                for method in args.methods:
                    todo.append((name, float(budget), method, int(seed)))
    return todo


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.replot:
        payload = json.loads(args.out.read_text())
        plot(payload, args.out.with_suffix(".png"))
        return payload
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    command = " ".join(["experiments/prune_to_budget.py", *(sys.argv[1:] if argv is None
                                                            else argv)])
    try:
        data = Data(args.test_samples)
    except DatasetNotFoundError as err:
        raise SystemExit(f"prune_to_budget: Fashion-MNIST is not installed ({err}); run "
                         "`make data`") from err
    for name in args.models:
        if not weights_path(WEIGHTS, name).exists():
            raise SystemExit(f"prune_to_budget: no dense weights {weights_path(WEIGHTS, name)}; "
                             f"run experiments/train_dense.py --model {name}")
    config = {"models": args.models, "budgets": args.budgets, "seeds": args.seeds,
              "seeds_side": args.seeds_side, "side_models": args.side_models,
              "seeds_side_meaning": "seeds run at the budgets other than 0.5 (null: --seeds)",
              "methods": args.methods,
              "calibration": args.calibration, "calibration_subset":
              "train.subset(calibration, seed) (class-balanced), padded to 32x32",
              "finetune_samples": args.finetune_samples,
              "finetune_subset_seed": f"seed + {FINETUNE_SEED_OFFSET}", "finetune": FINETUNE,
              "test_samples": len(data.test), "test_full": data.test_full,
              "test_subset_seed": TEST_SEED, "time_limit": {n: args.time_limit_for(n) for n in
                                                            args.models},
              "max_options": 32, "threads": args.threads, "quick": args.quick,
              "macs": "per sample, counted on a batch of one (the first calibration image)",
              "budget_limit": "floor(budget * dense MACs)"}
    records: list[dict] = []
    old = {}
    if args.resume and args.out.exists():
        old = json.loads(args.out.read_text())
        for key in ("calibration", "finetune_samples", "test_samples"):
            if old["config"].get(key) != config[key]:
                raise SystemExit(f"--resume: {args.out} has {key}={old['config'].get(key)}, "
                                 f"this run {config[key]}; use another --out")
        records = old.get("records", [])
    payload = {
        "script": "experiments/prune_to_budget.py", "command": old.get("command", command),
        "resumed_with": [*old.get("resumed_with", []), command] if old else [],
        "config": config,
        "notes": {
            **old.get("notes", {}),  # a resumed run keeps the notes written on the results
            "resnet56": UNDERTRAINED["resnet56"],
            "settings": args.note or old.get("notes", {}).get("settings"),
            "null": "null = not applicable (no proven bound for the method) or not finite",
            "std": "sample standard deviation over the calibration seeds (ddof=1)",
            "tp": "Torch-Pruning's n_pruned bisected for the largest MACs <= the limit; "
                  "macs_over_limit = pruned MACs / limit; macs_at_n_minus_1: the MACs with one "
                  "channel fewer pruned (over the limit); nonmonotone_steps: increases of MACs "
                  "with n over the evaluated n, counting n = all channels, which always gives "
                  "one (Torch-Pruning skips a group it would empty, so asking for every channel "
                  "leaves the dense model)",
            "tp_seconds": "tp prune_seconds include the bisection (and for Taylor the "
                          "gradient); +refit adds spr.reconstruct",
            "finetune_accuracy": "finetune_train_accuracy: train mode (batch statistics) on "
                                 "the augmented batches; finetuned_accuracy: eval mode",
            "seeds": "tp-magnitude reads no data: one support per budget, reused for all "
                     "seeds (the seeds then differ only in the fine-tuning subset)",
        },
        "machine_start": old.get("machine_start") or {**machine(), "torch": torch.__version__,
                                                       "threads": args.threads},
        "dense": old.get("dense", {}),
        "records": records,
    }
    done = {_key(r) for r in records}
    todo = [k for k in plan_records(args) if k not in done]
    runner = Runner(args, data)
    dense_models = {}
    for name in args.models:
        dense_models[name] = load_dense(weights_path(WEIGHTS, name), name)
        if name not in payload["dense"] or payload["dense"][name].get("test_samples") != len(
                data.test):
            meta = json.loads(weights_path(WEIGHTS, name).with_suffix(".json").read_text())
            x1 = data.calibration(1, 0)[0]
            payload["dense"][name] = {
                "test_accuracy": spr.evaluate(dense_models[name], data.test_loader()),
                "test_samples": len(data.test),
                "full_test_accuracy_at_training": meta.get("test_accuracy"),
                "epochs": meta.get("epochs_completed"),
                "macs": spr.count_macs(dense_models[name], x1),
                "params": spr.count_params(dense_models[name]),
                "note": UNDERTRAINED.get(name, "")}

    def save() -> None:
        payload["records"] = sorted(records, key=lambda r: (
            MODELS.index(r["model"]), -r["budget"], r["seed"], METHODS.index(r["method"])))
        payload["aggregate"] = aggregate(records)
        payload["comparisons"] = comparisons(records)
        payload["machine"] = {**machine(), "torch": torch.__version__, "threads": args.threads}
        payload["wall_seconds"] = (old.get("wall_seconds") or 0.0) + time.perf_counter() - started
        write_json(args.out, payload)
        plot(payload, args.out.with_suffix(".png"))

    save()
    bar = tqdm(todo, desc="records", disable=not args.progress)
    for name, budget, method, seed in bar:
        bar.set_postfix_str(f"{name} {budget} {method} s{seed}")
        r = runner.record(name, dense_models[name], method, budget, seed)
        records.append(r)
        save()
        print(f"{name} {budget:.0%} {method:<19} seed {seed}: one-shot "
              f"{r['one_shot_accuracy']:6.2f}%, fine-tuned {r['finetuned_accuracy']:6.2f}%, "
              f"MACs {r['macs_fraction']:.3f}, prune {r['prune_seconds']:6.1f} s, "
              f"fine-tune {r['finetune_seconds']:5.1f} s", flush=True)
    save()
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return payload


if __name__ == "__main__":
    main()
