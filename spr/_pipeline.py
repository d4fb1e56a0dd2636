"""The paper's whole pruning protocol as one resumable run (what ``spr prune`` calls).

:func:`run_pipeline` checks everything, then goes through the stages of
:data:`spr._stages.PROTOCOL` — ``reference`` (dense training, saved once to ``out/dense``),
``spr`` (training with the penalty, ``out/spr``), ``prune`` (threshold search or a budget, and
physical removal) and ``finetune`` (``out/pruned``) — with one
:class:`spr._stage_context.StageContext` that they share, and writes the summary.

After every epoch the model (as :func:`spr.save_pruned` data), the optimiser and the progress
are written to ``out/checkpoint`` in one atomic step, and again after every stage; a run
started again with the same config skips the stages done and continues from there. Batch order
and augmentation of epoch ``e`` of each stage are seeded by ``(seed, stage, e)``, so a resumed
run sees the data a straight run would. Under ``torchrun`` the training stages run in
DistributedDataParallel (see :mod:`spr._distributed`); rank 0 alone writes files and decides the
threshold.

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
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from spr._atomic import write_text_atomic
from spr._config import PruneConfig
from spr._counting import measure
from spr._distributed import barrier, is_main
from spr._estimate import estimate_seconds, format_seconds
from spr._prune_to_budget import check_budget
from spr._run import REFERENCE_FIELDS, STAGES, PipelineError, _Run, resolve_device
from spr._run_folder import open_folder, read_folder
from spr._stage_context import StageContext
from spr._stages import PROTOCOL, Stage, budget_arguments
from spr._surgery import layer_widths
from spr._training import train_epoch

__all__ = ["REFERENCE_FIELDS", "STAGES", "PipelineError", "estimate_seconds", "resolve_device",
           "run_pipeline"]

WARN_SECONDS = 3600.0  # warn before a run expected to take longer than this


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


def run_pipeline(
    config: PruneConfig,
    out: str | Path,
    *,
    restart: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    estimate: bool = True,
    threads: int | str | None = None,
    stages: Sequence[Stage] = PROTOCOL,
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
    ``stages``: the protocol's stages in order (:data:`spr._stages.PROTOCOL`); pass
    ``(*PROTOCOL, Stage("export", export))`` to add a step after fine-tuning (the module
    docstring of :mod:`spr._stages`). A run stopped inside an added stage cannot resume yet:
    the run folder's checks know the four protocol stages only.
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
    if config.budget_macs is not None or config.budget_params is not None:
        # a budget the architecture cannot meet is refused before anything trains
        check_budget(run.build(), run.example.cpu(), **budget_arguments(config))
    if threads is not None:
        _set_threads(threads, state, log)
    state["threads"] = torch.get_num_threads()
    dense_done = (out / "dense").exists() and not found["remove_dense"]
    timing = estimate_seconds(run, state, dense_done) if estimate and is_main() else None
    if timing is not None:
        _log_estimate(timing, log)
    open_folder(out, config, restart, found)
    # this module's train_epoch, so that replacing spr._pipeline.train_epoch (as the tests do to
    # interrupt a run) reaches the stages
    context = StageContext(config, run, out, state, found["optimizer"], log,
                           train_epoch=train_epoch)
    for index, stage in enumerate(stages):
        if state["stage"] != stage.name:  # done before (or, after "done", all of them)
            continue
        model = stage.run(context)
        following = stages[index + 1].name if index + 1 < len(stages) else STAGES[-1]
        if stage.checkpoint:
            context.checkpoint(model, following, 0)
        else:
            state.update(stage=following, epoch=0)
    summary = _summary(context, timing)
    if is_main():
        write_text_atomic(out / "results.json", json.dumps(summary, indent=2))
    barrier()
    return summary


def _log_estimate(timing: dict, log: Callable[[str], None]) -> None:
    if timing["seconds"] > WARN_SECONDS:
        log(f"warning: this run will take about {format_seconds(timing['seconds'])} on "
            f"{timing['device']} ({timing['threads']} thread(s)); it can be stopped "
            "(Ctrl-C) and resumed by running the same command again; `spr prune --preset "
            "quick` is a run of minutes")
    log(f"expected time: about {format_seconds(timing['seconds'])} for "
        f"{timing['steps']:,} SGD steps at {1000 * timing['step_seconds']:.0f} ms "
        f"({1000 * timing['step_seconds_penalty']:.0f} ms with the penalty) plus "
        "evaluation; estimated from steps timed on the first batch")


def _summary(context: StageContext, timing: dict | None) -> dict:
    """What ``results.json`` holds, from the records and the saved networks."""
    run, records = context.run, context.records
    dense, pruned = context.dense, run.load(context.out / "pruned")
    size_dense, size_pruned = measure(dense, run.example), measure(pruned, run.example)
    summary = {
        "config": context.config.to_dict(),
        **{k: v for k, v in records.items() if not k.endswith("_history")},
        "params_dense": size_dense.params, "params_pruned": size_pruned.params,
        "macs_dense": size_dense.macs, "macs_pruned": size_pruned.macs,
        "params_removed_percent": 100 * (1 - size_pruned.params / size_dense.params),
        "macs_removed_percent": 100 * (1 - size_pruned.macs / size_dense.macs),
        "widths_dense": layer_widths(dense), "widths_pruned": layer_widths(pruned),
        "history": {k: v for k, v in records.items() if k.endswith("_history")},
        "seconds": context.state.get("seconds", 0.0),
        "device": str(run.device),
        "threads": torch.get_num_threads(),
        "input": run.input,
    }
    if timing is not None:
        summary["estimate"] = timing
    return summary
