"""Names ``spr.data`` had before its one loader, kept for one release; each forwards.

``spr.data.<name>`` warns (``DeprecationWarning``) when accessed: see ``spr/data/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from spr.data._augment import Augment, _crop_flip, draw_crop_flip
from spr.data._loader import ImageLoader, ImageSource


def _old_loader(name: str, after_augment: tuple[str, ...]) -> Callable[..., ImageLoader]:
    """The old loader class ``name``: ``ImageLoader`` with its parameters after ``augment``
    (``after_augment``, in order) also taken positionally."""

    def old(source: ImageSource, batch_size: int = 128, shuffle: bool = True,
            pad_to: int | None = None, augment: bool = False, *args: Any,
            **options: Any) -> ImageLoader:
        if len(args) > len(after_augment):
            raise TypeError(f"{name} takes at most {5 + len(after_augment)} positional arguments")
        named = after_augment[: len(args)]
        if set(named) & set(options):
            raise TypeError(f"{name} got multiple values for {sorted(set(named) & set(options))}")
        options.update(zip(named, args, strict=True))
        return ImageLoader(source, batch_size, shuffle, pad_to, augment, **options)

    old.__name__ = old.__qualname__ = name
    old.__doc__ = f"``ImageLoader``, the positional order of old ``{name}``: ``(source, " \
        f"batch_size, shuffle, pad_to, augment, {', '.join(after_augment)})``."
    return old


BatchLoader = _old_loader("BatchLoader", ("generator", "drop_last"))
ShardLoader = _old_loader("ShardLoader", ("normalize", "device", "generator", "drop_last",
                                          "workers", "worker_type", "augment_on", "prefetch",
                                          "indices"))


def DeviceAugment(pad_to: int | None = None, crop: bool = True, flip: bool = True,  # noqa: N802
                  padding: int = 4, mean: Any = None, std: Any = None,
                  backend: str = "torch") -> Augment:
    """``Augment(pad_to, crop, flip, padding, mean, std)``; ``backend="torch"`` only."""
    if backend == "dali":
        raise ImportError("backend='dali' is gone: NVIDIA DALI is no longer supported")
    if backend != "torch":
        raise ValueError(f"backend must be 'torch'; got {backend!r}")
    return Augment(pad_to, crop, flip, padding, mean, std)


def crop_flip(images: Tensor, shifts: Tensor, flips: Tensor, padding: int = 4) -> Tensor:
    """Shift each image by ``shifts[i]`` (zero fill), mirror it where ``flips[i]``; any dtype
    (``augment_batch(images, shifts, flips, padding=padding)`` for float32 images)."""
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W); got {tuple(images.shape)}")
    return _crop_flip(images, shifts, flips, padding, None)


def random_crop_flip(images: Tensor, padding: int = 4,
                     generator: torch.Generator | None = None) -> Tensor:
    """Random crop with ``padding`` zero pixels each side, then a random horizontal flip
    (``Augment(padding=padding)(images, generator)`` for float32 images on the CPU)."""
    shifts, flips = draw_crop_flip(images.shape[0], padding, generator)
    return crop_flip(images, shifts, flips, padding)


# old name -> (its replacement, as the warning names it; the forwarding object)
DEPRECATED: dict[str, tuple[str, Any]] = {
    "BatchLoader": ("ImageLoader (what ImageSplit.loader returns)", BatchLoader),
    "ShardLoader": ("ImageLoader (what ShardedDataset.loader returns)", ShardLoader),
    "DeviceAugment": ("Augment", DeviceAugment),
    "crop_flip": ("augment_batch", crop_flip),
    "random_crop_flip": ("Augment(...)(images, generator)", random_crop_flip),
}
