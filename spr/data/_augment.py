"""The batch augmentation: pad, random crop, horizontal flip and normalise, where the batch lives.

torchvision's ``Pad(centred to S) -> RandomCrop(S, padding=p) -> RandomHorizontalFlip() ->
ToTensor() -> Normalize(mean, std)`` for a (B, C, H, W) batch, in one pad and one gather: with
``P_i`` image ``i`` zero-padded to S x S, centred, and by ``p`` more,

    out[i, c, h, w] = (P_i[c, p + dy_i + h, p + dx_i + w'] / 255 - mean[c]) / std[c],
    w' = S - 1 - w if flip_i else w,   (dy_i, dx_i) in [-p, p]^2,

bit for bit :func:`augment_reference`'s per-image result (the tests check it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Augment", "augment_batch", "augment_reference", "draw_crop_flip", "pad_images"]

Stats = float | Sequence[float] | None


def pad_images(x: Tensor, pad_to: int) -> Tensor:
    """Zero-pad (..., H, W) to (..., pad_to, pad_to), centred; the odd pixel goes bottom/right."""
    H, W = x.shape[-2:]
    if pad_to < max(H, W):
        raise ValueError(f"pad_to must be at least the image size {H}x{W}; got {pad_to}")
    top, left = (pad_to - H) // 2, (pad_to - W) // 2
    return F.pad(x, (left, pad_to - W - left, top, pad_to - H - top))


def draw_crop_flip(batch: int, padding: int = 4, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """:func:`augment_batch`'s random parameters: (B, 2) int64 shifts uniform in [-padding,
    padding], then (B,) bool flips with probability 1/2, from ``generator`` on its device (or
    the global RNG on ``device``, the CPU by default). ``RandomCrop``'s offset = padding + shift.
    """
    if batch < 0 or padding < 0:
        raise ValueError(f"batch and padding must be >= 0; got {batch} and {padding}")
    dev = generator.device if generator is not None else torch.device(device or "cpu")
    shifts = torch.randint(-padding, padding + 1, (batch, 2), generator=generator, device=dev)
    flips = torch.randint(0, 2, (batch,), generator=generator, device=dev).bool()
    return shifts, flips


def _stats(mean: Stats, std: Stats) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise ValueError("give both mean and std (per channel), or neither")
    m = (float(mean),) if isinstance(mean, int | float) else tuple(float(v) for v in mean)
    s = (float(std),) if isinstance(std, int | float) else tuple(float(v) for v in std)
    if not m or len(m) != len(s):
        raise ValueError(f"mean and std need one value per channel each; got {m} and {s}")
    if not all(v > 0 for v in s):
        raise ValueError(f"std must be > 0 for every channel; got {s}")
    return m, s


@functools.lru_cache(maxsize=64)  # made once: a copy to a GPU per batch would block
def _stat_tensor(values: tuple[float, ...], device: torch.device) -> Tensor:
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1).to(device)


def _to_float(x: Tensor, stats: tuple | None) -> Tensor:
    if x.dtype == torch.uint8:
        # ToTensor's x / 255, exactly: by a tensor, as CUDA turns division by a Python
        # scalar into multiplication by its reciprocal (off by an ulp for some values)
        x = x.float().div_(_stat_tensor((255.0,), x.device))
    else:
        x = x.float() if x.dtype != torch.float32 else x.clone()
    if stats is not None:  # Normalize's arithmetic, exactly
        x = x.sub_(_stat_tensor(stats[0], x.device)).div_(_stat_tensor(stats[1], x.device))
    return x


def _crop_flip(images: Tensor, shifts: Tensor | None, flips: Tensor | None, padding: int,
               size: int | None) -> Tensor:
    """Pad (centred, to ``size``, and by ``padding``), crop at the shifts, mirror: any dtype.
    Shifts on a GPU are not range-checked, as that would synchronise."""
    B, C, H, W = images.shape
    S_h, S_w = (H, W) if size is None else (size, size)
    if padding < 0:
        raise ValueError(f"padding must be >= 0; got {padding}")
    shifts = torch.zeros(B, 2, dtype=torch.long) if shifts is None else shifts
    flips = torch.zeros(B, dtype=torch.bool) if flips is None else flips
    if shifts.shape != (B, 2) or flips.shape != (B,):
        raise ValueError(f"shifts must be ({B}, 2) and flips ({B},); got {tuple(shifts.shape)} "
                         f"and {tuple(flips.shape)}")
    if shifts.device.type == "cpu" and B > 0 and int(shifts.abs().max()) > padding:
        raise ValueError(f"shifts must lie in [-{padding}, {padding}]; got {shifts.tolist()}")
    top, left, p, dev = (S_h - H) // 2, (S_w - W) // 2, padding, images.device
    padded = F.pad(images, (left + p, S_w - W - left + p, top + p, S_h - H - top + p))
    shifts = shifts.to(dev, torch.long, non_blocking=True)
    flips = flips.to(dev, torch.bool, non_blocking=True)
    rows = (p + shifts[:, :1]) + torch.arange(S_h, device=dev)  # (B, S_h)
    cols = (p + shifts[:, 1:]) + torch.arange(S_w, device=dev)  # (B, S_w)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    b = torch.arange(B, device=dev)[:, None, None, None]
    c = torch.arange(C, device=dev)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


def augment_batch(images: Tensor, shifts: Tensor | None = None, flips: Tensor | None = None, *,
                  padding: int = 4, pad_to: int | None = None, mean: Stats = None,
                  std: Stats = None) -> Tensor:
    """Pad, crop, flip and normalise a (B, C, H, W) uint8 (or 0..1 float) batch on its device,
    with ``shifts``, ``flips`` from :func:`draw_crop_flip` (None: no crop / no flip) and
    ``mean``, ``std`` C values (or one for all; or None): (B, C, S, S) float32, S = ``pad_to``.

    Example (shifted left by one with zero fill, then mirrored):
        >>> x = torch.tensor([[[[10, 20, 30]]]], dtype=torch.uint8)  # (1, 1, 1, 3)
        >>> augment_batch(x, torch.tensor([[0, 1]]), torch.tensor([True]), padding=1) * 255
        tensor([[[[ 0., 30., 20.]]]])
    """
    stats = _stats(mean, std)
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a (B, C, H, W) tensor; got "
                         f"{tuple(getattr(images, 'shape', ()))}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"images must be uint8 (0..255) or float (0..1); got {images.dtype}")
    if stats is not None and len(stats[0]) not in (1, images.shape[1]):
        raise ValueError(f"mean/std have {len(stats[0])} values for images of "
                         f"{images.shape[1]} channels")
    if shifts is None and flips is None:
        return _to_float(images if pad_to is None else pad_images(images, pad_to), stats)
    H, W = images.shape[-2:]
    if pad_to is not None and pad_to < max(H, W):
        raise ValueError(f"pad_to must be at least the image size {H}x{W}; got {pad_to}")
    return _to_float(_crop_flip(images, shifts, flips, padding, pad_to), stats)


def augment_reference(image: Tensor, top: int | None = None, left: int | None = None,
                      flip: bool = False, *, padding: int = 4, pad_to: int | None = None,
                      mean: Stats = None, std: Stats = None) -> Tensor:
    """:func:`augment_batch` for one (C, H, W) uint8 image by torchvision's ops: ``pad`` to
    ``pad_to``, ``pad`` by ``padding``, ``crop`` at ``(top, left)`` = padding + shift (None: no
    crop), ``horizontal_flip``, ``float() / 255``, ``normalize``.

    Example:
        >>> x = torch.tensor([[[10, 20, 30]]], dtype=torch.uint8)
        >>> augment_reference(x, 1, 2, True, padding=1).mul(255).round()
        tensor([[[ 0., 30., 20.]]])
    """
    from torchvision.transforms.v2 import functional as TF

    if image.dim() != 3 or image.dtype != torch.uint8:
        raise ValueError(f"image must be uint8 (C, H, W); got {image.dtype} {tuple(image.shape)}")
    if (top is None) != (left is None):
        raise ValueError("give both top and left, or neither")
    C, H, W = image.shape
    x = image
    if pad_to is not None:
        top0, left0 = (pad_to - H) // 2, (pad_to - W) // 2
        x = TF.pad(x, [left0, top0, pad_to - W - left0, pad_to - H - top0], fill=0)
    if top is not None and left is not None:
        h, w = x.shape[-2:]
        x = TF.crop(TF.pad(x, [padding] * 4, fill=0), top, left, h, w)
    if flip:
        x = TF.horizontal_flip(x)
    x = x.float().div(255.0)  # ToTensor
    stats = _stats(mean, std)
    if stats is not None:
        m, s = stats
        x = TF.normalize(x, list(m) * (C // len(m)), list(s) * (C // len(s)))
    return x


@dataclass(frozen=True)
class Augment:
    """A loader's transform: zero padding to ``pad_to`` (centred), random ``crop`` (``padding``
    zero pixels each side), random ``flip``, normalisation by ``mean``, ``std`` (0..1 units).
    A call is :meth:`draw` (a loader's, on the CPU in batch order) then :meth:`apply`.

    Example:
        >>> x = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
        >>> Augment(pad_to=32, mean=0.286, std=0.353)(x, torch.Generator().manual_seed(0)).shape
        torch.Size([8, 1, 32, 32])
    """

    pad_to: int | None = None
    crop: bool = True
    flip: bool = True
    padding: int = 4
    mean: Stats = None
    std: Stats = None

    def __post_init__(self) -> None:
        stats = _stats(self.mean, self.std)
        if stats is not None:
            object.__setattr__(self, "mean", stats[0])
            object.__setattr__(self, "std", stats[1])
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0; got {self.padding}")
        if self.pad_to is not None and self.pad_to < 1:
            raise ValueError(f"pad_to must be >= 1; got {self.pad_to}")

    @property
    def random(self) -> bool:
        """Whether the transform draws random parameters (crop or flip)."""
        return self.crop or self.flip

    def draw(self, batch: int, generator: torch.Generator | None = None,
             device: str | None = None) -> tuple[Tensor, Tensor] | None:
        """``(shifts, flips)`` for ``batch`` images, or None if neither crop nor flip: always
        both drawn (:func:`draw_crop_flip`: the same stream), the unused one zeroed."""
        if not self.random:
            return None
        shifts, flips = draw_crop_flip(batch, self.padding, generator, device)
        if not self.crop:
            shifts = torch.zeros_like(shifts)
        if not self.flip:
            flips = torch.zeros_like(flips)
        return shifts, flips

    def apply(self, images: Tensor, params: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """The transform of ``images`` (B, C, H, W) with fixed ``params`` from :meth:`draw`."""
        shifts, flips = params if params is not None else (None, None)
        return augment_batch(images, shifts, flips, padding=self.padding, pad_to=self.pad_to,
                             mean=self.mean, std=self.std)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw parameters from ``generator`` (on its device; the global RNG if None), apply."""
        dev = None if generator is not None else images.device.type
        return self.apply(images, self.draw(images.shape[0], generator, dev))
