"""Packed shards: a dataset written once as raw uint8 samples in a few large files, memory-mapped.

Reading a sample is a memory-mapped copy of its bytes: no per-sample file, no image decoding.
Every shard carries a SHA-256 checksum in the index, so a corrupted or truncated shard is
reported (naming the file) rather than read.

Folder layout (format version 1)::

    folder/
        index.bin                 the index; written last, its presence marks the dataset complete
        shard-<gen>-00000.bin     samples first_0 .. first_0 + count_0 - 1
        shard-<gen>-00001.bin     the next count_1 samples, ...

``<gen>`` is 8 random hex digits, new for every write, so a new write never touches the files
the current index names (overwriting is atomic: a reader sees the old dataset or the new one).

Shard file: the samples' bytes back to back in sample order, no header, no padding. Sample
``i`` (uint8, shape ``shape[i]``, C order) occupies bytes ``[offset[i], offset[i] + size)`` of
its shard, ``size = prod(shape[i])``; shard ``k`` holds samples ``[first_k, first_k +
count_k)``, ``first_0 = 0``, ``first_{k+1} = first_k + count_k``.

Index file ``index.bin``, little-endian::

    bytes 0..7       magic b"SPRSHARD"
    bytes 8..11      uint32 format version (1)
    bytes 12..15     uint32 J, the length of the header
    J bytes          header, UTF-8 JSON: {"n", "ndim", "dtype": "uint8", "sample_shape" (a list,
                     or null when the samples differ in shape), "classes", "name", "shards":
                     [{"file", "first", "count", "bytes", "sha256"}, ...]}
    zero bytes       to the next multiple of 8
    int64[n]         labels
    int64[n]         offsets: byte offset of each sample in its shard
    int32[n, ndim]   shapes, one row per sample
    uint32           CRC-32 (zlib) of every byte before it

Writing (:func:`write_shards`, and the converters in :mod:`spr.data._convert`): each shard is
written under a temporary name (``.shard-....tmp``), flushed, fsynced and renamed; the index
likewise, last, after the folder entry of every shard is synced. An exception while writing
removes the temporary files and this write's shards and leaves the folder as it was.

Reading (:class:`ShardedDataset`): at open, the index is parsed and checked (magic, version,
CRC, internal consistency) and every shard's size compared with the index (a missing or
truncated shard raises :class:`CorruptShardError` naming it). Checksums are checked per
``verify``: ``"lazy"`` (default) hashes a shard the first time a sample of it is read,
``"open"`` hashes all at open, ``"never"`` trusts the files; :meth:`ShardedDataset.verify`
hashes all on demand.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import struct
import threading
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from spr._atomic import fsync_path
from spr.data._split import ImageSplit

if TYPE_CHECKING:
    from spr.data._shard_loader import ShardLoader

__all__ = [
    "FORMAT_VERSION",
    "INDEX_NAME",
    "MAX_CLASSES",
    "CorruptShardError",
    "ShardedDataset",
    "read_shards",
    "write_shards",
]

FORMAT_VERSION = 1
INDEX_NAME = "index.bin"
MAGIC = b"SPRSHARD"
SHARD_BYTES = 64 << 20  # default shard size when samples_per_shard is not given
PROGRESS_MIN = 10_000  # progress=None shows a bar from this many samples on
MAX_CLASSES = 1 << 20  # labels are class indices 0..C-1, C at most this (C names are stored)
VERIFY_MODES = ("lazy", "open", "never")
_SHARD_RE = re.compile(r"shard-[0-9a-f]{8}-\d{5,}\.bin")
_TMP_RE = re.compile(r"\.(shard-[0-9a-f]{8}-\d{5,}\.bin|index\.bin)\.[0-9a-f]{8}\.tmp")
_CHUNK = 8 << 20


class CorruptShardError(ValueError):
    """A shard (or the index) is missing, truncated or does not match its checksum.

    Attributes:
        path: the offending file.
    """

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = Path(path)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------------- writing


class _ShardWriter:
    """Writes samples into shards of ``per_shard`` samples, then the index (``finish``).

    Use as a context manager: leaving it by an exception removes this write's files.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        samples_per_shard: int | None,
        total: int | None,
        overwrite: bool,
        progress: bool | None,
    ) -> None:
        if samples_per_shard is not None and samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1; got {samples_per_shard}")
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"{self.folder} exists and is not a folder")
        if (self.folder / INDEX_NAME).exists() and not overwrite:
            raise FileExistsError(
                f"{self.folder} already holds a shard dataset ({INDEX_NAME}); pass "
                "overwrite=True to replace it"
            )
        self.per = samples_per_shard
        self.gen = secrets.token_hex(4)
        self.shards: list[dict[str, Any]] = []
        # per-sample metadata in compact native arrays (millions of samples, one at a time)
        self.labels, self.offsets, self.shapes = array("q"), array("q"), array("i")
        self.ndim: int | None = None
        self.n = 0
        self._file: Any = None
        self._tmp: Path | None = None
        self._hash: Any = None
        self._count = 0
        self._bytes = 0
        self._finals: list[Path] = []
        show = (total or 0) >= PROGRESS_MIN if progress is None else progress
        self._bar = tqdm(
            total=total,
            unit="img",
            desc=f"shards -> {self.folder.name}",
            disable=not show,
            leave=False,
        )

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
            raise ValueError(
                f"sample {where}: has {ndim} axes {samples.shape[1:]}, the first had {self.ndim}"
            )
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
            self._count += k
            self._bytes += size * k
            self.n += k
            done += k
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
        header = {
            "n": self.n,
            "ndim": self.ndim,
            "dtype": "uint8",
            "sample_shape": shapes[0].tolist() if uniform else None,
            "classes": list(classes),
            "name": name,
            "shards": self.shards,
        }
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
        raise ValueError(
            f"classes must name between 1 and {MAX_CLASSES:,} classes (or be None for '0', "
            f"'1', ...); got {len(classes):,}"
        )
    if not len(labels):
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(
            f"labels must be >= 0 (class indices 0..C-1); sample {first + int(np.argmin(labels))} "
            f"has {low}"
        )
    where = first + int(np.argmax(labels))
    if classes is not None and high >= len(classes):
        raise ValueError(
            f"labels must lie in [0, {len(classes) - 1}] for the {len(classes)} classes given; "
            f"sample {where} has {high}. Pass one class name per label value, or relabel"
        )
    if high >= MAX_CLASSES:
        raise ValueError(
            f"labels must be class indices 0..C-1 with C at most {MAX_CLASSES:,}; sample {where} "
            f"has {high}, which would imply {high + 1:,} classes (one default name each). "
            "Relabel to 0..C-1 (e.g. np.unique(labels, return_inverse=True)[1]) and pass the "
            "original values as classes=[...]"
        )


