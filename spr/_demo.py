"""``spr demo``: the whole workflow on a small CNN in a few minutes of CPU time (``make run``).

Fashion-MNIST (scikit-learn's digits when it is not installed, said so), a 4-conv CNN: dense
reference, SPR training, then the budget stated up front — half the dense network's MACs — met by
:func:`spr.prune_to_budget` (keep-k curves of the layer MIP at every consumer, a knapsack over
them, sequential refit; certified), physical removal and a short fine-tune. Prints the time it
expects before it starts (measured: a few timed SGD steps times the steps to come, see
:func:`spr._estimate.estimate_seconds`, plus the budget's time limit) and the time it took at the
end, a before/after table and the certificate; writes ``results.json`` and ``demo.png`` into the
output folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import spr.data as spr_data
from spr._atomic import write_text_atomic
from spr._config import PruneConfig
from spr._estimate import estimate_seconds, format_seconds
from spr._pipeline import run_pipeline
from spr._regularizer import SPRegularizer, reference_M
from spr._run import _Run
from spr._serialize import load_pruned
from spr.models import small_cnn

COLLAPSED = 0.01  # y* below this: the group sits at 1% of its scale
BUDGET_MACS = 0.5  # the demo's budget: at most half the dense network's MACs per image
BUDGET_SECONDS = {True: 3.0, False: 15.0}  # prune_to_budget's time limit (quick, full)


def layer_names(model: nn.Module, names) -> dict[str, str]:
    """Readable names of the layers ``names`` (module names, e.g. ``"0"`` in a Sequential):
    ``conv1``, ``conv2``, ... and ``fc1``, ... in the model's order, with the module name
    (``conv1 (model[0])``), or the module name itself where it is not an index.

    >>> layer_names(small_cnn(), ["0", "3", "7", "10", "15"])["15"]
    'fc1 (model[15])'
    """
    modules, counts, out = dict(model.named_modules()), {"conv": 0, "fc": 0}, {}
    for name in names:
        kind = "fc" if isinstance(modules.get(name), nn.Linear) else "conv"
        counts[kind] += 1
        out[name] = (f"{kind}{counts[kind]} (model[{name}])" if name.isdigit()
                     else name)
    return out


def demo_config(dataset: str, quick: bool, data_root: str | None = None) -> PruneConfig:
    """The demo's settings: full (about a minute on 2 cores) or quick (a smoke test)."""
    return PruneConfig(
        arch="small_cnn", dataset=dataset, data_root=data_root,
        train_samples=1000 if quick else 12000, threshold_samples=300 if quick else 2000,
        epochs_reference=2 if quick else 8, epochs_spr=2 if quick else 8,
        epochs_finetune=1 if quick else 3, lam=0.5, alpha=0.5, lr=0.05, lr_finetune=0.01,
        batch_size=128, augment=False, max_drop=1.0, threshold_tol=1e-3, struct_threshold=0.05,
        budget_macs=BUDGET_MACS, budget_seconds=BUDGET_SECONDS[quick],
    )


def _pick_dataset(data_root: str | None, log) -> str:
    try:
        spr_data.fashion_mnist("test", root=data_root)
        return "fashion-mnist"
    except spr_data.DatasetNotFoundError:
        log("Fashion-MNIST is not installed (run `make data` for it); using scikit-learn's "
            "digits instead")
        return "digits"


def _indicator_summary(spr_model: nn.Module, dense: nn.Module, config: PruneConfig) -> dict:
    reg = SPRegularizer(spr_model, config.lam, config.alpha,
                        M=reference_M(dense, config.groups, config.M_scale))
    y = torch.cat([v.flatten() for v in reg.indicators().values()]).cpu().numpy()
    return {
        "groups": int(y.size), "below_0.01": int((y < COLLAPSED).sum()),
        "quartiles": [float(q) for q in np.quantile(y, [0.25, 0.5, 0.75])],
        "values": [float(v) for v in y],
    }


