"""What the stages of one pruning run share: :class:`StageContext`.

One object per :func:`spr.run_pipeline` call, passed to every stage (:mod:`spr._stages`): the
config, the run's data and network constructor (:class:`spr._run._Run`), the output folder, the
checkpoint's progress and records, and the steps a stage is made of — write the checkpoint, save
a model, take up the checkpoint's model, train for some epochs (resuming at the checkpoint's
epoch and checkpointing after each one).

``state`` is what ``out/checkpoint/state.json`` holds: ``stage`` (the stage in progress, or
``"done"``), ``epoch`` (its epochs done), ``records`` (accuracies, decisions, per-epoch
histories: the results), ``seconds`` and ``threads``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spr._atomic import atomic_dir
from spr._config import PruneConfig
from spr._distributed import RankBatches, barrier, is_main, wrap
from spr._run import _Run
from spr._serialize import save_pruned
from spr._training import make_optimizer, train_epoch

__all__ = ["StageContext"]


class StageContext:
    """The shared state of one run and the steps its stages take.

    Args:
        config, run, out: the run's settings, data and network constructor, and folder.
        state: the checkpoint's ``state.json`` content (a fresh one for a new run); updated in
            place and written by :meth:`checkpoint`.
        saved_optimizer: the optimiser and schedule state read with the checkpoint, or None.
        log: where the stages' messages go.
        train_epoch: the one-epoch step of :meth:`train` (:func:`spr._training.train_epoch`).
    """

    def __init__(
        self,
        config: PruneConfig,
        run: _Run,
        out: Path,
        state: dict[str, Any],
        saved_optimizer: dict | None,
        log: Callable[[str], None],
        train_epoch: Callable[..., dict] = train_epoch,
    ) -> None:
        self.config, self.run, self.out, self.state, self.log = config, run, out, state, log
        self.records: dict[str, Any] = state["records"]
        self.train_epoch = train_epoch
        self._saved_optimizer = saved_optimizer
        self._read_at = (state["stage"], state["epoch"])  # the checkpoint saved_optimizer is of
        self._started = time.perf_counter() - state.get("seconds", 0.0)
        self._dense: nn.Module | None = None

    @property
    def dense(self) -> nn.Module:
        """The dense reference of ``out/dense``, loaded at the first use."""
        if self._dense is None:
            self._dense = self.run.load(self.out / "dense")
        return self._dense

    def checkpoint(self, model: nn.Module, stage: str, epoch: int, optimizer=None,
                   schedule=None) -> None:
        """Write ``out/checkpoint`` (model, optimiser and schedule if given, state) atomically,
        as ``epoch`` epochs done of ``stage``."""
        self.state.update(stage=stage, epoch=epoch, seconds=time.perf_counter() - self._started)
        if is_main():
            with atomic_dir(self.out / "checkpoint") as tmp:
                save_pruned(model, tmp / "model")
                if optimizer is not None:
                    torch.save(
                        {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()},
                        tmp / "optimizer.pt",
                    )
                (tmp / "state.json").write_text(json.dumps(self.state, indent=2))
        barrier()

    def save(self, model: nn.Module, name: str) -> None:
        """Save ``model`` to ``out/name`` (:func:`spr.save_pruned`)."""
        if is_main():
            save_pruned(model, self.out / name)
        barrier()

    def resume_model(self) -> tuple[nn.Module, dict | None]:
        """The checkpoint's model on the run's device, and its optimiser state (None if none)."""
        model = self.run.load(self.out / "checkpoint" / "model")
        if (self.state["stage"], self.state["epoch"]) == self._read_at:
            return model, self._saved_optimizer  # read and checked by read_folder
        opt_path = self.out / "checkpoint" / "optimizer.pt"  # written by this process since
        saved = torch.load(opt_path, weights_only=True) if opt_path.exists() else None
        return model, saved

    def train(
        self,
        stage: str,
        model: nn.Module,
        *,
        epochs: int,
        lr: float,
        penalty: Callable[[nn.Module], nn.Module] | None = None,
    ) -> nn.Module:
        """Train ``model`` for the epochs of ``stage`` not done yet; return the trained model.

        When the checkpoint is part-way through ``stage``, its model and optimiser replace
        ``model`` and training resumes after its epoch. SGD with a cosine schedule from ``lr``
        (:func:`spr._training.make_optimizer`); ``penalty(model)`` builds the regulariser added
        to the loss (after the resume: of the checkpoint's model). The history goes to
        ``records[f"{stage}_history"]``; a checkpoint is written after every epoch. Epoch ``e``'s
        batch order and augmentation are seeded by ``(seed, stage, e)``.
        """
        config, run = self.config, self.run
        first, saved = 0, None
        if self.state["stage"] == stage and self.state["epoch"] > 0:
            model, saved = self.resume_model()
            first = self.state["epoch"]
            self.log(f"{stage}: resuming after epoch {first}/{epochs}")
        reg = penalty(model) if penalty is not None else None
        optimizer, schedule = make_optimizer(
            model, epochs, len(RankBatches(run.loader(stage, 0))), lr, config.momentum,
            config.weight_decay,
        )
        trained = wrap(model)  # DistributedDataParallel under torchrun
        if saved is not None:
            optimizer.load_state_dict(saved["optimizer"])
            schedule.load_state_dict(saved["schedule"])
        history = self.records.setdefault(f"{stage}_history", [])
        del history[first:]
        for epoch in range(first, epochs):
            stats = self.train_epoch(trained, RankBatches(run.loader(stage, epoch)), optimizer,
                                     schedule, reg, run.progress and is_main(),
                                     f"{stage} {epoch + 1}/{epochs}")
            history.append(stats)
            self.checkpoint(model, stage, epoch + 1, optimizer, schedule)
        return model
