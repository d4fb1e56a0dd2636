"""Converters into packed shards: from a torchvision-style dataset and from a folder of images.

Both decode every image once, to uint8 (C, H, W), and stream the samples into
:class:`~spr.data._shards._ShardWriter` (same format, same atomic writing as
:func:`spr.data.write_shards`, which takes in-memory arrays and :class:`ImageSplit` s, i.e.
the Fashion-MNIST, CIFAR and digits loaders).

Image conventions: a PIL image becomes ``np.asarray`` (H, W) or (H, W, C), moved to
(C, H, W); a tensor is taken as (C, H, W) (or (H, W)); a numpy array as (H, W) or (H, W, C),
like PIL. Float tensors/arrays must lie in [0, 1] and are stored as ``round(255 x)`` (lossless
for anything that came from uint8, e.g. ``ToTensor()``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spr.data._shards import ShardedDataset, _ShardWriter

__all__ = ["IMAGE_EXTENSIONS", "dataset_to_shards", "image_folder_to_shards"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _to_chw_uint8(image: Any, where: str) -> np.ndarray:
    """One image (PIL, tensor or numpy; see the module docstring) as (C, H, W) uint8."""
    from PIL import Image

    if isinstance(image, Image.Image):
        a = np.asarray(image)
        if a.dtype != np.uint8:
            raise ValueError(
                f"{where}: PIL mode {image.mode!r} gives {a.dtype} pixels; convert the image "
                "to 'L' or 'RGB' (e.g. mode='RGB')"
            )
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        a = t.numpy() if t.dim() != 2 else t[None].numpy()
    elif isinstance(image, np.ndarray):  # PIL's layout: (H, W) or (H, W, C)
        a = image.transpose(2, 0, 1) if image.ndim == 3 else image
        a = a[None] if a.ndim == 2 else a
    else:
        raise TypeError(
            f"{where}: an image must be a PIL image, a tensor or a numpy array; got "
            f"{type(image).__name__}"
        )
    if a.ndim != 3:
        raise ValueError(f"{where}: an image must have 2 or 3 axes; got shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating):
        if a.size and (np.isnan(a).any() or a.min() < 0 or a.max() > 1):
            raise ValueError(f"{where}: float images must lie in [0, 1]; got {a.min()}..{a.max()}")
        a = np.rint(a.astype(np.float64) * 255.0).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ValueError(f"{where}: images must be uint8 or float in [0, 1]; got {a.dtype}")
    return np.ascontiguousarray(a)


def _label(label: Any, where: str) -> int:
    if isinstance(label, torch.Tensor):
        if label.numel() != 1:
            raise ValueError(f"{where}: a label must be one integer; got {tuple(label.shape)}")
        label = label.item()
    if isinstance(label, bool) or not isinstance(label, int | np.integer):
        raise ValueError(f"{where}: a label must be an integer class index; got {label!r}")
    return int(label)


def _write(
    items: Iterator[tuple[np.ndarray, int]],
    total: int,
    folder: str | os.PathLike[str],
    samples_per_shard: int | None,
    classes: Sequence[str] | None,
    name: str,
    overwrite: bool,
    progress: bool | None,
) -> ShardedDataset:
    with _ShardWriter(folder, samples_per_shard, total, overwrite, progress) as w:
        for image, label in items:
            w.add(image, label)
        w.finish(classes, name)
    return ShardedDataset(folder)


def dataset_to_shards(
    dataset: Any,
    folder: str | os.PathLike[str],
    samples_per_shard: int | None = None,
    *,
    classes: Sequence[str] | None = None,
    name: str | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> ShardedDataset:
    """Write an indexable dataset of ``(image, label)`` pairs (e.g. a torchvision one) as shards.

    Every item is read once, in order: ``dataset[i]`` for ``i < len(dataset)``. Give the
    dataset no random transform (the shards hold what it returns).

    Args:
        dataset: has ``len`` and ``[i] -> (image, label)``; image a PIL image, a tensor
            (C, H, W) or a numpy array (H, W[, C]), uint8 or float in [0, 1]; label an int.
        folder, samples_per_shard, overwrite, progress: as in :func:`write_shards`.
        classes: the class names (default: ``dataset.classes`` if it has them).
        name: the dataset's name (default: its class name, e.g. ``"FashionMNIST"``).

    Returns:
        The written :class:`ShardedDataset`.

    Example:
        >>> import tempfile
        >>> items = [(torch.full((1, 2, 2), k, dtype=torch.uint8), k % 3) for k in range(5)]
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     ds = dataset_to_shards(items, tmp, samples_per_shard=2, classes=["a", "b", "c"])
        ...     ds[4][0].flatten().tolist(), ds[4][1], len(ds.shard_files)
        ([4, 4, 4, 4], 1, 3)
    """
    try:
        n = len(dataset)
    except TypeError:
        raise TypeError(
            f"dataset_to_shards needs a dataset with len(); got {type(dataset).__name__}"
        ) from None
    if classes is None:
        classes = getattr(dataset, "classes", None)

    def items() -> Iterator[tuple[np.ndarray, int]]:
        for i in range(n):
            item = dataset[i]
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise ValueError(
                    f"dataset[{i}] must be an (image, label) pair; got {type(item).__name__}"
                )
            yield _to_chw_uint8(item[0], f"dataset[{i}]"), _label(item[1], f"dataset[{i}]")

    return _write(
        items(),
        n,
        folder,
        samples_per_shard,
        classes,
        name or type(dataset).__name__,
        overwrite,
        progress,
    )


def _find_images(root: Path, extensions: Sequence[str]) -> tuple[list[str], list[tuple[Path, int]]]:
    """torchvision ImageFolder's listing: sorted class folders, each's files sorted, recursively."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    exts = tuple(e.lower() for e in extensions)
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"{root}: no class subfolders (want root/<class>/<image files>)")
    files: list[tuple[Path, int]] = []
    for k, c in enumerate(classes):
        for dirpath, dirnames, filenames in sorted(os.walk(root / c, followlinks=True)):
            dirnames.sort()
            for f in sorted(filenames):
                if f.lower().endswith(exts):
                    files.append((Path(dirpath) / f, k))
    if not files:
        raise FileNotFoundError(f"{root}: no image files ({', '.join(exts)}) in its class folders")
    return classes, files


