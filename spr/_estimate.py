"""How long the rest of a run will take, from a few timed training steps (``spr prune``,
``spr demo``)."""

from __future__ import annotations

import math
import statistics
import time

import torch

from spr._distributed import RankBatches
from spr._penalties import PENALTY_FUNCTIONS
from spr._regularizer import SPRegularizer
from spr._run import STAGES, _Run
from spr._training import make_optimizer

__all__ = ["estimate_seconds", "format_seconds"]



def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} hours"


def estimate_seconds(run: _Run, state: dict, dense_done: bool) -> dict | None:
    """Time the rest of the run will take, from a few timed SGD steps on real batches.

    Steps of a throwaway copy of the network (the median of 3 plain and of 3 with the penalty,
    after one warm-up step each), times the steps left in every stage (the fine-tuning of the pruned
    network counted at the dense step time: an upper bound), plus the evaluation passes (test
    set four times, the threshold search) at a third of a step per image. Returns None when no
    training is left. The global RNG is restored afterwards, so the run is unchanged.
    """
    config = run.config
    stage, epoch = state["stage"], state["epoch"]
    order = STAGES.index(stage)
    left = {
        "reference": 0 if dense_done else config.epochs_reference - (
            epoch if stage == "reference" else 0),
        "spr": config.epochs_spr - (epoch if stage == "spr" else 0) if order <= 1 else 0,
        "finetune": config.epochs_finetune - (epoch if stage == "finetune" else 0)
        if order <= 3 else 0,
    }
    if order >= 4 or (sum(left.values()) == 0 and order >= 3):
        return None
    try:
        return _timed_estimate(run, order, left)
    except (ArithmeticError, ValueError, RuntimeError):  # no estimate rather than no run
        return None


def _timed_estimate(run: _Run, order: int, left: dict[str, int]) -> dict:
    config = run.config
    steps_per_epoch = len(RankBatches(run.loader("reference", 0)))
    with torch.random.fork_rng(devices=[]):
        model = run.build().to(run.device)
        batches = iter(run.loader("reference", 0))
        batch = next(batches)
        # a tiny learning rate: the same cost per step, and no divergence of the copy
        optimizer, _ = make_optimizer(model, 1, 1, 1e-9, config.momentum, config.weight_decay)
        reg = SPRegularizer(model, config.lam, config.alpha, M="auto", groups=config.groups,
                            penalty=PENALTY_FUNCTIONS[config.penalty])

        def timed(penalty) -> float:
            if run.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            inputs, labels = (t.to(run.device) for t in batch)
            loss = torch.nn.functional.cross_entropy(model(inputs), labels)
            if penalty is not None:
                loss = loss + penalty()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if run.device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start

        timed(None), timed(reg)  # warm-up
        plain = statistics.median(timed(None) for _ in range(3))
        with_penalty = statistics.median(timed(reg) for _ in range(3))
    train_seconds = steps_per_epoch * (
        plain * (left["reference"] + left["finetune"]) + with_penalty * left["spr"])
    per_image = plain / max(1, len(batch[1])) / 3
    if config.threshold_tol > 0:
        passes = math.log2(1 / config.threshold_tol) + 2
    else:
        passes = math.log2(max(2, sum(p.numel() for p in model.parameters()))) + 2
    n_threshold = len(run.threshold_split)
    eval_seconds = per_image * (4 * len(run.test) + (passes if order <= 2 else 0) * n_threshold)
    return {
        "seconds": train_seconds + eval_seconds, "step_seconds": plain,
        "step_seconds_penalty": with_penalty, "steps": steps_per_epoch * sum(left.values()),
        "epochs_left": left, "threads": torch.get_num_threads(), "device": str(run.device),
        "how": "measured: the median of 3 timed SGD steps (and of 3 with the penalty) after a "
               "warm-up, on the first batch, times the steps left, plus evaluation at a third "
               "of a step per image",
    }
