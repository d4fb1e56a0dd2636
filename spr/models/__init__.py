"""Reference networks used by the experiments, the ``spr`` command and the tests.

``MODELS`` maps a name to a constructor ``make(num_classes, in_channels)``; the CIFAR-style
ResNets expect 32x32 inputs (pad 28x28 images), ``small_cnn`` takes any size >= 2x2.
"""

from collections.abc import Callable

from torch import nn

from spr.models._cifar_resnet import CifarResNet, PadShortcut, resnet20, resnet56, resnet110
from spr.models._small_cnn import small_cnn

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "small_cnn": small_cnn,
}
INPUT_SIZE: dict[str, int | None] = {
    "resnet20": 32, "resnet56": 32, "resnet110": 32, "small_cnn": None
}


def build(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """The network called ``name`` in :data:`MODELS`."""
    if name not in MODELS:
        raise ValueError(f"unknown architecture {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](num_classes=num_classes, in_channels=in_channels)


__all__ = [
    "INPUT_SIZE",
    "MODELS",
    "CifarResNet",
    "PadShortcut",
    "build",
    "resnet20",
    "resnet56",
    "resnet110",
    "small_cnn",
]
