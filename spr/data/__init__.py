"""Image-classification datasets, read offline from files on this machine; batches over them.

Nothing is downloaded or cached (``make data`` installs Fashion-MNIST; CIFAR needs ``root=``).

Public API:
    ImageSplit            a split in memory: uint8 images (N, C, H, W), int64 labels, classes
    fashion_mnist, digits, cifar, load, DATASETS, read_idx, FASHION_MNIST_CLASSES,
    DatasetNotFoundError  the datasets, by function or by name
    write_shards, dataset_to_shards, image_folder_to_shards  write packed uint8 shards once
    ShardedDataset, read_shards, CorruptShardError  read them, memory-mapped, checksummed
    ImageSource           what a loader reads: ImageSplit and ShardedDataset
    ImageLoader           float batches, what both ``.loader`` give: loader(batch_size, shuffle,
                          pad_to, augment, *, normalize, device, generator, drop_last, workers,
                          worker_type, augment_on, prefetch, indices)
    Augment, augment_batch, draw_crop_flip  batch pad + random crop + flip + normalise on the
                          batch's device; with fixed parameters; their drawing
    augment_reference     the per-image torchvision reference of augment_batch (for tests)

Deprecated (warn, forward; gone next release): ``BatchLoader``, ``ShardLoader`` (``.loader``),
``DeviceAugment``, ``random_crop_flip`` (``Augment``), ``crop_flip`` (``augment_batch``).

Example:
    >>> from spr.data import load
    >>> x, y = next(iter(load("digits", "train").loader(32, pad_to=16, augment=True)))
    >>> x.shape, x.dtype, y.shape
    (torch.Size([32, 1, 16, 16]), torch.float32, torch.Size([32]))
"""

from typing import Any

from mip._deprecation import warn_deprecated
from spr.data._augment import Augment, augment_batch, augment_reference, draw_crop_flip
from spr.data._cifar import cifar
from spr.data._deprecated import DEPRECATED
from spr.data._digits import digits
from spr.data._fashion_mnist import FASHION_MNIST_CLASSES, fashion_mnist, read_idx
from spr.data._loader import ImageLoader, ImageSource
from spr.data._registry import DATASETS, load
from spr.data._shard_writer import dataset_to_shards, image_folder_to_shards, write_shards
from spr.data._shards import CorruptShardError, ShardedDataset, read_shards
from spr.data._split import DatasetNotFoundError, ImageSplit

__all__ = [
    "Augment", "CorruptShardError", "DATASETS", "DatasetNotFoundError", "FASHION_MNIST_CLASSES",
    "ImageLoader", "ImageSource", "ImageSplit", "ShardedDataset", "augment_batch",
    "augment_reference", "cifar", "dataset_to_shards", "digits", "draw_crop_flip",
    "fashion_mnist", "image_folder_to_shards", "load", "read_idx", "read_shards", "write_shards",
]


def __getattr__(name: str) -> Any:
    if name in DEPRECATED:
        new, forward = DEPRECATED[name]
        warn_deprecated(name, new)
        return forward
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
