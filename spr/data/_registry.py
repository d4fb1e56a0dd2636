"""Datasets by name: the ``DATASETS`` registry and ``load``."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from spr.data._cifar import cifar
from spr.data._digits import digits
from spr.data._fashion_mnist import fashion_mnist
from spr.data._split import DatasetNotFoundError, ImageSplit

__all__ = ["DATASETS", "load"]

Root = str | os.PathLike[str] | None


def _cifar(classes: int, split: str, root: Root, **kw: Any) -> ImageSplit:
    if root is None:
        raise DatasetNotFoundError(f"cifar{classes} needs root=: CIFAR cannot be downloaded here "
                                   "(no network); pass root= the folder holding your local copy "
                                   "(torchvision's layout)")
    return cifar(root, split, classes=classes, **kw)


# name -> loader(split, root, **kw); register more with DATASETS["name"] = fn
DATASETS: dict[str, Callable[..., ImageSplit]] = {
    "fashion-mnist": lambda split, root, **kw: fashion_mnist(split, root=root, **kw),
    "digits": lambda split, root, **kw: digits(split, **kw),  # root is not used
    "cifar10": functools.partial(_cifar, 10),
    "cifar100": functools.partial(_cifar, 100),
}


def load(name: str, split: str = "train", root: Root = None, **kw: Any) -> ImageSplit:
    """Split ``"train"`` or ``"test"`` of a dataset of ``DATASETS``; ``root``: where its files
    are (ignored by ``"digits"``), ``kw``: for its loader (e.g. ``seed=`` for ``"digits"``).

    Example:
        >>> load("digits", "test", seed=1)
        ImageSplit(name='digits-test', n=397, image=(1, 8, 8), classes=10)
    """
    try:
        loader = DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise ValueError(f"unknown dataset {name!r}; known: {known}") from None
    return loader(split, root, **kw)
