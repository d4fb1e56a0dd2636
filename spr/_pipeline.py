"""The paper's whole pruning protocol as one resumable run (what ``spr prune`` calls).

Stages, in order (DESIGN.md §3.5), each writing into ``out``:

1. ``reference``: dense training from the seed's initialisation; saved once to ``out/dense``
   and never overwritten.
2. ``spr``: training from the *same* initialisation with :class:`spr.SPRegularizer` (or the
   group-lasso baseline), ``M`` per block from the reference (``M_scale * max |entry|``); saved
   to ``out/spr``.
3. ``prune``: :func:`spr.threshold_search` on a fixed subset of the training set,
   :func:`spr.structural_decision`, :func:`spr.zero_dead_groups`, :func:`spr.remove_pruned`.
   The removal comes before fine-tuning — fine-tuning the smaller network is fine-tuning the
   zeroed one with its dead groups held at zero, only cheaper.
4. ``finetune``: training of the pruned network without SPR; saved to ``out/pruned``.

After every epoch the model (as :func:`spr.save_pruned` data), the optimiser and the progress
are written to ``out/checkpoint`` in one atomic step; a run started again with the same config
continues from there. Batch order and augmentation of epoch ``e`` of each stage are seeded by
``(seed, stage, e)``, so a resumed run sees the data a straight run would. Under ``torchrun``
the training stages run in DistributedDataParallel (see :mod:`spr._distributed`); rank 0 alone
writes files and decides the threshold.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spr import data as spr_data
from spr import models
from spr._atomic import atomic_dir, write_text_atomic
from spr._config import PruneConfig
from spr._counting import mac_weights, measure
from spr._distributed import RankBatches, barrier, broadcast, is_main, wrap
from spr._group_lasso import GroupLassoRegularizer
from spr._regularizer import SPRegularizer
from spr._serialize import load_pruned, save_pruned
from spr._structure import structural_decision, zero_dead_groups
from spr._surgery import layer_widths, remove_pruned
from spr._threshold import threshold_search
from spr._training import evaluate, make_optimizer, train_epoch

STAGES = ("reference", "spr", "prune", "finetune", "done")
PENALTY_CLASSES = {"spr": SPRegularizer, "group_lasso": GroupLassoRegularizer}


class PipelineError(RuntimeError):
    """The run cannot continue as asked (another run's folder, a damaged checkpoint)."""


def reference_M(
    model: nn.Module, groups: str = "conv_bn", M_scale: float = 1.0
) -> dict[str, float]:
    """``{block: M_scale * max |entry|}`` of a trained, unregularised model (the paper's M)."""
    return SPRegularizer(model, lam=0.0, alpha=0.5, M="auto", M_scale=M_scale, groups=groups).M_


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


REFERENCE_FIELDS = (
    "arch", "dataset", "data_root", "train_samples", "epochs_reference", "batch_size", "lr",
    "momentum", "weight_decay", "augment", "seed",
)


class _Run:
    """The data, the network constructor and the loaders of one run."""

    def __init__(self, config: PruneConfig, progress: bool) -> None:
        self.config, self.progress = config, progress
        self.device = resolve_device(config.device)
        train = spr_data.load(config.dataset, "train", root=config.data_root)
        test = spr_data.load(config.dataset, "test", root=config.data_root)
        if config.test_samples is not None and config.test_samples < len(test):
            test = test.subset(config.test_samples, seed=config.seed)
        self.test = test
        if config.train_samples is not None and config.train_samples < len(train):
            train = train.subset(config.train_samples, seed=config.seed)
        self.train = train
        n_threshold = min(config.threshold_samples or len(train), len(train))
        self.threshold_split = train.subset(n_threshold, seed=config.seed + 1)
        if self.device.type != "cpu":  # uint8 on the device: batches gathered and augmented there
            self.train, self.test, self.threshold_split = (
                _on(split, self.device) for split in (train, test, self.threshold_split)
            )
        self.pad_to = models.INPUT_SIZE.get(config.arch)
        self.in_channels, self.num_classes = train.images.shape[1], len(train.classes)
        height, width = train.images.shape[-2:]
        if self.pad_to:
            height = width = self.pad_to
        self.example = torch.zeros(1, self.in_channels, height, width, device=self.device)
        # real images for remove_pruned's check of the outputs (zeros would check little)
        self.check_batch = next(iter(self.fixed(self.threshold_split)))[0][:16].to(self.device)

    def build(self) -> nn.Module:
        """The dense network with the seed's initialisation (the same for every stage)."""
        torch.manual_seed(self.config.seed)
        return models.build(self.config.arch, self.num_classes, self.in_channels)

    def loader(self, stage: str, epoch: int):
        seed = self.config.seed * 1000 + STAGES.index(stage) * 100 + epoch
        return self.train.loader(
            self.config.batch_size, shuffle=True, pad_to=self.pad_to,
            augment=self.config.augment, generator=torch.Generator().manual_seed(seed),
        )

    def fixed(self, split):
        return split.loader(512, shuffle=False, pad_to=self.pad_to)

    def accuracy(self, model: nn.Module) -> float:
        return evaluate(model, self.fixed(self.test))

    def load(self, path: Path) -> nn.Module:
        return load_pruned(path, self.build()).to(self.device)


def _on(split: spr_data.ImageSplit, device: torch.device) -> spr_data.ImageSplit:
    return spr_data.ImageSplit(split.images.to(device), split.labels.to(device), split.classes,
                               split.name)


def _silent(message: str) -> None:
    pass


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _open_folder(out: Path, config: PruneConfig, restart: bool) -> dict:
    """The folder's progress; refuses a folder that holds a run with another config."""
    config_path, state_path = out / "config.json", out / "checkpoint" / "state.json"
    saved = PruneConfig.load(config_path) if config_path.exists() else None
    if saved is not None and saved != config and not restart:
        diff = {k: [v, getattr(config, k)] for k, v in saved.to_dict().items()
                if getattr(config, k) != v}
        raise PipelineError(
            f"{out} holds a run with another config (setting: [saved, now]: {diff}); choose "
            "another output folder, or restart there (--restart, restart=True)"
        )
    if restart and is_main():
        for name in ("checkpoint", "spr", "pruned", "results.json"):
            _remove(out / name)
        if saved is not None and any(
            getattr(saved, k) != getattr(config, k) for k in REFERENCE_FIELDS
        ):
            _remove(out / "dense")  # trained under other settings
    if is_main():
        write_text_atomic(config_path, config.to_json())
    barrier()
    if state_path.exists():
        return json.loads(state_path.read_text())
    return {"stage": "reference", "epoch": 0, "records": {}}


def run_pipeline(
    config: PruneConfig,
    out: str | Path,
    *,
    restart: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) the whole protocol of ``config`` in folder ``out``; return the summary.

    The summary, also written to ``out/results.json``: test accuracies in percent (dense
    reference, after SPR training, right after pruning, after fine-tuning), parameters and MACs
    per image of the dense and pruned networks, per-layer widths, the threshold search, the
    per-epoch training history and the seconds spent. ``restart`` discards the folder's
    checkpoint (and its dense reference if that was trained under other settings).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not is_main():
        log = _silent
    run = _Run(config, progress)
    state = _open_folder(out, config, restart)
    records: dict[str, Any] = state["records"]
    started = time.perf_counter() - state.get("seconds", 0.0)

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
        opt_path = out / "checkpoint" / "optimizer.pt"
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

    # 3. threshold, structural decision, physical removal
    if state["stage"] == "prune":
        model, _ = resume_model()
        search = broadcast(threshold_search(  # rank 0 decides, so every rank prunes alike
            model, run.fixed(run.threshold_split), config.max_drop, groups=config.groups,
            tol=config.threshold_tol, progress=run.progress and is_main(),
        ) if is_main() else None)
        alive = structural_decision(model, search.threshold, config.struct_threshold,
                                    groups=config.groups)
        removed = zero_dead_groups(model, alive, groups=config.groups)
        model = remove_pruned(model, run.check_batch, inplace=True)
        records["threshold"] = {
            "threshold": search.threshold, "zeroed": search.zeroed, "entries": search.entries,
            "train_accuracy_before": search.accuracy_dense,
            "train_accuracy_after": search.accuracy, "evaluations": len(search.history),
            "groups_removed": removed, "groups": sum(len(a) for a in alive.values()),
        }
        records["accuracy_pruned"] = run.accuracy(model)
        log(f"pruning: threshold {search.threshold:.3g}, {removed} of "
            f"{records['threshold']['groups']} groups removed, test accuracy "
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
    }
    if is_main():
        write_text_atomic(out / "results.json", json.dumps(summary, indent=2))
    barrier()
    return summary
