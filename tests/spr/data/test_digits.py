"""scikit-learn digits: shapes, scaling, a deterministic disjoint split."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from spr.data import digits


def test_shapes_and_scaling():
    train, test = digits("train"), digits("test")
    assert (len(train), len(test)) == (1400, 397)
    assert train.images.shape == (1400, 1, 8, 8) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64 and train.classes == tuple("0123456789")
    assert (train.name, test.name) == ("digits-train", "digits-test")
    assert set(torch.cat([train.images, test.images]).unique().tolist()) == {
        v * 255 // 16 for v in range(17)
    }


def test_deterministic():
    a, b = digits("train", seed=3), digits("train", seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, digits("train", seed=4).images)


@pytest.mark.parametrize("train_size", [1, 1000, 1796])
def test_disjoint_and_complete(train_size):
    train, test = digits("train", train_size), digits("test", train_size)
    assert len(train) + len(test) == 1797 and len(train) == train_size
    bunch = load_digits()
    full = np.concatenate([bunch.images.reshape(1797, 64) * 255 // 16, bunch.target[:, None]], 1)
    ours = torch.cat(
        [torch.cat([s.images.reshape(len(s), 64), s.labels[:, None]], 1) for s in (train, test)]
    ).numpy()
    # together the two splits are the whole dataset, each sample once
    np.testing.assert_array_equal(np.unique(ours, axis=0), np.unique(full, axis=0))
    key = lambda a: sorted(map(bytes, a.astype(np.int64)))  # noqa: E731
    assert key(ours) == key(full)


@pytest.mark.parametrize("train_size", [0, 1797])
def test_bad_train_size(train_size):
    with pytest.raises(ValueError, match="train_size"):
        digits("train", train_size)
