"""ImageSplit: validation, to_float with padding, its batch loader with augmentation, subsets."""

import pytest
import torch

from spr.data import ImageLoader, ImageSplit


def make_split(n=50, c=1, h=28, w=28, n_classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % n_classes
    return ImageSplit(images, labels, tuple(f"c{k}" for k in range(n_classes)), "toy")


def test_basics():
    s = make_split()
    assert len(s) == 50
    assert repr(s) == "ImageSplit(name='toy', n=50, image=(1, 28, 28), classes=10)"
    with pytest.raises(AttributeError):
        s.name = "other"  # frozen
    assert ImageSplit(s.images, s.labels, list(s.classes), "x").classes == s.classes


@pytest.mark.parametrize(
    "images, labels, match",
    [
        (torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), "uint8"),
        (torch.zeros(2, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), r"\(N, C"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int32), "int64"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), "3 labels"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 2]), r"\[0, 1\]"),
    ],
)
def test_validation(images, labels, match):
    with pytest.raises(ValueError, match=match):
        ImageSplit(images, labels, ("a", "b"), "bad")


def test_to_float_and_padding():
    s = make_split()
    x, y = s.to_float()
    assert x.shape == (50, 1, 28, 28) and x.dtype == torch.float32 and y is s.labels
    assert torch.equal(x, s.images.float() / 255) and 0 <= x.min() and x.max() <= 1
    p, _ = s.to_float(pad_to=32)
    assert p.shape == (50, 1, 32, 32)
    assert torch.equal(p[:, :, 2:30, 2:30], s.images.float() / 255)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (p[:, :, border] == 0).all()
    odd, _ = make_split(n=3, h=5, w=6).to_float(pad_to=8)  # odd pixel to the bottom/right
    assert odd.shape == (3, 1, 8, 8) and odd[:, :, 1:6, 1:7].sum() > 0
    assert odd[:, :, 0].abs().sum() == 0 and odd[:, :, 6:].abs().sum() == 0
    with pytest.raises(ValueError, match="pad_to"):
        s.to_float(pad_to=20)


def batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_loader_covers_the_split_once():
    s = make_split(n=50)
    loader = s.loader(batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert isinstance(loader, ImageLoader) and len(loader) == 4
    out = batches(loader)
    assert [len(y) for _, y in out] == [16, 16, 16, 2]
    x = torch.cat([b[0] for b in out])
    y = torch.cat([b[1] for b in out])
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    # each sample exactly once: match images by content
    order = [int((s.images.float() / 255 == xi).flatten(1).all(1).nonzero()) for xi in x]
    assert sorted(order) == list(range(50)) and order != list(range(50))
    assert torch.equal(y, s.labels[order])
    unshuffled = batches(s.loader(batch_size=16, shuffle=False))
    assert torch.equal(torch.cat([b[0] for b in unshuffled]), s.to_float()[0])
    assert len(s.loader(batch_size=16, drop_last=True)) == 3
    assert len(batches(s.loader(batch_size=16, drop_last=True))) == 3


def test_loader_deterministic_with_augmentation_and_padding():
    s = make_split(n=40)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        loader = s.loader(batch_size=16, pad_to=32, augment=True, generator=g)
        return batches(loader) + batches(loader)  # two epochs

    a, b, c = run(0), run(0), run(1)
    assert all(x.shape[1:] == (1, 32, 32) for x, _ in a)
    assert len(a) == len(b) == 6
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0], c[0][0])
    assert not torch.equal(a[0][0], a[3][0])  # a new order / augmentation each epoch


def test_loader_bad_arguments():
    s = make_split()
    with pytest.raises(ValueError, match="batch_size"):
        s.loader(batch_size=0)
    with pytest.raises(ValueError, match="pad_to"):
        s.loader(pad_to=16)


def test_subset_is_balanced_deterministic_and_ordered():
    s = make_split(n=100, n_classes=10)
    sub = s.subset(35, seed=3)
    assert len(sub) == 35 and sub.name == "toy-subset35" and sub.classes == s.classes
    assert sorted(sub.labels.bincount(minlength=10).tolist()) == [3] * 5 + [4] * 5
    again = s.subset(35, seed=3)
    assert torch.equal(sub.images, again.images) and torch.equal(sub.labels, again.labels)
    assert not torch.equal(sub.images, s.subset(35, seed=4).images)
    # a subset of the samples, in their original order
    rows = [int((s.images == im).flatten(1).all(1).nonzero()) for im in sub.images]
    assert rows == sorted(rows) and len(set(rows)) == 35
    assert torch.equal(s.subset(100).images, s.images)
    for n in (0, 101):
        with pytest.raises(ValueError, match="n must be"):
            s.subset(n)


def test_subset_with_a_small_class():
    labels = torch.tensor([0] * 20 + [1] * 2 + [2] * 20)
    s = ImageSplit(torch.zeros(42, 1, 2, 2, dtype=torch.uint8), labels, ("a", "b", "c"), "skew")
    counts = s.subset(12).labels.bincount(minlength=3).tolist()
    assert counts[1] == 2 and sorted([counts[0], counts[2]]) == [5, 5]
