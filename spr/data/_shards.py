"""Packed shards: a dataset written once as raw uint8 samples in a few large files, memory-mapped.

A sample is a copy of its bytes (no decoding); a corrupt shard is reported by its SHA-256.
Format 1 (written by :mod:`spr.data._shard_writer`): ``folder/index.bin`` (written last: the
dataset is complete) and ``shard-<gen>-00000.bin``, ... (``<gen>`` new for every write, so an
overwrite is atomic). Shard ``k`` holds samples ``[first_k, first_k + count_k)``, back to back:
sample ``i`` (uint8, C order) is its bytes ``[offset[i], offset[i] + prod(shape[i]))``.
``index.bin``, little-endian: magic ``b"SPRSHARD"``, uint32 version (1), uint32 J, J bytes of
JSON header ``{"n", "ndim", "dtype": "uint8", "sample_shape" (null if mixed), "classes", "name",
"shards": [{"file", "first", "count", "bytes", "sha256"}, ...]}``, zeros to a multiple of 8,
int64[n] labels, int64[n] offsets, int32[n, ndim] shapes, uint32 CRC-32 of all bytes before.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import threading
import zlib
from collections import namedtuple
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spr.data._loader import ImageSource
from spr.data._split import ImageSplit

__all__ = ["FORMAT_VERSION", "INDEX_NAME", "CorruptShardError", "ShardedDataset", "read_shards"]

FORMAT_VERSION = 1
INDEX_NAME = "index.bin"
MAGIC = b"SPRSHARD"
VERIFY_MODES = ("lazy", "open", "never")
_CHUNK = 8 << 20


class CorruptShardError(ValueError):
    """A shard (or the index) is missing, truncated or does not match its checksum: ``.path``."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = Path(path)


# one shard file: its path, first sample, sample count, byte count, SHA-256
_Shard = namedtuple("_Shard", "path first count bytes sha256")


def _read_index(folder: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    path = folder / INDEX_NAME
    if not path.is_file():
        why = "no such folder" if not folder.is_dir() else f"no {INDEX_NAME} in it"
        raise FileNotFoundError(f"{folder}: not a (complete) shard dataset: {why}. Write one with "
                                "write_shards; a folder whose writing was interrupted has no "
                                "index and cannot be opened")
    raw = path.read_bytes()
    if len(raw) < 20 or raw[:8] != MAGIC:
        raise CorruptShardError(path, f"not a shard index (magic {raw[:8]!r}, want {MAGIC!r})")
    version, hlen = struct.unpack_from("<II", raw, 8)
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: shard format version {version}; this spr reads version "
                         f"{FORMAT_VERSION}")
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
    if (not shards or firsts[0] != 0 or (counts < 1).any()
            or (firsts[1:] != (firsts + counts)[:-1]).any() or firsts[-1] + counts[-1] != n):
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


class ShardedDataset(ImageSource):
    """The packed shards in ``folder``, memory-mapped: ``name``, ``classes``, ``labels`` (N,),
    ``sample_shape`` (None if mixed), ``shard_files``; an ImageSource (``.loader(...)``).

    ``ds[i]`` is ``(image, label)``, ``ds[slice | list | 1-D ints]`` ``(images, labels)``
    (copies). At open the index and the shard sizes are checked (:class:`CorruptShardError`;
    FileNotFoundError without an index), SHA-256 per ``verify``: ``"lazy"`` (a shard when first
    read), ``"open"`` (all now) or ``"never"``. Pickles without its maps.
    """

    device = torch.device("cpu")  # where gather puts the images

    def __init__(self, folder: str | os.PathLike[str], verify: str = "lazy") -> None:
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}; got {verify!r}")
        self.folder = Path(folder)
        self.verify_mode = verify
        header, labels, offsets, shapes = _read_index(self.folder)
        index = self.folder / INDEX_NAME
        try:
            self._shards = [_Shard(self.folder / str(s["file"]), int(s["first"]), int(s["count"]),
                                   int(s["bytes"]), str(s["sha256"])) for s in header["shards"]]
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

    @staticmethod
    def _check_size(s: _Shard) -> None:
        try:
            size = s.path.stat().st_size
        except FileNotFoundError:
            raise CorruptShardError(s.path, "shard file is missing") from None
        if size != s.bytes:
            what = "truncated" if size < s.bytes else "longer than the index says"
            raise CorruptShardError(s.path, f"shard is {what}: {size} bytes on disk, {s.bytes} "
                                    "in the index")

    def _check_sum(self, k: int) -> None:
        s, h = self._shards[k], hashlib.sha256()
        self._check_size(s)
        with open(s.path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        if (digest := h.hexdigest()) != s.sha256:
            raise CorruptShardError(s.path, f"shard checksum mismatch (SHA-256 {digest[:16]}..., "
                                    f"index says {s.sha256[:16]}...): the file is corrupt; "
                                    "rewrite the dataset")
        self._verified[k] = True

    def verify(self) -> None:
        """Check every shard's size and SHA-256 against the index; else raise
        :class:`CorruptShardError` naming the first bad shard (the message lists all)."""
        errors = []
        for k in range(len(self._shards)):
            try:
                self._check_sum(k)
            except CorruptShardError as e:
                errors.append(e)
        if errors:
            names = ", ".join(e.path.name for e in errors)
            more = "" if len(errors) == 1 else f" ({len(errors)} bad shards: {names})"
            raise CorruptShardError(errors[0].path, str(errors[0]).split(": ", 1)[1] + more)

    def prepare(self) -> None:
        """With ``verify="lazy"``, :meth:`verify` now; else nothing."""
        if self.verify_mode == "lazy":
            self.verify()

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
                    flat = torch.from_file(str(s.path), shared=False, size=s.bytes,
                                           dtype=torch.uint8)
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
            raise TypeError(f"index with an int, a slice or a 1-D integer sequence; got "
                            f"{type(key).__name__} of dtype {idx.dtype} and shape {idx.shape}")
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
        shape, off = tuple(int(d) for d in self._shapes[i]), int(self._offsets[i])
        return view[off : off + math.prod(shape)].clone().view(shape)

    def gather(self, idx: np.ndarray | Tensor | Sequence[int]) -> Tensor:
        """The images ``idx`` (each in [0, N)) as (B, *sample_shape) uint8: ``[]`` without labels
        and checks; thread-safe (index_select releases the GIL)."""
        if self.sample_shape is None:
            raise ValueError(f"{self.folder}: the samples differ in shape, so they cannot be "
                             "stacked into a batch; index one at a time, or write them at one size")
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

    def __repr__(self) -> str:
        sample = "mixed" if self.sample_shape is None else self.sample_shape
        return (f"ShardedDataset(name={self.name!r}, n={len(self)}, shards={len(self._shards)}, "
                f"sample={sample}, classes={len(self.classes)})")

    def __getstate__(self) -> dict[str, Any]:  # for worker processes: no maps, no locks
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
