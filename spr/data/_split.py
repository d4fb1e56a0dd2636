"""One split of an image-classification dataset (``ImageSplit``) and batches over it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from spr.data._augment import random_crop_flip

__all__ = ["BatchLoader", "ImageSplit", "pad_images"]


@dataclass(frozen=True, eq=False, repr=False)
class ImageSplit:
    """One split of an image-classification dataset, held in memory as uint8.

    Attributes:
        images: (N, C, H, W) uint8, pixel values 0..255.
        labels: (N,) int64, each in ``range(len(classes))``.
        classes: the class names, ``classes[k]`` for label ``k``.
        name: e.g. ``"fashion-mnist-train"``.

    Example:
        >>> from spr.data import digits
        >>> d = digits("train")
        >>> d
        ImageSplit(name='digits-train', n=1400, image=(1, 8, 8), classes=10)
        >>> x, y = d.to_float(pad_to=12)
        >>> x.shape, x.dtype, y.shape, y.dtype
        (torch.Size([1400, 1, 12, 12]), torch.float32, torch.Size([1400]), torch.int64)
        >>> len(d.subset(100)), d.classes[int(y[0])] == str(int(y[0]))
        (100, True)
    """

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        images, labels, classes = self.images, self.labels, self.classes
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"{self.name}: images must be a uint8 tensor (N, C, H, W); got "
                f"{getattr(images, 'dtype', type(images).__name__)} "
                f"{tuple(getattr(images, 'shape', ()))}"
            )
        if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
            raise ValueError(
                f"{self.name}: labels must be an int64 tensor (N,); got "
                f"{getattr(labels, 'dtype', type(labels).__name__)} "
                f"{tuple(getattr(labels, 'shape', ()))}"
            )
        if len(labels) != len(images):
            raise ValueError(f"{self.name}: {len(images)} images but {len(labels)} labels")
        if not classes:
            raise ValueError(f"{self.name}: classes must name at least one class")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            raise ValueError(
                f"{self.name}: labels must lie in [0, {len(classes) - 1}] for {len(classes)} "
                f"classes; got [{int(labels.min())}, {int(labels.max())}]"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (
            f"ImageSplit(name={self.name!r}, n={len(self)}, image={tuple(self.images.shape[1:])}, "
            f"classes={len(self.classes)})"
        )

    def to_float(self, pad_to: int | None = None) -> tuple[Tensor, Tensor]:
        """All images as float32 in [0, 1], optionally zero-padded, and the labels.

        Args:
            pad_to: if given, pad each image with zeros to ``pad_to x pad_to``, centred (the
                odd pixel, if any, goes to the bottom/right), e.g. 28 -> 32 for the
                CIFAR-style ResNets.

        Returns:
            ``(images, labels)``: (N, C, H, W) float32, or (N, C, pad_to, pad_to); (N,) int64
            (the split's own tensor, not a copy).
        """
        x = self.images.float().div_(255.0)
        if pad_to is not None:
            x = pad_images(x, pad_to)
        return x, self.labels

    def loader(
        self,
        batch_size: int = 128,
        shuffle: bool = True,
        pad_to: int | None = None,
        augment: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> BatchLoader:
        """Batches of ``(images, labels)``, float32 as from :meth:`to_float`.

        See :class:`BatchLoader`. ``augment`` applies a random crop with 4 pixels of zero
        padding and a random horizontal flip to each batch (after ``pad_to``).
        """
        return BatchLoader(self, batch_size, shuffle, pad_to, augment, generator, drop_last)

    def subset(self, n: int, seed: int = 0) -> ImageSplit:
        """A random, class-balanced subset of ``n`` samples, in their original order.

        The samples are drawn round-robin over the classes in a seeded random order, so
        each class gets ``n // len(classes)`` or one more (a class with fewer samples gives
        all it has and the others make up the difference).

        Args:
            n: 1 <= n <= len(self).
            seed: the same seed gives the same subset.
        """
        N = len(self)
        if not 0 < n <= N:
            raise ValueError(f"{self.name}: n must be in [1, {N}]; got {n}")
        perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed))
        lab = self.labels.cpu()[perm]
        # rank of each drawn sample within its class, in draw order
        by_class = torch.argsort(lab, stable=True)
        sorted_lab = lab[by_class]
        first = torch.searchsorted(sorted_lab, sorted_lab, side="left")
        rank = torch.empty_like(perm)
        rank[by_class] = torch.arange(N) - first
        # all rank-0 samples first (in draw order), then rank 1, ...
        pick = perm[torch.argsort(rank * N + torch.arange(N))[:n]]
        idx = torch.sort(pick).values.to(self.images.device)
        return ImageSplit(
            self.images[idx], self.labels[idx], self.classes, f"{self.name}-subset{n}"
        )


def pad_images(x: Tensor, pad_to: int) -> Tensor:
    """Zero-pad (..., H, W) to (..., pad_to, pad_to), centred; the odd pixel goes bottom/right."""
    H, W = x.shape[-2:]
    if pad_to < max(H, W):
        raise ValueError(f"pad_to must be at least the image size {H}x{W}; got {pad_to}")
    top, left = (pad_to - H) // 2, (pad_to - W) // 2
    return F.pad(x, (left, pad_to - W - left, top, pad_to - H - top))


class BatchLoader:
    """Iterable over the float batches of an :class:`ImageSplit` (what ``.loader`` returns).

    Used like a ``torch.utils.data.DataLoader`` (``for x, y in loader``, ``len(loader)``),
    but simpler and faster for in-memory data: each batch is gathered from the uint8
    tensor, converted to float32 in [0, 1], padded and augmented as a whole batch, with no
    worker processes and no collate function.

    Each pass draws a new order (``shuffle``) and new augmentations from ``generator``
    (the global RNG if None); two loaders with equally seeded generators yield the same
    batches, pass after pass.

    Yields:
        ``(images, labels)``: (B, C, H', W') float32 and (B,) int64, on the split's device;
        B = batch_size except perhaps for the last batch (dropped if ``drop_last``).
    """

    def __init__(
        self,
        split: ImageSplit,
        batch_size: int = 128,
        shuffle: bool = True,
        pad_to: int | None = None,
        augment: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if pad_to is not None:
            pad_images(split.images[:0], pad_to)  # validate now, not at the first batch
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.pad_to = pad_to
        self.augment = augment
        self.generator = generator
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        images, labels = self.split.images, self.split.labels
        n = len(labels)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(labels.device)
        else:
            order = torch.arange(n, device=labels.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = images[idx].float().div_(255.0)
            if self.pad_to is not None:
                x = pad_images(x, self.pad_to)
            if self.augment:
                x = random_crop_flip(x, padding=4, generator=self.generator)
            yield x, labels[idx]
