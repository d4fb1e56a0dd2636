"""``spr demo``: the whole workflow on a small CNN in a few minutes of CPU time (``make run``).

Fashion-MNIST (scikit-learn's digits when it is not installed, said so), a 4-conv CNN: dense
reference, SPR training, threshold search, structural decision, physical removal, a short
fine-tune, then :func:`spr.solve_mip` on the pruned network's classifier (which of its inputs,
the last conv's channels, to keep). Prints the time it expects before it starts (measured: a few
timed SGD steps times the steps to come, see :func:`spr._pipeline.estimate_seconds`) and the
time it took at the end, and a before/after table; writes ``results.json`` and ``demo.png`` into
the output folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spr import data as spr_data
from spr._atomic import write_text_atomic
from spr._config import PruneConfig
from spr._estimate import estimate_seconds, format_seconds
from spr._pipeline import reference_M, run_pipeline
from spr._regularizer import SPRegularizer
from spr._run import _Run
from spr._serialize import load_pruned
from spr._solve_mip import solve_mip
from spr.models import small_cnn

COLLAPSED = 0.01  # y* below this: the group sits at 1% of its scale
FLOOR = 1e-5  # the histogram's first bin gathers every y* below this (0 included)
MIP_SECONDS = {True: 5.0, False: 30.0}  # the layer MIP's time limit (quick, full)


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
        epochs_finetune=1 if quick else 3, lam=2.0, alpha=0.5, lr=0.05, lr_finetune=0.01,
        batch_size=128, augment=False, max_drop=1.0, threshold_tol=1e-3, struct_threshold=0.05,
    )


def _pick_dataset(data_root: str | None, log) -> str:
    try:
        spr_data.fashion_mnist("test", root=data_root)
        return "fashion-mnist"
    except spr_data.DatasetNotFoundError:
        log("Fashion-MNIST is not installed (run `make data` for it); using scikit-learn's "
            "digits instead")
        return "digits"


def _layer_inputs(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    captured = []
    handle = layer.register_forward_hook(lambda m, inp, out: captured.append(inp[0].detach()))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
    return captured[0]


def _mip_on_classifier(pruned: nn.Module, split, quick: bool, alpha: float) -> dict:
    """Exact choice of the classifier's inputs (the last conv's channels), keeping 3/4."""
    layer = [m for m in pruned.modules() if isinstance(m, nn.Linear)][-1]
    x, _ = split.subset(64 if quick else 256, seed=3).to_float()
    X = _layer_inputs(pruned, layer, x)
    keep = max(1, (3 * layer.in_features) // 4)
    sol = solve_mip(layer, X, lam=1e-4, alpha=alpha, max_keep=keep,
                    time_limit=MIP_SECONDS[quick])
    return {
        "layer_in_features": layer.in_features, "max_keep": keep, "kept": int(sol.keep.sum()),
        "status": sol.status, "objective": sol.objective, "bound": sol.bound, "gap": sol.gap,
        "relaxations": sol.relaxations, "seconds": sol.seconds,
    }


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
    ax.set(xticks=pos, xticklabels=kinds, ylabel="relative to dense", title="Size")
    ax.legend()
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
    values = np.array(summary["indicators"]["values"])
    bins = np.logspace(np.log10(FLOOR), 0, 31)
    floor = values < FLOOR
    ax.hist(np.clip(values[~floor], FLOOR, 1), bins=bins, color="tab:blue",
            label=f"y* >= {FLOOR:g}: {int((~floor).sum())} groups")
    ax.hist(np.full(int(floor.sum()), FLOOR), bins=bins, color="tab:red",
            label=f"y* < {FLOOR:g} (0 included), drawn in the first bin: "
                  f"{int(floor.sum())} groups")
    ax.axvline(COLLAPSED, color="k", linestyle="--", linewidth=1,
               label=f"y* = {COLLAPSED:g}: left of it a group is at < 1% of its scale "
                     "(collapsed)")
    ax.set(xscale="log", xlabel="y* of each filter group after SPR training (log scale)",
           ylabel="groups", title="Where SPR puts the groups")
    ax.legend(fontsize=7, loc="upper center")
    fig.text(0.5, 0.005, "y* = min(1, max(||w||_inf / M, sqrt(alpha / (1 - alpha)) ||w||_2)) "
             "is SPR's indicator of a group (its BatchNorm channel included): near 1 the "
             "group is in use, near 0 SPR has switched it off.", ha="center", fontsize=7)
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
    expected = estimate["seconds"] + 4.0  # + loading, the MIP (usually < 1 s) and the plot
    log(f"expected time: about {format_seconds(expected)} ({estimate['steps']:,} SGD steps at "
        f"{1000 * estimate['step_seconds']:.0f} ms, measured on the first batch, plus "
        f"evaluation), up to {format_seconds(expected + MIP_SECONDS[quick])} if the layer MIP "
        f"runs to its {MIP_SECONDS[quick]:.0f} s limit")
    summary = run_pipeline(config, out / "run", restart=True, progress=progress, log=log,
                           estimate=False)
    test = spr_data.load(dataset, "test", root=data_root)
    in_channels, classes = test.images.shape[1], len(test.classes)
    dense = load_pruned(out / "run" / "dense", small_cnn(classes, in_channels))
    spr_model = load_pruned(out / "run" / "spr", small_cnn(classes, in_channels))
    pruned = load_pruned(out / "run" / "pruned", small_cnn(classes, in_channels))
    summary["indicators"] = _indicator_summary(spr_model, dense, config)
    log("solving the layer MIP of the pruned network's classifier (keep at most 3/4 of its "
        "inputs, the last conv's channels) ...")
    summary["mip"] = _mip_on_classifier(pruned, test, quick, config.alpha)
    summary["dataset"] = dataset
    summary["layer_names"] = layer_names(dense, summary["widths_dense"])
    summary["estimate"] = {**estimate, "seconds_expected": expected}

    ind, mip = summary["indicators"], summary["mip"]
    print()
    print(_table(summary))
    print(f"y* after SPR training: {ind['below_0.01']} of {ind['groups']} groups below "
          f"{COLLAPSED}; quartiles {', '.join(f'{q:.3g}' for q in ind['quartiles'])}")
    print(f"layer MIP: kept {mip['kept']} of {mip['layer_in_features']} classifier inputs "
          f"(<= {mip['max_keep']}), {mip['status']}, objective {mip['objective']:.4g}, bound "
          f"{mip['bound']:.4g}, gap {mip['gap']:.2%}, {mip['seconds']:.1f} s")
    summary["seconds_total"] = time.perf_counter() - started  # before the plot: ~1 s
    write_text_atomic(out / "results.json", json.dumps(summary, indent=2))
    _figure(summary, out / "demo.png")
    total = time.perf_counter() - started
    print(f"wrote {out / 'results.json'} and {out / 'demo.png'}; the pruned model is in "
          f"{out / 'run' / 'pruned'}")
    print(f"total time: {format_seconds(total)} ({total:.0f} s; expected about "
          f"{expected:.0f} s)")
    return summary
