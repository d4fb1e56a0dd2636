"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from a local copy in torchvision's layout (no network).

The pickles are read refusing every global but numpy's ``_reconstruct``, ``ndarray``, ``dtype``
(unpickling can run arbitrary code)."""

from __future__ import annotations

import importlib
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spr.data._split import DatasetNotFoundError, ImageSplit, check_split

__all__ = ["cifar"]

_ALLOWED_GLOBALS = {  # _reconstruct as numpy 1.x (the original files) and 2.x pickle it
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}
_LAYOUT = {  # classes: (folder, train files, test files, meta file, label key, class-names key)
    10: ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
         "batches.meta", "labels", "label_names"),
    100: ("cifar-100-python", ("train",), ("test",), "meta", "fine_labels", "fine_label_names"),
}


def _numpy_global(name: str) -> Any:
    if name == "_reconstruct":
        try:  # numpy >= 2; numpy.core is a deprecated alias there
            module = importlib.import_module("numpy._core.multiarray")
        except ImportError:  # numpy 1.x
            module = importlib.import_module("numpy.core.multiarray")
        return module._reconstruct
    return getattr(np, name)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the numpy globals needed for arrays and refuses the rest."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")  # as the official loader: str -> bytes
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _numpy_global(name)
        raise pickle.UnpicklingError(f"{self._path}: refusing to load global {module}.{name}: a "
                                     "CIFAR file holds only dicts, lists, bytes and numpy arrays "
                                     "(is this really a CIFAR file?)")


def _unpickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f, path).load()


def _get(d: Any, key: str, path: Path) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a pickled dict; got {type(d).__name__}")
    for k in (key.encode(), key):  # bytes keys in the original files; str if re-pickled
        if k in d:
            return d[k]
    raise ValueError(f"{path}: no {key!r} entry; the entries are {sorted(map(str, d))}")


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    data, labels = _get(d, "data", path), _get(d, label_key, path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ValueError(f"{path}: 'data' must be a uint8 array (N, 3072)")
    if data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: 'data' must have 3072 columns; got shape {data.shape}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(data),):
        raise ValueError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    return data, labels


def cifar(root: str | os.PathLike[str], split: str = "train", classes: int = 10) -> ImageSplit:
    """CIFAR-10 or CIFAR-100 (fine labels), (N, 3, 32, 32) uint8: ``root`` holds (torchvision's
    root) or is ``cifar-10-batches-py/`` or ``cifar-100-python/``. Raises DatasetNotFoundError,
    pickle.UnpicklingError (a non-numpy global) or ValueError (not CIFAR's structure)."""
    check_split(split)
    if classes not in _LAYOUT:
        raise ValueError(f"classes must be 10 or 100; got {classes!r}")
    folder, train_files, test_files, meta, label_key, names_key = _LAYOUT[classes]
    files = train_files if split == "train" else test_files
    if root is None:
        raise DatasetNotFoundError(_not_found(classes, folder, None, files + (meta,)))
    r = Path(root).expanduser()
    base = next((d for d in (r / folder, r) if all((d / f).is_file() for f in files + (meta,))),
                None)
    if base is None:
        missing = tuple(f for f in files + (meta,) if not (r / folder / f).is_file())
        raise DatasetNotFoundError(_not_found(classes, folder, r / folder, missing))
    batches = [_read_batch(base / f, label_key) for f in files]
    data = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    names = tuple(n.decode() if isinstance(n, bytes) else str(n)
                  for n in _get(_unpickle(base / meta), names_key, base / meta))
    if len(labels) and not 0 <= labels.min() <= labels.max() < len(names):
        raise ValueError(f"{base}: labels in [{labels.min()}, {labels.max()}] but {len(names)} "
                         "class names")
    return ImageSplit(torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.from_numpy(labels),
                      names, f"cifar{classes}-{split}")


def _not_found(classes: int, folder: str, where: Path | None, missing: tuple[str, ...]) -> str:
    place = "no root= given" if where is None else f"missing in {where}: {', '.join(missing)}"
    return (f"CIFAR-{classes} not found ({place}). CIFAR cannot be downloaded here (no network): "
            f"pass root= the folder holding your local copy's {folder}/ (torchvision's layout, "
            f"e.g. from torchvision.datasets.CIFAR{classes}(root, download=True) run on a "
            "machine with network).")
