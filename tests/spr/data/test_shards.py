"""Packed shards: round trip, exact index at shard boundaries, corruption and truncation named,
atomic writing (a crash leaves nothing that opens), overwriting, pickling."""

import math
import os
import pickle

import numpy as np
import pytest
import torch

from spr.data import (
    CorruptShardError,
    DatasetNotFoundError,
    ShardedDataset,
    dataset_to_shards,
    digits,
    fashion_mnist,
    read_shards,
    write_shards,
)
from spr.data import _shard_writer as shards_mod

N, SHAPE = 23, (2, 5, 4)  # 40 bytes a sample


@pytest.fixture(scope="module")
def data():
    g = np.random.default_rng(0)
    images = g.integers(0, 256, (N, *SHAPE), dtype=np.uint8)
    labels = g.integers(0, 3, N).astype(np.int64)
    return images, labels


def files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("per", [1, 4, 5, 23, 100])
def test_round_trip(tmp_path, data, per):
    images, labels = data
    ds = write_shards((images, labels), tmp_path, samples_per_shard=per, classes="abc")
    assert len(ds) == N and ds.sample_shape == SHAPE and ds.classes == ("a", "b", "c")
    assert len(ds.shard_files) == math.ceil(N / per)
    sizes = [p.stat().st_size for p in ds.shard_files]
    assert sizes == [40 * min(per, N - k * per) for k in range(len(sizes))]  # last may be partial
    for i in range(N):  # every sample, one at a time
        x, y = ds[i]
        assert x.dtype == torch.uint8 and x.shape == SHAPE
        assert np.array_equal(x.numpy(), images[i]) and y == labels[i]
    x, y = ds[:]  # and all at once
    assert np.array_equal(x.numpy(), images) and np.array_equal(y.numpy(), labels)
    ds2 = read_shards(tmp_path, verify="open")  # a fresh reader, all checksums checked
    assert np.array_equal(ds2[:][0].numpy(), images)


def test_exact_partial_and_single_sample_shards(tmp_path, data):
    images, labels = data
    ds = write_shards((images[:20], labels[:20]), tmp_path / "a", samples_per_shard=5)
    assert [p.stat().st_size for p in ds.shard_files] == [200] * 4  # exact: no partial shard
    ds = write_shards((images[:1], labels[:1]), tmp_path / "b", samples_per_shard=1)
    assert len(ds) == 1 and np.array_equal(ds[0][0].numpy(), images[0])


def test_index_exact_at_shard_boundaries(tmp_path, data):
    images, labels = data
    per = 5
    ds = write_shards((images, labels), tmp_path, samples_per_shard=per)
    for k in range(1, math.ceil(N / per)):
        last, first = k * per - 1, k * per
        path, offset, shape = ds.locate(last)
        assert (path, offset, shape) == (ds.shard_files[k - 1], (per - 1) * 40, SHAPE)
        path, offset, shape = ds.locate(first)
        assert (path, offset, shape) == (ds.shard_files[k], 0, SHAPE)
        # the bytes there are the samples' own
        raw = np.fromfile(ds.shard_files[k - 1], np.uint8)[(per - 1) * 40 :]
        assert np.array_equal(raw.reshape(SHAPE), images[last])
        x, y = ds[[last, first]]  # one batch across the boundary
        assert np.array_equal(x.numpy(), images[[last, first]])
        assert y.tolist() == labels[[last, first]].tolist()
        assert np.array_equal(ds[first][0].numpy(), images[first])


