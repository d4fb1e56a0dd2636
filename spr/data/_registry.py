"""Datasets by name: the ``DATASETS`` registry and ``load``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from spr.data._cifar import cifar
from spr.data._digits import digits
from spr.data._errors import DatasetNotFoundError
from spr.data._fashion_mnist import fashion_mnist
from spr.data._split import ImageSplit

__all__ = ["DATASETS", "load"]

Root = str | os.PathLike[str] | None


def _fashion_mnist(split: str, root: Root, **kw: Any) -> ImageSplit:
    return fashion_mnist(split, root=root, **kw)


def _digits(split: str, root: Root, **kw: Any) -> ImageSplit:
    return digits(split, **kw)  # ships with scikit-learn: root is not used


def _cifar(classes: int) -> Callable[..., ImageSplit]:
    def load_cifar(split: str, root: Root, **kw: Any) -> ImageSplit:
        if root is None:
            raise DatasetNotFoundError(
                f"cifar{classes} needs root=: CIFAR cannot be downloaded here (no network); "
                f"pass root= the folder holding your local copy (torchvision's layout)"
            )
        return cifar(root, split, classes=classes, **kw)

    return load_cifar


# name -> loader(split, root, **kw); register more with DATASETS["name"] = fn
DATASETS: dict[str, Callable[..., ImageSplit]] = {
    "fashion-mnist": _fashion_mnist,
    "digits": _digits,
    "cifar10": _cifar(10),
    "cifar100": _cifar(100),
}


def load(
    name: str, split: str = "train", root: str | os.PathLike[str] | None = None, **kw: Any
) -> ImageSplit:
    """Load a dataset split by name, one of ``DATASETS``.

    Args:
        name: ``"fashion-mnist"``, ``"digits"``, ``"cifar10"`` or ``"cifar100"``.
        split: ``"train"`` or ``"test"``.
        root: where the files are (ignored by ``"digits"``; required by the CIFARs).
        **kw: passed on, e.g. ``train_size=``/``seed=`` for ``"digits"``.

    Returns:
        An :class:`ImageSplit`, as from :func:`fashion_mnist`, :func:`digits` or :func:`cifar`.

    Raises:
        ValueError: for an unknown name, listing the known ones.

    Example:
        >>> load("digits", "test", seed=1)
        ImageSplit(name='digits-test', n=397, image=(1, 8, 8), classes=10)
    """
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}"
        ) from None
    return loader(split, root, **kw)
