"""A small reader of R's serialization format and lazy-load databases (``.rdb`` + ``.rdx``).

Enough of R's XDR serialization (format versions 2 and 3) to read the data objects packages ship:
NULL, logical, integer, double and character vectors, lists, pairlists, symbols, attributes and
references. A package's ``data/Rdata.rdx`` is a gzip-compressed serialized index whose
``variables`` element maps each object name to an (offset, length) pair into ``data/Rdata.rdb``,
where each object is a 4-byte big-endian length followed by a zlib stream of its serialization.

Objects come back as Python values: a character vector as ``list[str | None]`` (None for NA),
numeric vectors as numpy arrays, lists as lists, pairlists as dicts; attributes are dropped
except ``names`` on lists (which become dicts). For example (with ``make data`` run)::

    read_lazyload("data/austen/Rdata.rdb")["persuasion"][:2]   # ['Persuasion', '']
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["RFormatError", "read_lazyload", "unserialize"]

NILSXP, SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = (
    0, 1, 2, 9, 10, 13, 14, 16, 19)
REFSXP, NILVALUE_SXP = 255, 254
_ENVIRONMENT_CONSTANTS = {253, 252, 251, 250, 242, 241}  # global/empty/base env, unbound, missing


class RFormatError(ValueError):
    """Bytes that are not (supported) R serialization."""


class _Stream:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise RFormatError("R serialization truncated")
        raw = self.data[self.offset: self.offset + size]
        self.offset += size
        return raw

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two more ints
            high, low = self.int(), self.int()
            n = (high << 32) + low
        return n


def unserialize(data: bytes):
    """One R object from its XDR serialization (``saveRDS``/``serialize`` output, decompressed)."""
    s = _Stream(data)
    if s.take(2) != b"X\n":
        raise RFormatError("not XDR R serialization (only the 'X' format is supported)")
    version = s.int()
    s.int(), s.int()  # writer's and minimal reader's R versions
    if version == 3:
        s.take(s.int())  # native encoding name
    elif version != 2:
        raise RFormatError(f"R serialization version {version} is not supported")
    return _item(s, [])


def _item(s: _Stream, refs: list):
    flags = s.int()
    kind, has_attr, has_tag = flags & 0xFF, bool(flags & 512), bool(flags & 1024)
    if kind == NILVALUE_SXP or kind in _ENVIRONMENT_CONSTANTS:
        return None
    if kind == REFSXP:
        index = (flags >> 8) or s.int()
        return refs[index - 1]
    if kind == SYMSXP:
        name = _item(s, refs)
        refs.append(name)
        return name
    if kind == CHARSXP:
        n = s.int()
        return None if n == -1 else s.take(n).decode("utf-8", errors="replace")
    if kind == LISTSXP:
        out = {}
        while kind == LISTSXP:
            if has_attr:
                _item(s, refs)
            tag = _item(s, refs) if has_tag else None
            out[tag if tag is not None else len(out)] = _item(s, refs)
            flags = s.int()
            kind, has_attr, has_tag = flags & 0xFF, bool(flags & 512), bool(flags & 1024)
        if kind != NILVALUE_SXP:
            raise RFormatError(f"pairlist ends in type {kind}")
        return out
    if kind in (LGLSXP, INTSXP):
        n = s.length()
        value = np.frombuffer(s.take(4 * n), dtype=">i4").astype(np.int64)
    elif kind == REALSXP:
        n = s.length()
        value = np.frombuffer(s.take(8 * n), dtype=">f8").astype(np.float64)
    elif kind in (STRSXP, VECSXP, 20):
        value = [_item(s, refs) for _ in range(s.length())]
    else:
        raise RFormatError(f"R object type {kind} is not supported by this reader")
    if has_attr:
        attributes = _item(s, refs)
        names = attributes.get("names") if isinstance(attributes, dict) else None
        if kind == VECSXP and names is not None and len(names) == len(value):
            value = dict(zip(names, value, strict=True))
    return value


def read_lazyload(rdb: str | os.PathLike[str], rdx: str | os.PathLike[str] | None = None) -> dict:
    """Every object of an R lazy-load database: ``{name: value}`` (module docstring)."""
    rdb = Path(rdb)
    rdx = Path(rdx) if rdx is not None else rdb.with_suffix(".rdx")
    try:
        index = unserialize(gzip.decompress(rdx.read_bytes()))
    except (OSError, EOFError, zlib.error) as error:
        raise RFormatError(f"{rdx} is not a gzip-compressed R index: {error}") from error
    if not isinstance(index, dict) or "variables" not in index:
        raise RFormatError(f"{rdx} has no 'variables' element")
    data = rdb.read_bytes()
    objects = {}
    for name, (offset, length) in index["variables"].items():
        chunk = data[int(offset): int(offset) + int(length)]
        if len(chunk) != int(length) or length < 5:
            raise RFormatError(f"{rdb} is truncated (object {name!r})")
        try:
            objects[name] = unserialize(zlib.decompress(chunk[4:]))
        except zlib.error as error:
            raise RFormatError(f"{rdb}: object {name!r} is not zlib-compressed") from error
    return objects
