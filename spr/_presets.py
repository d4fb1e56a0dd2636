"""``spr prune --preset``: named starting points for a run's settings.

A preset fills in :class:`spr.PruneConfig` settings; a ``--config`` file and then explicit
options override it (``spr prune --preset quick --lam 3``). Orders of magnitude only, on a
2-core x86_64 CPU: the measured times are the README's (with the script and machine); a GPU is
far faster for the ResNets.

- ``quick``: the demo's small CNN on 12,000 Fashion-MNIST images, 5 + 5 + 2 epochs: minutes on
  a 2-core CPU, about 85% dense test accuracy, a pruned network.
- ``cpu``: ResNet-20 on all 60,000 Fashion-MNIST images (padded to 32x32), 15 + 15 + 8
  epochs: 17,822 SGD steps, a few hours on a 2-core CPU.
- ``paper``: the paper's CIFAR schedule (docs/mathematics.md §5): ResNet-20, all training images,
  300 epochs dense, 300 with SPR, 200 of fine-tuning, SGD lr 0.1, momentum 0.9, weight decay
  5e-4, batch 128, crop-and-flip augmentation; days on a CPU, meant for a GPU.

>>> sorted(PRESETS)
['cpu', 'paper', 'quick']
>>> preset_config("quick", {"lam": 3.0}).lam
3.0
"""

from __future__ import annotations

from typing import Any

from spr._config import PruneConfig

__all__ = ["PRESETS", "PRESET_HELP", "preset_config"]

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "arch": "small_cnn", "dataset": "fashion-mnist", "train_samples": 12000,
        "test_samples": None, "epochs_reference": 5, "epochs_spr": 5, "epochs_finetune": 2,
        "lam": 2.0, "alpha": 0.5, "lr": 0.05, "lr_finetune": 0.01, "batch_size": 128,
        "augment": False, "max_drop": 1.0, "threshold_samples": 2000, "threshold_tol": 1e-3,
    },
    "cpu": {
        "arch": "resnet20", "dataset": "fashion-mnist", "train_samples": None,
        "test_samples": None, "epochs_reference": 15, "epochs_spr": 15, "epochs_finetune": 8,
        "lam": 10.0, "alpha": 0.5, "lr": 0.1, "lr_finetune": 0.02, "batch_size": 128,
        "augment": True, "max_drop": 0.5, "threshold_samples": 5000, "threshold_tol": 1e-3,
    },
    "paper": {
        "arch": "resnet20", "train_samples": None, "test_samples": None,
        "epochs_reference": 300, "epochs_spr": 300, "epochs_finetune": 200, "lam": 10.0,
        "alpha": 0.5, "lr": 0.1, "lr_finetune": None, "momentum": 0.9, "weight_decay": 5e-4,
        "batch_size": 128, "augment": True, "max_drop": 0.05, "threshold_samples": 10000,
        "threshold_tol": 0.0, "struct_threshold": 0.05,
    },
}

PRESET_HELP = {
    "quick": "small CNN, 12,000 Fashion-MNIST images, 5+5+2 epochs: a few minutes on 2 CPU "
             "cores, ~85% dense accuracy, a pruned network",
    "cpu": "ResNet-20, all 60,000 Fashion-MNIST images (padded to 32x32), 15+15+8 epochs: a "
           "few hours on 2 CPU cores",
    "paper": "the paper's schedule: ResNet-20, all images, 300+300+200 epochs, SGD lr 0.1, "
             "momentum 0.9, weight decay 5e-4 (days on a CPU; for a GPU)",
}


def preset_config(name: str | None, overrides: dict[str, Any] | None = None,
                  base: PruneConfig | None = None) -> PruneConfig:
    """``base`` (default: ``PruneConfig()``) with preset ``name``'s settings, then ``overrides``."""
    if name is not None and name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    values = (base or PruneConfig()).to_dict()
    if name is not None:
        values.update(PRESETS[name])
    values.update(overrides or {})
    return PruneConfig.from_dict(values)
