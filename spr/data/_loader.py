"""One loader of float ``(images, labels)`` batches over any image source, in memory or in shards.

A batch: indices and augmentation parameters drawn here, in batch order, from one CPU generator
(so nothing else changes the batches); a gather of uint8 images; the copy to ``device``; the
:class:`~spr.data.Augment` transform there."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spr.data._augment import Augment

__all__ = ["ImageLoader", "ImageSource"]

Batch = tuple[Tensor, Tensor]
Task = tuple[Any, Any, Any]  # (indices, shifts, flips): tensors (numpy to a process), or None


class ImageSource:
    """What :class:`ImageLoader` reads (ImageSplit, ShardedDataset): ``len()`` uint8 images of
    ``sample_shape`` (C, H, W; None if mixed) with ``labels`` (N,) on ``device``; ``name``."""

    labels: Tensor
    name: str
    sample_shape: tuple[int, ...] | None
    device: torch.device

    def gather(self, idx: Any) -> Tensor:
        """The images of samples ``idx`` ((B,) int64, each in [0, N)) as (B, C, H, W) uint8."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Do now the checks a read would do lazily (before worker processes copy the source)."""

    def loader(self, batch_size: int = 128, shuffle: bool = True, pad_to: int | None = None,
               augment: bool = False, **options: Any) -> ImageLoader:
        """Float batches: ``ImageLoader(self, batch_size, shuffle, pad_to, augment, **options)``,
        ``options`` its keyword-only settings (``normalize``, ``device``, ``generator``, ...)."""
        return ImageLoader(self, batch_size, shuffle, pad_to, augment, **options)


class _Plan(torch.utils.data.Sampler):
    """The tasks of one pass, drawn lazily but in batch order. Holds the loader's settings, not
    the loader: a cycle through a persistent DataLoader would leave its worker processes to the
    garbage collector, whose late shutdown waits seconds for them."""

    def __init__(self, loader: ImageLoader, numpy: bool = False) -> None:
        self.n = len(loader.source) if loader.indices is None else len(loader.indices)
        self.device, self.numpy, self.indices = loader.source.device, numpy, loader.indices
        self.batch_size, self.drop_last, self.shuffle = (loader.batch_size, loader.drop_last,
                                                         loader.shuffle)
        self.generator, self.transform = loader.generator, loader.transform

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[Task]:
        n, g = self.n, self.generator
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        if self.indices is not None:
            order = self.indices[order]
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            task = (idx, *(self.transform.draw(len(idx), g) or (None, None)))
            yield tuple(None if t is None else t.numpy() for t in task) if self.numpy else task


def _load(source: ImageSource, transform: Augment | None, task: Task, pin: bool) -> tuple:
    """Gather one task's batch (and transform it, if ``transform``): ``(x, y, shifts, flips)``."""
    idx, shifts, flips = (None if t is None else torch.as_tensor(t) for t in task)
    x, y = source.gather(idx), source.labels[idx]
    if transform is not None:
        x = transform.apply(x, None if shifts is None else (shifts, flips))
    out = (x, y, shifts, flips)  # page-locked if ``pin``: the copies to a GPU are asynchronous
    return tuple(t.pin_memory() if pin and t is not None else t for t in out)


class _TaskDataset(torch.utils.data.Dataset):
    """What a worker process runs: a task in, ``(images, labels, shifts, flips)`` out."""

    def __init__(self, source: ImageSource, transform: Augment | None) -> None:
        self.source, self.transform = source, transform

    def __getitem__(self, task: Task) -> tuple:
        return _load(self.source, self.transform, task, pin=False)


