"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from its IDX files, found on this machine.

Each call reads the (gzipped) IDX files from the first folder that has them: ``root`` and
``root/FashionMNIST/raw`` if ``root`` is given; else ``$SPR_DATA/fashion-mnist``, the
repository's ``data/fashion-mnist`` (``make data``), ``/usr/share/datasets/fashion-mnist``.
IDX: magic ``00 00 TT DD`` (element type, dimensions), DD big-endian uint32 sizes, the data.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from spr.data._split import DatasetNotFoundError, ImageSplit, check_split

__all__ = ["FASHION_MNIST_CLASSES", "fashion_mnist", "read_idx"]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def _project_dir() -> Path:  # the repository's data/ (this file is spr/data/_fashion_mnist.py)
    return Path(__file__).resolve().parents[2] / "data" / "fashion-mnist"


def _search_dirs(root: str | os.PathLike[str] | None) -> list[tuple[Path | None, str]]:
    """The folders to search, in order, each with how it was chosen (a None folder: unset)."""
    dirs: list[tuple[Path | None, str]] = []
    if root is not None:  # the caller said where: look nowhere else
        r = Path(root).expanduser()
        return [(r, "root="), (r / "FashionMNIST" / "raw", "root=, torchvision layout")]
    env = os.environ.get("SPR_DATA")
    dirs.append((Path(env).expanduser() / "fashion-mnist" if env else None, "$SPR_DATA"))
    dirs.append((_project_dir(), "the repository's data folder, filled by `make data`"))
    dirs.append((_SYSTEM_DIR, "Debian package dataset-fashion-mnist"))
    return dirs


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):  # the un-gzipped file, if there, reads faster
        if (directory / name).is_file():
            return directory / name
    return None


def fashion_mnist(split: str = "train", root: str | os.PathLike[str] | None = None) -> ImageSplit:
    """Fashion-MNIST's ``"train"`` (60000) or ``"test"`` (10000) split, from local IDX files.

    ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` from the first folder of the module
    docstring that has them: (N, 1, 28, 28) uint8 images, name ``"fashion-mnist-{split}"``.
    Raises DatasetNotFoundError (listing the folders searched, and how to get the data) or
    ValueError (a corrupt or mismatched file).
    """
    check_split(split)
    stems = _FILES[split]
    searched = []
    for directory, why in _search_dirs(root):
        if directory is None:
            searched.append(f"  $SPR_DATA/fashion-mnist ({why} is not set)")
            continue
        found = [_find(directory, stem) for stem in stems]
        if found[0] is not None and found[1] is not None:
            return _read(found[0], found[1], split)
        searched.append(f"  {directory} ({why})")
    raise DatasetNotFoundError(f"Fashion-MNIST ({split} split) not found: looked for {stems[0]}"
                               f"[.gz] and {stems[1]}[.gz] in\n" + "\n".join(searched) + "\n"
                               "To get it: run `make data` in the repository (installs it into "
                               "data/fashion-mnist/), or `apt-get install dataset-fashion-mnist`,"
                               " or pass root= a folder holding the files or a torchvision root "
                               "(holding FashionMNIST/raw/).")


def _read(images_path: Path, labels_path: Path, split: str) -> ImageSplit:
    images, labels = read_idx(images_path), read_idx(labels_path)
    for path, a, what, ndim in ((images_path, images, "images (N, H, W)", 3),
                                (labels_path, labels, "labels (N,)", 1)):
        if a.dtype != np.uint8 or a.ndim != ndim:
            raise ValueError(f"{path}: expected uint8 {what}; got {a.dtype} {a.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} "
                         f"{len(labels)} labels")
    if len(labels) and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{labels_path}: label {labels.max()} out of range 0..9")
    return ImageSplit(torch.from_numpy(images).unsqueeze(1),
                      torch.from_numpy(labels.astype(np.int64)), FASHION_MNIST_CLASSES,
                      f"fashion-mnist-{split}")


_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """An IDX file (gzipped or not: told by its content) as a writable native-endian array of
    the header's shape and type (e.g. (60000, 28, 28) uint8). Raises ValueError naming the file
    if it is not IDX (bad magic), is truncated (or a cut-off gzip stream) or has trailing bytes.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({e})") from e
    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file or truncated: {len(raw)} bytes, shorter than "
                         "the 4-byte magic number")
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or code not in _DTYPES:
        types = ", ".join(f"{c:02x}" for c in _DTYPES)
        raise ValueError(f"{path}: not an IDX file: magic number 0x{raw[:4].hex()} should be "
                         f"0x0000TTDD with type TT in {{{types}}}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX file: {len(raw)} bytes, shorter than its "
                         f"{header}-byte header ({ndim} dimensions)")
    dims, dtype = struct.unpack(f">{ndim}I", raw[4:header]), np.dtype(_DTYPES[code])
    count = math.prod(dims)
    expected, found = count * dtype.itemsize, len(raw) - header
    if found != expected:
        what = "truncated IDX file" if found < expected else "IDX file has trailing bytes"
        raise ValueError(f"{path}: {what}: the header says shape {tuple(dims)} of {dtype.name} "
                         f"({expected} bytes of data), the file holds {found}")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))  # a copy: native byte order and writable
