"""Fashion-MNIST: the real files when installed, the search order, the not-found message."""

import gzip
import struct

import numpy as np
import pytest
import torch

from spr.data import FASHION_MNIST_CLASSES, DatasetNotFoundError, fashion_mnist
from spr.data import _fashion_mnist as fm

STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_split(folder, split, n, fill, gz=True):
    """Write a small synthetic split (all pixels = fill) in IDX format; returns its labels."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.arange(n, dtype=np.uint8) % 10
    images = np.full((n, 28, 28), fill, np.uint8)
    for stem, a in zip(STEMS[split], (images, labels), strict=True):
        data = bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return labels


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """Hide every place the data may be on this machine; tests add back what they need."""
    monkeypatch.delenv("SPR_DATA", raising=False)
    monkeypatch.setattr(fm, "_SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr(fm, "_project_dir", lambda: tmp_path / "project" / "fashion-mnist")
    return tmp_path


@pytest.fixture(scope="module")
def installed_dir():
    """The folder the real data is read from, or skip."""
    try:
        fashion_mnist("test")
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST not installed: run `make data`")
    return next(d for d, _ in fm._search_dirs(None) if d and fm._find(d, STEMS["test"][0]))


@pytest.fixture(scope="module")
def train(installed_dir):
    return fashion_mnist("train")


def test_train_split(train):
    assert len(train) == 60000 and train.name == "fashion-mnist-train"
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64
    assert train.classes == FASHION_MNIST_CLASSES and len(train.classes) == 10
    assert train.labels.bincount().tolist() == [6000] * 10
    assert train.classes[int(train.labels[0])] == "Ankle boot"


def test_test_split(installed_dir):
    test = fashion_mnist("test")
    assert test.images.shape == (10000, 1, 28, 28)
    assert test.labels.bincount().tolist() == [1000] * 10


def test_torchvision_root_with_the_real_files(installed_dir, nowhere):
    raw = nowhere / "tv" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in STEMS["test"]:
        src = fm._find(installed_dir, stem)
        (raw / src.name).symlink_to(src)
    test = fashion_mnist("test", root=nowhere / "tv")
    assert test.images.shape == (10000, 1, 28, 28)
    with pytest.raises(DatasetNotFoundError):  # only the test files were linked
        fashion_mnist("train", root=nowhere / "tv")


@pytest.mark.parametrize("gz", [True, False])
def test_root_and_torchvision_layout(nowhere, gz):
    labels = write_split(nowhere / "flat", "test", 7, fill=1, gz=gz)
    write_split(nowhere / "tv" / "FashionMNIST" / "raw", "train", 5, fill=2, gz=gz)
    test = fashion_mnist("test", root=nowhere / "flat")
    assert test.images.shape == (7, 1, 28, 28) and (test.images == 1).all()
    assert test.labels.tolist() == labels.tolist() and test.name == "fashion-mnist-test"
    assert len(fashion_mnist("train", root=str(nowhere / "tv"))) == 5


def test_search_order(nowhere, monkeypatch):
    write_split(nowhere / "system", "test", 4, fill=4)
    assert int(fashion_mnist("test").images[0, 0, 0, 0]) == 4
    write_split(nowhere / "project" / "fashion-mnist", "test", 3, fill=3)
    assert int(fashion_mnist("test").images[0, 0, 0, 0]) == 3
    write_split(nowhere / "env" / "fashion-mnist", "test", 2, fill=2)
    monkeypatch.setenv("SPR_DATA", str(nowhere / "env"))
    assert int(fashion_mnist("test").images[0, 0, 0, 0]) == 2
    write_split(nowhere / "root", "test", 1, fill=1)
    assert int(fashion_mnist("test", root=nowhere / "root").images[0, 0, 0, 0]) == 1
    # an explicit root is final: without the files there, it is an error
    with pytest.raises(DatasetNotFoundError, match="empty"):
        fashion_mnist("test", root=nowhere / "empty")


def test_project_dir_is_next_to_the_package():
    import spr

    assert fm._project_dir().parent.parent == fm.Path(spr.__file__).resolve().parents[1]


def test_not_found_message(nowhere, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as err:
        fashion_mnist("train", root=nowhere / "mine")
    assert isinstance(err.value, FileNotFoundError)
    msg = str(err.value)
    assert "make data" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "train-images-idx3-ubyte[.gz]" in msg
    for place in ["mine", "mine/FashionMNIST/raw"]:
        assert str(nowhere / place) in msg
    with pytest.raises(DatasetNotFoundError) as err:
        fashion_mnist("train")
    msg = str(err.value)
    for place in ["project/fashion-mnist", "system"]:
        assert str(nowhere / place) in msg
    assert "SPR_DATA" in msg and "not set" in msg
    monkeypatch.setenv("SPR_DATA", str(nowhere / "env"))
    with pytest.raises(DatasetNotFoundError, match="env/fashion-mnist"):
        fashion_mnist("test")


def test_mismatched_files(nowhere):
    write_split(nowhere / "a", "test", 4, fill=0)
    labels = nowhere / "a" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2])))
    with pytest.raises(ValueError, match="4 images but .*t10k-labels-idx1-ubyte.gz 3 labels"):
        fashion_mnist("test", root=nowhere / "a")


def test_bad_split():
    with pytest.raises(ValueError, match="split must be one of"):
        fashion_mnist("validation")