def test_indexing_forms(tmp_path, data):
    images, labels = data
    ds = write_shards((images, labels), tmp_path, samples_per_shard=4)
    idx = [7, 0, 22, 7, 13]
    for key in (idx, np.array(idx), torch.tensor(idx)):
        x, y = ds[key]
        assert np.array_equal(x.numpy(), images[idx]) and y.tolist() == labels[idx].tolist()
    assert np.array_equal(ds[-1][0].numpy(), images[-1])
    assert np.array_equal(ds[[-1, -23]][0].numpy(), images[[-1, 0]])
    assert np.array_equal(ds[3:17:5][0].numpy(), images[3:17:5])
    assert np.array_equal(ds[torch.tensor(2)][0].numpy(), images[2])
    assert ds[[]][0].shape == (0, *SHAPE)
    with pytest.raises(IndexError, match="out of range"):
        ds[23]
    with pytest.raises(IndexError, match="must lie in"):
        ds[[0, 23]]
    with pytest.raises(TypeError, match="1-D integer"):
        ds[np.ones(N, bool)]
    x, _ = ds[[1, 2]]
    x += 1  # batches are copies: the shard is untouched
    assert np.array_equal(ds[1][0].numpy(), images[1])


def flip_byte(path, pos):
    raw = bytearray(path.read_bytes())
    raw[pos] ^= 0x10
    path.write_bytes(bytes(raw))


def test_flipped_byte_is_named_by_verify_and_by_a_lazy_read(tmp_path, data):
    images, labels = data
    write_shards((images, labels), tmp_path, samples_per_shard=5)
    bad = sorted(tmp_path.glob("shard-*.bin"))[2]  # samples 10..14
    flip_byte(bad, 17)
    ds = ShardedDataset(tmp_path)  # sizes are right: opens (lazy verification)
    assert np.array_equal(ds[3][0].numpy(), images[3])  # an intact shard reads
    with pytest.raises(CorruptShardError, match=bad.name) as e:
        ds[11]
    assert e.value.path == bad and "checksum" in str(e.value)
    with pytest.raises(CorruptShardError, match=bad.name):
        ds[[0, 12]]  # a batch touching it, too
    with pytest.raises(CorruptShardError, match=bad.name) as e:
        ds.verify()
    assert e.value.path == bad
    with pytest.raises(CorruptShardError, match=bad.name):
        ShardedDataset(tmp_path, verify="open")
    raw = ShardedDataset(tmp_path, verify="never")[10][0].numpy()  # trusted: the flipped data
    assert not np.array_equal(raw, images[10])


def test_verify_lists_every_bad_shard(tmp_path, data):
    write_shards(data, tmp_path, samples_per_shard=5)
    bad = sorted(tmp_path.glob("shard-*.bin"))
    flip_byte(bad[1], 0)
    flip_byte(bad[4], 0)
    with pytest.raises(CorruptShardError, match="2 bad shards") as e:
        ShardedDataset(tmp_path).verify()
    assert e.value.path == bad[1] and bad[4].name in str(e.value)


@pytest.mark.parametrize("cut", [1, 39, 40])
def test_truncated_shard_is_named_at_open(tmp_path, data, cut):
    write_shards(data, tmp_path, samples_per_shard=5)
    bad = sorted(tmp_path.glob("shard-*.bin"))[1]
    raw = bad.read_bytes()
    bad.write_bytes(raw[:-cut])
    with pytest.raises(CorruptShardError, match=f"{bad.name}: shard is truncated") as e:
        ShardedDataset(tmp_path, verify="never")
    assert e.value.path == bad
    bad.write_bytes(raw + b"\0")
    with pytest.raises(CorruptShardError, match="longer than the index"):
        ShardedDataset(tmp_path)
    bad.unlink()
    with pytest.raises(CorruptShardError, match=f"{bad.name}: shard file is missing"):
        ShardedDataset(tmp_path)


