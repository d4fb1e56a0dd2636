"""IDX reader: round trips on files written here (gzipped and plain), clear errors."""

import gzip
import struct

import numpy as np
import pytest

from spr.data import read_idx

TYPE_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D,
              np.float64: 0x0E}  # fmt: skip


def idx_bytes(a: np.ndarray) -> bytes:
    """An IDX file's bytes, written independently of the reader."""
    header = bytes([0, 0, TYPE_CODES[a.dtype.type], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([9, 0, 3], dtype=np.uint8),
        np.array([[-70000, 1], [2, 70000]], dtype=np.int32),  # multi-byte: big-endian on disk
        np.array([-1.5, 0.25], dtype=np.float64),
        np.array([-3, 4], dtype=np.int16),
    ],
)
def test_round_trip(tmp_path, array, gz):
    data = idx_bytes(array)
    path = tmp_path / ("x-idx.gz" if gz else "x-idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path)
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable and out.dtype.isnative


def test_gzip_detected_by_content_not_name(tmp_path):
    a = np.arange(5, dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte"  # no .gz, but gzipped
    path.write_bytes(gzip.compress(idx_bytes(a)))
    np.testing.assert_array_equal(read_idx(path), a)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data_names_the_file(tmp_path, gz):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-10]
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(
        ValueError, match=r"train-images-idx3-ubyte: truncated IDX file.*\(4, 28, 28\)"
    ):
        read_idx(path)


def test_truncated_gzip_stream_names_the_file(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(1000, np.uint8)))[:-20])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: corrupt or truncated gzip"):
        read_idx(path)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00\x00", "shorter than the 4-byte magic number"),
        (b"\x00\x00\x08\x03\x00\x00", "shorter than its 16-byte header"),
        (b"PK\x03\x04", "not an IDX file: magic number 0x504b0304"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x00", "not an IDX file"),  # unknown type byte
        (idx_bytes(np.zeros(3, np.uint8)) + b"\x00", "trailing bytes"),
    ],
)
def test_malformed(tmp_path, data, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message) as err:
        read_idx(path)
    assert "bad-idx" in str(err.value)
