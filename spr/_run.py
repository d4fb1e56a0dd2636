"""One pruning run's pieces: its device, data, network constructor and loaders (``_Run``), and
the error a run raises when it cannot continue as asked."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import spr.data as spr_data
import spr.models as models
from spr._config import PruneConfig
from spr._serialize import load_pruned
from spr._training import evaluate

__all__ = ["REFERENCE_FIELDS", "STAGES", "PipelineError", "resolve_device"]

STAGES = ("reference", "spr", "prune", "finetune", "done")


class PipelineError(RuntimeError):
    """The run cannot continue as asked (another run's folder, a damaged checkpoint)."""


def resolve_device(name: str) -> torch.device:
    """The device ``name`` means here (``auto``: cuda if available, else cpu), or ValueError
    naming the setting when this machine does not have it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    fix = 'use --device cpu, or --device auto (cuda where a GPU is available, else cpu)'
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = (f"CUDA {torch.version.cuda} build" if torch.version.cuda
                     else "a CPU-only build")
            raise ValueError(f"device {name!r} is not available: torch {torch.__version__} "
                             f"({build}) sees no CUDA GPU on this machine; {fix}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {name!r} is not available: this machine has {count} CUDA "
                             f"device(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device {name!r} is not available (no Apple GPU); {fix}")
    elif device.type != "cpu":
        try:
            torch.empty(1, device=device)
        except (RuntimeError, AssertionError) as err:
            raise ValueError(f"device {name!r} is not available ({err}); {fix}") from None
    return device


REFERENCE_FIELDS = (
    "arch", "dataset", "data_root", "train_samples", "epochs_reference", "batch_size", "lr",
    "momentum", "weight_decay", "augment", "seed",
)


class _Run:
    """The data, the network constructor and the loaders of one run."""

    def __init__(self, config: PruneConfig, progress: bool) -> None:
        self.config, self.progress = config, progress
        self.device = resolve_device(config.device)  # before the data: refused at once
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
        self.input = {  # what the model sees: to evaluate it later as the run did
            "image_size": list(train.images.shape[-2:]), "channels": self.in_channels,
            "pad_to": self.pad_to, "model_input_size": [height, width],
            "padding": ("zeros, centred (spr.data.pad_images; split.loader(..., pad_to="
                        f"{self.pad_to}))" if self.pad_to else "none"),
            "scale": "pixel / 255 in [0, 1], no normalisation",
        }
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
