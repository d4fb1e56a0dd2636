"""Batch augmentation: random crop with zero padding and horizontal flip, vectorised.

The standard CIFAR training augmentation (``RandomCrop(size, padding=4)`` then
``RandomHorizontalFlip()``), done for a whole batch with one gather instead of per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["crop_flip", "random_crop_flip"]


def crop_flip(images: Tensor, shifts: Tensor, flips: Tensor, padding: int = 4) -> Tensor:
    """Shift each image by ``shifts[i]`` pixels (zero fill), then mirror it where ``flips[i]``.

    ``out[i, :, h, w] = images[i, :, h + dy, w + dx]`` (zero outside the image) with
    ``(dy, dx) = shifts[i]``, then ``out[i]`` is mirrored left-right where ``flips[i]``: the
    crop of the zero-padded image at offset ``(padding + dy, padding + dx)``.

    Args:
        images: (B, C, H, W).
        shifts: (B, 2) integer (dy, dx), each in [-padding, padding].
        flips: (B,) bool.
        padding: the zero padding of the crop.

    Returns:
        (B, C, H, W), same dtype and device as ``images``.

    Example:
        >>> x = torch.arange(4.0).reshape(1, 1, 1, 4)
        >>> crop_flip(x, torch.tensor([[0, 1]]), torch.tensor([True]), padding=1)
        tensor([[[[0., 3., 2., 1.]]]])
    """
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W); got {tuple(images.shape)}")
    B, C, H, W = images.shape
    if shifts.shape != (B, 2) or flips.shape != (B,):
        raise ValueError(
            f"shifts must be ({B}, 2) and flips ({B},); got {tuple(shifts.shape)} and "
            f"{tuple(flips.shape)}"
        )
    if B > 0 and int(shifts.abs().max()) > padding:
        raise ValueError(f"shifts must lie in [-{padding}, {padding}]; got {shifts.tolist()}")
    dev = images.device
    shifts, flips = shifts.to(dev, torch.long), flips.to(dev, torch.bool)
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = (padding + shifts[:, :1]) + torch.arange(H, device=dev)  # (B, H)
    cols = (padding + shifts[:, 1:]) + torch.arange(W, device=dev)  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    b = torch.arange(B, device=dev)[:, None, None, None]
    c = torch.arange(C, device=dev)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


def random_crop_flip(
    images: Tensor, padding: int = 4, generator: torch.Generator | None = None
) -> Tensor:
    """Random crop with ``padding`` zero pixels each side, then a random horizontal flip.

    Each image gets its own shift, uniform in [-padding, padding] per axis, and is flipped
    with probability 1/2; the draws come from ``generator`` (a CPU generator; the global
    RNG if None), so a seeded generator makes the result reproducible.

    Args:
        images: (B, C, H, W), any dtype and device.
        padding: the zero padding of the crop (4 for CIFAR).
        generator: source of the random draws.

    Returns:
        (B, C, H, W), same dtype and device as ``images``.

    Example:
        >>> x = torch.rand(8, 3, 32, 32)
        >>> y1 = random_crop_flip(x, generator=torch.Generator().manual_seed(0))
        >>> y2 = random_crop_flip(x, generator=torch.Generator().manual_seed(0))
        >>> y1.shape, torch.equal(y1, y2)
        (torch.Size([8, 3, 32, 32]), True)
    """
    B = images.shape[0]
    shifts = torch.randint(-padding, padding + 1, (B, 2), generator=generator)
    flips = torch.randint(0, 2, (B,), generator=generator).bool()
    return crop_flip(images, shifts, flips, padding)
