"""Converters: an image folder (PNG/JPEG written here with PIL) and torchvision-style datasets."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets, transforms

from spr.data import dataset_to_shards, image_folder_to_shards


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """root/<class>/... PNGs (grayscale, 6x5), one nested folder, and a stray text file."""
    root = tmp_path_factory.mktemp("tree")
    g = np.random.default_rng(1)
    pixels = {}
    for c, n in (("bag", 3), ("coat", 4), ("dress", 2)):
        for i in range(n):
            sub = root / c / ("nested" if i == 2 else "")
            sub.mkdir(parents=True, exist_ok=True)
            a = g.integers(0, 256, (6, 5), dtype=np.uint8)
            Image.fromarray(a, "L").save(sub / f"{i:02d}.png")
            pixels[(c, i)] = a
    (root / "coat" / "notes.txt").write_text("not an image")
    return root, pixels


def test_image_folder_matches_torchvision_image_folder(tree, tmp_path):
    root, _ = tree
    ds = image_folder_to_shards(root, tmp_path / "a", samples_per_shard=4, mode="L")
    ref = datasets.ImageFolder(
        root, loader=lambda p: Image.open(p).convert("L"), transform=transforms.PILToTensor()
    )
    assert ds.classes == tuple(ref.classes) == ("bag", "coat", "dress")
    assert len(ds) == len(ref) == 9 and ds.sample_shape == (1, 6, 5)
    for i in range(len(ref)):  # same order, same pixels, same labels
        x, y = ref[i]
        assert torch.equal(ds[i][0], x) and ds[i][1] == y
    threaded = image_folder_to_shards(root, tmp_path / "b", mode="L", workers=2)
    assert torch.equal(threaded[:][0], ds[:][0])
    rgb = image_folder_to_shards(root, tmp_path / "c")  # mode="RGB" by default, like ImageFolder
    assert rgb.sample_shape == (3, 6, 5) and torch.equal(rgb[:][0][:, 1:2], ds[:][0])


def test_image_folder_jpeg_and_resize(tmp_path):
    g = np.random.default_rng(2)
    (tmp_path / "src" / "x").mkdir(parents=True)
    a = g.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    Image.fromarray(a, "RGB").save(tmp_path / "src" / "x" / "a.JPG", quality=90)
    ds = image_folder_to_shards(tmp_path / "src", tmp_path / "s1")
    with Image.open(tmp_path / "src" / "x" / "a.JPG") as im:  # decoded once, by PIL, exactly
        expect = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(ds[0][0].numpy(), expect)
    small = image_folder_to_shards(tmp_path / "src", tmp_path / "s2", size=(4, 3))
    assert small.sample_shape == (3, 4, 3)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        image_folder_to_shards(tmp_path / "none", tmp_path / "out")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no image files"):
        image_folder_to_shards(tmp_path / "empty", tmp_path / "out")
    bad = tmp_path / "empty" / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match="broken.png: cannot decode"):
        image_folder_to_shards(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out" / "index.bin").exists()


def test_torchvision_dataset(tmp_path):
    fake = datasets.FakeData(size=7, image_size=(3, 8, 6), num_classes=4, random_offset=3)
    ds = dataset_to_shards(fake, tmp_path / "a", samples_per_shard=3, classes="wxyz")
    assert ds.name == "FakeData" and ds.sample_shape == (3, 8, 6) and len(ds.shard_files) == 3
    for i in range(len(fake)):
        img, label = fake[i]  # a PIL image and an int
        assert np.array_equal(ds[i][0].numpy(), np.asarray(img).transpose(2, 0, 1))
        assert ds[i][1] == label
    # with ToTensor: float in [0, 1], stored losslessly as the same bytes
    as_float = datasets.FakeData(7, (3, 8, 6), 4, transform=transforms.ToTensor(), random_offset=3)
    again = dataset_to_shards(as_float, tmp_path / "b", classes="wxyz")
    assert torch.equal(again[:][0], ds[:][0])


def test_dataset_item_errors(tmp_path):
    with pytest.raises(ValueError, match=r"dataset\[0\] must be an \(image, label\) pair"):
        dataset_to_shards([torch.zeros(1, 2, 2)], tmp_path)
    with pytest.raises(ValueError, match=r"dataset\[1\]: float images must lie in \[0, 1\]"):
        dataset_to_shards([(torch.zeros(1, 2, 2), 0), (torch.full((1, 2, 2), 2.0), 0)], tmp_path)
    with pytest.raises(ValueError, match="integer class index"):
        dataset_to_shards([(torch.zeros(1, 2, 2, dtype=torch.uint8), 0.5)], tmp_path)
    with pytest.raises(TypeError, match="PIL image, a tensor or a numpy array"):
        dataset_to_shards([("pixels", 0)], tmp_path)
    with pytest.raises(TypeError, match="len"):
        dataset_to_shards(iter([]), tmp_path)
    assert list(tmp_path.iterdir()) == []
