"""The paper's whole pruning protocol as one resumable run (what ``spr prune`` calls).

Stages, in order (docs/mathematics.md §5), each writing into ``out``:

1. ``reference``: dense training from the seed's initialisation; saved once to ``out/dense``
   and never overwritten.
2. ``spr``: training from the *same* initialisation with :class:`spr.SPRegularizer` (or the
   group-lasso baseline), ``M`` per block from the reference (``M_scale * max |entry|``); saved
   to ``out/spr``.
3. ``prune``: :func:`spr.threshold_search` on a fixed subset of the training set,
   :func:`spr.structural_decision`, :func:`spr.zero_dead_groups`, :func:`spr.remove_pruned`;
   or, with a budget (``budget_macs`` / ``budget_params``), :func:`spr.prune_to_budget` on
   the SPR-trained network with :data:`BUDGET_CALIBRATION` images of that subset, and its plan
   applied. The results say which decided (``decision``: ``"threshold"`` or ``"budget"``).
   The removal comes before fine-tuning — fine-tuning the smaller network is fine-tuning the
   zeroed one with its dead groups held at zero, only cheaper.
4. ``finetune``: training of the pruned network without SPR; saved to ``out/pruned``.

After every epoch the model (as :func:`spr.save_pruned` data), the optimiser and the progress
are written to ``out/checkpoint`` in one atomic step; a run started again with the same config
continues from there. Batch order and augmentation of epoch ``e`` of each stage are seeded by
``(seed, stage, e)``, so a resumed run sees the data a straight run would. Under ``torchrun``
the training stages run in DistributedDataParallel (see :mod:`spr._distributed`); rank 0 alone
writes files and decides the threshold.

Nothing is written (the folder is not even created) and nothing trained before every check has
passed: the config (types, finite values, ranges: :class:`spr.PruneConfig`), the device (a GPU
that is not there), the data, and the folder's own files when it holds a run — a damaged or
edited ``config.json``, ``checkpoint/state.json`` (its stage must agree with what the folder
holds), ``checkpoint/optimizer.pt`` or checkpoint model is refused with the file's name and the
fix. Before training, the remaining time is estimated from a few timed steps and logged; a warning
comes first when it is more than :data:`WARN_SECONDS`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spr._atomic import atomic_dir, write_text_atomic
from spr._config import PruneConfig
from spr._counting import mac_weights, measure
from spr._distributed import RankBatches, barrier, broadcast, is_main, wrap
from spr._estimate import PENALTY_CLASSES, estimate_seconds, format_seconds
from spr._prune_to_budget import check_budget, prune_to_budget
from spr._regularizer import SPRegularizer
from spr._run import REFERENCE_FIELDS, STAGES, PipelineError, _Run, resolve_device
from spr._run_folder import open_folder, read_folder
from spr._serialize import save_pruned
from spr._structure import structural_decision, zero_dead_groups
from spr._surgery import layer_widths, remove_pruned
from spr._threshold import threshold_search
from spr._training import make_optimizer, train_epoch

__all__ = ["REFERENCE_FIELDS", "STAGES", "PipelineError", "estimate_seconds", "reference_M",
           "resolve_device", "run_pipeline"]

WARN_SECONDS = 3600.0  # warn before a run expected to take longer than this
BUDGET_CALIBRATION = 1024  # calibration images of prune_to_budget (from the threshold subset)


def budget_arguments(config: PruneConfig) -> dict:
    """``macs=`` / ``params=`` for :func:`spr.prune_to_budget` from a config."""
    return {name: value if value is None or value <= 1 else int(value)
            for name, value in (("macs", config.budget_macs), ("params", config.budget_params))}


def reference_M(
    model: nn.Module, groups: str = "conv_bn", M_scale: float = 1.0
) -> dict[str, float]:
    """``{block: M_scale * max |entry|}`` of a trained, unregularised model (the paper's M)."""
    return SPRegularizer(model, lam=0.0, alpha=0.5, M="auto", M_scale=M_scale, groups=groups).M_


def _silent(message: str) -> None:
    pass


def _set_threads(threads: int | str, state: dict, log: Callable[[str], None]) -> None:
    from spr._threads import set_threads

    saved = state.get("threads")
    if threads == "auto" and saved is not None:
        torch.set_num_threads(saved)
        log(f"torch threads: {saved}, as in the checkpoint (for results identical to an "
            "uninterrupted run; --threads N overrides)")
        return
    if threads != "auto" and not (isinstance(threads, int) and not isinstance(threads, bool)):
        raise ValueError(f"threads must be 'auto', an integer >= 1 or None; got {threads!r}")
    count, why = set_threads(None if threads == "auto" else threads)
    note = ("; the checkpoint was written with "
            f"{saved}, so the results may differ from an uninterrupted run in the last bits"
            if saved is not None and saved != count else "")
    log(f"torch threads: {count} ({why}){note}")


def _prune_threshold(model: nn.Module, run: _Run, config: PruneConfig, records: dict
                     ) -> nn.Module:
    """The paper's decision: threshold search, structural decision, removal."""
    search = broadcast(threshold_search(  # rank 0 decides, so every rank prunes alike
        model, run.fixed(run.threshold_split), config.max_drop, groups=config.groups,
        tol=config.threshold_tol, progress=run.progress and is_main(),
    ) if is_main() else None)
    alive = structural_decision(model, search.threshold, config.struct_threshold,
                                groups=config.groups)
    removed = zero_dead_groups(model, alive, groups=config.groups)
    model = remove_pruned(model, run.check_batch, inplace=True)
    records["decision"] = "threshold"
    records["threshold"] = {
        "threshold": search.threshold, "zeroed": search.zeroed, "entries": search.entries,
        "train_accuracy_before": search.accuracy_dense,
        "train_accuracy_after": search.accuracy, "evaluations": len(search.history),
        "groups_removed": removed, "groups": sum(len(a) for a in alive.values()),
    }
    records["decision_note"] = (f"threshold {search.threshold:.3g}, {removed} of "
                                f"{records['threshold']['groups']} groups removed")
    return model


def _prune_budgeted(model: nn.Module, run: _Run, config: PruneConfig, records: dict
                    ) -> nn.Module:
    """The budgeted decision: :func:`spr.prune_to_budget` on the SPR-trained network (rank 0
    plans, every rank applies the same plan)."""
    calibration = run.threshold_split.subset(min(BUDGET_CALIBRATION, len(run.threshold_split)),
                                             seed=config.seed + 2)
    batches = [x for x, _ in run.fixed(calibration)]
    plan = broadcast(prune_to_budget(
        model, batches, example_inputs=run.example, time_limit=config.budget_seconds,
        progress=run.progress and is_main(), **budget_arguments(config),
    ) if is_main() else None)
    model = plan.apply(model)
    certificate = plan.certificate
    records["decision"] = "budget"
    records["budget"] = {"summary": certificate.summary(), "layers": certificate.layers,
                         "knapsack": certificate.knapsack, "budget": certificate.budget,
                         "curves": plan.curves,
                         "calibration_images": len(calibration),
                         "seconds": certificate.seconds}
    summary = certificate.summary()
    records["decision_note"] = (
        f"budget met: {summary['macs']:,} MACs, {summary['params']:,} parameters "
        f"(limits {certificate.budget['macs_limit']}, {certificate.budget['params_limit']}); "
        f"layer gap median {summary['layer_gap_median']:.0%}, knapsack gap "
        f"{summary['knapsack_gap']:.2%}")
    return model


def run_pipeline(
    config: PruneConfig,
    out: str | Path,
    *,
    restart: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    estimate: bool = True,
    threads: int | str | None = None,
) -> dict:
    """Run (or resume) the whole protocol of ``config`` in folder ``out``; return the summary.

    The summary, also written to ``out/results.json``: test accuracies in percent (dense
    reference, after SPR training, right after pruning, after fine-tuning), parameters and MACs
    per image of the dense and pruned networks, per-layer widths, the threshold search, the
    per-epoch training history and the seconds spent. ``restart`` discards the folder's
    checkpoint (and its dense reference if that was trained under other settings).
    ``estimate``: time a few steps first and log the expected time (a warning above
    :data:`WARN_SECONDS`); the summary's ``input`` says how the images were fed (padding).
    ``threads``: torch's CPU threads — None leaves them as they are, an integer sets them,
    ``"auto"`` chooses them from the load (:func:`spr._threads.set_threads`) on a new run and
    takes the checkpoint's count on a resumed one (results depend on the count in the last bits,
    so a resumed run then ends exactly where an uninterrupted one would).
    """
    out = Path(out)
    if not isinstance(config, PruneConfig):
        raise TypeError(f"config must be a spr.PruneConfig; got {type(config).__name__}")
    if not is_main():
        log = _silent
    # every check before anything is written or trained: the config checked itself when it was
    # built; then the device, the data and the folder's files, all read-only
    run = _Run(config, progress)
    found = read_folder(out, config, restart, run)
    state = found["state"]
    budgeted = config.budget_macs is not None or config.budget_params is not None
    if budgeted:  # a budget the architecture cannot meet is refused before anything trains
        check_budget(run.build(), run.example.cpu(), **budget_arguments(config))
    if threads is not None:
        _set_threads(threads, state, log)
    state["threads"] = torch.get_num_threads()
    dense_done = (out / "dense").exists() and not found["remove_dense"]
    timing = estimate_seconds(run, state, dense_done) if estimate and is_main() else None
    if timing is not None:
        if timing["seconds"] > WARN_SECONDS:
            log(f"warning: this run will take about {format_seconds(timing['seconds'])} on "
                f"{timing['device']} ({timing['threads']} thread(s)); it can be stopped "
                "(Ctrl-C) and resumed by running the same command again; `spr prune --preset "
                "quick` is a run of minutes")
        log(f"expected time: about {format_seconds(timing['seconds'])} for "
            f"{timing['steps']:,} SGD steps at {1000 * timing['step_seconds']:.0f} ms "
            f"({1000 * timing['step_seconds_penalty']:.0f} ms with the penalty) plus "
            "evaluation; estimated from steps timed on the first batch")
    open_folder(out, config, restart, found)
    records: dict[str, Any] = state["records"]
    started = time.perf_counter() - state.get("seconds", 0.0)
    saved_optimizer, read_at = found["optimizer"], (state["stage"], state["epoch"])

    def checkpoint(model: nn.Module, stage: str, epoch: int, optimizer=None, schedule=None):
        state.update(stage=stage, epoch=epoch, seconds=time.perf_counter() - started)
        if is_main():
            with atomic_dir(out / "checkpoint") as tmp:
                save_pruned(model, tmp / "model")
                if optimizer is not None:
                    torch.save(
                        {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()},
                        tmp / "optimizer.pt",
                    )
                (tmp / "state.json").write_text(json.dumps(state, indent=2))
        barrier()

    def save(model: nn.Module, name: str) -> None:
        if is_main():
            save_pruned(model, out / name)
        barrier()

    def resume_model() -> tuple[nn.Module, dict | None]:
        model = run.load(out / "checkpoint" / "model")
        if (state["stage"], state["epoch"]) == read_at:
            return model, saved_optimizer  # read and checked by read_folder
        opt_path = out / "checkpoint" / "optimizer.pt"  # written by this process since
        saved = torch.load(opt_path, weights_only=True) if opt_path.exists() else None
        return model, saved

    def train_stage(stage: str, epochs: int, model: nn.Module, make_reg=None) -> nn.Module:
        first, saved = 0, None
        if state["stage"] == stage and state["epoch"] > 0:
            model, saved = resume_model()
            first = state["epoch"]
            log(f"{stage}: resuming after epoch {first}/{epochs}")
        reg = make_reg(model) if make_reg is not None else None
        lr = config.lr_finetune if stage == "finetune" and config.lr_finetune else config.lr
        optimizer, schedule = make_optimizer(
            model, epochs, len(RankBatches(run.loader(stage, 0))), lr, config.momentum,
            config.weight_decay,
        )
        trained = wrap(model)  # DistributedDataParallel under torchrun
        if saved is not None:
            optimizer.load_state_dict(saved["optimizer"])
            schedule.load_state_dict(saved["schedule"])
        history = records.setdefault(f"{stage}_history", [])
        del history[first:]
        for epoch in range(first, epochs):
            stats = train_epoch(trained, RankBatches(run.loader(stage, epoch)), optimizer,
                                schedule, reg, run.progress and is_main(),
                                f"{stage} {epoch + 1}/{epochs}")
            history.append(stats)
            checkpoint(model, stage, epoch + 1, optimizer, schedule)
        return model

    # 1. the dense reference, written once
    if not (out / "dense").exists():
        model = train_stage("reference", config.epochs_reference, run.build().to(run.device))
        save(model, "dense")
    dense = run.load(out / "dense")
    if "accuracy_dense" not in records:
        records["accuracy_dense"] = run.accuracy(dense)
        log(f"dense reference: test accuracy {records['accuracy_dense']:.2f}%")
    if state["stage"] == "reference":
        state.update(stage="spr", epoch=0)

    # 2. SPR training from the same initialisation, M from the reference
    M = reference_M(dense, config.groups, config.M_scale)
    weights = (mac_weights(dense, run.example, config.groups)
               if config.penalty_weights == "macs" else None)
    if state["stage"] == "spr":
        model = train_stage(
            "spr", config.epochs_spr, run.build().to(run.device),
            lambda m: PENALTY_CLASSES[config.penalty](
                m, config.lam, config.alpha, M=M, groups=config.groups, block_weights=weights
            ),
        )
        records["accuracy_spr"] = run.accuracy(model)
        log(f"SPR training: test accuracy {records['accuracy_spr']:.2f}%")
        save(model, "spr")
        checkpoint(model, "prune", 0)

    # 3. threshold, structural decision, physical removal (or the budgeted decision)
    if state["stage"] == "prune":
        model, _ = resume_model()
        if budgeted:
            model = _prune_budgeted(model, run, config, records)
        else:
            model = _prune_threshold(model, run, config, records)
        records["accuracy_pruned"] = run.accuracy(model)
        log(f"pruning ({records['decision']}): {records['decision_note']}; test accuracy "
            f"{records['accuracy_pruned']:.2f}%")
        checkpoint(model, "finetune", 0)

    # 4. fine-tuning without SPR
    if state["stage"] == "finetune":
        model = train_stage("finetune", config.epochs_finetune, resume_model()[0])
        records["accuracy_finetuned"] = run.accuracy(model)
        log(f"fine-tuning: test accuracy {records['accuracy_finetuned']:.2f}%")
        save(model, "pruned")
        checkpoint(model, "done", 0)

    pruned = run.load(out / "pruned")
    size_dense, size_pruned = measure(dense, run.example), measure(pruned, run.example)
    summary = {
        "config": config.to_dict(),
        **{k: v for k, v in records.items() if not k.endswith("_history")},
        "params_dense": size_dense.params, "params_pruned": size_pruned.params,
        "macs_dense": size_dense.macs, "macs_pruned": size_pruned.macs,
        "params_removed_percent": 100 * (1 - size_pruned.params / size_dense.params),
        "macs_removed_percent": 100 * (1 - size_pruned.macs / size_dense.macs),
        "widths_dense": layer_widths(dense), "widths_pruned": layer_widths(pruned),
        "history": {k: v for k, v in records.items() if k.endswith("_history")},
        "seconds": state.get("seconds", 0.0),
        "device": str(run.device),
        "threads": torch.get_num_threads(),
        "input": run.input,
    }
    if timing is not None:
        summary["estimate"] = timing
    if is_main():
        write_text_atomic(out / "results.json", json.dumps(summary, indent=2))
    barrier()
    return summary
