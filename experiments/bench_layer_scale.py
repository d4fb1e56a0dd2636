"""How ``mip.solve_layer`` scales with layer width, against the old branch and bound, SCIP,
Gurobi, OSSCAR's swap search and abess, from proven small layers to real ones.

Parts (``--parts``, default all four):

1. ``present``: bench_mip.instance layers (linear and conv3x3; 16, 24, 32 groups; seeds 0-2,
   odd seeds with max_keep = n/2), each solved by solve_layer(auto), the old branch and bound
   (``node_iterations=0``: ridge node bounds only), SCIP and Gurobi (where the size-limited
   licence admits the model) to gap 1e-4 within ``--time-limit`` (30 s).
2. ``wide``: bench_mip.instance linear layers of 48 ... 512 groups (seed 1: max_keep = n/2),
   solve_layer(auto) against OSSCAR's swap search (same k, same time limit) and abess;
   time limits 10 s (<= 64 groups), 20 s (<= 256), 30 s beyond.
3. ``smollm2``: SmolLM2-135M's down_proj of one middle layer (1536 groups), max_keep = 768,
   solve_layer(auto) against OSSCAR, 60 s each.
4. ``resnet``: the last two 3x3 convs of the dense Fashion-MNIST ResNet-56 (64 groups of 9),
   ``mip.keep_curve`` over k = 8..56 in 60 s per layer, against OSSCAR at each k (60/7 s each).

    python experiments/bench_layer_scale.py [--parts present wide smollm2 resnet]
        [--sizes 16 24 32] [--seeds 3] [--time-limit 30] [--wide-sizes 48 64 128 256 512]
        [--llm-layer 5] [--llm-tokens 4096] [--llm-time 60] [--resnet-time 60]

Prints a table; writes ``experiments/results/bench_layer_scale.json`` and ``.png`` (both
rewritten after every part, so a cut run keeps what it finished).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import time
import traceback
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from _common import RESULTS, save_figure, write_json
from _references import ReferenceUnavailable, solve_abess, solve_gurobi, solve_osscar
from bench_mip import KINDS, instance
from tqdm import tqdm

import mip

GAP = 1e-4
WEIGHTS = Path(__file__).resolve().parent / "weights" / "resnet56_fashion_mnist.safetensors"
RESNET_LAYERS = ("layer3.8.conv1", "layer3.8.conv2")
RESNET_KS = (8, 16, 24, 32, 40, 48, 56)
GUROBI_REFUSED = "refused by the size-limited licence"


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def record(result: mip.MIPResult, **extra) -> dict:
    row = {**extra, "status": result.status, "seconds": float(result.seconds),
           "objective": _num(result.objective), "bound": _num(result.bound),
           "gap": _num(result.gap), "kept": int(np.sum(result.keep))}
    if row["objective"] is not None and row["bound"] is not None:
        tol = 1e-9 * max(1.0, abs(row["objective"]))
        row["bound_above_objective"] = row["bound"] > row["objective"] + tol
    return row


def wide_limit(n: int) -> float:
    return 10.0 if n <= 64 else 20.0 if n <= 256 else 30.0


# ---- part 1 ------------------------------------------------------------------------------------
def part_present(args, bar) -> dict:
    have_scip = importlib.util.find_spec("pyscipopt") is not None
    tl = args.time_limit
    methods = {
        "solve_layer": lambda p: mip.solve_layer(p, tl, GAP, method="auto"),
        "old B&B": lambda p: mip.solve_branch_and_bound(p, tl, GAP, node_iterations=0),
        "Gurobi": lambda p: solve_gurobi(p, tl, GAP),
    }
    if have_scip:
        methods["SCIP"] = lambda p: mip.solve_scip(p, tl, GAP)
    runs = []
    for kind in args.kinds:
        for n in args.sizes:
            for seed in range(args.seeds):
                problem = instance(kind, n, seed)
                if args.lam is not None:  # the same instances with another penalty
                    problem = dataclasses.replace(problem, lam=args.lam)
                for name, solve in methods.items():
                    bar.set_postfix_str(f"present {kind} n={n} s={seed} {name}")
                    base = {"kind": kind, "groups": n, "seed": seed, "method": name,
                            "max_keep": problem.max_keep}
                    try:
                        runs.append(record(solve(problem), **base))
                    except ReferenceUnavailable as err:
                        reason = GUROBI_REFUSED if "licence" in err.reason else err.reason
                        runs.append({**base, "status": "unavailable", "reason": reason,
                                     "detail": err.reason})
                    except Exception as err:  # noqa: BLE001 - record, keep benchmarking
                        runs.append({**base, "status": "error", "reason": repr(err),
                                     "traceback": traceback.format_exc()})
                    bar.update()
    summary = []
    for kind in args.kinds:
        for n in args.sizes:
            for name in methods:
                sel = [r for r in runs if (r["kind"], r["groups"], r["method"]) == (kind, n, name)
                       and "seconds" in r]
                row = {"kind": kind, "groups": n, "method": name, "runs": len(sel),
                       "unavailable": sum((r["kind"], r["groups"], r["method"]) == (kind, n, name)
                                          and "seconds" not in r for r in runs)}
                if sel:
                    row.update(median_seconds=statistics.median(r["seconds"] for r in sel),
                               max_seconds=max(r["seconds"] for r in sel),
                               proven=sum(r["status"] == "optimal" for r in sel),
                               max_gap=max((r["gap"] if r["gap"] is not None else np.inf)
                                           for r in sel))
                summary.append(row)
    return {"time_limit": tl, "mip_gap": GAP, "scip": have_scip, "runs": runs,
            "summary": summary}


# ---- part 2 ------------------------------------------------------------------------------------
def versus(problem, k: int, tl: float, ours_method: str, abess: bool) -> dict:
    rows = {}
    ours = mip.solve_layer(problem, tl, GAP, method=ours_method)
    rows["solve_layer"] = record(ours, method=f"solve_layer({ours_method})", time_limit=tl)
    osscar = solve_osscar(problem, k, tl)
    rows["osscar"] = record(osscar, method="OSSCAR swap search", time_limit=tl)
    if abess:
        try:
            rows["abess"] = record(solve_abess(problem, k, tl), method="abess",
                                   time_limit=None)
        except ReferenceUnavailable as err:
            rows["abess"] = {"method": "abess", "status": "unavailable", "reason": err.reason}
        except Exception as err:  # noqa: BLE001
            rows["abess"] = {"method": "abess", "status": "error", "reason": repr(err)}
    rows["ours_vs_osscar"] = (ours.objective - osscar.objective) / abs(osscar.objective)
    return rows


def part_wide(args, bar) -> dict:
    out = []
    for n in args.wide_sizes:
        bar.set_postfix_str(f"wide n={n}")
        problem = dataclasses.replace(instance("linear", n, 1), max_keep=n // 2)
        tl = wide_limit(n)
        out.append({"groups": n, "k": n // 2, "time_limit": tl,
                    **versus(problem, n // 2, tl, "auto", abess=True)})
        bar.update()
    return {"kind": "linear", "seed": 1, "rows": out}


# ---- part 3 ------------------------------------------------------------------------------------
def part_smollm2(args, bar) -> dict:
    info = {"layer": args.llm_layer, "n_tokens": args.llm_tokens, "k": args.llm_keep,
            "time_limit": args.llm_time}
    t0 = time.perf_counter()
    try:
        from _llm_layers import down_proj_problem

        bar.set_postfix_str("smollm2 loading")
        problem = down_proj_problem(args.llm_layer, n_tokens=args.llm_tokens)
    except Exception as err:  # noqa: BLE001 - model missing, memory, ...
        bar.update()
        return {**info, "status": "skipped", "reason": f"building the problem failed: {err!r}"}
    info["build_seconds"] = time.perf_counter() - t0
    problem = dataclasses.replace(problem, max_keep=args.llm_keep)
    info.update(groups=problem.n_groups, d=problem.d, outputs=problem.n_out, lam=problem.lam)
    bar.set_postfix_str("smollm2 solving")
    try:
        info.update(versus(problem, args.llm_keep, args.llm_time, args.llm_method, abess=False))
    except MemoryError as err:
        info.update(status="skipped", reason=f"out of memory: {err}")
    bar.update()
    return info


# ---- part 4 ------------------------------------------------------------------------------------
def resnet_inputs(n_images: int) -> dict:
    import torch
    from train_dense import load_dense

    from spr import models
    from spr.data import fashion_mnist

    net = load_dense(WEIGHTS, "resnet56")
    split = fashion_mnist("train").subset(n_images, seed=0)
    images, _ = next(iter(split.loader(n_images, shuffle=False,
                                       pad_to=models.INPUT_SIZE["resnet56"])))
    modules = dict(net.named_modules())
    captured = {}
    hooks = [modules[name].register_forward_hook(
        lambda m, inp, out, name=name: captured.__setitem__(name, inp[0].detach()))
        for name in RESNET_LAYERS]
    with torch.no_grad():
        net(images)
    for h in hooks:
        h.remove()
    return {name: (modules[name], captured[name]) for name in RESNET_LAYERS}


def part_resnet(args, bar) -> dict:
    if not WEIGHTS.exists():
        bar.update(len(RESNET_LAYERS))
        return {"status": "skipped",
                "reason": f"{WEIGHTS.relative_to(RESULTS.parent.parent)} does not exist (the "
                          "dense training run had not written it when this part started)"}
    import spr

    bar.set_postfix_str("resnet capture")
    layers = resnet_inputs(args.resnet_images)
    out = {"weights": str(WEIGHTS.name), "images": args.resnet_images, "layers": []}
    for name, (conv, X) in layers.items():
        bar.set_postfix_str(f"resnet {name}")
        first = spr.layer_problem(conv, X, lam=0.0, alpha=0.5)
        lam = 1e-4 * float(np.trace(first.gram)) / first.d
        problem = spr.layer_problem(conv, X, lam=lam, alpha=0.5)
        curve = mip.keep_curve(problem, ks=list(RESNET_KS), time_limit=args.resnet_time,
                               mip_gap=GAP)
        per_k = args.resnet_time / len(RESNET_KS)
        rows = []
        for i, k in enumerate(curve.ks):
            osscar = solve_osscar(problem, int(k), per_k)
            obj, bound = float(curve.objective[i]), float(curve.bound[i])
            rows.append({"k": int(k), "objective": obj, "bound": _num(bound),
                         "gap": _num(curve.gap[i]), "status": curve.status[i],
                         "bound_above_objective": bound > obj + 1e-9 * max(1.0, abs(obj)),
                         "osscar_objective": float(osscar.objective),
                         "osscar_seconds": float(osscar.seconds),
                         "ours_vs_osscar": (obj - osscar.objective) / abs(osscar.objective)})
        out["layers"].append({"layer": name, "groups": problem.n_groups, "d": problem.d,
                              "outputs": problem.n_out, "lam": lam, "rows": X.shape[0],
                              "curve_seconds": float(curve.seconds),
                              "time_limit": args.resnet_time, "ks": rows})
        bar.update()
    return out


# ---- output ------------------------------------------------------------------------------------
def print_tables(results: dict) -> None:
    if "present" in results:
        print(f"\n{'kind':<9}{'groups':>7}  {'method':<12}{'median s':>10}{'max s':>9}"
              f"{'proven':>9}{'max gap':>10}")
        for r in results["present"]["summary"]:
            if r["runs"] == 0:
                print(f"{r['kind']:<9}{r['groups']:>7}  {r['method']:<12}  {GUROBI_REFUSED}")
                continue
            print(f"{r['kind']:<9}{r['groups']:>7}  {r['method']:<12}{r['median_seconds']:>10.2f}"
                  f"{r['max_seconds']:>9.2f}{r['proven']:>6}/{r['runs']:<3}{r['max_gap']:>10.1e}")

    def line(tag, rows):
        o, s = rows["solve_layer"], rows["osscar"]
        a = rows.get("abess", {})
        ab = f"{a['objective']:>13.6g} {a['seconds']:>6.1f}s" if "objective" in a else "   n/a"
        print(f"{tag:<14}{o['objective']:>13.6g}{o['bound'] or float('nan'):>13.6g}"
              f"{o['gap'] or float('nan'):>9.1e}{o['seconds']:>7.1f}s {o['status']:<10}"
              f"{s['objective']:>13.6g}{s['seconds']:>6.1f}s{rows['ours_vs_osscar']:>+10.2e}{ab}")

    if "wide" in results or "objective" in str(results.get("smollm2", "")):
        print(f"\n{'instance':<14}{'ours obj':>13}{'bound':>13}{'gap':>9}{'time':>8} "
              f"{'status':<10}{'OSSCAR obj':>13}{'time':>7}{'vs OSSCAR':>10}{'abess obj':>14}")
    for r in results.get("wide", {}).get("rows", []):
        line(f"wide n={r['groups']}", r)
    sm = results.get("smollm2")
    if sm is not None:
        if "solve_layer" in sm:
            line(f"SmolLM2 L{sm['layer']}", sm)
        else:
            print(f"SmolLM2: {sm.get('reason')}")
    rn = results.get("resnet")
    if rn is not None:
        if "layers" not in rn:
            print(f"\nResNet-56: skipped: {rn.get('reason')}")
        for layer in rn.get("layers", []):
            print(f"\nResNet-56 {layer['layer']} (keep_curve {layer['curve_seconds']:.1f} s)")
            print(f"{'k':>4}{'objective':>13}{'bound':>13}{'gap':>9}  {'status':<10}"
                  f"{'OSSCAR obj':>13}{'vs OSSCAR':>11}")
            for r in layer["ks"]:
                print(f"{r['k']:>4}{r['objective']:>13.6g}{r['bound'] or float('nan'):>13.6g}"
                      f"{r['gap'] or float('nan'):>9.1e}  {r['status']:<10}"
                      f"{r['osscar_objective']:>13.6g}{r['ours_vs_osscar']:>+11.2e}")


def plot(results: dict, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.3))
    present = results.get("present")
    if present:
        styles = {"linear": "-", "conv3x3": "--"}
        colors = {}
        for r in present["summary"]:
            colors.setdefault(r["method"], f"C{len(colors)}")
        for kind in styles:
            for method, color in colors.items():
                rows = [r for r in present["summary"] if r["kind"] == kind
                        and r["method"] == method and r["runs"] > 0]
                if rows:
                    left.plot([r["groups"] for r in rows], [r["median_seconds"] for r in rows],
                              marker="o", linestyle=styles[kind], color=color,
                              label=f"{method}, {kind}")
        left.axhline(present["time_limit"], color="gray", linestyle=":", label="time limit")
        left.set(yscale="log", xlabel="groups", ylabel="median seconds to gap 1e-4",
                 title="Part 1: present instances (median of seeds)")
        left.legend(fontsize=6.5, ncol=2)
    else:
        left.set_axis_off()
    points = [(r["groups"], r) for r in results.get("wide", {}).get("rows", [])]
    sm = results.get("smollm2") or {}
    if "solve_layer" in sm:
        points.append((sm["groups"], sm))
    if points:
        xs = [g for g, _ in points]
        gaps = [r["solve_layer"]["gap"] if r["solve_layer"]["gap"] is not None else np.nan
                for _, r in points]
        right.plot(xs, gaps, marker="o", color="C0", label="solve_layer: final gap")
        if "solve_layer" in sm:
            right.annotate("SmolLM2 down_proj", (sm["groups"], gaps[-1]), fontsize=7,
                           textcoords="offset points", xytext=(-95, -4))
        right.set(xscale="log", yscale="log", xlabel="groups", ylabel="final relative gap",
                  title="Parts 2-3: wide layers, certified gap (k = n/2)")
        right.set_xticks(xs, [str(x) for x in xs])
        twin = right.twinx()
        twin.plot(xs, [r["ours_vs_osscar"] for _, r in points], marker="s", color="C3",
                  linestyle="--", label="(ours - OSSCAR) / OSSCAR")
        twin.axhline(0, color="C3", linewidth=0.5)
        twin.set_ylabel("objective vs OSSCAR (negative: ours better)", color="C3")
        lines = right.get_legend_handles_labels()
        lines2 = twin.get_legend_handles_labels()
        right.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="center left")
    else:
        right.set_axis_off()
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["present", "wide", "smollm2", "resnet"],
                        choices=["present", "wide", "smollm2", "resnet"])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 24, 32])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=30.0, help="part 1, per solve")
    parser.add_argument("--lam", type=float, default=None,
                        help="part 1: replace the instances' lam (0.1) by this value")
    parser.add_argument("--wide-sizes", type=int, nargs="+", default=[48, 64, 128, 256, 512])
    parser.add_argument("--llm-layer", type=int, default=5)
    parser.add_argument("--llm-tokens", type=int, default=4096)
    parser.add_argument("--llm-keep", type=int, default=768)
    parser.add_argument("--llm-time", type=float, default=60.0)
    parser.add_argument("--llm-method", default="auto", choices=["auto", "local_search"])
    parser.add_argument("--resnet-images", type=int, default=512)
    parser.add_argument("--resnet-time", type=float, default=60.0, help="per layer")
    parser.add_argument("--out", default="bench_layer_scale")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw the figure and tables from the existing JSON")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads((RESULTS / f"{args.out}.json").read_text())
        plot(saved["results"], RESULTS / f"{args.out}.png")
        print_tables(saved["results"])
        return

    threads = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                 "MKL_NUM_THREADS")}
    try:
        import torch

        torch.set_num_threads(int(threads["OMP_NUM_THREADS"] or 1))
        threads["torch"] = torch.get_num_threads()
    except ImportError:
        pass
    payload = {"benchmark": "layer MIP at scale: solve_layer against references",
               "command": "python experiments/bench_layer_scale.py " + " ".join(
                   f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
               "arguments": vars(args),
               "machine": {"processor": platform.processor() or platform.machine(),
                           "cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg(),
                           "threads": threads},
               "results": {}}
    json_path, png_path = RESULTS / f"{args.out}.json", RESULTS / f"{args.out}.png"
    steps = {"present": len(args.kinds) * len(args.sizes) * args.seeds * 4,
             "wide": len(args.wide_sizes), "smollm2": 1, "resnet": len(RESNET_LAYERS)}
    parts = {"present": part_present, "wide": part_wide, "smollm2": part_smollm2,
             "resnet": part_resnet}
    start = time.perf_counter()
    with tqdm(total=sum(steps[p] for p in args.parts), desc="bench_layer_scale") as bar:
        for name in args.parts:
            t0 = time.perf_counter()
            payload["results"][name] = parts[name](args, bar)
            payload["results"][name]["part_seconds"] = time.perf_counter() - t0
            payload["machine"]["loadavg_end"] = os.getloadavg()
            payload["wall_seconds"] = time.perf_counter() - start
            write_json(json_path, payload)
            plot(payload["results"], png_path)
    print_tables(payload["results"])
    print(f"\nwall time {payload['wall_seconds']:.0f} s; wrote {json_path} and {png_path}")


if __name__ == "__main__":
    main()
