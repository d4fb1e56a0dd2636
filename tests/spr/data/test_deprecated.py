"""The names spr.data had before its one loader warn when used and give the same results."""

import pytest
import torch

import spr.data
from spr.data import Augment, ImageLoader, augment_batch, digits, draw_crop_flip, write_shards


def old(name):
    with pytest.warns(DeprecationWarning, match=f"{name} is deprecated; use "):
        return getattr(spr.data, name)


def batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def same(a, b):
    return len(a) == len(b) and all(
        torch.equal(x, xb) and torch.equal(y, yb) for (x, y), (xb, yb) in zip(a, b, strict=True)
    )


def test_from_import_warns_too():
    with pytest.warns(DeprecationWarning, match="BatchLoader is deprecated; use ImageLoader"):
        from spr.data import BatchLoader  # noqa: F401
    assert "BatchLoader" not in spr.data.__all__ and "dali_available" not in dir(spr.data)
    with pytest.raises(AttributeError, match="dali_available"):
        spr.data.dali_available  # noqa: B018 - gone, with the DALI backend


def test_batch_loader_keeps_its_positional_signature():
    split = digits("test")
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    got = old("BatchLoader")(split, 64, True, 12, True, g(), True)  # generator 6th, drop_last
    assert isinstance(got, ImageLoader) and len(got) == len(split) // 64
    want = split.loader(64, True, 12, True, generator=g(), drop_last=True)
    assert same(batches(got), batches(want))


def test_shard_loader_keeps_its_positional_signature(tmp_path):
    ds = write_shards(digits("test"), tmp_path, samples_per_shard=100)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    shard_loader = old("ShardLoader")
    got = shard_loader(ds, 50, True, 12, True, (0.3, 0.4), "cpu", g(), False, 2, "thread")
    want = ds.loader(50, True, 12, True, normalize=(0.3, 0.4), generator=g(), workers=2)
    assert same(batches(got), batches(want))
    kw = dict(shuffle=False, indices=[3, 1])
    assert same(batches(shard_loader(ds, 50, **kw)), batches(ds.loader(50, **kw)))
    with pytest.raises(TypeError, match="multiple values"):
        shard_loader(ds, 50, True, None, False, None, normalize=None)


def test_device_augment_is_augment():
    aug = old("DeviceAugment")(12, True, False, 2, 0.5, 0.25, "torch")
    assert aug == Augment(pad_to=12, crop=True, flip=False, padding=2, mean=0.5, std=0.25)
    with pytest.raises(ImportError, match="DALI"):
        old("DeviceAugment")(backend="dali")


def test_crop_flip_and_random_crop_flip():
    x = torch.randint(0, 256, (16, 3, 8, 8), generator=torch.Generator().manual_seed(0),
                      dtype=torch.uint8)
    xf = x.float() / 255
    shifts, flips = draw_crop_flip(16, 3, torch.Generator().manual_seed(1))
    crop_flip = old("crop_flip")
    assert torch.equal(crop_flip(xf, shifts, flips, 3), augment_batch(xf, shifts, flips, padding=3))
    assert crop_flip(x, shifts, flips, 3).dtype == torch.uint8  # any dtype, kept
    want = augment_batch(x, shifts, flips, padding=3)
    assert torch.equal(crop_flip(x, shifts, flips, 3).float() / 255, want)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        crop_flip(x[0], shifts, flips)
    got = old("random_crop_flip")(xf, 3, torch.Generator().manual_seed(2))
    assert torch.equal(got, Augment(padding=3)(xf, torch.Generator().manual_seed(2)))