def test_corrupt_or_missing_index(tmp_path, data):
    write_shards(data, tmp_path, samples_per_shard=5)
    index = tmp_path / "index.bin"
    raw = index.read_bytes()
    flip_byte(index, len(raw) // 2)
    with pytest.raises(CorruptShardError, match="index.bin: index checksum"):
        ShardedDataset(tmp_path)
    index.write_bytes(raw[:-3])
    with pytest.raises(CorruptShardError, match="index.bin"):
        ShardedDataset(tmp_path)
    index.write_bytes(b"NOTSHARD" + raw[8:])
    with pytest.raises(CorruptShardError, match="not a shard index"):
        ShardedDataset(tmp_path)
    index.unlink()
    with pytest.raises(FileNotFoundError, match="not a .complete. shard dataset"):
        ShardedDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        ShardedDataset(tmp_path / "nope")


def crash_on_call(monkeypatch, module, name, n):
    """Make module.name raise on its n-th call (1-based); earlier calls work."""
    real, calls = getattr(module, name), []

    def fake(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise OSError(f"simulated crash in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, fake)


# 5 shards: fsync calls 1..5 are the shards', 6 the folder's (errors ignored), 7 the index's;
# replace calls 1..5 are the shards' renames, 6 the index's
@pytest.mark.parametrize("name, n", [("fsync", 1), ("fsync", 3), ("fsync", 7), ("replace", 6)])
def test_a_crash_while_writing_leaves_nothing_that_opens(tmp_path, data, monkeypatch, name, n):
    crash_on_call(monkeypatch, os, name, n)
    with pytest.raises(OSError, match="simulated crash"):
        write_shards(data, tmp_path, samples_per_shard=5)
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError, match="not a .complete. shard dataset"):
        ShardedDataset(tmp_path)
    assert files(tmp_path) == []  # no temporary files, no orphan shards


def test_a_crash_mid_shard_in_a_converter(tmp_path):
    def items():
        yield from [(np.zeros((1, 2, 2), np.uint8), 0)] * 7
        raise RuntimeError("the source failed")

    class Source:
        def __len__(self):
            return 10

        def __getitem__(self, i):
            if i == 7:
                raise RuntimeError("the source failed")
            return torch.zeros(1, 2, 2, dtype=torch.uint8), 0

    with pytest.raises(RuntimeError, match="the source failed"):
        dataset_to_shards(Source(), tmp_path, samples_per_shard=3)
    assert files(tmp_path) == []


def test_overwrite_is_refused_then_atomic(tmp_path, data, monkeypatch):
    images, labels = data
    old = write_shards((images, labels), tmp_path, samples_per_shard=5)
    old_files = files(tmp_path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_shards((images, labels), tmp_path)
    # a crashed overwrite leaves the old dataset complete and readable
    crash_on_call(monkeypatch, os, "fsync", 2)
    with pytest.raises(OSError, match="simulated crash"):
        write_shards((images[::-1].copy(), labels), tmp_path, 5, overwrite=True)
    monkeypatch.undo()
    assert files(tmp_path) == old_files
    ShardedDataset(tmp_path, verify="open")
    # a finished one replaces it and removes the old shards; an open reader keeps its data
    x_old = old[0][0]
    new = write_shards(
        (images[::-1].copy(), labels), tmp_path, samples_per_shard=10, overwrite=True
    )
    assert len(new.shard_files) == 3 and not set(old_files) & set(files(tmp_path)) - {"index.bin"}
    assert np.array_equal(new[0][0].numpy(), images[-1])
    assert torch.equal(x_old, torch.from_numpy(images[0]))


def test_from_image_splits(tmp_path):
    test = digits("test")
    ds = write_shards(test, tmp_path / "digits", samples_per_shard=64)
    assert (ds.name, ds.classes, len(ds)) == (test.name, test.classes, len(test))
    split = ds.to_split()
    assert torch.equal(split.images, test.images) and torch.equal(split.labels, test.labels)
    assert split.classes == test.classes
    try:
        fm = fashion_mnist("test")
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST not installed: run `make data`")
    ds = write_shards(fm, tmp_path / "fm", samples_per_shard=3000)  # 4 shards, last partial
    assert len(ds.shard_files) == 4
    x, y = ds[:]
    assert torch.equal(x, fm.images) and torch.equal(y, fm.labels)


def test_pickled_dataset_reads_without_its_maps(tmp_path, data):
    ds = write_shards(data, tmp_path, samples_per_shard=5)
    ds[0]  # maps shard 0
    clone = pickle.loads(pickle.dumps(ds))
    assert all(v is None for v in clone._views)
    assert torch.equal(clone[[0, 22]][0], ds[[0, 22]][0])


def test_mixed_shapes(tmp_path):
    items = [(torch.full((1, h, 3), h, dtype=torch.uint8), h % 2) for h in (2, 3, 4, 2)]
    ds = dataset_to_shards(items, tmp_path, samples_per_shard=3)
    assert ds.sample_shape is None and len(ds.shard_files) == 2
    assert [tuple(ds[i][0].shape) for i in range(4)] == [(1, 2, 3), (1, 3, 3), (1, 4, 3), (1, 2, 3)]
    assert int(ds[2][0].max()) == 4 and ds.locate(3) == (ds.shard_files[1], 0, (1, 2, 3))
    assert ds.locate(2)[1] == 6 + 9
    with pytest.raises(ValueError, match="differ in shape"):
        ds[0:2]
    with pytest.raises(ValueError, match="one shape"):
        ds.loader()


def test_bad_input(tmp_path, data):
    images, labels = data
    with pytest.raises(ValueError, match="uint8"):
        write_shards((images.astype(np.float32), labels), tmp_path)
    with pytest.raises(ValueError, match="labels must be"):
        write_shards((images, labels[:-1]), tmp_path)
    with pytest.raises(ValueError, match=">= 0"):
        write_shards((images, labels - 1), tmp_path)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        write_shards((images, labels), tmp_path, classes=["a", "b"])
    with pytest.raises(ValueError, match="samples_per_shard"):
        write_shards((images, labels), tmp_path, samples_per_shard=0)
    with pytest.raises(ValueError, match="nothing to write"):
        write_shards((images[:0], labels[:0]), tmp_path)
    with pytest.raises(TypeError, match="dataset_to_shards"):
        write_shards(images, tmp_path)
    with pytest.raises(ValueError, match="verify must be"):
        ShardedDataset(tmp_path, verify="sometimes")
    assert not (tmp_path / "index.bin").exists() and files(tmp_path) == []


def test_progress_bar_for_large_datasets(tmp_path, capsys):
    images = np.zeros((shards_mod.PROGRESS_MIN, 1, 1, 1), np.uint8)
    write_shards((images, np.zeros(len(images), np.int64)), tmp_path)
    assert "shards ->" in capsys.readouterr().err
    write_shards((images[:10], np.zeros(10, np.int64)), tmp_path, overwrite=True)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("big", [10**12, 2**20])
def test_a_huge_label_is_refused_before_anything_is_built_or_written(tmp_path, data, big):
    """One label of 10**12 once built 10**12 default class names (MemoryError after 12 s)."""
    images, labels = data
    labels = labels.copy()
    labels[7] = big
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=rf"labels must be class indices 0\.\.C-1.*sample 7.*"
                                         rf"{big + 1:,} classes") as error:
        write_shards((images, labels), out)
    assert "classes=" in str(error.value)  # says how to fix it
    assert not out.exists()
    assert shards_mod.MAX_CLASSES == 2**20


def test_labels_beyond_the_given_classes_are_refused_before_writing(tmp_path, data):
    images, labels = data
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\].*sample"):
        write_shards((images, labels), out, classes=["a", "b"])
    with pytest.raises(ValueError, match=">= 0"):
        write_shards((images, labels - 1), out)
    with pytest.raises(ValueError, match="nothing to write"):
        write_shards((images[:0], labels[:0]), out)
    assert not out.exists()


def test_a_converter_refuses_a_huge_label_at_that_sample(tmp_path):
    """The streaming writer (dataset_to_shards) checks each label as it arrives."""
    items = [(np.zeros((4, 4), np.uint8), 0), (np.zeros((4, 4), np.uint8), 10**12)]
    with pytest.raises(ValueError, match=r"0\.\.C-1.*sample 1 .*1,000,000,000,001 classes"):
        dataset_to_shards(items, tmp_path / "out")
    assert not (tmp_path / "out").exists() or files(tmp_path / "out") == []
