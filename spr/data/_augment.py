"""Batch augmentation: random crop with zero padding and horizontal flip, vectorised.

The standard CIFAR training augmentation (``RandomCrop(size, padding=4)`` then
``RandomHorizontalFlip()``), done for a whole batch with one gather instead of per image, on
whatever device the batch is on. The random parameters are drawn separately
(:func:`draw_crop_flip`) from the gather (:func:`crop_flip`), so a test can fix them and a
loader can draw them where it likes (see :mod:`spr.data._device_augment` for the full
pad/crop/flip/normalise transform).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["crop_flip", "draw_crop_flip", "random_crop_flip"]


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
    return _crop_flip(images, shifts, flips, padding)


def _crop_flip(images: Tensor, shifts: Tensor, flips: Tensor, padding: int) -> Tensor:
    """:func:`crop_flip` without its checks (which would synchronise a GPU on device shifts)."""
    H, W = images.shape[-2:]
    padded = F.pad(images, (padding, padding, padding, padding))
    return _crop_padded(padded, shifts, flips, padding, H, W)


def _crop_padded(
    padded: Tensor, shifts: Tensor, flips: Tensor, padding: int, H: int, W: int
) -> Tensor:
    """The (H, W) crops of ``padded`` at ``(padding + dy, padding + dx)``, mirrored where
    ``flips``: one gather for the whole batch."""
    B, C = padded.shape[:2]
    dev = padded.device
    shifts = shifts.to(dev, torch.long, non_blocking=True)
    flips = flips.to(dev, torch.bool, non_blocking=True)
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
    shifts, flips = draw_crop_flip(images.shape[0], padding, generator)
    return crop_flip(images, shifts, flips, padding)


def draw_crop_flip(
    batch: int,
    padding: int = 4,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw the random parameters of :func:`crop_flip` for ``batch`` images.

    Shifts are uniform in [-padding, padding] per axis (the crop offset of
    ``RandomCrop(padding=padding)`` is ``padding + shift``), flips have probability 1/2.
    The shifts are drawn first, then the flips, from ``generator``: on the generator's
    device when one is given (a CUDA generator draws on the GPU, with no host transfer),
    else from the global RNG on ``device`` (the CPU by default).

    Args:
        batch: the number of images B.
        padding: the crop padding, >= 0.
        generator: source of the draws, or None for the global RNG.
        device: where to draw when ``generator`` is None.

    Returns:
        ``(shifts, flips)``: (B, 2) int64 (dy, dx) and (B,) bool.

    Example:
        >>> s, f = draw_crop_flip(5, padding=2, generator=torch.Generator().manual_seed(0))
        >>> s.shape, f.shape, bool(s.abs().max() <= 2)
        (torch.Size([5, 2]), torch.Size([5]), True)
    """
    if batch < 0 or padding < 0:
        raise ValueError(f"batch and padding must be >= 0; got {batch} and {padding}")
    dev = generator.device if generator is not None else torch.device(device or "cpu")
    shifts = torch.randint(-padding, padding + 1, (batch, 2), generator=generator, device=dev)
    flips = torch.randint(0, 2, (batch,), generator=generator, device=dev).bool()
    return shifts, flips
