"""``PruneConfig``: every setting of one run of the SPR pruning pipeline, frozen, JSON round trip.

>>> config = PruneConfig(arch="resnet20", lam=2.0, epochs_spr=10)
>>> PruneConfig.from_json(config.to_json()) == config
True
>>> PruneConfig(alpha=1.5)
Traceback (most recent call last):
...
ValueError: alpha must lie in the open interval (0, 1); got 1.5
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path

from spr._checks import check_alpha

PENALTIES = ("spr", "group_lasso")  # spr.SPRegularizer, spr.GroupLassoRegularizer
PENALTY_WEIGHTS = ("uniform", "macs")  # per-block weights: 1, or spr.mac_weights


@dataclass(frozen=True)
class PruneConfig:
    """Settings of :func:`spr.run_pipeline` and ``spr prune`` (each field is a CLI option).

    Model and data: ``arch`` (a name in ``spr.models.MODELS``), ``dataset`` (a name in
    ``spr.data.DATASETS``), ``data_root`` (folder with the files; default: the usual places),
    ``train_samples`` and ``test_samples`` (use class-balanced random subsets; None: all).

    The paper's protocol (DESIGN.md §3.5): dense reference training for ``epochs_reference``
    epochs; SPR training from the same initialisation for ``epochs_spr`` epochs with ``lam``,
    ``alpha``, ``groups`` and ``M = M_scale * max |entry|`` of each block of the reference
    (``penalty="group_lasso"``: the group-lasso baseline in SPR's place, same scaling;
    ``penalty_weights="macs"``: each block weighted by its MACs per entry, see
    :func:`spr.mac_weights`);
    the threshold search (``max_drop`` percentage points of training accuracy, over
    ``threshold_samples`` training samples, bisection tolerance ``threshold_tol``); the
    structural decision (``struct_threshold``); physical removal; fine-tuning without SPR for
    ``epochs_finetune`` epochs. Optimiser: SGD with ``lr`` (``lr_finetune`` for fine-tuning,
    default ``lr``), ``momentum``, ``weight_decay``, cosine decay, batches of ``batch_size``,
    crop-and-flip augmentation if ``augment``.
    """

    arch: str = "resnet20"
    dataset: str = "fashion-mnist"
    data_root: str | None = None
    train_samples: int | None = None
    test_samples: int | None = None
    penalty: str = "spr"
    penalty_weights: str = "uniform"
    lam: float = 1.0
    alpha: float = 0.5
    M_scale: float = 1.0
    groups: str = "conv_bn"
    epochs_reference: int = 30
    epochs_spr: int = 30
    epochs_finetune: int = 15
    batch_size: int = 128
    lr: float = 0.1
    lr_finetune: float | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True
    max_drop: float = 0.05
    threshold_samples: int | None = 10000
    threshold_tol: float = 0.0
    struct_threshold: float = 0.05
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        from spr import data, models  # late: both import torch

        if self.arch not in models.MODELS:
            raise ValueError(
                f"unknown architecture {self.arch!r}; choose one of {sorted(models.MODELS)}"
            )
        if self.dataset not in data.DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of "
                             f"{sorted(data.DATASETS)}")
        check_alpha(self.alpha)
        if self.penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}; got {self.penalty!r}")
        if self.penalty_weights not in PENALTY_WEIGHTS:
            raise ValueError(
                f"penalty_weights must be one of {PENALTY_WEIGHTS}; got {self.penalty_weights!r}"
            )
        if self.device != "auto":
            import torch

            try:
                torch.device(self.device)
            except RuntimeError as err:
                raise ValueError(f'device must be "auto" or a torch device; got {self.device!r}'
                                 ) from err
        for name in ("lam", "weight_decay", "max_drop", "threshold_tol"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        for name in ("M_scale", "lr", "lr_finetune"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        for name in ("epochs_reference", "epochs_spr", "epochs_finetune"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be an integer >= 0; got {getattr(self, name)}")
        for name in ("batch_size", "train_samples", "test_samples", "threshold_samples"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name} must be a positive integer; got {value}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}")
        if not 0 <= self.struct_threshold < 1:
            raise ValueError(f"struct_threshold must be in [0, 1); got {self.struct_threshold}")
        if not 0 <= self.threshold_tol < 1:
            raise ValueError(f"threshold_tol must be in [0, 1); got {self.threshold_tol}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict) -> PruneConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"PruneConfig has no setting(s) {unknown}; the settings are {sorted(known)}"
            )
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> PruneConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> PruneConfig:
        return cls.from_json(Path(path).read_text())

    def replace(self, **changes) -> PruneConfig:
        return dataclasses.replace(self, **changes)
