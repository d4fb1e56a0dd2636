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
import math
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from spr._checks import check_alpha

PENALTIES = ("spr", "group_lasso")  # spr.SPRegularizer, spr.GroupLassoRegularizer
PENALTY_WEIGHTS = ("uniform", "macs")  # per-block weights: 1, or spr.mac_weights

# What each setting means, with its unit and choices: the help of `spr prune`'s options.
HELP: dict[str, str] = {
    "arch": "network: resnet20, resnet56, resnet110 (CIFAR-style ResNets; 28x28 images are "
            "zero-padded to 32x32) or small_cnn (the demo's 4-conv CNN, any image size)",
    "dataset": "dataset: fashion-mnist (make data), digits (scikit-learn's 8x8 digits), "
               "cifar10 or cifar100 (a local copy; needs --data-root)",
    "data_root": "folder with the dataset's files; none: the usual places (data/fashion-mnist, "
                 "/usr/share/datasets/fashion-mnist)",
    "train_samples": "train on a class-balanced random subset of this many training images; "
                     "none: all (60,000 for Fashion-MNIST)",
    "test_samples": "evaluate on a class-balanced random subset of this many test images; "
                    "none: all (10,000 for Fashion-MNIST)",
    "penalty": "regulariser of the sparse training: spr (the Structured Perspective "
               "Regularizer) or group_lasso (the baseline)",
    "penalty_weights": "per-block weight of the penalty: uniform (1) or macs (each block "
                       "weighted by its MACs per entry, so pruning removes compute)",
    "lam": "strength of the penalty, >= 0 (a mean over the regularised entries: 1-4 suits "
           "small_cnn, 5-20 ResNet-20; larger prunes more)",
    "alpha": "SPR's trade-off in (0, 1) between the ridge term (alpha) and the group-count "
             "term (1 - alpha)",
    "M_scale": "M of each block = M_scale x the largest |entry| of the block in the dense "
               "reference, > 0",
    "groups": "what a prunable group is: conv_bn (a conv filter with its BatchNorm channel), "
              "conv (a conv filter) or linear (an input column of the classifier)",
    "epochs_reference": "epochs of dense reference training (integer >= 0)",
    "epochs_spr": "epochs of training with the penalty, from the reference's initialisation "
                  "(integer >= 0)",
    "epochs_finetune": "epochs of fine-tuning the pruned network without the penalty "
                       "(integer >= 0)",
    "batch_size": "images per SGD step (integer >= 1)",
    "lr": "initial learning rate of SGD, finite and > 0; decays to 0 on a cosine over each "
          "stage",
    "lr_finetune": "initial learning rate of the fine-tuning, > 0; none: lr",
    "momentum": "SGD momentum, in [0, 1)",
    "weight_decay": "SGD weight decay (L2), >= 0",
    "augment": "random crop (4 pixels of padding) and horizontal flip of training images "
               "(--no-augment: off)",
    "max_drop": "the magnitude threshold may cost at most this many percentage points of "
                "training accuracy, in [0, 100] (the paper: 0.05)",
    "threshold_samples": "training images the threshold search evaluates on (a fixed random "
                         "subset); none: all",
    "threshold_tol": "bisection tolerance of the threshold search, as a share of the "
                     "entries, in [0, 1) (0: exact, about log2(entries) evaluations)",
    "struct_threshold": "a group is removed when at most this share of its entries survives "
                        "the threshold, in [0, 1) (the paper: 0.005-0.05)",
    "budget_macs": "prune to at most this many MACs per image: a fraction in (0, 1] of the "
                   "dense network's or a count > 1; replaces the threshold search by "
                   "spr.prune_to_budget on the SPR-trained network (none: threshold search)",
    "budget_params": "prune to at most this many parameters: a fraction in (0, 1] of the "
                     "dense network's or a count > 1 (with or without budget_macs)",
    "budget_seconds": "time limit of spr.prune_to_budget's layer solves, > 0 (a budget run only)",
    "seed": "random seed of the initialisation, the subsets, batch order and augmentation "
            "(integer)",
    "device": "where to train: auto (cuda if a GPU is available, else cpu), cpu, cuda, "
              "cuda:N or mps",
}

# the float settings, all finite, and their ranges (checked in __post_init__)
_FINITE_FLOATS = {"lam": ">= 0", "M_scale": "> 0", "lr": "> 0", "lr_finetune": "> 0",
                  "budget_macs": "> 0", "budget_params": "> 0", "budget_seconds": "> 0",
                  "momentum": "in [0, 1)", "weight_decay": ">= 0", "max_drop": "in [0, 100]",
                  "threshold_tol": "in [0, 1)", "struct_threshold": "in [0, 1)"}


def _type_name(kind: Any) -> str:
    return {float: "a number", int: "an integer", str: "a string", bool: "true or false"}.get(
        kind, getattr(kind, "__name__", str(kind)))


