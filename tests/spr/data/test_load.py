"""load() and the DATASETS registry."""

import pytest
import torch

from spr.data import DATASETS, ImageSplit, digits, load


def test_registry_names():
    assert set(DATASETS) == {"fashion-mnist", "digits", "cifar10", "cifar100"}


def test_load_dispatches():
    split = load("digits", "test", train_size=1000, seed=2)
    assert torch.equal(split.images, digits("test", train_size=1000, seed=2).images)
    assert len(load("digits", root="/ignored")) == 1400


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; known: cifar10, cifar100, "):
        load("mnist")


def test_registering_a_dataset(monkeypatch):
    toy = ImageSplit(torch.zeros(1, 1, 1, 1, dtype=torch.uint8), torch.zeros(1).long(), ("a",), "t")
    monkeypatch.setitem(DATASETS, "toy", lambda split, root, **kw: toy)
    assert load("toy") is toy
