"""One-shot structured pruning of SmolLM2-135M's MLPs to a budget: ours (``prune_llm``: greedy
layer-MIP supports, knapsack allocation over the keep-k curves, sequential least-squares refit,
certificate) against neuron magnitude, Wanda-style, FLAP-style and OSSCAR-style supports, each
with and without our refit, each with a uniform per-layer width and with our allocation.

    python experiments/llm_prune.py [--removed 0.1 0.2 0.3] [--methods mip magnitude wanda flap
        osscar] [--calibration-windows 64] [--window 256] [--windows 24] [--osscar-time 2]
        [--threads 1] [--out experiments/results/llm_prune.json] [--resume] [--quick] [--toy]
        [--no-progress] [--save FOLDER]

Setup (as ``experiments/icquant_llm.py``): SmolLM2-135M-Instruct (its GGUF Q4_1 weights
dequantized to float32; "as shipped" scores 42.2), perplexity on 24 evenly spread windows of 256
tokens of *Persuasion* (held out), calibration on evenly spread windows of 256 tokens of *Emma*
(64 by default: 16384 tokens). The budget removes a fraction of the MLP parameters (all 30 layers:
79.6M of the model's 134.5M parameters); every method gets the same limit
``floor((1 - removed) * dense MLP parameters)``, FLAP's compensated biases counted in it.

Methods (``compress_extras.llm.prune_llm(method=...)``): ``mip`` (ours), ``magnitude`` (the norm
of the neuron's weights in gate_proj, up_proj and down_proj), ``wanda`` (``sum_o |W_oj| *
||x_j||``), ``flap`` (``var(x_j) * ||W_:j||^2`` with bias compensation), ``osscar`` (swap local
search from the largest neurons of the full ridge fit, ``--osscar-time`` seconds per layer). The
activations are those each method sees in the sequential pass (inputs from the model pruned so
far). ``+refit``: ``down_proj`` refit by least squares on the kept neurons (ours: the target is
the dense block output, ``target="block"``; FLAP's intercept fitted jointly); without it the dense
weights are kept (FLAP's bias compensation still applied). Every method's curves, allocation and
statistics keep position 0 of the windows (the attention sink, see ``compress_extras/llm/
_prune.py``). ``alloc``: ``knapsack`` (our widths,
from our curves, the same for every method at a budget) or ``uniform`` (every layer the same
width, the largest that fits).

Wall time: ``prune_seconds`` is what the plan took from scratch (the keep-k curves, computed once
per run and shared by every knapsack record, included in each); ``sequential_seconds`` the
sequential pass alone (single-threaded; the machine's other core was busy with other jobs, so
these are pessimistic). Certificates: median and max layer gap (ours with refit: the ridge value of
all neurons is the bound), knapsack gap.

Writes ``--out`` (JSON, rewritten atomically after every record; ``--resume`` keeps the records
there and runs the rest) and the plot beside it (``.png``): perplexity against the MLP parameters
removed. ``--quick``: SmolLM2, 20% only, ours and Wanda, 4 calibration and 4 held-out windows (a
smoke run of the real pipeline, written to a temporary folder unless ``--out``). ``--toy``: a tiny
random Llama and random token ids, every method (no data needed; for the tests).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from _common import RESULTS, save_figure, write_json

from compress_extras.llm import (
    austen_novels,
    fixed_windows,
    llm_curves,
    load_smollm2,
    mlp_parameters,
    perplexity,
    prune_llm,
    save_pruned,
)
from compress_extras.llm._models import tiny_llama
from compress_extras.llm._prune import METHODS

OUT = RESULTS / "llm_prune.json"
REMOVED = (0.1, 0.2, 0.3)
ALLOCATIONS = ("knapsack", "uniform")
SHIPPED = 42.2  # icquant_llm.json: SmolLM2 as shipped on these windows


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--removed", type=float, nargs="+", default=list(REMOVED))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--refit", nargs="+", default=["yes", "no"], choices=("yes", "no"))
    parser.add_argument("--allocations", nargs="+", default=list(ALLOCATIONS),
                        choices=ALLOCATIONS)
    parser.add_argument("--calibration-windows", type=int, default=64)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--windows", type=int, default=24)
    parser.add_argument("--osscar-time", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--toy", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--save", type=Path, default=None,
                        help="save our smaller models (refit, knapsack) under this folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.removed, args.methods = [0.2], ["mip", "wanda"]
        args.calibration_windows, args.windows = 4, 4
    if args.toy:
        args.window, args.calibration_windows, args.windows = 16, 8, 4
    if args.out is None:
        args.out = (Path(tempfile.mkdtemp(prefix="llm_prune_")) / "llm_prune.json"
                    if args.quick or args.toy else OUT)
    return args


def toy_setup(args):
    """A tiny random Llama (:func:`compress_extras.llm._models.tiny_llama`) on random ids."""
    model = tiny_llama(0)
    ids = torch.randint(0, 100, (4096,), generator=torch.Generator().manual_seed(1))
    calibration = fixed_windows(ids[:2048], args.window, args.calibration_windows)
    held_out = fixed_windows(ids[2048:], args.window, args.windows)
    return model, calibration, held_out, {"model": "tiny random Llama", "step": 8,
                                          "min_width": 8}


def smollm2_setup(args):
    model, tokenizer = load_smollm2()
    novels = austen_novels()
    emma = torch.tensor(tokenizer(novels["emma"]).input_ids)
    persuasion = torch.tensor(tokenizer(novels["persuasion"]).input_ids)
    return (model, fixed_windows(emma, args.window, args.calibration_windows),
            fixed_windows(persuasion, args.window, args.windows),
            {"model": "SmolLM2-135M-Instruct (GGUF Q4_1, dequantized to float32)", "step": 16,
             "min_width": 16})


def _num(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def record_of(plan, name, removed, method, refit, allocation, ppl, seconds_total) -> dict:
    c = plan.certificate
    s = c.summary()
    return {"name": name, "removed_target": removed, "method": method, "refit": refit,
            "allocation": allocation, "perplexity": ppl,
            "mlp_params": c.budget["mlp_params"], "mlp_params_limit": c.budget["mlp_params_limit"],
            "mlp_params_dense": c.budget["mlp_params_dense"], "params": c.budget["params"],
            "params_dense": c.budget["params_dense"], "removed": s["removed"], "met": s["met"],
            "prune_seconds": seconds_total,
            "sequential_seconds": plan.timings.get("sequential"),
            "layer_gap_median": _num(s["layer_gap_median"]),
            "layer_gap_max": _num(s["layer_gap_max"]),
            "knapsack_gap": _num(s["knapsack_gap"]), "knapsack_status": s["knapsack_status"],
            "relative_error_median": _num(float(torch.tensor(
                [r["relative"] for r in c.layers]).median())),
            "widths": [plan.widths[i] for i in sorted(plan.widths)]}


def plot(payload: dict, path: Path) -> None:
    records = payload["records"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharex=True)
    colors = {"mip": "C3", "magnitude": "C0", "wanda": "C1", "flap": "C2", "osscar": "C4"}
    for ax, refit in zip(axes, (True, False), strict=True):
        for method, color in colors.items():
            for allocation, style in (("knapsack", "-"), ("uniform", "--")):
                pts = sorted((100 * r["removed"], r["perplexity"]) for r in records
                             if r["method"] == method and r["refit"] == refit
                             and r["allocation"] == allocation)
                if pts:
                    label = f"{'ours' if method == 'mip' else method}, {allocation}"
                    ax.plot(*zip(*pts, strict=True), style, color=color, marker="o",
                            label=label, linewidth=2.2 if method == "mip" else 1.2)
        dense = payload.get("dense_perplexity")
        if dense:
            ax.axhline(dense, color="k", linewidth=0.8, label="as shipped")
            ax.axhline(1.25 * dense, color="k", linewidth=0.8, linestyle=":",
                       label="as shipped + 25%")
        if not refit:  # without refit perplexities span orders of magnitude
            ax.set_yscale("log")
        ax.set_xlabel("MLP parameters removed (%)")
        ax.set_title("with our refit" if refit else "without refit (dense weights kept)")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("perplexity on Persuasion")
    axes[1].set_ylabel("perplexity on Persuasion (log)")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{payload['setup']['model']}: one-shot MLP pruning")
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    command = " ".join(["experiments/llm_prune.py", *(sys.argv[1:] if argv is None else argv)])
    model, calibration, held_out, setup = toy_setup(args) if args.toy else smollm2_setup(args)
    progress = not args.no_progress
    setup.update({"calibration": "toy ids" if args.toy else "emma",
                  "calibration_windows": args.calibration_windows, "window": args.window,
                  "held_out": "toy ids" if args.toy else "persuasion",
                  "held_out_windows": args.windows, "threads": args.threads,
                  "osscar_seconds_per_layer": args.osscar_time,
                  "mlp_params_dense": mlp_parameters(model),
                  "params_dense": sum(p.numel() for p in model.parameters()),
                  "machine": platform.processor() or platform.machine(),
                  "torch": torch.__version__, "quick": args.quick, "toy": args.toy})
    records: list[dict] = []
    if args.resume and args.out.exists():
        old = json.loads(args.out.read_text())
        for key in ("model", "calibration_windows", "window", "held_out_windows"):
            if old["setup"].get(key) != setup[key]:
                raise SystemExit(f"--resume: {args.out} has {key}={old['setup'].get(key)}, "
                                 f"this run {setup[key]}; use another --out")
        records = old["records"]
    done = {r["name"] for r in records}
    payload = {"script": "experiments/llm_prune.py", "command": command, "setup": setup,
               "notes": {
                   "prune_seconds": "from scratch: knapsack records include the keep-k curves "
                                    "(computed once per run, shared)",
                   "gaps": "null where the method proves no bound (baselines, no refit)",
                   "removed": "measured: 1 - MLP parameters kept / dense MLP parameters"},
               "records": records}
    started = time.perf_counter()
    dense_ppl = perplexity(model, held_out, progress=progress)
    payload["dense_perplexity"] = dense_ppl
    payload["dense_seconds"] = time.perf_counter() - started
    print(f"dense: perplexity {dense_ppl:.2f}", flush=True)
    options = {"step": setup["step"], "min_width": setup["min_width"], "progress": progress}
    curves = None
    for removed in args.removed:
        for method in args.methods:
            for refit in (r == "yes" for r in args.refit):
                for allocation in args.allocations:
                    name = (f"{method}{'+refit' if refit else ''}/{allocation}/"
                            f"{round(100 * removed)}%")
                    if name in done:
                        continue
                    if allocation == "knapsack" and curves is None:
                        curves = llm_curves(model, calibration, step=setup["step"],
                                            min_width=setup["min_width"], progress=progress)
                        payload["curves_seconds"] = curves.seconds
                        payload["curves"] = curves.rows()
                    t = time.perf_counter()
                    plan = prune_llm(model, calibration, mlp_params=1.0 - removed,
                                     method=method, refit=refit, allocation=allocation,
                                     curves=curves if allocation == "knapsack" else None,
                                     time_limit=args.osscar_time if method == "osscar" else 0.0,
                                     **options)
                    seconds = time.perf_counter() - t
                    if allocation == "knapsack":
                        seconds += curves.seconds
                    small = plan.apply(model)
                    ppl = perplexity(small, held_out, progress=progress)
                    record = record_of(plan, name, removed, method, refit, allocation, ppl,
                                       seconds)
                    if method == "mip" and refit:  # the smaller model is the masked one
                        with torch.no_grad():
                            record["max_logit_difference_vs_masked"] = float(
                                (small(held_out[:1]).logits - plan.masked(model)(
                                    held_out[:1]).logits).abs().max())
                        if args.save is not None and allocation == "knapsack":
                            save_pruned(small, args.save / f"ours-{round(100 * removed)}")
                    records.append(record)
                    write_json(args.out, payload)
                    print(f"{name:28s} perplexity {ppl:9.2f}  removed {record['removed']:.3f}  "
                          f"{seconds:6.0f} s  gap median {record['layer_gap_median']}",
                          flush=True)
    payload["wall_seconds"] = time.perf_counter() - started
    write_json(args.out, payload)
    plot(payload, args.out.with_suffix(".png"))
    print("\n| method | refit | allocation | removed | perplexity | prune s |\n"
          "|---|---|---|---:|---:|---:|")
    for r in sorted(records, key=lambda r: (r["removed_target"], r["method"], not r["refit"],
                                            r["allocation"])):
        print(f"| {r['method']} | {'yes' if r['refit'] else 'no'} | {r['allocation']} | "
              f"{100 * r['removed']:.1f}% | {r['perplexity']:.2f} | {r['prune_seconds']:.0f} |")
    return payload


if __name__ == "__main__":
    main()
