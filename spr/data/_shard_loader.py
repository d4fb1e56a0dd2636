"""Batches from packed shards: gather uint8 samples, move them, augment them on the device.

One batch is: its indices (a slice of the epoch's permutation), its random augmentation
parameters, a gather of the uint8 samples from the memory-mapped shards (no decoding), the
copy to the device (uint8: a quarter of float32's bytes; pinned and asynchronous to a GPU)
and the :class:`~spr.data.DeviceAugment` transform there. Workers (threads or processes)
can do the gathering, and with ``augment_on="cpu"`` the transform as well, ahead of time.

The permutation and every batch's parameters are drawn in the main process from one CPU
``generator``, in batch order, so the batches do not depend on the workers, their kind or
scheduling, or on where the transform runs: equally seeded loaders yield identical batches
however configured, and (without ``normalize``) the same batches as
:meth:`spr.data.ImageSplit.loader` over the same data.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from spr.data._device_augment import DeviceAugment

if TYPE_CHECKING:
    from spr.data._shards import ShardedDataset

__all__ = ["ShardLoader"]

# one unit of work: (indices, shifts, flips); the last two None without augmentation
Task = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]


class _TaskDataset(torch.utils.data.Dataset):
    """What a worker process runs: a task in, ``(images, labels, shifts, flips)`` out."""

    def __init__(self, dataset: ShardedDataset, transform: DeviceAugment | None) -> None:
        self.dataset = dataset
        self.transform = transform

    def __getitem__(self, task: Task) -> tuple[Tensor, Tensor, Any, Any]:
        return _load(self.dataset, self.transform, task, pin=False)

    def __len__(self) -> int:
        return len(self.dataset)


class _TaskSampler(torch.utils.data.Sampler):
    """The tasks of one pass, drawn lazily but always in batch order (so reproducibly).

    Holds the loader's settings, not the loader: a reference cycle through a persistent
    DataLoader would leave its worker processes to the garbage collector, whose late
    shutdown waits seconds for them.
    """

    def __init__(
        self,
        n: int,
        indices: np.ndarray | None,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        generator: torch.Generator | None,
        transform: DeviceAugment,
    ) -> None:
        self.n, self.indices, self.batch_size = n, indices, batch_size
        self.shuffle, self.drop_last, self.generator = shuffle, drop_last, generator
        self.transform = transform

    def __len__(self) -> int:
        n = self.n if self.indices is None else len(self.indices)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Task]:
        n = self.n if self.indices is None else len(self.indices)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).numpy()
        else:
            order = np.arange(n, dtype=np.int64)
        if self.indices is not None:
            order = self.indices[order]
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            params = self.transform.draw(len(idx), self.generator)
            if params is None:
                yield idx, None, None
            else:
                yield idx, params[0].numpy(), params[1].numpy()


def _load(
    dataset: ShardedDataset, transform: DeviceAugment | None, task: Task, pin: bool
) -> tuple[Tensor, Tensor, Any, Any]:
    idx, shifts, flips = task
    x = dataset.gather(idx)
    y = dataset.labels[torch.from_numpy(idx)]
    s = None if shifts is None else torch.from_numpy(shifts)
    f = None if flips is None else torch.from_numpy(flips)
    if transform is not None:
        x = transform.apply(x, None if s is None else (s, f))
    if pin:  # page-locked: the copies to the GPU are asynchronous
        x, y = x.pin_memory(), y.pin_memory()
        s, f = (None, None) if s is None else (s.pin_memory(), f.pin_memory())
    return x, y, s, f


class ShardLoader:
    """Iterable over float ``(images, labels)`` batches of a :class:`ShardedDataset`.

    Used like a DataLoader (``for x, y in loader``, ``len(loader)``); what
    :meth:`ShardedDataset.loader` returns. Each pass draws a new order (``shuffle``) and new
    augmentations from ``generator``.

    Args:
        dataset: a :class:`ShardedDataset` of (C, H, W) samples of one shape.
        batch_size: samples per batch.
        shuffle: a new random order every pass (else the stored order).
        pad_to: zero-pad each image, centred, to ``pad_to x pad_to`` (28 -> 32).
        augment: random crop (4 pixels of zero padding) and horizontal flip.
        normalize: ``(mean, std)`` per channel (in 0..1 units), or None for [0, 1] pixels.
        device: where the batches go (and the transform runs when ``augment_on="device"``);
            the CPU if None.
        generator: a CPU ``torch.Generator`` for the order and the augmentation parameters
            (the global RNG if None).
        drop_last: drop a last, smaller batch.
        workers: background workers gathering (and with ``augment_on="cpu"``, transforming)
            batches ahead of use; 0 does everything in the iterating thread.
        worker_type: ``"thread"`` (cheap to start; the gather releases the GIL) or
            ``"process"`` (a persistent ``torch.utils.data.DataLoader`` pool; with
            ``verify="lazy"`` the shards are verified once, in this process, when it starts).
        augment_on: ``"device"`` (uint8 to the device, transform there) or ``"cpu"`` (the
            transform on the CPU, in the workers if any, then float32 to the device).
        prefetch: batches in flight per worker.
        indices: iterate over these samples only (e.g. a training subset), or all if None.

    Yields:
        ``(images, labels)``: (B, C, S, S) float32 and (B,) int64 on ``device``, S = pad_to
        (or the image size).

    The settings are fixed at construction (make a new loader to change them). Process
    workers persist from the first pass until :meth:`close` or the loader is dropped.

    Example:
        >>> import tempfile
        >>> from spr.data import digits, write_shards
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     ds = write_shards(digits("train"), tmp)
        ...     loader = ds.loader(batch_size=256, pad_to=12, augment=True, normalize=(0.3, 0.4),
        ...                        generator=torch.Generator().manual_seed(0), workers=2)
        ...     x, y = next(iter(loader))
        ...     len(loader), x.shape, x.dtype, y.shape
        (6, torch.Size([256, 1, 12, 12]), torch.float32, torch.Size([256]))
    """

    def __init__(
        self,
        dataset: ShardedDataset,
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
    ) -> None:
        shape = dataset.sample_shape
        if shape is None or len(shape) != 3:
            raise ValueError(
                f"{dataset.folder}: a loader needs (C, H, W) samples of one shape; the samples "
                f"are {'of mixed shapes' if shape is None else f'of shape {shape}'}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if pad_to is not None and pad_to < max(shape[1:]):
            raise ValueError(f"pad_to must be at least the image size {shape[1:]}; got {pad_to}")
        if workers < 0 or prefetch < 1:
            raise ValueError(f"workers must be >= 0 and prefetch >= 1; got {workers}, {prefetch}")
        if worker_type not in ("thread", "process"):
            raise ValueError(f"worker_type must be 'thread' or 'process'; got {worker_type!r}")
        if augment_on not in ("device", "cpu"):
            raise ValueError(f"augment_on must be 'device' or 'cpu'; got {augment_on!r}")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(
                "generator must be a CPU torch.Generator (the order and the augmentation "
                f"parameters are drawn on the CPU, then moved); got one on {generator.device}"
            )
        if indices is not None:
            indices = np.asarray(indices.cpu() if isinstance(indices, Tensor) else indices)
            n = len(dataset)
            if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
                raise ValueError(f"indices must be a 1-D integer sequence; got {indices.dtype}")
            if indices.size and (indices.min() < 0 or indices.max() >= n):
                raise ValueError(f"indices must lie in [0, {n - 1}]")
            indices = indices.astype(np.int64)
        self.indices = indices
        mean, std = normalize if normalize is not None else (None, None)
        self.transform = DeviceAugment(
            pad_to=pad_to, crop=augment, flip=augment, mean=mean, std=std
        )
        if self.transform.mean is not None and len(self.transform.mean) not in (1, shape[0]):
            raise ValueError(f"normalize needs 1 or {shape[0]} values per statistic")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.generator = generator
        self.drop_last = drop_last
        self.workers = workers
        self.worker_type = worker_type
        self.augment_on = augment_on
        self.prefetch = prefetch
        self._sampler = _TaskSampler(
            len(dataset), indices, batch_size, shuffle, drop_last, generator, self.transform
        )
        self._pool: torch.utils.data.DataLoader | None = None

    def __len__(self) -> int:
        return len(self._sampler)

    def _finish(self, x: Tensor, y: Tensor, shifts: Any, flips: Any) -> tuple[Tensor, Tensor]:
        nb = self.device.type == "cuda"
        x, y = x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb)
        if self.augment_on == "device":
            x = self.transform.apply(x, None if shifts is None else (shifts, flips))
        return x, y

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.workers == 0:
            return self._iter_inline()
        if self.worker_type == "thread":
            return self._iter_threads()
        return self._iter_processes()

    def _cpu_transform(self) -> DeviceAugment | None:
        return self.transform if self.augment_on == "cpu" else None

    def _iter_inline(self) -> Iterator[tuple[Tensor, Tensor]]:
        pin = self.device.type == "cuda"
        for task in iter(self._sampler):
            yield self._finish(*_load(self.dataset, self._cpu_transform(), task, pin))

    def _iter_threads(self) -> Iterator[tuple[Tensor, Tensor]]:
        pin = self.device.type == "cuda"
        tasks = iter(self._sampler)
        pending: deque[Future] = deque()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="spr-shards")
        try:
            for task in tasks:
                pending.append(pool.submit(_load, self.dataset, self._cpu_transform(), task, pin))
                if len(pending) >= self.workers * self.prefetch:
                    break
            while pending:
                out = pending.popleft().result()
                task = next(tasks, None)
                if task is not None:
                    pending.append(
                        pool.submit(_load, self.dataset, self._cpu_transform(), task, pin)
                    )
                yield self._finish(*out)
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True)

    def close(self) -> None:
        """Stop the worker processes now (else they stop when the loader is dropped)."""
        self._pool = None

    def _iter_processes(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self._pool is None:
            if self.dataset.verify_mode == "lazy":
                self.dataset.verify()  # once here, not once per worker
            self._pool = torch.utils.data.DataLoader(
                _TaskDataset(self.dataset, self._cpu_transform()),
                batch_size=None,
                sampler=self._sampler,
                num_workers=self.workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=True,
                prefetch_factor=self.prefetch,
            )
        for x, y, s, f in self._pool:
            yield self._finish(x, y, s, f)