def _encode_index(
    header: dict[str, Any], labels: np.ndarray, offsets: np.ndarray, shapes: np.ndarray
) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    start = 16 + len(head)
    pad = b"\0" * (-start % 8)
    body = b"".join(
        [
            MAGIC,
            struct.pack("<II", FORMAT_VERSION, len(head)),
            head,
            pad,
            labels.astype("<i8").tobytes(),
            offsets.astype("<i8").tobytes(),
            shapes.astype("<i4").tobytes(),
        ]
    )
    return body + struct.pack("<I", zlib.crc32(body))


def _source_arrays(
    source: Any, classes: Sequence[str] | None, name: str | None
) -> tuple[np.ndarray, np.ndarray, Sequence[str] | None, str]:
    if isinstance(source, ImageSplit):
        images, labels = source.images.cpu().numpy(), source.labels.cpu().numpy()
        return images, labels, classes or source.classes, name or source.name
    if isinstance(source, ShardedDataset):
        images, labels = source[:]
        return images.numpy(), labels.numpy(), classes or source.classes, name or source.name
    if isinstance(source, tuple | list) and len(source) == 2:
        images, labels = (
            x.cpu().numpy() if isinstance(x, Tensor) else np.asarray(x) for x in source
        )
        if images.ndim < 2:
            raise ValueError(f"images must be (N, *sample_shape); got shape {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"labels must be ({len(images)},); got shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers; got {labels.dtype}")
        return images, labels.astype(np.int64), classes, name or "dataset"
    raise TypeError(
        f"write_shards: source must be an ImageSplit or an (images, labels) pair of arrays; got "
        f"{type(source).__name__} (for a torchvision dataset use dataset_to_shards, for a "
        "folder of images image_folder_to_shards)"
    )


def write_shards(
    source: ImageSplit | tuple[Any, Any],
    folder: str | os.PathLike[str],
    samples_per_shard: int | None = None,
    *,
    classes: Sequence[str] | None = None,
    name: str | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> ShardedDataset:
    """Write a dataset once into ``folder`` as packed shards; return it opened.

    Args:
        source: an :class:`ImageSplit` (e.g. ``fashion_mnist("train")``, ``cifar(...)``,
            ``digits(...)``), a :class:`ShardedDataset`, or a pair ``(images, labels)``:
            (N, *shape) uint8 and (N,) integer labels, class indices ``0..C-1`` (tensors or
            numpy arrays); without ``classes``, C (the largest label + 1) is at most
            :data:`MAX_CLASSES`. Bad labels are refused before anything is written.
        folder: where to write (created if missing). Concurrent writes into one folder
            are not supported.
        samples_per_shard: samples per shard file (the last may hold fewer); None for
            about 64 MiB per shard.
        classes: the class names (default: the split's, or ``"0"``, ``"1"``, ...).
        name: the dataset's name (default: the split's, or ``"dataset"``).
        overwrite: replace a dataset already in ``folder`` (atomically: readers see the
            old one until the new index is in place); else that raises FileExistsError.
        progress: show a tqdm bar (None: when there are >= 10000 samples).

    Returns:
        The written dataset, as :class:`ShardedDataset` (lazy verification).

    Example:
        >>> import tempfile
        >>> from spr.data import digits
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     ds = write_shards(digits("test"), tmp, samples_per_shard=100)
        ...     x, y = ds[98:102]  # across the boundary of shards 0 and 1
        ...     print(ds)
        ...     x.shape, x.dtype, torch.equal(x, digits("test").images[98:102])
        ShardedDataset(name='digits-test', n=397, shards=4, sample=(1, 8, 8), classes=10)
        (torch.Size([4, 1, 8, 8]), torch.uint8, True)
    """
    images, labels, classes, name = _source_arrays(source, classes, name)
    n = len(images)
    if n == 0:
        raise ValueError("nothing to write: the source has no samples")
    _check_labels(labels, classes)  # before the folder is created or anything allocated
    size = math.prod(images.shape[1:])
    per = (
        samples_per_shard if samples_per_shard is not None else max(1, SHARD_BYTES // max(size, 1))
    )
    with _ShardWriter(folder, per, n, overwrite, progress) as w:
        for start in range(0, n, per):
            w.add_block(images[start : start + per], labels[start : start + per])
        w.finish(classes, name)
    return ShardedDataset(folder)


# ----------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Shard:
    path: Path
    first: int
    count: int
    bytes: int
    sha256: str


def _read_index(folder: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    path = folder / INDEX_NAME
    if not path.is_file():
        why = "no such folder" if not folder.is_dir() else f"no {INDEX_NAME} in it"
        raise FileNotFoundError(
            f"{folder}: not a (complete) shard dataset: {why}. Write one with write_shards; "
            "a folder whose writing was interrupted has no index and cannot be opened"
        )
    raw = path.read_bytes()
    if len(raw) < 20 or raw[:8] != MAGIC:
        raise CorruptShardError(path, f"not a shard index (magic {raw[:8]!r}, want {MAGIC!r})")
    version, hlen = struct.unpack_from("<II", raw, 8)
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: shard format version {version}; this spr reads version {FORMAT_VERSION}"
        )
    if zlib.crc32(raw[:-4]) != struct.unpack("<I", raw[-4:])[0]:
        raise CorruptShardError(path, "index checksum (CRC-32) mismatch: the index is corrupt")
    try:
        header = json.loads(raw[16 : 16 + hlen])
        n, ndim = int(header["n"]), int(header["ndim"])
        pos = 16 + hlen + (-(16 + hlen) % 8)
        if pos + n * (16 + 4 * ndim) + 4 != len(raw):
            raise ValueError(f"{len(raw)} bytes do not fit n={n}, ndim={ndim}")
        labels = np.frombuffer(raw, "<i8", n, pos)
        offsets = np.frombuffer(raw, "<i8", n, pos + 8 * n)
        shapes = np.frombuffer(raw, "<i4", n * ndim, pos + 16 * n).reshape(n, ndim)
        missing = [k for k in ("classes", "name", "shards", "sample_shape") if k not in header]
        if missing:
            raise KeyError(f"no {missing} in the header")
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptShardError(path, f"malformed index ({type(e).__name__}: {e})") from e
    return header, labels.astype(np.int64), offsets.astype(np.int64), shapes.astype(np.int64)


def _check_layout(path: Path, shards: list[_Shard], offsets: np.ndarray, shapes: np.ndarray):
    """The index's own consistency: contiguous shards, back-to-back samples, byte counts."""
    n = len(offsets)
    firsts = np.array([s.first for s in shards], np.int64)
    counts = np.array([s.count for s in shards], np.int64)
    if (
        not shards
        or firsts[0] != 0
        or (counts < 1).any()
        or (firsts[1:] != (firsts + counts)[:-1]).any()
        or firsts[-1] + counts[-1] != n
    ):
        raise CorruptShardError(path, "malformed index: shards do not tile the samples")
    sizes = shapes.prod(axis=1)
    start = np.cumsum(sizes) - sizes  # byte position of each sample in one long stream
    shard_of = np.repeat(np.arange(len(shards)), counts)
    expect = start - start[firsts][shard_of]
    total = np.add.reduceat(sizes, firsts) if n else np.zeros(0, np.int64)
    if (shapes < 0).any() or (offsets != expect).any():
        raise CorruptShardError(path, "malformed index: sample offsets are not back to back")
    bad = [s.path.name for s, t in zip(shards, total, strict=True) if s.bytes != t]
    if bad:
        raise CorruptShardError(path, f"malformed index: byte counts of {bad} do not add up")
    for s in shards:
        if Path(s.path.name).name != s.path.name or s.path.name.startswith("."):
            raise CorruptShardError(path, f"malformed index: bad shard file name {s.path.name!r}")


class ShardedDataset:
    """A dataset in packed shards (see the module docstring), read through memory maps.

    Indexing gives ``(images, labels)``: an int gives one sample, (C, H, W) uint8 and an int
    label; a slice, a list, or a 1-D integer array or tensor gives (B, C, H, W) uint8 and (B,)
    int64 (a copy, in the order asked; negative indices count from the end). Batches need
    samples of one shape (``sample_shape`` not None).

    Also a map-style ``torch.utils.data.Dataset`` (``len``, ``[i]``) that pickles without its
    memory maps (each worker process maps the files itself).

    Args:
        folder: the dataset's folder, as written by :func:`write_shards`.
        verify: when to check the shards' SHA-256 checksums: ``"lazy"`` (each shard the first
            time it is read; the default), ``"open"`` (all now) or ``"never"``. Sizes are
            always checked at open.

    Attributes:
        folder, name, classes, labels ((N,) int64), sample_shape (tuple, or None when the
        samples differ in shape), shard_files (list of paths).

    Raises:
        FileNotFoundError: if ``folder`` holds no index (not written, or writing was cut off).
        CorruptShardError: naming the file, for a corrupt index, a missing or truncated shard
            (at open) or a shard whose checksum does not match (per ``verify``).
    """

    def __init__(self, folder: str | os.PathLike[str], verify: str = "lazy") -> None:
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}; got {verify!r}")
        self.folder = Path(folder)
        self.verify_mode = verify
        header, labels, offsets, shapes = _read_index(self.folder)
        index = self.folder / INDEX_NAME
        try:
            self._shards = [
                _Shard(
                    self.folder / str(s["file"]),
                    int(s["first"]),
                    int(s["count"]),
                    int(s["bytes"]),
                    str(s["sha256"]),
                )
                for s in header["shards"]
            ]
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptShardError(index, f"malformed index: shard entry ({e})") from e
        _check_layout(index, self._shards, offsets, shapes)
        self.name = str(header["name"])
        self.classes = tuple(str(c) for c in header["classes"])
        ss = header["sample_shape"]
        self.sample_shape: tuple[int, ...] | None = None if ss is None else tuple(map(int, ss))
        self.labels = torch.from_numpy(labels.copy())
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise CorruptShardError(index, "malformed index: labels out of range of the classes")
        self._offsets, self._shapes = offsets, shapes
        self._firsts = np.array([s.first for s in self._shards], np.int64)
        self._views: list[Tensor | None] = [None] * len(self._shards)
        self._verified = [False] * len(self._shards)
        self._locks = [threading.Lock() for _ in self._shards]
        for s in self._shards:
            self._check_size(s)
        if verify == "open":
            self.verify()

    # --- checks
    @staticmethod
    def _check_size(s: _Shard) -> None:
        try:
            size = s.path.stat().st_size
        except FileNotFoundError:
            raise CorruptShardError(s.path, "shard file is missing") from None
        if size != s.bytes:
            what = "truncated" if size < s.bytes else "longer than the index says"
            raise CorruptShardError(
                s.path, f"shard is {what}: {size} bytes on disk, {s.bytes} in the index"
            )

    def _check_sum(self, k: int) -> None:
        s = self._shards[k]
        self._check_size(s)
        digest = _sha256_file(s.path)
        if digest != s.sha256:
            raise CorruptShardError(
                s.path,
                f"shard checksum mismatch (SHA-256 {digest[:16]}..., index says "
                f"{s.sha256[:16]}...): the file is corrupt; rewrite the dataset",
            )
        self._verified[k] = True

    def verify(self) -> None:
        """Check every shard's size and SHA-256 against the index.

        Raises:
            CorruptShardError: naming the first bad shard (the message lists all bad ones).
        """
        errors = []
        for k in range(len(self._shards)):
            try:
                self._check_sum(k)
            except CorruptShardError as e:
                errors.append(e)
        if errors:
            more = (
                ""
                if len(errors) == 1
                else f" ({len(errors)} bad shards: " + ", ".join(e.path.name for e in errors) + ")"
            )
            raise CorruptShardError(errors[0].path, str(errors[0]).split(": ", 1)[1] + more)

    # --- access
    def _view(self, k: int) -> Tensor:
        """Shard ``k``'s bytes as a uint8 tensor over a memory map (verified per ``verify``)."""
        v = self._views[k]
        if v is not None:
            return v
        with self._locks[k]:
            if self._views[k] is None:
                if self.verify_mode == "lazy" and not self._verified[k]:
                    self._check_sum(k)
                s = self._shards[k]
                if s.bytes == 0:
                    flat = torch.empty(0, dtype=torch.uint8)
                else:  # a private (copy-on-write) map: never writes the file, keeps no fd open
                    flat = torch.from_file(
                        str(s.path), shared=False, size=s.bytes, dtype=torch.uint8
                    )
                if self.sample_shape is not None:
                    flat = flat.view(s.count, *self.sample_shape)
                self._views[k] = flat
        return self._views[k]  # type: ignore[return-value]

    def _normalize(self, key: Any) -> int | np.ndarray:
        n = len(self)
        if isinstance(key, Tensor) and key.dim() == 0:
            key = key.item()
        if isinstance(key, int | np.integer) and not isinstance(key, bool):
            i = int(key)
            if not -n <= i < n:
                raise IndexError(f"index {i} out of range for {n} samples")
            return i + n if i < 0 else i
        if isinstance(key, slice):
            return np.arange(*key.indices(n), dtype=np.int64)
        if isinstance(key, Tensor):
            key = key.cpu().numpy()
        idx = np.asarray(key)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise TypeError(
                f"index with an int, a slice or a 1-D integer sequence; got {type(key).__name__}"
                f" of dtype {idx.dtype} and shape {idx.shape}"
            )
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"indices must lie in [-{n}, {n - 1}]; got [{idx.min()}, {idx.max()}]")
        return np.where(idx < 0, idx + n, idx)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: Any) -> tuple[Tensor, Any]:
        idx = self._normalize(key)
        if isinstance(idx, int):
            return self._sample(idx), int(self.labels[idx])
        return self.gather(idx), self.labels[torch.from_numpy(idx)]

    def _shard_of(self, i: int) -> int:
        return int(np.searchsorted(self._firsts, i, side="right")) - 1

    def _sample(self, i: int) -> Tensor:
        k = self._shard_of(i)
        view = self._view(k)
        if self.sample_shape is not None:
            return view[i - self._shards[k].first].clone()
        shape = tuple(int(d) for d in self._shapes[i])
        off = int(self._offsets[i])
        return view[off : off + math.prod(shape)].clone().view(shape)

    def gather(self, idx: np.ndarray | Tensor | Sequence[int]) -> Tensor:
        """The images of samples ``idx`` (non-negative, < len) as one (B, *sample_shape) uint8.

        The batch path of ``[]`` without the labels and the index normalisation; what a
        loader calls. Safe to call from several threads (index_select releases the GIL).
        """
        if self.sample_shape is None:
            raise ValueError(
                f"{self.folder}: the samples differ in shape, so they cannot be stacked into "
                "a batch; index one at a time, or write them at one size"
            )
        idx = np.asarray(idx.cpu() if isinstance(idx, Tensor) else idx, dtype=np.int64)
        shard = np.searchsorted(self._firsts, idx, side="right") - 1
        if len(self._shards) == 1 or (idx.size and (shard == shard[0]).all()):
            k = int(shard[0]) if idx.size else 0
            local = torch.from_numpy(idx - self._shards[k].first)
            return self._view(k).index_select(0, local)
        out = torch.empty((len(idx), *self.sample_shape), dtype=torch.uint8)
        for k in np.unique(shard).tolist():
            m = shard == k
            local = torch.from_numpy(idx[m] - self._shards[k].first)
            out[torch.from_numpy(m)] = self._view(k).index_select(0, local)
        return out

    def locate(self, i: int) -> tuple[Path, int, tuple[int, ...]]:
        """Where sample ``i`` lives: ``(shard file, byte offset in it, shape)``."""
        i = self._normalize(i)  # type: ignore[assignment]
        k = self._shard_of(i)
        return self._shards[k].path, int(self._offsets[i]), tuple(int(d) for d in self._shapes[i])

    @property
    def shard_files(self) -> list[Path]:
        """The shard files, in sample order."""
        return [s.path for s in self._shards]

    def to_split(self) -> ImageSplit:
        """All samples in memory as an :class:`ImageSplit` (needs (C, H, W) samples, one shape)."""
        images, labels = self[:]
        return ImageSplit(images, labels, self.classes, self.name)

    def loader(
        self,
        batch_size: int = 128,
        shuffle: bool = True,
        pad_to: int | None = None,
        augment: bool = False,
        normalize: tuple[Any, Any] | None = None,
        device: str | torch.device | None = None,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        workers: int = 0,
        worker_type: str = "thread",
        augment_on: str = "device",
        prefetch: int = 2,
        indices: Sequence[int] | np.ndarray | Tensor | None = None,
    ) -> ShardLoader:
        """Float batches for training or evaluation; see :class:`spr.data.ShardLoader`."""
        from spr.data._shard_loader import ShardLoader

        return ShardLoader(
            self,
            batch_size,
            shuffle,
            pad_to,
            augment,
            normalize,
            device,
            generator,
            drop_last,
            workers,
            worker_type,
            augment_on,
            prefetch,
            indices,
        )

    def __repr__(self) -> str:
        sample = "mixed" if self.sample_shape is None else self.sample_shape
        return (
            f"ShardedDataset(name={self.name!r}, n={len(self)}, shards={len(self._shards)}, "
            f"sample={sample}, classes={len(self.classes)})"
        )

    # --- pickling (DataLoader worker processes): no maps, no locks
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_views"] = [None] * len(self._shards)
        del state["_locks"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._locks = [threading.Lock() for _ in self._shards]


def read_shards(folder: str | os.PathLike[str], verify: str = "lazy") -> ShardedDataset:
    """Open a shard dataset: ``ShardedDataset(folder, verify)``."""
    return ShardedDataset(folder, verify)
