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
    DatasetNotFoundError  a FileNotFoundError saying where we looked and how to get the data
    FASHION_MNIST_CLASSES Fashion-MNIST's ten class names

Example:
    >>> from spr.data import load
    >>> train = load("digits", "train")
    >>> x, y = next(iter(train.loader(batch_size=32, pad_to=16, augment=True)))
    >>> x.shape, x.dtype, y.shape
    (torch.Size([32, 1, 16, 16]), torch.float32, torch.Size([32]))
"""

from spr.data._augment import random_crop_flip
from spr.data._cifar import cifar
from spr.data._digits import digits
from spr.data._errors import DatasetNotFoundError
from spr.data._fashion_mnist import FASHION_MNIST_CLASSES, fashion_mnist
from spr.data._idx import read_idx
from spr.data._registry import DATASETS, load
from spr.data._split import BatchLoader, ImageSplit

__all__ = [
    "BatchLoader",
    "DATASETS",
    "DatasetNotFoundError",
    "FASHION_MNIST_CLASSES",
    "ImageSplit",
    "cifar",
    "digits",
    "fashion_mnist",
    "load",
    "random_crop_flip",
    "read_idx",
]
