"""Reference networks used by the experiments and tests."""

from spr.models._cifar_resnet import CifarResNet, resnet20, resnet56, resnet110

__all__ = ["CifarResNet", "resnet20", "resnet56", "resnet110"]
