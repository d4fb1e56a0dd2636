"""SPR + budget against SPR + threshold at equal MACs: the paper's protocol with either decision.

    python experiments/spr_budget.py [--lams 10 20] [--out runs/spr_budget] [--toy]

For each ``lam``, the CPU grid's ResNet-20 run of ``experiments/reproduce_spr.py``
(``configs/reproduce_spr/cpu/r20-spr-lam<lam>.json``: 4,000 Fashion-MNIST training images,
8 + 8 + 4 epochs) is run twice in this process from the same seed: with the threshold search
(the paper's decision), then with ``budget_macs`` set to the MACs that run ended with (an
absolute count, so the budgeted network has at most as many), where :func:`spr.prune_to_budget`
decides on the same SPR-trained network. Both fine-tune alike. Writes
``results/spr_budget.json``: per lam both rows (accuracy before and after fine-tuning, MACs,
parameters, seconds) and the budget's certificate summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from _common import RESULTS, write_json

from spr import PruneConfig, run_pipeline

HERE = Path(__file__).resolve().parent
GRID = HERE / "configs" / "reproduce_spr" / "cpu"
TOY = {"train_samples": 300, "test_samples": 200, "threshold_samples": 200,
       "epochs_reference": 1, "epochs_spr": 1, "epochs_finetune": 1, "budget_seconds": 5.0}


def config_for(lam: int, toy: bool) -> PruneConfig:
    run = json.loads((GRID / f"r20-spr-lam{lam}.json").read_text())
    config = PruneConfig.from_dict(run["config"])
    return config.replace(**TOY) if toy else config


def row(decision: str, summary: dict, seconds: float) -> dict:
    out = {"decision": decision, "seconds": seconds}
    for key in ("accuracy_dense", "accuracy_spr", "accuracy_pruned", "accuracy_finetuned",
                "macs_pruned", "params_pruned", "macs_dense", "params_dense",
                "macs_removed_percent", "params_removed_percent"):
        out[key] = summary[key]
    if "budget" in summary:
        out["certificate"] = summary["budget"]["summary"]
        out["budget_seconds"] = summary["budget"]["seconds"]
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lams", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--out", type=Path, default=Path("runs") / "spr_budget")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--toy", action="store_true", help="tiny sizes: a smoke test")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = {"machine": {"cpu": platform.processor() or platform.machine(),
                          "threads": 1, "load_start": os.getloadavg()[0],
                          "torch": torch.__version__},
              "toy": args.toy, "runs": {}}
    for lam in args.lams:
        config = config_for(lam, args.toy)
        start = time.perf_counter()
        threshold = run_pipeline(config, args.out / f"lam{lam}-threshold", restart=True,
                                 progress=False, estimate=False)
        first = row("threshold", threshold, time.perf_counter() - start)
        budgeted = config.replace(budget_macs=float(threshold["macs_pruned"]))
        start = time.perf_counter()
        budget = run_pipeline(budgeted, args.out / f"lam{lam}-budget", restart=True,
                              progress=False, estimate=False)
        second = row("budget", budget, time.perf_counter() - start)
        result["runs"][f"lam{lam}"] = {"config": config.to_dict(), "threshold": first,
                                       "budget": second}
        print(f"lam {lam}: threshold {first['accuracy_finetuned']:.2f}% at "
              f"{first['macs_pruned']:,} MACs; budget {second['accuracy_finetuned']:.2f}% at "
              f"{second['macs_pruned']:,} MACs (one-shot {first['accuracy_pruned']:.2f} vs "
              f"{second['accuracy_pruned']:.2f})")
    result["machine"]["load_end"] = os.getloadavg()[0]
    name = "spr_budget_toy.json" if args.toy else "spr_budget.json"
    write_json(args.results / name, result)
    return result


if __name__ == "__main__":
    main()
