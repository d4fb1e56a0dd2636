"""scikit-learn's 8x8 handwritten digits (1797 images, shipped with scikit-learn)."""

from __future__ import annotations

import numpy as np
import torch

from spr.data._split import ImageSplit, check_split

__all__ = ["digits"]

DIGITS_CLASSES = tuple(str(k) for k in range(10))


def digits(split: str = "train", train_size: int = 1400, seed: int = 0) -> ImageSplit:
    """The 1797 8x8 digits of ``sklearn.datasets.load_digits``: ``train_size`` of them, drawn by
    ``numpy.random.default_rng(seed).permutation``, are ``"train"``, the rest ``"test"``.
    Images (N, 1, 8, 8) uint8 (the 0..16 values * 255 // 16), classes ``"0"``..``"9"``.

    Example:
        >>> len(digits("train")), len(digits("test")), int(digits("test").images.max())
        (1400, 397, 255)
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
    return ImageSplit(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(targets[idx]),
                      DIGITS_CLASSES, f"digits-{split}")
