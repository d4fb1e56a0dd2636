"""Time to prove optimality of the layer MIP: our branch and bound over supports and our outer
approximation against SCIP, and perspective cuts against plain tangent cuts, on identical
instances.

Instances: Linear layers (groups of 1 input, 4 outputs) and 3x3 convs (groups of 9, 2 outputs)
with 8, 12, 16, 24, 32 input groups; calibration inputs with correlated features (a random
mixing matrix with decaying singular values), targets from a dense W0 with uneven column scales;
lam = 0.1, alpha = 0.5, M = 2 max|W0|, and max_keep = n/2 on every other seed.
Goal (issue 3): every 16-group instance proven (gap <= 1e-4) in under 10 s, no slower than SCIP at
the median, and perspective cuts using at least 3x fewer iterations than plain cuts.

    python experiments/bench_mip.py [--sizes 8 12 16] [--seeds 3] [--time-limit 60]

Prints a table; writes ``experiments/results/bench_mip.json`` and ``bench_mip.png``.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics

import matplotlib.pyplot as plt
import numpy as np
from _common import RESULTS, save_figure, write_json
from tqdm import tqdm

import mip

KINDS = {"linear": (1, 4), "conv3x3": (9, 2)}  # group size, outputs


def instance(kind: str, n: int, seed: int) -> mip.LayerProblem:
    k, out = KINDS[kind]
    rng = np.random.default_rng(1000 * n + seed)
    d = n * k
    mixing = rng.standard_normal((d, d)) * np.exp(-np.arange(d) / d)[None, :]
    X = rng.standard_normal((max(4 * d, 64), d)) @ mixing
    W0 = rng.standard_normal((out, d)) * np.repeat(rng.uniform(0.05, 1.0, n), k)
    return mip.LayerProblem.from_data(
        X, X @ W0.T, k, lam=0.1, alpha=0.5, M=2 * float(np.abs(W0).max()),
        max_keep=n // 2 if seed % 2 else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 12, 16, 24, 32])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    args = parser.parse_args()
    have_scip = importlib.util.find_spec("pyscipopt") is not None
    methods = {
        "branch and bound": lambda p: mip.solve_branch_and_bound(p, args.time_limit),
        "OA, perspective cuts": lambda p: mip.solve_outer_approximation(
            p, time_limit=args.time_limit, cuts="perspective"),
        "OA, plain tangent cuts": lambda p: mip.solve_outer_approximation(
            p, time_limit=args.time_limit, cuts="tangent"),
    }
    if have_scip:
        methods["SCIP"] = lambda p: mip.solve_scip(p, args.time_limit)

    runs = []
    jobs = [(k, n, s) for k in args.kinds for n in args.sizes for s in range(args.seeds)]
    for kind, n, seed in tqdm(jobs, desc="instances"):
        problem = instance(kind, n, seed)
        for name, solve in methods.items():
            result = solve(problem)
            runs.append({"kind": kind, "groups": n, "seed": seed, "method": name,
                         "status": result.status, "seconds": result.seconds,
                         "iterations": result.iterations, "objective": result.objective,
                         "bound": result.bound, "gap": result.gap})

    print(f"\n{'kind':<9}{'groups':>7}  {'method':<24}{'median s':>10}{'max s':>9}{'proven':>8}"
          f"{'median iters':>14}")
    summary = []
    for kind in args.kinds:
        for n in args.sizes:
            for name in methods:
                sel = [r for r in runs if (r["kind"], r["groups"], r["method"]) == (kind, n, name)]
                row = {"kind": kind, "groups": n, "method": name,
                       "median_seconds": statistics.median(r["seconds"] for r in sel),
                       "max_seconds": max(r["seconds"] for r in sel),
                       "proven": sum(r["status"] == "optimal" for r in sel), "runs": len(sel),
                       "median_iterations": statistics.median(r["iterations"] for r in sel)}
                summary.append(row)
                print(f"{kind:<9}{n:>7}  {name:<24}{row['median_seconds']:>10.2f}"
                      f"{row['max_seconds']:>9.2f}{row['proven']:>5}/{row['runs']:<2}"
                      f"{row['median_iterations']:>14.0f}")
    payload = {"benchmark": "layer MIP, time to prove optimality", "time_limit": args.time_limit,
               "mip_gap": 1e-4, "hardware": platform.processor() or platform.machine(),
               "scip": have_scip, "runs": runs, "summary": summary}
    write_json(RESULTS / "bench_mip.json", payload)

    fig, axes = plt.subplots(1, len(args.kinds), figsize=(5.5 * len(args.kinds), 4), squeeze=False)
    for ax, kind in zip(axes[0], args.kinds, strict=True):
        for name in methods:
            rows = [r for r in summary if r["kind"] == kind and r["method"] == name]
            sizes = [r["groups"] for r in rows]
            (line,) = ax.plot(sizes, [r["median_seconds"] for r in rows], marker="o",
                              label=f"{name} (median)")
            ax.plot(sizes, [r["max_seconds"] for r in rows], linestyle="--", alpha=0.6,
                    color=line.get_color(), label=f"{name} (max)")
        ax.axhline(args.time_limit, color="gray", linestyle=":", label="time limit")
        ax.set(yscale="log", xlabel="groups", ylabel="seconds to gap 1e-4",
               title=f"{kind} layers")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(RESULTS / "bench_mip.png", fig)
    print(f"wrote {RESULTS / 'bench_mip.json'} and {RESULTS / 'bench_mip.png'}")


if __name__ == "__main__":
    main()