def _table(summary: dict) -> str:
    rows = [
        ("test accuracy (%)", f"{summary['accuracy_dense']:.2f}",
         f"{summary['accuracy_finetuned']:.2f}"),
        ("parameters", f"{summary['params_dense']:,}", f"{summary['params_pruned']:,}"),
        ("MACs per image", f"{summary['macs_dense']:,}", f"{summary['macs_pruned']:,}"),
    ]
    names = summary.get("layer_names", {})
    for name, width in summary["widths_dense"].items():
        rows.append((f"width of {names.get(name, 'layer ' + name)}", str(width),
                     str(summary["widths_pruned"][name])))
    lines = [f"{'':<28}{'dense':>12}{'pruned':>12}"]
    lines += [f"{a:<28}{b:>12}{c:>12}" for a, b, c in rows]
    lines.append(
        f"removed: {summary['params_removed_percent']:.1f}% of the parameters, "
        f"{summary['macs_removed_percent']:.1f}% of the MACs"
    )
    budget = summary.get("budget")
    if budget:
        b, k = budget["budget"], budget["knapsack"]
        lines.append(f"budget: at most {b['macs_limit']:,} MACs per image "
                     f"({summary['config']['budget_macs']:.0%} of the dense); the pruned network "
                     f"has {b['macs']:,}: {'met' if b['met'] else 'NOT met'}")
        lines.append("certificate (each group: channels kept of its width; the consumer's "
                     "reconstruction error relative to its output energy; the proven gap):")
        names = summary.get("layer_names", {})
        for row in budget["layers"]:
            gap = "-" if row["gap"] != row["gap"] else f"{row['gap']:.1%}"
            lines.append(f"  {names.get(row['name'], row['name']):<24}{row['kept']:>3} of "
                         f"{row['channels']:<3} error {row['relative']:.4f}  gap {gap:>6}  "
                         f"({row['status']})")
        lines.append(f"  allocation (knapsack over the curves): gap {k['gap']:.2%}, "
                     f"{k['status']}; sizes {k['sizes']}")
    return "\n".join(lines)


