"""The training transform of a whole uint8 batch, on the batch's device: pad, crop, flip, normalise.

What torchvision does per image on the CPU,

    Pad(centred to pad_to) -> RandomCrop(pad_to, padding) -> RandomHorizontalFlip()
    -> ToTensor() -> Normalize(mean, std)

is done here for a batch of uint8 images in four tensor operations (a zero pad, one gather
that crops and mirrors every image at once, the conversion to float and the normalisation),
on the GPU when the batch is there and vectorised on the CPU otherwise. The images travel to
the device as uint8, a quarter of the bytes of float32.

The arithmetic is that of the per-image reference :func:`augment_reference` (torchvision's
functional pad/crop/flip on the uint8 image, ToTensor's ``x.float() / 255`` and
``Normalize``'s ``(x - mean) / std``), so for the same random parameters the batch result
equals the reference bit for bit; the tests check this.

Random parameters come from :func:`spr.data.draw_crop_flip`, from a seeded
``torch.Generator``: a CUDA generator draws on the GPU. NVIDIA DALI's fused
``crop_mirror_normalize`` can do the crop, flip and normalisation instead
(``backend="dali"``) where DALI is installed (:func:`dali_available`); it is optional, and
not installed or exercised here.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from spr.data._augment import _crop_padded, draw_crop_flip
from spr.data._split import pad_images

__all__ = ["DeviceAugment", "augment_batch", "augment_reference", "dali_available"]

Stats = float | Sequence[float] | None


def dali_available() -> bool:
    """Whether NVIDIA DALI (``nvidia.dali``) can be imported; ``backend="dali"`` needs it."""
    try:
        return importlib.util.find_spec("nvidia.dali") is not None
    except (ImportError, ValueError):  # no "nvidia" namespace at all
        return False


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


def _check_images(images: Tensor, stats: tuple | None) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(
            f"images must be a (B, C, H, W) tensor; got {tuple(getattr(images, 'shape', ()))}"
        )
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"images must be uint8 (0..255) or float (0..1); got {images.dtype}")
    if stats is not None and len(stats[0]) not in (1, images.shape[1]):
        raise ValueError(
            f"mean/std have {len(stats[0])} values for images of {images.shape[1]} channels"
        )


@functools.lru_cache(maxsize=64)
def _stat_tensor(values: tuple[float, ...], device: torch.device) -> Tensor:
    """(C, 1, 1) float32 on ``device``, made once (a copy to a GPU per batch would block)."""
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


def augment_batch(
    images: Tensor,
    shifts: Tensor | None = None,
    flips: Tensor | None = None,
    *,
    padding: int = 4,
    pad_to: int | None = None,
    mean: Stats = None,
    std: Stats = None,
) -> Tensor:
    """Pad, crop, flip and normalise a batch with given random parameters, on its device.

    ``out[i]`` is image ``i`` zero-padded (centred) to ``pad_to x pad_to``, shifted by
    ``shifts[i]`` with zero fill (the crop of its ``padding``-padded copy at offset
    ``(padding + dy, padding + dx)``), mirrored left-right where ``flips[i]``, converted to
    float (uint8 / 255) and normalised per channel ``(x - mean[c]) / std[c]``.

    Args:
        images: (B, C, H, W) uint8 (0..255) or float (0..1), on any device.
        shifts: (B, 2) int (dy, dx) in [-padding, padding], or None for no crop.
        flips: (B,) bool, or None for no flip.
        padding: the crop padding (4 for CIFAR-style training).
        pad_to: pad each image to this size first (28 -> 32 for Fashion-MNIST), or None.
        mean, std: per-channel statistics (C values, or one for all), or both None.

    Returns:
        (B, C, S, S) float32 on the images' device, S = ``pad_to`` (or H x W if None).

    Raises:
        ValueError: for a bad shape, dtype, statistics or (for CPU shifts) a shift out of
            range; shifts on a GPU are not range-checked, as that would synchronise.

    Example:
        >>> x = torch.tensor([[[[10, 20, 30]]]], dtype=torch.uint8)  # (1, 1, 1, 3)
        >>> y = augment_batch(x, torch.tensor([[0, 1]]), torch.tensor([True]), padding=1)
        >>> y.mul(255).round()  # shifted left by one (zero fill), then mirrored
        tensor([[[[ 0., 30., 20.]]]])
        >>> augment_batch(x, mean=0.5, std=0.25).shape  # no crop or flip: just normalised
        torch.Size([1, 1, 1, 3])
    """
    stats = _stats(mean, std)
    _check_images(images, stats)
    B, _, H, W = images.shape
    if shifts is None and flips is None:
        return _to_float(images if pad_to is None else pad_images(images, pad_to), stats)
    if pad_to is not None and pad_to < max(H, W):
        raise ValueError(f"pad_to must be at least the image size {H}x{W}; got {pad_to}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0; got {padding}")
    if shifts is None:
        shifts = torch.zeros(B, 2, dtype=torch.long)
    if flips is None:
        flips = torch.zeros(B, dtype=torch.bool)
    if shifts.shape != (B, 2) or flips.shape != (B,):
        raise ValueError(
            f"shifts must be ({B}, 2) and flips ({B},); got {tuple(shifts.shape)} and "
            f"{tuple(flips.shape)}"
        )
    if shifts.device.type == "cpu" and B > 0 and int(shifts.abs().max()) > padding:
        raise ValueError(f"shifts must lie in [-{padding}, {padding}]; got {shifts.tolist()}")
    # one zero pad for both the centring (to pad_to) and the crop's padding, then one gather
    S_h, S_w = (H, W) if pad_to is None else (pad_to, pad_to)
    top, left, p = (S_h - H) // 2, (S_w - W) // 2, padding
    padded = F.pad(images, (left + p, S_w - W - left + p, top + p, S_h - H - top + p))
    return _to_float(_crop_padded(padded, shifts, flips, padding, S_h, S_w), stats)


def augment_reference(
    image: Tensor,
    top: int | None = None,
    left: int | None = None,
    flip: bool = False,
    *,
    padding: int = 4,
    pad_to: int | None = None,
    mean: Stats = None,
    std: Stats = None,
) -> Tensor:
    """The per-image reference of :func:`augment_batch`, with torchvision's functional ops.

    ``pad`` (centred, to ``pad_to``), ``pad`` (``padding``, zeros), ``crop`` at
    ``(top, left)`` (torchvision's ``RandomCrop`` offsets, in [0, 2 * padding]; the batch
    op's shift is ``top - padding``), ``horizontal_flip``, ToTensor's ``float() / 255`` and
    ``normalize``, on one image. Slow; for tests and documentation.

    Args:
        image: (C, H, W) uint8.
        top, left: the crop offsets in the padded image, or both None for no crop.
        flip: mirror left-right.
        padding, pad_to, mean, std: as in :func:`augment_batch`.

    Returns:
        (C, S, S) float32.

    Example:
        >>> x = torch.tensor([[[10, 20, 30]]], dtype=torch.uint8)
        >>> augment_reference(x, 1, 2, True, padding=1).mul(255).round()
        tensor([[[ 0., 30., 20.]]])
    """
    from torchvision.transforms.v2 import functional as TF

    if image.dim() != 3 or image.dtype != torch.uint8:
        raise ValueError(f"image must be uint8 (C, H, W); got {image.dtype} {tuple(image.shape)}")
    C, H, W = image.shape
    x = image
    if pad_to is not None:
        top0, left0 = (pad_to - H) // 2, (pad_to - W) // 2
        x = TF.pad(x, [left0, top0, pad_to - W - left0, pad_to - H - top0], fill=0)
    if (top is None) != (left is None):
        raise ValueError("give both top and left, or neither")
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
class DeviceAugment:
    """The training (or test) transform of a loader: uint8 batch in, normalised float out.

    Calling it draws the random parameters (if ``crop`` or ``flip``) from ``generator`` and
    applies :func:`augment_batch` on the batch's device; :meth:`draw` and :meth:`apply`
    split the two, so a loader can draw on the CPU in batch order (reproducible whichever
    worker or device does the work) and apply elsewhere.

    Attributes:
        pad_to: centred zero padding to this size first, or None.
        crop: random crop with ``padding`` zero pixels each side.
        flip: random horizontal flip, probability 1/2.
        padding: the crop padding.
        mean, std: per-channel normalisation statistics (in 0..1 units), or None.
        backend: ``"torch"`` (tensor ops) or ``"dali"`` (DALI's crop_mirror_normalize on a
            CUDA batch; needs DALI installed).

    Example:
        >>> aug = DeviceAugment(pad_to=32, mean=(0.286,), std=(0.353,))
        >>> x = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
        >>> a = aug(x, generator=torch.Generator().manual_seed(0))
        >>> b = aug(x, generator=torch.Generator().manual_seed(0))
        >>> a.shape, a.dtype, torch.equal(a, b)
        (torch.Size([8, 1, 32, 32]), torch.float32, True)
    """

    pad_to: int | None = None
    crop: bool = True
    flip: bool = True
    padding: int = 4
    mean: Stats = None
    std: Stats = None
    backend: str = "torch"

    def __post_init__(self) -> None:
        stats = _stats(self.mean, self.std)
        if stats is not None:
            object.__setattr__(self, "mean", stats[0])
            object.__setattr__(self, "std", stats[1])
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0; got {self.padding}")
        if self.pad_to is not None and self.pad_to < 1:
            raise ValueError(f"pad_to must be >= 1; got {self.pad_to}")
        if self.backend not in ("torch", "dali"):
            raise ValueError(f"backend must be 'torch' or 'dali'; got {self.backend!r}")
        if self.backend == "dali" and not dali_available():
            raise ImportError("backend='dali' needs NVIDIA DALI (nvidia-dali-cudaXXX) installed")

    @property
    def random(self) -> bool:
        """Whether the transform draws random parameters (crop or flip)."""
        return self.crop or self.flip

    def draw(
        self, batch: int, generator: torch.Generator | None = None, device: str | None = None
    ) -> tuple[Tensor, Tensor] | None:
        """The random parameters ``(shifts, flips)`` for ``batch`` images, or None if none.

        Always draws shifts then flips (as :func:`spr.data.random_crop_flip` does), so
        equally seeded generators give the same stream whatever ``crop``/``flip`` say.
        """
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
        if self.backend == "dali" and images.is_cuda and images.dtype == torch.uint8:
            return _dali_augment(self, images, shifts, flips)
        return augment_batch(
            images,
            shifts,
            flips,
            padding=self.padding,
            pad_to=self.pad_to,
            mean=self.mean,
            std=self.std,
        )

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw parameters from ``generator`` (on its device; the global RNG if None), apply."""
        dev = None if generator is not None else images.device.type
        return self.apply(images, self.draw(images.shape[0], generator, dev))


_DALI_PIPES: dict = {}


def _dali_augment(
    aug: DeviceAugment, images: Tensor, shifts: Tensor | None, flips: Tensor | None
) -> Tensor:  # pragma: no cover - DALI is not installed here; written against DALI 1.x docs
    """DALI's fused crop_mirror_normalize on a CUDA uint8 batch (an optional backend).

    The centred and crop padding are done by torch first, so DALI crops inside the image
    and its fill convention never matters.
    """
    import numpy as np
    from nvidia.dali import fn, types
    from nvidia.dali.pipeline import Pipeline
    from nvidia.dali.plugin.pytorch import feed_ndarray

    x = images if aug.pad_to is None else pad_images(images, aug.pad_to)
    B, C, H, W = x.shape
    p = aug.padding if shifts is not None else 0
    padded = torch.nn.functional.pad(x, (p, p, p, p)).contiguous()
    key = (images.device.index, B, C, H, W, p, aug.mean, aug.std)
    pipe = _DALI_PIPES.get(key)
    if pipe is None:
        mean, std = list(aug.mean or (0.0,)), list(aug.std or (1.0,))
        mean = [255.0 * m for m in mean * (C // len(mean))]
        std = [255.0 * s for s in std * (C // len(std))]
        pipe = Pipeline(
            batch_size=B,
            num_threads=1,
            device_id=images.device.index or 0,
            exec_async=False,
            exec_pipelined=False,
        )
        with pipe:
            imgs = fn.external_source(name="images", device="gpu", layout="CHW")
            pos_y = fn.external_source(name="pos_y", device="cpu")
            pos_x = fn.external_source(name="pos_x", device="cpu")
            mirror = fn.external_source(name="mirror", device="cpu")
            out = fn.crop_mirror_normalize(
                imgs,
                crop=(H, W),
                crop_pos_y=pos_y,
                crop_pos_x=pos_x,
                mirror=mirror,
                mean=mean,
                std=std,
                dtype=types.FLOAT,
                output_layout="CHW",
            )
            pipe.set_outputs(out)
        pipe.build()
        _DALI_PIPES[key] = pipe
    top = (shifts[:, 0] + p).cpu().numpy() if shifts is not None else np.zeros(B, np.int64)
    left = (shifts[:, 1] + p).cpu().numpy() if shifts is not None else np.zeros(B, np.int64)
    denom = max(2 * p, 1)  # DALI's position is relative: offset = pos * (padded - crop)
    mir = flips.cpu().numpy().astype(np.int32) if flips is not None else np.zeros(B, np.int32)
    pipe.feed_input("images", padded)
    pipe.feed_input("pos_y", (top / denom).astype(np.float32))
    pipe.feed_input("pos_x", (left / denom).astype(np.float32))
    pipe.feed_input("mirror", mir)
    (result,) = pipe.run()
    out = torch.empty((B, C, H, W), dtype=torch.float32, device=images.device)
    feed_ndarray(result.as_tensor(), out, cuda_stream=torch.cuda.current_stream())
    return out