class ImageLoader:
    """Float ``(images, labels)`` batches of an :class:`ImageSource`, like a DataLoader; what
    ``ImageSplit.loader`` and ``ShardedDataset.loader`` return. A new order each pass.

    Args:
        pad_to, augment: zero-pad to ``pad_to x pad_to``, centred; random crop (padding 4), flip.
        normalize: ``(mean, std)`` per channel (0..1 units), or None for [0, 1] pixels.
        device: where the (B, C, S, S) float32 and (B,) int64 batches go (default: the source's).
        generator: a CPU ``torch.Generator`` (the global RNG if None).
        workers: threads (``worker_type="thread"``) or processes (``"process"``: a persistent
            pool, :meth:`close` stops it) gathering ``prefetch`` batches each ahead of use.
        augment_on: ``"device"`` (uint8 to the device, transform there) or ``"cpu"`` (where
            the batch is gathered). ``indices``: these samples only (e.g. a training subset).

    Example:
        >>> import tempfile
        >>> from spr.data import digits, write_shards
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     loader = write_shards(digits("train"), tmp).loader(
        ...         256, pad_to=12, augment=True, normalize=(0.3, 0.4), workers=2)
        ...     len(loader), next(iter(loader))[0].shape
        (6, torch.Size([256, 1, 12, 12]))
    """

    def __init__(self, source: ImageSource, batch_size: int = 128, shuffle: bool = True,
                 pad_to: int | None = None, augment: bool = False, *,
                 normalize: tuple[Any, Any] | None = None,
                 device: str | torch.device | None = None,
                 generator: torch.Generator | None = None, drop_last: bool = False,
                 workers: int = 0, worker_type: str = "thread", augment_on: str = "device",
                 prefetch: int = 2,
                 indices: Sequence[int] | np.ndarray | Tensor | None = None) -> None:
        shape = source.sample_shape
        if shape is None or len(shape) != 3:
            what = "of mixed shapes" if shape is None else f"of shape {shape}"
            raise ValueError(f"{source.name}: a loader needs (C, H, W) samples of one shape; the "
                             f"samples are {what}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if pad_to is not None and pad_to < max(shape[1:]):
            raise ValueError(f"pad_to must be at least the image size {shape[1]}x{shape[2]}; got "
                             f"{pad_to}")
        if workers < 0 or prefetch < 1:
            raise ValueError(f"workers must be >= 0 and prefetch >= 1; got {workers}, {prefetch}")
        if worker_type not in _WORKERS:
            raise ValueError(f"worker_type must be one of {tuple(_WORKERS)}; got {worker_type!r}")
        if augment_on not in ("device", "cpu"):
            raise ValueError(f"augment_on must be 'device' or 'cpu'; got {augment_on!r}")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError("generator must be a CPU torch.Generator (the order and the "
                             "augmentation parameters are drawn on the CPU, then moved); got one "
                             f"on {generator.device}")
        if workers and source.device.type != "cpu":
            raise ValueError(f"workers gather on the CPU; the source is on {source.device}")
        if indices is not None:
            indices = np.asarray(indices.cpu() if isinstance(indices, Tensor) else indices)
            if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
                raise ValueError(f"indices must be a 1-D integer sequence; got {indices.dtype}")
            if indices.size and (indices.min() < 0 or indices.max() >= len(source)):
                raise ValueError(f"indices must lie in [0, {len(source) - 1}]")
            indices = torch.from_numpy(indices.astype(np.int64)).to(source.device)
        mean, std = normalize if normalize is not None else (None, None)
        self.transform = Augment(pad_to=pad_to, crop=augment, flip=augment, mean=mean, std=std)
        if self.transform.mean is not None and len(self.transform.mean) not in (1, shape[0]):
            raise ValueError(f"normalize needs 1 or {shape[0]} values per statistic")
        self.source, self.indices, self.batch_size = source, indices, batch_size
        self.shuffle = shuffle
        self.device = torch.device(device) if device is not None else source.device
        self.generator, self.drop_last, self.workers = generator, drop_last, workers
        self.worker_type, self.augment_on, self.prefetch = worker_type, augment_on, prefetch
        self._pin = self.device.type == "cuda" and source.device.type == "cpu"
        self._pool: torch.utils.data.DataLoader | None = None

    def __len__(self) -> int:
        return len(_Plan(self))

    def __iter__(self) -> Iterator[Batch]:
        return self._inline() if self.workers == 0 else _WORKERS[self.worker_type](self)

    def close(self) -> None:
        """Stop the worker processes now (else they stop when the loader is dropped)."""
        self._pool = None

    def _cpu_transform(self) -> Augment | None:
        return self.transform if self.augment_on == "cpu" else None

    def _finish(self, x: Tensor, y: Tensor, shifts: Any, flips: Any) -> Batch:
        nb = self.device.type == "cuda"
        x, y = x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb)
        if self.augment_on == "device":
            x = self.transform.apply(x, None if shifts is None else (shifts, flips))
        return x, y

    def _inline(self) -> Iterator[Batch]:
        for task in _Plan(self):
            yield self._finish(*_load(self.source, self._cpu_transform(), task, self._pin))

    def _threads(self) -> Iterator[Batch]:
        tasks, pending = iter(_Plan(self)), deque[Future]()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="spr-loader")
        args = (self.source, self._cpu_transform())
        try:  # workers * prefetch tasks in flight; one more submitted per batch taken
            for task in islice(tasks, self.workers * self.prefetch):
                pending.append(pool.submit(_load, *args, task, self._pin))
            while pending:
                out = pending.popleft().result()
                for task in islice(tasks, 1):
                    pending.append(pool.submit(_load, *args, task, self._pin))
                yield self._finish(*out)
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True)

    def _processes(self) -> Iterator[Batch]:
        if self._pool is None:
            self.source.prepare()  # once here, not once per worker
            self._pool = torch.utils.data.DataLoader(
                _TaskDataset(self.source, self._cpu_transform()), batch_size=None,
                sampler=_Plan(self, numpy=True), num_workers=self.workers, pin_memory=self._pin,
                persistent_workers=True, prefetch_factor=self.prefetch)
        for x, y, s, f in self._pool:
            yield self._finish(x, y, s, f)


# worker_type -> how a pass with workers runs
_WORKERS: dict[str, Callable[[ImageLoader], Iterator[Batch]]] = {
    "thread": ImageLoader._threads, "process": ImageLoader._processes}
