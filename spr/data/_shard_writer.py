"""Writing packed shards (format: :mod:`spr.data._shards`): from arrays, datasets, image folders.

Each file is written under a temporary name, fsynced and renamed, the index last; an exception
removes this write's files. Converters decode each image once to uint8 (C, H, W) (PIL/numpy:
(H, W[, C]); tensors (C, H, W); floats in [0, 1] stored as ``round(255 x)``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import struct
import zlib
from array import array
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from spr._atomic import fsync_path
from spr.data._shards import FORMAT_VERSION, INDEX_NAME, MAGIC, ShardedDataset
from spr.data._split import ImageSplit

__all__ = ["IMAGE_EXTENSIONS", "MAX_CLASSES", "dataset_to_shards", "image_folder_to_shards",
           "write_shards"]

SHARD_BYTES = 64 << 20  # default shard size when samples_per_shard is not given
PROGRESS_MIN = 10_000  # progress=None shows a bar from this many samples on
MAX_CLASSES = 1 << 20  # labels are class indices 0..C-1, C at most this (C names are stored)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
_SHARD_RE = re.compile(r"shard-[0-9a-f]{8}-\d{5,}\.bin")
_TMP_RE = re.compile(r"\.(shard-[0-9a-f]{8}-\d{5,}\.bin|index\.bin)\.[0-9a-f]{8}\.tmp")


class _ShardWriter:
    """Writes samples into shards of ``per_shard`` samples, then the index (``finish``); a
    context manager: leaving it by an exception removes this write's files."""

    def __init__(self, folder: str | os.PathLike[str], samples_per_shard: int | None,
                 total: int | None, overwrite: bool, progress: bool | None) -> None:
        if samples_per_shard is not None and samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1; got {samples_per_shard}")
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"{self.folder} exists and is not a folder")
        if (self.folder / INDEX_NAME).exists() and not overwrite:
            raise FileExistsError(f"{self.folder} already holds a shard dataset ({INDEX_NAME}); "
                                  "pass overwrite=True to replace it")
        self.per, self.gen, self.shards = samples_per_shard, secrets.token_hex(4), []
        # per-sample metadata in compact native arrays (millions of samples, one at a time)
        self.labels, self.offsets, self.shapes = array("q"), array("q"), array("i")
        self.ndim: int | None = None
        self.n = self._count = self._bytes = 0
        self._file: Any = None  # the open shard, its temporary path, its running hash
        self._tmp: Path | None = None
        self._hash: Any = None
        self._finals: list[Path] = []
        show = (total or 0) >= PROGRESS_MIN if progress is None else progress
        self._bar = tqdm(total=total, unit="img", desc=f"shards -> {self.folder.name}",
                         disable=not show, leave=False)

    def __enter__(self) -> _ShardWriter:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._bar.close()
        if exc_type is not None:
            self._abort()

    def _abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        for p in [self._tmp, *self._finals, self.folder / f".{INDEX_NAME}.{self.gen}.tmp"]:
            if p is not None:
                p.unlink(missing_ok=True)

    def _check(self, samples: np.ndarray, labels: np.ndarray, where: int) -> None:
        if samples.dtype != np.uint8:
            raise ValueError(f"sample {where}: samples must be uint8; got {samples.dtype}")
        ndim = samples.ndim - 1
        if ndim < 1:
            raise ValueError(f"sample {where}: a sample needs at least one axis")
        if self.ndim is None:
            self.ndim = ndim
        elif ndim != self.ndim:
            raise ValueError(f"sample {where}: has {ndim} axes {samples.shape[1:]}, the first "
                             f"had {self.ndim}")
        if len(labels) != len(samples):
            raise ValueError(f"{len(samples)} samples but {len(labels)} labels")
        _check_labels(labels, None, where)

    def add(self, sample: np.ndarray, label: int) -> None:
        """Append one sample (uint8, any shape of the first sample's number of axes)."""
        self.add_block(np.asarray(sample)[None], np.asarray([label], dtype=np.int64))

    def add_block(self, samples: np.ndarray, labels: np.ndarray) -> None:
        """Append ``len(samples)`` samples of one shape: (k, *shape) uint8, labels (k,)."""
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self._check(samples, labels, self.n)
        size = math.prod(samples.shape[1:])
        if self.per is None:
            self.per = max(1, SHARD_BYTES // max(size, 1))
        done = 0
        while done < len(samples):
            if self._file is None:
                self._open_shard()
            k = min(len(samples) - done, self.per - self._count)
            block = np.ascontiguousarray(samples[done : done + k])
            view = memoryview(block).cast("B")
            self._file.write(view)
            self._hash.update(view)
            self.labels.frombytes(labels[done : done + k].tobytes())
            self.offsets.frombytes((self._bytes + size * np.arange(k, dtype=np.int64)).tobytes())
            self.shapes.frombytes(np.tile(np.asarray(samples.shape[1:], np.int32), k).tobytes())
            self._count, self._bytes = self._count + k, self._bytes + size * k
            self.n, done = self.n + k, done + k
            if self._count == self.per:
                self._close_shard()
        self._bar.update(len(samples))

    def _open_shard(self) -> None:
        name = f"shard-{self.gen}-{len(self.shards):05d}.bin"
        self._tmp = self.folder / f".{name}.{self.gen}.tmp"
        self._file = open(self._tmp, "wb")  # closed in _close_shard/_abort
        self._hash = hashlib.sha256()
        self._count = self._bytes = 0
        self.shards.append({"file": name, "first": self.n, "count": 0, "bytes": 0, "sha256": ""})

    def _close_shard(self) -> None:
        f, tmp = self._file, self._tmp
        assert f is not None and tmp is not None
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self._file = None
        final = self.folder / self.shards[-1]["file"]
        os.replace(tmp, final)
        self._finals.append(final)
        self._tmp = None
        self.shards[-1].update(count=self._count, bytes=self._bytes, sha256=self._hash.hexdigest())

    def finish(self, classes: Sequence[str] | None, name: str) -> Path:
        """Close the last shard, write the index (atomically), remove superseded files."""
        if self._file is not None:
            self._close_shard()
        if self.n == 0:
            raise ValueError("nothing to write: the source has no samples")
        labels = np.frombuffer(self.labels, np.int64)
        _check_labels(labels, classes)
        if classes is None:
            classes = tuple(str(k) for k in range(int(labels.max()) + 1))
        classes = tuple(str(c) for c in classes)
        shapes = np.frombuffer(self.shapes, np.int32).reshape(self.n, -1)
        uniform = bool((shapes == shapes[0]).all())
        header = {"n": self.n, "ndim": self.ndim, "dtype": "uint8",
                  "sample_shape": shapes[0].tolist() if uniform else None,
                  "classes": list(classes), "name": name, "shards": self.shards}
        data = _encode_index(header, labels, np.frombuffer(self.offsets, np.int64), shapes)
        fsync_path(self.folder)  # the shards' renames are durable before the index appears
        tmp = self.folder / f".{INDEX_NAME}.{self.gen}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / INDEX_NAME)
        fsync_path(self.folder)
        keep = {s["file"] for s in self.shards}
        for p in self.folder.iterdir():  # an earlier version's shards, crashed writes' leftovers
            if (_SHARD_RE.fullmatch(p.name) and p.name not in keep) or _TMP_RE.fullmatch(p.name):
                p.unlink(missing_ok=True)
        return self.folder / INDEX_NAME


def _check_labels(labels: np.ndarray, classes: Sequence[str] | None, first: int = 0) -> None:
    """Labels (k,) int64 of samples ``first ..`` must be class indices ``0..C-1``: C the number of
    ``classes`` when given, else implied by the largest label; C at most :data:`MAX_CLASSES` (a
    class name is stored for each). Cheap: raises before anything is built."""
    if classes is not None and not 1 <= len(classes) <= MAX_CLASSES:
        raise ValueError(f"classes must name between 1 and {MAX_CLASSES:,} classes (or be None "
                         f"for '0', '1', ...); got {len(classes):,}")
    if not len(labels):
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(f"labels must be >= 0 (class indices 0..C-1); sample "
                         f"{first + int(np.argmin(labels))} has {low}")
    where = first + int(np.argmax(labels))
    if classes is not None and high >= len(classes):
        raise ValueError(f"labels must lie in [0, {len(classes) - 1}] for the {len(classes)} "
                         f"classes given; sample {where} has {high}. Pass one class name per "
                         "label value, or relabel")
    if high >= MAX_CLASSES:
        raise ValueError(f"labels must be class indices 0..C-1 with C at most {MAX_CLASSES:,}; "
                         f"sample {where} has {high}, which would imply {high + 1:,} classes (one "
                         "default name each). Relabel to 0..C-1 (e.g. np.unique(labels, "
                         "return_inverse=True)[1]) and pass the original values as classes=[...]")


def _encode_index(header: dict[str, Any], labels: np.ndarray, offsets: np.ndarray,
                  shapes: np.ndarray) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    pad = b"\0" * (-(16 + len(head)) % 8)
    body = b"".join([MAGIC, struct.pack("<II", FORMAT_VERSION, len(head)), head, pad,
                     labels.astype("<i8").tobytes(), offsets.astype("<i8").tobytes(),
                     shapes.astype("<i4").tobytes()])
    return body + struct.pack("<I", zlib.crc32(body))


def _source_arrays(source: Any, classes: Sequence[str] | None, name: str | None
                   ) -> tuple[np.ndarray, np.ndarray, Sequence[str] | None, str]:
    if isinstance(source, ImageSplit | ShardedDataset):
        images = source.images if isinstance(source, ImageSplit) else source[:][0]
        return (images.cpu().numpy(), source.labels.cpu().numpy(), classes or source.classes,
                name or source.name)
    if isinstance(source, tuple | list) and len(source) == 2:
        images, labels = (x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
                          for x in source)
        if images.ndim < 2:
            raise ValueError(f"images must be (N, *sample_shape); got shape {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"labels must be ({len(images)},); got shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers; got {labels.dtype}")
        return images, labels.astype(np.int64), classes, name or "dataset"
    raise TypeError(f"write_shards: source must be an ImageSplit or an (images, labels) pair of "
                    f"arrays; got {type(source).__name__} (for a torchvision dataset use "
                    "dataset_to_shards, for a folder of images image_folder_to_shards)")


def write_shards(source: ImageSplit | ShardedDataset | tuple[Any, Any],
                 folder: str | os.PathLike[str], samples_per_shard: int | None = None, *,
                 classes: Sequence[str] | None = None, name: str | None = None,
                 overwrite: bool = False, progress: bool | None = None) -> ShardedDataset:
    """Write ``source`` once into ``folder`` as packed shards (~64 MiB each by default); open it.

    ``source``: an ImageSplit, a ShardedDataset or ``(images, labels)``: (N, *shape) uint8 and
    (N,) class indices < C <= :data:`MAX_CLASSES` (checked first). ``overwrite``: replace a
    dataset atomically (else FileExistsError). ``progress``: a bar (None: from 10000 on).

    Example:
        >>> import tempfile
        >>> from spr.data import digits
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_shards(digits("test"), tmp, samples_per_shard=100)
        ShardedDataset(name='digits-test', n=397, shards=4, sample=(1, 8, 8), classes=10)
    """
    images, labels, classes, name = _source_arrays(source, classes, name)
    n = len(images)
    if n == 0:
        raise ValueError("nothing to write: the source has no samples")
    _check_labels(labels, classes)  # before the folder is created or anything allocated
    size = math.prod(images.shape[1:])
    per = max(1, SHARD_BYTES // max(size, 1)) if samples_per_shard is None else samples_per_shard
    with _ShardWriter(folder, per, n, overwrite, progress) as w:
        for start in range(0, n, per):
            w.add_block(images[start : start + per], labels[start : start + per])
        w.finish(classes, name)
    return ShardedDataset(folder)


def _to_chw_uint8(image: Any, where: str) -> np.ndarray:
    """One image (PIL, tensor or numpy; see the module docstring) as (C, H, W) uint8."""
    from PIL import Image

    if isinstance(image, Image.Image):
        a = np.asarray(image)
        if a.dtype != np.uint8:
            raise ValueError(f"{where}: PIL mode {image.mode!r} gives {a.dtype} pixels; convert "
                             "the image to 'L' or 'RGB' (e.g. mode='RGB')")
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        a = t.numpy() if t.dim() != 2 else t[None].numpy()
    elif isinstance(image, np.ndarray):  # PIL's layout: (H, W) or (H, W, C)
        a = image.transpose(2, 0, 1) if image.ndim == 3 else image
        a = a[None] if a.ndim == 2 else a
    else:
        raise TypeError(f"{where}: an image must be a PIL image, a tensor or a numpy array; got "
                        f"{type(image).__name__}")
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


def _write(items: Iterator[tuple[np.ndarray, int]], total: int, folder: str | os.PathLike[str],
           samples_per_shard: int | None, classes: Sequence[str] | None, name: str,
           overwrite: bool, progress: bool | None) -> ShardedDataset:
    with _ShardWriter(folder, samples_per_shard, total, overwrite, progress) as w:
        for image, label in items:
            w.add(image, label)
        w.finish(classes, name)
    return ShardedDataset(folder)


def dataset_to_shards(dataset: Any, folder: str | os.PathLike[str],
                      samples_per_shard: int | None = None, *,
                      classes: Sequence[str] | None = None, name: str | None = None,
                      overwrite: bool = False, progress: bool | None = None) -> ShardedDataset:
    """:func:`write_shards` for a dataset of ``(image, label)`` pairs (``len``, ``[i]``, e.g. a
    torchvision one without random transforms), each read once, in order; ``classes`` default
    to ``dataset.classes``, ``name`` to its class name.
    """
    try:
        n = len(dataset)
    except TypeError:
        raise TypeError(f"dataset_to_shards needs a dataset with len(); got "
                        f"{type(dataset).__name__}") from None
    if classes is None:
        classes = getattr(dataset, "classes", None)

    def items() -> Iterator[tuple[np.ndarray, int]]:
        for i in range(n):
            item = dataset[i]
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise ValueError(f"dataset[{i}] must be an (image, label) pair; got "
                                 f"{type(item).__name__}")
            yield _to_chw_uint8(item[0], f"dataset[{i}]"), _label(item[1], f"dataset[{i}]")

    return _write(items(), n, folder, samples_per_shard, classes, name or type(dataset).__name__,
                  overwrite, progress)


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


def image_folder_to_shards(root: str | os.PathLike[str], folder: str | os.PathLike[str],
                           samples_per_shard: int | None = None, *, mode: str | None = "RGB",
                           size: tuple[int, int] | None = None,
                           extensions: Sequence[str] = IMAGE_EXTENSIONS, workers: int = 0,
                           name: str | None = None, overwrite: bool = False,
                           progress: bool | None = None) -> ShardedDataset:
    """:func:`write_shards` for an image tree ``root/<class>/**/<image>``, decoded once (PIL),
    in torchvision ``ImageFolder``'s order; ``mode``: PIL's (None keeps each file's), ``size``:
    resize to (H, W) (bilinear), ``workers``: decoding threads."""
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

    return _write(items(), len(files), folder, samples_per_shard, classes, name or root.name,
                  overwrite, progress)
