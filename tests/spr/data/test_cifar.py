"""CIFAR-10/100 in CIFAR's own pickle format, written here; the restricted unpickler."""

import os
import pickle

import numpy as np
import pytest
import torch

from spr.data import DatasetNotFoundError, cifar, load

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]  # fmt: skip


def dump(path, obj, protocol=4):
    # protocol 4 pickles bytes as bytes and arrays through numpy's _reconstruct, like the
    # original (Python 2, protocol 2) files; protocol 2 under Python 3 needs _codecs.encode
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def batch(rng, n, label_key, n_classes):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, n_classes, n).tolist()
    return {b"batch_label": b"batch", b"data": data, label_key: labels, b"filenames": [b"x.png"]}


@pytest.fixture
def cifar10_root(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    batches = [batch(rng, 3 + i, b"labels", 10) for i in range(6)]
    for i, b in enumerate(batches[:5]):
        dump(d / f"data_batch_{i + 1}", b)
    dump(d / "test_batch", batches[5])
    meta = {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072}
    dump(d / "batches.meta", meta)
    return tmp_path, batches


def test_cifar10_reads_back_exactly(cifar10_root):
    root, batches = cifar10_root
    train = cifar(root, "train")
    data = np.concatenate([b[b"data"] for b in batches[:5]])
    assert train.images.shape == (len(data), 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == sum((b[b"labels"] for b in batches[:5]), [])
    assert train.classes == tuple(CIFAR10_NAMES) and train.name == "cifar10-train"
    # channel-major rows: R plane (1024 values, row-major 32x32), then G, then B
    i, h, w = 4, 5, 17
    for c in range(3):
        assert train.images[i, c, h, w] == data[i, c * 1024 + h * 32 + w]
    assert torch.equal(
        train.images[:, 1].reshape(len(data), -1), torch.from_numpy(data[:, 1024:2048])
    )
    test = load("cifar10", "test", root=root)
    assert torch.equal(test.images.reshape(len(test), -1), torch.from_numpy(batches[5][b"data"]))
    # root may also be the dataset folder itself
    assert len(cifar(root / "cifar-10-batches-py", "test")) == len(test)


def test_cifar100_reads_back_exactly(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    names = [f"class{k}" for k in range(100)]
    parts = {s: batch(rng, n, b"fine_labels", 100) for s, n in [("train", 11), ("test", 4)]}
    for s, b in parts.items():
        b[b"coarse_labels"] = [0] * len(b[b"fine_labels"])
        dump(d / s, b)
    dump(d / "meta", {b"fine_label_names": [n.encode() for n in names],
                      b"coarse_label_names": [b"c"] * 20})  # fmt: skip
    for s, b in parts.items():
        split = cifar(tmp_path, s, classes=100)
        assert split.name == f"cifar100-{s}" and split.classes == tuple(names)
        assert torch.equal(split.images, torch.from_numpy(b[b"data"]).reshape(-1, 3, 32, 32))
        assert split.labels.tolist() == b[b"fine_labels"]
    assert len(load("cifar100", "train", root=tmp_path)) == 11


def test_numpy1_pickles_are_accepted(cifar10_root):
    """The original files name numpy.core.multiarray._reconstruct (numpy 1.x)."""
    root, batches = cifar10_root
    raw = pickle.dumps(batches[5], protocol=3)  # protocol 3: globals as text lines
    old = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert old != raw or b"numpy.core.multiarray\n" in raw
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(old)
    assert torch.equal(
        cifar(root, "test").images.reshape(-1, 3072), torch.from_numpy(batches[5][b"data"])
    )


CALLS = []


def record_call():
    CALLS.append(1)


class Evil:
    """Unpickling this calls ``func()``."""

    def __init__(self, func):
        self.func = func

    def __reduce__(self):
        return (self.func, ())


@pytest.mark.parametrize(
    "func, name",
    [(os.getcwd, r"(posix|nt|os)\.getcwd"), (record_call, r"\S*test_cifar\.record_call")],
)
def test_forbidden_global_is_refused(cifar10_root, func, name):
    root, _ = cifar10_root
    path = root / "cifar-10-batches-py" / "test_batch"
    dump(path, {b"data": Evil(func), b"labels": [0]})
    pickle.loads(path.read_bytes())  # the plain unpickler calls it ...
    if func is record_call:
        assert CALLS.pop() == 1
    with pytest.raises(
        pickle.UnpicklingError, match=rf"test_batch: refusing to load global {name}"
    ):
        cifar(root, "test")
    assert not CALLS  # ... ours does not


def test_codecs_encode_is_refused_too(cifar10_root):
    root, batches = cifar10_root
    dump(root / "cifar-10-batches-py" / "test_batch", batches[5], protocol=2)  # _codecs.encode
    with pytest.raises(pickle.UnpicklingError, match="_codecs.encode"):
        cifar(root, "test")


def test_missing_files(tmp_path, cifar10_root):
    with pytest.raises(DatasetNotFoundError, match="CIFAR-100 not found") as err:
        cifar(tmp_path, "train", classes=100)
    msg = str(err.value)
    assert "cifar-100-python" in msg and "root=" in msg and "cannot be downloaded" in msg
    root, _ = cifar10_root
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"missing in .*cifar-10-batches-py: data_batch_3\)"
    ):
        cifar(root, "train")
    assert len(cifar(root, "test")) == 8  # the test split does not need it
    with pytest.raises(DatasetNotFoundError, match="root="):
        load("cifar10")


def test_bad_contents(cifar10_root):
    root, _ = cifar10_root
    path = root / "cifar-10-batches-py" / "test_batch"
    dump(path, {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(ValueError, match="test_batch: 'data' must have 3072 columns"):
        cifar(root, "test")
    dump(path, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(ValueError, match="labels in \\[0, 10\\] but 10 class names"):
        cifar(root, "test")
    with pytest.raises(ValueError, match="classes must be 10 or 100"):
        cifar(root, "test", classes=20)
