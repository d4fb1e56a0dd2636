"""Time of the bit-allocation knapsack: the MILP (Pyomo + HiGHS) at 50, 500 and 5,000 groups x 8
options, and the Lagrangian solver on 1,000,000 groups x 8 options, with the gap each proves.

Instances look like quantization: group g holds n_g weights (log-uniform, 10^3..10^6 for the MILP
sizes, 512..4096 for the row-level Lagrangian case) in r_g rows; options are "pruned" (0 bits,
cost = sensitivity x energy) and 2, 3, 4, 5, 6, 8, 16 bits with a 16-bit scale per row as
overhead, cost sensitivity x n_g x 4^-b with +-20% noise (so the options are not exactly convex);
a budget of 3 bits per weight on average; tie sets of 3 groups (Q/K/V-like) on every 20th group.
``milp`` is :func:`mip.solve_knapsack` (reduced-cost fixing, then the core MILP); ``milp full`` is
the same with ``reduce=False`` (all G x 8 binaries handed to HiGHS), shown for comparison.
Goal (issue 7): 5,000 groups in under 5 s, 10^6 groups in under 10 s, gap printed.

    python experiments/bench_allocation.py [--sizes 50 500 5000] [--seeds 3] [--rows 1000000]

Prints a table; writes ``experiments/results/bench_allocation.json`` and ``bench_allocation.png``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import matplotlib.pyplot as plt
import numpy as np
from _common import RESULTS, save_figure, write_json
from tqdm import tqdm

import mip

BITS = np.array([0, 2, 3, 4, 5, 6, 8, 16], dtype=float)  # option 0 is "pruned"


def instance(G: int, seed: int, rows_level: bool = False, ties: bool = True) -> mip.KnapsackProblem:
    rng = np.random.default_rng(seed * 7919 + G)
    if rows_level:
        n = rng.integers(512, 4097, G).astype(float)
        rows = np.ones(G)
    else:
        n = np.round(10 ** rng.uniform(3, 6, G))
        rows = np.maximum(1, np.round(n / 10 ** rng.uniform(1.5, 3, G)))
    sensitivity = 10 ** rng.uniform(-2, 2, G)
    noise = rng.uniform(0.8, 1.2, (G, len(BITS)))
    cost = sensitivity[:, None] * n[:, None] * 4.0 ** -BITS[None, :] * noise
    size = n[:, None] * BITS[None, :] + 16.0 * rows[:, None] * (BITS[None, :] > 0)
    tie_sets = [(g, g + 1, g + 2) for g in range(0, G - 2, 20)] if ties else []
    return mip.KnapsackProblem(cost, size, budget=3.0 * float(n.sum()), ties=tie_sets)


def record(kind: str, G: int, seed: int, build: float, result) -> dict:
    return {"method": kind, "groups": G, "options": len(BITS), "seed": seed,
            "build_seconds": build, "seconds": result.seconds, "status": result.status,
            "objective": result.objective, "bound": result.bound, "gap": result.gap,
            "core_groups": result.core_groups, "bisection_steps": result.iterations,
            "solver_path": result.method}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500, 5000])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000, help="groups for the Lagrangian")
    parser.add_argument("--row-seeds", type=int, default=2)
    parser.add_argument("--full-limit", type=float, default=60.0,
                        help="time limit of the full-model MILP (0: skip it)")
    args = parser.parse_args()

    mip.solve_knapsack(instance(20, 0))  # warm-up: imports Pyomo and HiGHS outside the timings
    runs = []
    jobs = [(G, s) for G in args.sizes for s in range(args.seeds)]
    for G, seed in tqdm(jobs, desc="MILP instances"):
        start = time.perf_counter()
        problem = instance(G, seed)
        build = time.perf_counter() - start
        runs.append(record("milp", G, seed, build, mip.solve_knapsack(problem)))
        lagrangian = mip.solve_knapsack(problem, method="lagrangian")
        runs.append(record("lagrangian", G, seed, build, lagrangian))
        if args.full_limit > 0 and seed == 0:
            full = mip.solve_knapsack(problem, reduce=False, time_limit=args.full_limit)
            runs.append(record("milp full", G, seed, build, full))
    for seed in tqdm(range(args.row_seeds), desc=f"Lagrangian, {args.rows} groups"):
        start = time.perf_counter()
        problem = instance(args.rows, seed, rows_level=True)
        build = time.perf_counter() - start
        result = mip.solve_knapsack(problem, method="lagrangian")
        runs.append(record("lagrangian", args.rows, seed, build, result))

    print(f"\n{'method':<12}{'groups':>9}{'runs':>6}{'median s':>10}{'max s':>8}{'build s':>9}"
          f"{'max gap':>10}{'core':>7}{'steps':>7}  status")
    summary = []
    for kind in ("milp", "milp full", "lagrangian"):
        for G in sorted({r["groups"] for r in runs}):
            sel = [r for r in runs if (r["method"], r["groups"]) == (kind, G)]
            if not sel:
                continue
            row = {"method": kind, "groups": G, "runs": len(sel),
                   "median_seconds": statistics.median(r["seconds"] for r in sel),
                   "max_seconds": max(r["seconds"] for r in sel),
                   "median_build_seconds": statistics.median(r["build_seconds"] for r in sel),
                   "max_gap": max(r["gap"] for r in sel),
                   "max_core_groups": max(r["core_groups"] for r in sel),
                   "max_bisection_steps": max(r["bisection_steps"] for r in sel),
                   "statuses": sorted({r["status"] for r in sel})}
            summary.append(row)
            print(f"{kind:<12}{G:>9}{len(sel):>6}{row['median_seconds']:>10.3f}"
                  f"{row['max_seconds']:>8.3f}{row['median_build_seconds']:>9.3f}"
                  f"{row['max_gap']:>10.1e}{row['max_core_groups']:>7}"
                  f"{row['max_bisection_steps']:>7}  {','.join(row['statuses'])}")
    payload = {"benchmark": "bit-allocation knapsack: MILP and Lagrangian times and gaps",
               "options": BITS.tolist(), "budget_bits_per_weight": 3.0, "mip_gap": 1e-6,
               "hardware": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "runs": runs, "summary": summary}
    write_json(RESULTS / "bench_allocation.json", payload)

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, marker in (("milp", "o"), ("milp full", "s"), ("lagrangian", "^")):
        rows = [r for r in summary if r["method"] == kind]
        if rows:
            ax.plot([r["groups"] for r in rows], [r["median_seconds"] for r in rows],
                    marker=marker, label=kind)
    ax.axhline(5.0, color="gray", linestyle=":", label="goal 5 s (5,000 groups)")
    ax.axhline(10.0, color="gray", linestyle="--", label="goal 10 s (10^6 groups)")
    ax.set(xscale="log", yscale="log", xlabel="groups (8 options)", ylabel="median seconds",
           title="knapsack solve time (gap 1e-6)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(RESULTS / "bench_allocation.png", fig)
    print(f"wrote {RESULTS / 'bench_allocation.json'} and {RESULTS / 'bench_allocation.png'}")


if __name__ == "__main__":
    main()
