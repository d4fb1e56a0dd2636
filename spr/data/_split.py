"""A split of an image-classification dataset in memory; split names; DatasetNotFoundError."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from spr.data._augment import pad_images
from spr.data._loader import ImageSource

__all__ = ["DatasetNotFoundError", "ImageSplit", "check_split"]

SPLITS = ("train", "test")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files were not found; the message lists where we looked and how to get them."""


def check_split(split: str) -> str:
    """Return ``split`` if it is ``"train"`` or ``"test"``, else raise ``ValueError``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    return split


@dataclass(frozen=True, eq=False, repr=False)
class ImageSplit(ImageSource):
    """One split of an image-classification dataset in memory: ``images`` (N, C, H, W) uint8,
    ``labels`` (N,) int64 in ``range(len(classes))``, ``classes``, ``name``; an ImageSource.

    Example:
        >>> from spr.data import digits
        >>> d = digits("train")
        >>> d
        ImageSplit(name='digits-train', n=1400, image=(1, 8, 8), classes=10)
        >>> d.to_float(pad_to=12)[0].shape, len(d.subset(100))
        (torch.Size([1400, 1, 12, 12]), 100)
    """

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        images, labels, classes = self.images, self.labels, self.classes
        for what, t, dtype, ndim, want in (
            ("images", images, torch.uint8, 4, "a uint8 tensor (N, C, H, W)"),
            ("labels", labels, torch.int64, 1, "an int64 tensor (N,)"),
        ):
            if not isinstance(t, Tensor) or t.dtype != dtype or t.dim() != ndim:
                raise ValueError(f"{self.name}: {what} must be {want}; got "
                                 f"{getattr(t, 'dtype', type(t).__name__)} "
                                 f"{tuple(getattr(t, 'shape', ()))}")
        if len(labels) != len(images):
            raise ValueError(f"{self.name}: {len(images)} images but {len(labels)} labels")
        if not classes:
            raise ValueError(f"{self.name}: classes must name at least one class")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            raise ValueError(f"{self.name}: labels must lie in [0, {len(classes) - 1}] for "
                             f"{len(classes)} classes; got [{int(labels.min())}, "
                             f"{int(labels.max())}]")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"ImageSplit(name={self.name!r}, n={len(self)}, image={self.sample_shape}, "
                f"classes={len(self.classes)})")

    def to_float(self, pad_to: int | None = None) -> tuple[Tensor, Tensor]:
        """All images as (N, C, H, W) float32 in [0, 1] (with ``pad_to``, zero-padded, centred,
        to (N, C, pad_to, pad_to); the odd pixel goes bottom/right) and the labels (not a copy)."""
        x = self.images.float().div_(255.0)
        if pad_to is not None:
            x = pad_images(x, pad_to)
        return x, self.labels

    @property
    def sample_shape(self) -> tuple[int, ...]:  # (C, H, W)
        return tuple(self.images.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def gather(self, idx: Tensor) -> Tensor:
        """The images ``idx`` ((B,) int64), (B, C, H, W) uint8 on the split's device."""
        return self.images[idx]

    def subset(self, n: int, seed: int = 0) -> ImageSplit:
        """A random, class-balanced subset of ``n`` (1 <= n <= N) samples, in their order.

        Drawn round-robin over the classes in a ``seed``-ed random order: each class gives
        ``n // len(classes)`` or one more (a small class all it has, the others the rest)."""
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
        return ImageSplit(self.images[idx], self.labels[idx], self.classes,
                          f"{self.name}-subset{n}")

