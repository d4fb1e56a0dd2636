"""Image-classification datasets for the experiments, read offline from files on this machine.

Nothing is downloaded and nothing is cached on disk. ``make data`` installs Fashion-MNIST
into the repository's ``data/fashion-mnist/``; scikit-learn's digits need no files; CIFAR
must be a local copy passed as ``root=``.

Public API:
    ImageSplit            one split: uint8 images (N, C, H, W), int64 labels (N,), class
                          names, name; .to_float(pad_to), .loader(...), .subset(n, seed)
    BatchLoader           the iterable of float (images, labels) batches ImageSplit.loader gives
    fashion_mnist         Fashion-MNIST (60000/10000, 1x28x28) from its IDX files
    digits                scikit-learn's 8x8 digits (1797), a seeded disjoint train/test split
    cifar                 CIFAR-10/100 (50000/10000, 3x32x32) from a local copy, safely unpickled
    load, DATASETS        load a split by name ("fashion-mnist", "digits", "cifar10", "cifar100")
    read_idx              reader of IDX files (gzipped or plain) into numpy arrays
    random_crop_flip      the batch augmentation: random crop with zero padding + horizontal flip
    crop_flip, draw_crop_flip  the same with fixed parameters, and the drawing of them
  packed shards and on-device augmentation (the fast pipeline):
    write_shards          write an ImageSplit or (images, labels) once as packed uint8 shards
    dataset_to_shards     ... a torchvision-style dataset of (image, label) pairs
    image_folder_to_shards  ... a class-per-subfolder tree of PNG/JPEG files, decoded once
    ShardedDataset, read_shards  memory-mapped reading, checksums (.verify), .loader, .to_split
    ShardLoader           float batches from shards: workers gather, the device augments
    CorruptShardError     a missing, truncated or corrupt shard (or index), naming the file
    DeviceAugment         batch pad + random crop + flip + normalise on the batch's device
    augment_batch         that transform with fixed random parameters
    augment_reference     the per-image torchvision reference of augment_batch (for tests)
    dali_available        whether NVIDIA DALI is installed (optional DeviceAugment backend)
    DatasetNotFoundError  a FileNotFoundError saying where we looked and how to get the data
    FASHION_MNIST_CLASSES Fashion-MNIST's ten class names

Example:
    >>> from spr.data import load
    >>> train = load("digits", "train")
    >>> x, y = next(iter(train.loader(batch_size=32, pad_to=16, augment=True)))
    >>> x.shape, x.dtype, y.shape
    (torch.Size([32, 1, 16, 16]), torch.float32, torch.Size([32]))
"""

from spr.data._augment import crop_flip, draw_crop_flip, random_crop_flip
from spr.data._cifar import cifar
from spr.data._convert import dataset_to_shards, image_folder_to_shards
from spr.data._device_augment import (
    DeviceAugment,
    augment_batch,
    augment_reference,
    dali_available,
)
from spr.data._digits import digits
from spr.data._errors import DatasetNotFoundError
from spr.data._fashion_mnist import FASHION_MNIST_CLASSES, fashion_mnist
from spr.data._idx import read_idx
from spr.data._registry import DATASETS, load
from spr.data._shard_loader import ShardLoader
from spr.data._shards import CorruptShardError, ShardedDataset, read_shards, write_shards
from spr.data._split import BatchLoader, ImageSplit

__all__ = [
    "BatchLoader",
    "CorruptShardError",
    "DATASETS",
    "DatasetNotFoundError",
    "DeviceAugment",
    "FASHION_MNIST_CLASSES",
    "ImageSplit",
    "ShardLoader",
    "ShardedDataset",
    "augment_batch",
    "augment_reference",
    "cifar",
    "crop_flip",
    "dali_available",
    "dataset_to_shards",
    "digits",
    "draw_crop_flip",
    "fashion_mnist",
    "image_folder_to_shards",
    "load",
    "random_crop_flip",
    "read_idx",
    "read_shards",
    "write_shards",
]