def _figure(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    stages = ["dense", "SPR-trained", "pruned", "fine-tuned"]
    accs = [summary[k] for k in ("accuracy_dense", "accuracy_spr", "accuracy_pruned",
                                 "accuracy_finetuned")]
    ax = axes[0, 0]
    ax.bar(stages, accs, color=["0.6", "tab:blue", "tab:orange", "tab:green"])
    ax.set(ylabel="test accuracy (%)", ylim=(max(0, min(accs) - 10), 100),
           title="Accuracy through the pipeline")
    for i, a in enumerate(accs):
        ax.text(i, a, f"{a:.1f}", ha="center", va="bottom")
    ax = axes[0, 1]
    kinds = ["parameters", "MACs per image"]
    dense = [summary["params_dense"], summary["macs_dense"]]
    pruned = [summary["params_pruned"], summary["macs_pruned"]]
    pos = np.arange(2)
    ax.bar(pos - 0.2, [1.0, 1.0], 0.4, label="dense", color="0.6")
    ax.bar(pos + 0.2, [p / d for p, d in zip(pruned, dense, strict=True)], 0.4, label="pruned",
           color="tab:green")
    if summary["config"].get("budget_macs"):
        ax.plot([0.8, 1.4], [summary["config"]["budget_macs"]] * 2, "k--", linewidth=1,
                label="the MAC budget")
    ax.set(xticks=pos, xticklabels=kinds, ylabel="relative to dense", title="Size",
           ylim=(0, 1.3))
    ax.legend(loc="upper center", ncol=3, fontsize=8)
    ax = axes[1, 0]
    names = list(summary["widths_dense"])
    pos = np.arange(len(names))
    ax.bar(pos - 0.2, [summary["widths_dense"][n] for n in names], 0.4, label="dense",
           color="0.6")
    ax.bar(pos + 0.2, [summary["widths_pruned"][n] for n in names], 0.4, label="pruned",
           color="tab:green")
    labels = summary.get("layer_names", {})
    ax.set(xticks=pos, ylabel="output channels", title="Per-layer widths")
    ax.set_xticklabels([labels.get(n, n).replace(" (", "\n(") for n in names], fontsize=8)
    ax.legend()
    ax = axes[1, 1]
    budget = summary.get("budget") or {}
    labels = summary.get("layer_names", {})
    for i, (row, curve) in enumerate(zip(budget.get("layers", []), budget.get("curves", []),
                                         strict=False)):
        color = f"C{i}"
        ks = np.array(curve["ks"]) / row["channels"]
        cost = np.maximum(np.array(curve["cost"], dtype=float), 1e-6)  # log scale
        ax.plot(ks, cost, "-o", color=color, markersize=2.5,
                label=labels.get(row["name"], row["name"]))
        bound = np.array(curve["bound"], dtype=float)
        shown = np.isfinite(bound) & (bound > 1e-6)
        if shown.any():
            ax.plot(ks[shown], bound[shown], ":", color=color, linewidth=1.2)
        chosen = curve["ks"].index(row["k"]) if row["k"] in curve["ks"] else None
        if chosen is not None:
            ax.plot(ks[chosen], cost[chosen], "*", color=color, markersize=12,
                    markeredgecolor="k")
    ax.set(yscale="log", xlabel="share of the layer's channels kept (k / width)",
           ylabel="reconstruction error (relative)",
           title="Keep-k curves (solid: layer MIP, dotted: proven bound,\nstar: the knapsack's "
                 "choice)")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def run_demo(
    out: str | Path = "runs/demo", *, quick: bool = False, data_root: str | None = None,
    progress: bool = True, log=print,
) -> dict:
    """Run the demo into folder ``out``; return (and write) its summary."""
    started = time.perf_counter()
    out = Path(out)
    dataset = _pick_dataset(data_root, log)
    config = demo_config(dataset, quick, data_root)
    log(f"spr demo on {dataset} ({config.train_samples} training images, small CNN, "
        f"{torch.get_num_threads()} torch thread(s))")
    estimate = estimate_seconds(_Run(config, progress=False),
                                {"stage": "reference", "epoch": 0, "records": {}}, False)
    # + loading and the plot; the budget's layer solves take up to their time limit, and the
    # calibration statistics and the sequential refit about as long again
    expected = estimate["seconds"] + 4.0 + 2 * BUDGET_SECONDS[quick]
    log(f"expected time: about {format_seconds(expected)} ({estimate['steps']:,} SGD steps at "
        f"{1000 * estimate['step_seconds']:.0f} ms, measured on the first batch, plus "
        f"evaluation, plus the budget's layer solves: {BUDGET_SECONDS[quick]:.0f} s limit)")
    summary = run_pipeline(config, out / "run", restart=True, progress=progress, log=log,
                           estimate=False)
    test = spr_data.load(dataset, "test", root=data_root)
    in_channels, classes = test.images.shape[1], len(test.classes)
    dense = load_pruned(out / "run" / "dense", small_cnn(classes, in_channels))
    spr_model = load_pruned(out / "run" / "spr", small_cnn(classes, in_channels))
    summary["indicators"] = _indicator_summary(spr_model, dense, config)
    summary["dataset"] = dataset
    summary["layer_names"] = layer_names(dense, summary["widths_dense"])
    summary["estimate"] = {**estimate, "seconds_expected": expected}

    ind = summary["indicators"]
    print()
    print(_table(summary))
    print(f"y* after SPR training: {ind['below_0.01']} of {ind['groups']} groups below "
          f"{COLLAPSED}; quartiles {', '.join(f'{q:.3g}' for q in ind['quartiles'])}")
    summary["seconds_total"] = time.perf_counter() - started  # before the plot: ~1 s
    write_text_atomic(out / "results.json", json.dumps(summary, indent=2))
    _figure(summary, out / "demo.png")
    total = time.perf_counter() - started
    print(f"wrote {out / 'results.json'} and {out / 'demo.png'}; the pruned model is in "
          f"{out / 'run' / 'pruned'}")
    print(f"total time: {format_seconds(total)} ({total:.0f} s; expected about "
          f"{expected:.0f} s)")
    return summary
