"""Reader of IDX files, the format of (Fashion-)MNIST, gzip-compressed or plain.

An IDX file is a 4-byte magic number ``00 00 TT DD`` (``TT`` the element type, ``DD`` the
number of dimensions), then ``DD`` big-endian uint32 sizes, then the elements in C order,
big-endian. See http://yann.lecun.com/exdb/mnist/ (bottom of the page).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["read_idx"]

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file into a native-endian numpy array of the shape its header gives.

    Gzip compression is recognised by the file's content, not its name.

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte.gz`` or ``train-images-idx3-ubyte``.

    Returns:
        A writable array, shape ``(d0, ..., d{D-1})`` from the header, dtype uint8, int8,
        int16, int32, float32 or float64 per the type byte (e.g. (60000, 28, 28) uint8 for
        Fashion-MNIST's training images, (60000,) uint8 for its labels).

    Raises:
        ValueError: naming the file, if it is not IDX (bad magic number), is truncated
            (header or data shorter than the header says, or a cut-off gzip stream), or has
            bytes after the data.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     f = Path(tmp) / "labels-idx1-ubyte"
        ...     header = bytes([0, 0, 0x08, 1]) + (3).to_bytes(4, "big")  # uint8, 1 dim of 3
        ...     _ = f.write_bytes(header + bytes([7, 0, 9]))
        ...     read_idx(f)
        array([7, 0, 9], dtype=uint8)
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({e})") from e
    if len(raw) < 4:
        raise ValueError(
            f"{path}: not an IDX file or truncated: {len(raw)} bytes, "
            "shorter than the 4-byte magic number"
        )
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or code not in _DTYPES:
        raise ValueError(
            f"{path}: not an IDX file: magic number 0x{raw[:4].hex()} should be 0x0000TTDD "
            f"with type TT in {{{', '.join(f'{c:02x}' for c in _DTYPES)}}}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: truncated IDX file: {len(raw)} bytes, shorter than its "
            f"{header}-byte header ({ndim} dimensions)"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[code])
    count = math.prod(dims)
    expected, found = count * dtype.itemsize, len(raw) - header
    if found != expected:
        what = "truncated IDX file" if found < expected else "IDX file has trailing bytes"
        raise ValueError(
            f"{path}: {what}: the header says shape {tuple(dims)} of {dtype.name} "
            f"({expected} bytes of data), the file holds {found}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))  # a copy: native byte order and writable
