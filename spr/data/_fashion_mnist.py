"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from its IDX files, found on this machine.

Nothing is downloaded and nothing is cached: each call reads the (gzipped) IDX files from
the first of these folders that has them:

1. ``root`` and ``root/FashionMNIST/raw`` (torchvision's layout), if ``root`` is given;
2. ``$SPR_DATA/fashion-mnist``, if the environment variable ``SPR_DATA`` is set;
3. ``data/fashion-mnist`` in the repository (where ``make data`` puts it);
4. ``/usr/share/datasets/fashion-mnist`` (the Debian package ``dataset-fashion-mnist``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from spr.data._errors import DatasetNotFoundError, check_split
from spr.data._idx import read_idx
from spr.data._split import ImageSplit

__all__ = ["FASHION_MNIST_CLASSES", "fashion_mnist"]

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def _project_dir() -> Path:
    import spr

    return Path(spr.__file__).resolve().parents[1] / "data" / "fashion-mnist"


def _search_dirs(root: str | os.PathLike[str] | None) -> list[tuple[Path | None, str]]:
    """The folders to search, in order, each with how it was chosen (a None folder: unset)."""
    dirs: list[tuple[Path | None, str]] = []
    if root is not None:  # the caller said where: look nowhere else
        r = Path(root).expanduser()
        return [(r, "root="), (r / "FashionMNIST" / "raw", "root=, torchvision layout")]
    env = os.environ.get("SPR_DATA")
    dirs.append((Path(env).expanduser() / "fashion-mnist" if env else None, "$SPR_DATA"))
    dirs.append((_project_dir(), "the repository's data folder, filled by `make data`"))
    dirs.append((_SYSTEM_DIR, "Debian package dataset-fashion-mnist"))
    return dirs


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):  # the un-gzipped file, if there, reads faster
        if (directory / name).is_file():
            return directory / name
    return None


def fashion_mnist(split: str = "train", root: str | os.PathLike[str] | None = None) -> ImageSplit:
    """Fashion-MNIST's training (60000) or test (10000) split, read from local IDX files.

    Looks in ``root`` and ``root/FashionMNIST/raw`` when ``root`` is given (and nowhere
    else); otherwise in ``$SPR_DATA/fashion-mnist``, the repository's ``data/fashion-mnist``
    and ``/usr/share/datasets/fashion-mnist``, in that order, for
    ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``, gzipped (``.gz``) or not.

    Args:
        split: ``"train"`` or ``"test"``.
        root: a folder holding the files, or a torchvision root (holding FashionMNIST/raw/).

    Returns:
        An :class:`ImageSplit`: images (N, 1, 28, 28) uint8, labels (N,) int64 in 0..9,
        classes :data:`FASHION_MNIST_CLASSES`, name ``"fashion-mnist-{split}"``.

    Raises:
        DatasetNotFoundError: if no folder has the split's two files; the message lists the
            folders searched and how to get the data (``make data``).
        ValueError: if a file is corrupt or truncated, or images and labels do not match.

    Example (not run as a doctest: it needs the files)::

        train = fashion_mnist("train")
        train.images.shape                   # torch.Size([60000, 1, 28, 28])
        train.classes[int(train.labels[0])]  # 'Ankle boot'
    """
    check_split(split)
    stems = _FILES[split]
    searched = []
    for directory, why in _search_dirs(root):
        if directory is None:
            searched.append(f"  $SPR_DATA/fashion-mnist ({why} is not set)")
            continue
        found = [_find(directory, stem) for stem in stems]
        if found[0] is not None and found[1] is not None:
            return _read(found[0], found[1], split)
        searched.append(f"  {directory} ({why})")
    raise DatasetNotFoundError(
        f"Fashion-MNIST ({split} split) not found: looked for {stems[0]}[.gz] and "
        f"{stems[1]}[.gz] in\n" + "\n".join(searched) + "\n"
        "To get it: run `make data` in the repository (installs it into data/fashion-mnist/), "
        "or `apt-get install dataset-fashion-mnist`, or pass root= a folder holding the files "
        "or a torchvision root (holding FashionMNIST/raw/)."
    )


def _read(images_path: Path, labels_path: Path, split: str) -> ImageSplit:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"{images_path}: expected uint8 images (N, H, W); got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{labels_path}: expected uint8 labels (N,); got {labels.dtype} {labels.shape}"
        )
    if len(labels) != len(images):
        raise ValueError(
            f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels"
        )
    if len(labels) and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{labels_path}: label {labels.max()} out of range 0..9")
    return ImageSplit(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        classes=FASHION_MNIST_CLASSES,
        name=f"fashion-mnist-{split}",
    )
