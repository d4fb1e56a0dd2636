"""The stages of the paper's pruning protocol, in order: :data:`PROTOCOL` (docs/mathematics.md §5).

A :class:`Stage` is a name (the stage's name in ``out/checkpoint/state.json``) and a step
``run(context) -> model`` on the run's :class:`spr._stage_context.StageContext`.
:func:`spr.run_pipeline` goes through the list: it skips the stages the checkpoint has finished,
runs the one in progress (a training stage resumes at the checkpoint's epoch:
:meth:`~spr._stage_context.StageContext.train`) and those after it, and writes the checkpoint
after each with the model the stage returned, as epoch 0 of the next stage.

1. ``reference``: dense training from the seed's initialisation; saved once to ``out/dense``
   and never overwritten (that folder is the stage's checkpoint: no other is written after it).
2. ``spr``: training from the *same* initialisation with :class:`spr.SPRegularizer` and the
   config's penalty (:data:`spr._penalties.PENALTY_FUNCTIONS`), ``M`` per block from the reference
   (:func:`spr.reference_M`); saved to ``out/spr``.
3. ``prune``: :func:`spr.threshold_search` on a fixed subset of the training set,
   :func:`spr.structural_decision`, :func:`spr.zero_dead_groups`, :func:`spr.remove_pruned`;
   or, with a budget (``budget_macs`` / ``budget_params``), :func:`spr.prune_to_budget` on
   the SPR-trained network with :data:`BUDGET_CALIBRATION` images of that subset, and its plan
   applied. The records say which decided (``decision``: ``"threshold"`` or ``"budget"``).
4. ``finetune``: training of the pruned network without the penalty; saved to ``out/pruned``.

Adding a stage is appending one, e.g. an export of the fine-tuned network::

    def export(context: StageContext) -> nn.Module:
        model, _ = context.resume_model()  # the checkpoint: what the stage before left
        torch.onnx.export(model, (context.run.example,), context.out / "pruned.onnx")
        return model

    spr.run_pipeline(config, out, stages=(*PROTOCOL, Stage("export", export)))

A run stopped inside an added stage does not resume yet (the run folder's checks know the four
stages of :data:`spr._run.STAGES`); to make one resumable, name it there before ``"done"`` (the
stages before it keep their batch-order seeds) and in ``spr._run_folder``'s tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from spr._config import PruneConfig
from spr._counting import mac_weights
from spr._distributed import broadcast, is_main
from spr._penalties import PENALTY_FUNCTIONS
from spr._prune_to_budget import prune_to_budget
from spr._regularizer import SPRegularizer, reference_M
from spr._stage_context import StageContext
from spr._structure import structural_decision, zero_dead_groups
from spr._surgery import remove_pruned
from spr._threshold import threshold_search

__all__ = ["BUDGET_CALIBRATION", "PROTOCOL", "Stage", "budget_arguments"]

BUDGET_CALIBRATION = 1024  # calibration images of prune_to_budget (from the threshold subset)


@dataclass(frozen=True)
class Stage:
    """One step of the protocol.

    Attributes:
        name: its name in the checkpoint (one of :data:`spr._run.STAGES`).
        run: ``run(context) -> model``, the stage's work; the model is checkpointed after it.
        checkpoint: False for a stage whose saved output is its checkpoint (the reference).
    """

    name: str
    run: Callable[[StageContext], nn.Module]
    checkpoint: bool = True


def budget_arguments(config: PruneConfig) -> dict:
    """``macs=`` / ``params=`` for :func:`spr.prune_to_budget` from a config."""
    return {name: value if value is None or value <= 1 else int(value)
            for name, value in (("macs", config.budget_macs), ("params", config.budget_params))}


def _reference(context: StageContext) -> nn.Module:
    config, run, records = context.config, context.run, context.records
    if not (context.out / "dense").exists():
        model = context.train("reference", run.build().to(run.device),
                              epochs=config.epochs_reference, lr=config.lr)
        context.save(model, "dense")
    if "accuracy_dense" not in records:
        records["accuracy_dense"] = run.accuracy(context.dense)
        context.log(f"dense reference: test accuracy {records['accuracy_dense']:.2f}%")
    return context.dense


def _spr(context: StageContext) -> nn.Module:
    config, run, records = context.config, context.run, context.records
    M = reference_M(context.dense, config.groups, config.M_scale)
    weights = (mac_weights(context.dense, run.example, config.groups)
               if config.penalty_weights == "macs" else None)

    def regulariser(model: nn.Module) -> SPRegularizer:
        return SPRegularizer(model, config.lam, config.alpha, M=M, groups=config.groups,
                             block_weights=weights, penalty=PENALTY_FUNCTIONS[config.penalty])

    model = context.train("spr", run.build().to(run.device), epochs=config.epochs_spr,
                          lr=config.lr, penalty=regulariser)
    records["accuracy_spr"] = run.accuracy(model)
    context.log(f"SPR training: test accuracy {records['accuracy_spr']:.2f}%")
    context.save(model, "spr")
    return model


def _prune(context: StageContext) -> nn.Module:
    """Threshold (or budget) decision and physical removal, before fine-tuning: fine-tuning the
    smaller network is fine-tuning the zeroed one with its dead groups held at zero, only
    cheaper."""
    config, records = context.config, context.records
    model, _ = context.resume_model()
    budgeted = config.budget_macs is not None or config.budget_params is not None
    model = (_prune_budgeted if budgeted else _prune_threshold)(model, context)
    records["accuracy_pruned"] = context.run.accuracy(model)
    context.log(f"pruning ({records['decision']}): {records['decision_note']}; test accuracy "
                f"{records['accuracy_pruned']:.2f}%")
    return model


def _finetune(context: StageContext) -> nn.Module:
    config, records = context.config, context.records
    model = context.train("finetune", context.resume_model()[0], epochs=config.epochs_finetune,
                          lr=config.lr_finetune or config.lr)
    records["accuracy_finetuned"] = context.run.accuracy(model)
    context.log(f"fine-tuning: test accuracy {records['accuracy_finetuned']:.2f}%")
    context.save(model, "pruned")
    return model


def _prune_threshold(model: nn.Module, context: StageContext) -> nn.Module:
    """The paper's decision: threshold search, structural decision, removal."""
    config, run, records = context.config, context.run, context.records
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


def _prune_budgeted(model: nn.Module, context: StageContext) -> nn.Module:
    """The budgeted decision: :func:`spr.prune_to_budget` on the SPR-trained network (rank 0
    plans, every rank applies the same plan)."""
    config, run, records = context.config, context.run, context.records
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


PROTOCOL: tuple[Stage, ...] = (
    Stage("reference", _reference, checkpoint=False),
    Stage("spr", _spr),
    Stage("prune", _prune),
    Stage("finetune", _finetune),
)
