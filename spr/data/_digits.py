"""scikit-learn's 8x8 handwritten digits (1797 images, shipped with scikit-learn)."""

from __future__ import annotations

import numpy as np
import torch

from spr.data._errors import check_split
from spr.data._split import ImageSplit

__all__ = ["digits"]

DIGITS_CLASSES = tuple(str(k) for k in range(10))


def digits(split: str = "train", train_size: int = 1400, seed: int = 0) -> ImageSplit:
    """The 8x8 digits of ``sklearn.datasets.load_digits``, split by a seeded permutation.

    The 1797 images are shuffled by ``numpy.random.default_rng(seed).permutation``; the
    first ``train_size`` form the training split and the rest the test split, so the two
    are disjoint and the same for the same ``(train_size, seed)``. No files are needed.

    Args:
        split: ``"train"`` or ``"test"``.
        train_size: 1 <= train_size < 1797.
        seed: seed of the permutation.

    Returns:
        An :class:`ImageSplit`: images (N, 1, 8, 8) uint8 (the 0..16 values scaled by
        ``v * 255 // 16``), labels (N,) int64 in 0..9, classes ``"0"``..``"9"``, name
        ``"digits-{split}"``; N = train_size for ``"train"``, 1797 - train_size for ``"test"``.

    Example:
        >>> train, test = digits("train"), digits("test")
        >>> len(train), len(test), train.images.shape[1:], int(train.images.max())
        (1400, 397, torch.Size([1, 8, 8]), 255)
    """
    from sklearn.datasets import load_digits  # imported here: importing sklearn is slow

    check_split(split)
    bunch = load_digits()
    values = bunch.images.astype(np.int64)  # (1797, 8, 8), integers 0..16
    targets = bunch.target.astype(np.int64)
    n = len(values)
    if not 0 < train_size < n:
        raise ValueError(f"train_size must be in [1, {n - 1}]; got {train_size}")
    perm = np.random.default_rng(seed).permutation(n)
    idx = perm[:train_size] if split == "train" else perm[train_size:]
    images = (values[idx] * 255 // 16).astype(np.uint8)
    return ImageSplit(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(targets[idx]),
        classes=DIGITS_CLASSES,
        name=f"digits-{split}",
    )