def _check_type(name: str, value: Any, hint: Any) -> None:
    """ValueError unless ``value`` has the field's type (an int is a float; a bool is neither)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    kind = next((a for a in args if a is not type(None)), hint)
    if value is None and optional:
        return
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        allowed = _type_name(kind) + (" or null (none)" if optional else "")
        hint_text = ""
        if isinstance(value, str) and kind in (int, float):
            hint_text = (" — write a number, without quotes in a JSON file (e.g. "
                         f'"{name}": {"10" if kind is int else "10.0"})')
        raise ValueError(
            f"{name} must be {allowed}; got {value!r} ({type(value).__name__}){hint_text}"
        )



def json_error_detail(err: json.JSONDecodeError, text: str) -> str:
    """Where a JSON file fails to parse, for an error message that names the file."""
    empty = "; the file is empty" if not text.strip() else ""
    return f"{err.msg} at line {err.lineno} column {err.colno}{empty}"

@dataclass(frozen=True)
class PruneConfig:
    """Settings of :func:`spr.run_pipeline` and ``spr prune`` (each field is a CLI option).

    Model and data: ``arch`` (a name in ``spr.models.MODELS``), ``dataset`` (a name in
    ``spr.data.DATASETS``), ``data_root`` (folder with the files; default: the usual places),
    ``train_samples`` and ``test_samples`` (use class-balanced random subsets; None: all).

    The paper's protocol (docs/mathematics.md §5): dense reference training for ``epochs_reference``
    epochs; SPR training from the same initialisation for ``epochs_spr`` epochs with ``lam``,
    ``alpha``, ``groups`` and ``M = M_scale * max |entry|`` of each block of the reference
    (``penalty="group_lasso"``: the group-lasso baseline in SPR's place, same scaling;
    ``penalty_weights="macs"``: each block weighted by its MACs per entry, see
    :func:`spr.mac_weights`);
    the threshold search (``max_drop`` percentage points of training accuracy, over
    ``threshold_samples`` training samples, bisection tolerance ``threshold_tol``); the
    structural decision (``struct_threshold``) — or, with ``budget_macs`` / ``budget_params``,
    :func:`spr.prune_to_budget` on the SPR-trained network instead of both (a fraction in
    (0, 1] of the dense network's size, or a count > 1; its layer solves within
    ``budget_seconds``); physical removal; fine-tuning without SPR for ``epochs_finetune``
    epochs. Optimiser: SGD with ``lr`` (``lr_finetune`` for fine-tuning,
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
    budget_macs: float | None = None
    budget_params: float | None = None
    budget_seconds: float = 120.0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        from spr._groups import GROUPINGS  # late: these import torch
        from spr.data import DATASETS
        from spr.models import MODELS

        hints = typing.get_type_hints(type(self))
        for f in fields(self):  # types first: a string "ten" must not reach a comparison
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        for name, allowed in _FINITE_FLOATS.items():
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number {allowed}; got {value}")
        if self.arch not in MODELS:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {sorted(MODELS)}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of "
                             f"{sorted(DATASETS)}")
        check_alpha(self.alpha)
        if self.penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}; got {self.penalty!r}")
        if self.penalty_weights not in PENALTY_WEIGHTS:
            raise ValueError(
                f"penalty_weights must be one of {PENALTY_WEIGHTS}; got {self.penalty_weights!r}"
            )
        if self.groups not in GROUPINGS:
            raise ValueError(f"groups must be one of {sorted(GROUPINGS)}; got {self.groups!r}")
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
        for name in ("M_scale", "lr", "lr_finetune", "budget_macs", "budget_params",
                     "budget_seconds"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        for name in ("epochs_reference", "epochs_spr", "epochs_finetune"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be an integer >= 0; got {getattr(self, name)}")
        for name in ("batch_size", "train_samples", "test_samples", "threshold_samples"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name} must be a positive integer; got {value}")
        if self.max_drop > 100:
            raise ValueError(f"max_drop is in percentage points and must be <= 100; got "
                             f"{self.max_drop}")
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
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError(f"a PruneConfig in JSON is an object of settings ({{\"lam\": 2.0, "
                             f"...}}); got a {type(values).__name__}")
        return cls.from_dict(values)

    @classmethod
    def read_settings(cls, path: str | Path) -> dict:
        """The settings a JSON file names (a dict, checked as a whole config with the defaults
        for the others); every error names the file."""
        path = Path(path)
        try:
            text = path.read_text()
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not a text (JSON) file ({err})") from None
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path}: not valid JSON ({json_error_detail(err, text)}); a config file is an "
                f'object of settings such as {{"arch": "resnet20", "lam": 10.0}}'
            ) from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a config file is a JSON object of settings "
                             f'({{"lam": 10.0, ...}}); got a {type(values).__name__}')
        try:
            cls.from_dict(values)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        return values

    @classmethod
    def load(cls, path: str | Path) -> PruneConfig:
        """The config a JSON file holds (settings it does not name take their defaults);
        errors name the file."""
        return cls.from_dict(cls.read_settings(path))

    def replace(self, **changes) -> PruneConfig:
        return dataclasses.replace(self, **changes)