def _decode(path: Path, mode: str | None, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if mode is not None and im.mode != mode:
                im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            im.load()
            return _to_chw_uint8(im, str(path))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: cannot decode the image ({e})") from e


def image_folder_to_shards(
    root: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    samples_per_shard: int | None = None,
    *,
    mode: str | None = "RGB",
    size: tuple[int, int] | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    workers: int = 0,
    name: str | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> ShardedDataset:
    """Decode a class-per-subfolder image tree once (with PIL) and write it as shards.

    ``root/<class>/**/<image>``, as torchvision's ``ImageFolder`` reads it: the classes are the
    sorted subfolder names (label = position), the samples are in ImageFolder's order (class,
    then sorted path), so ``shards[i]`` is ``ImageFolder(root)[i]`` decoded.

    Args:
        root: the image tree.
        folder, samples_per_shard, overwrite, progress: as in :func:`write_shards`.
        mode: PIL mode to convert to (``"RGB"``, like ImageFolder; ``"L"`` for grayscale), or
            None to keep each file's own (then the files should agree, for batches).
        size: resize every image to (H, W) (bilinear), or None to keep the sizes (images of
            different sizes can then be read one at a time only).
        extensions: file suffixes taken as images (case-insensitive).
        workers: decoding threads (PIL decodes without the GIL); 0 decodes inline.
        name: the dataset's name (default: the root folder's name).

    Returns:
        The written :class:`ShardedDataset`.

    Raises:
        FileNotFoundError: if ``root`` has no class subfolders or no images.
        ValueError: naming the file, if an image cannot be decoded.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for c in ("cat", "dog"):
        ...         (Path(tmp) / "img" / c).mkdir(parents=True)
        ...         Image.new("L", (3, 2), 7).save(Path(tmp) / "img" / c / "0.png")
        ...     ds = image_folder_to_shards(Path(tmp) / "img", Path(tmp) / "shards", mode="L")
        ...     ds.classes, ds.sample_shape, ds.labels.tolist()
        (('cat', 'dog'), (1, 2, 3), [0, 1])
    """
    root = Path(root)
    classes, files = _find_images(root, extensions)

    def items() -> Iterator[tuple[np.ndarray, int]]:
        if workers <= 0:
            for path, label in files:
                yield _decode(path, mode, size), label
            return
        with ThreadPoolExecutor(workers, thread_name_prefix="spr-decode") as pool:
            it = iter(files)
            while chunk := list(islice(it, 64 * workers)):  # bounded memory, in order
                decoded = pool.map(lambda pl: _decode(pl[0], mode, size), chunk)
                yield from zip(decoded, (label for _, label in chunk), strict=True)

    return _write(
        items(),
        len(files),
        folder,
        samples_per_shard,
        classes,
        name or root.name,
        overwrite,
        progress,
    )
