"""The byte layout of an ICQuant-coded weight matrix, and its parser.

Little-endian; every variable-length section carries its length, and a CRC-32 of everything before
it ends the stream, so truncation and corruption are detected before any weight is decoded::

    "ICQ1" | version u8 | bits u8 | index mode u8 (0 none, 1 one B per matrix, 2 one B per block)
    | quantizer name (u8 length + ascii) | dtype name (u8 length + ascii)
    | ndim u8 | shape u32 x ndim | block length n u32 | outliers per block k u32
    | metadata exponent e i8 (version 2 on)
    | codes (u32 length + bytes: every weight's b-bit code, row-major, packed)
    | widths (u32 length + bytes: mode 1 one u8 B; mode 2 one 5-bit B per block, packed)
    | streams u8, then per stream: B u8 | codes u32 | u32 length + bytes (B-bit gap codes)
    | inlier metadata (u32 length + float16 bytes) | outlier metadata (same) | crc32 u32

The metadata holds ``value * 2^-e``: the weights are scaled by ``2^-e`` (exactly, a power of two)
before they are coded, ``e`` chosen per matrix so that the largest ``|weight|`` lands in
``[2^13, 2^14)``, and the decoded values are scaled back by ``2^e``. float16's own range
(6e-8 .. 65504) would otherwise flush the scales of small weights (1e-7: relative error above 1)
and overflow on large ones (1e6). Version 1 (the previous release) has no exponent field and
reads as ``e = 0``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = ["MAGIC", "READABLE_VERSIONS", "VERSION", "CorruptStreamError", "Reader",
           "Writer"]

MAGIC = b"ICQ1"
VERSION = 2
READABLE_VERSIONS = (1, 2)


class CorruptStreamError(ValueError):
    """An ICQuant byte stream that is truncated, corrupted or not ICQuant at all."""


class Writer:
    """Appends fields in the layout above."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, value: int) -> None:
        self.parts.append(struct.pack("<B", value))

    def u32(self, value: int) -> None:
        self.parts.append(struct.pack("<I", value))

    def i8(self, value: int) -> None:
        self.parts.append(struct.pack("<b", value))

    def text(self, value: str) -> None:
        raw = value.encode("ascii")
        self.u8(len(raw))
        self.parts.append(raw)

    def blob(self, raw: bytes) -> None:
        self.u32(len(raw))
        self.parts.append(bytes(raw))

    def finish(self) -> bytes:
        body = b"".join(self.parts)
        return body + struct.pack("<I", zlib.crc32(body))


@dataclass
class Reader:
    """Reads fields back, raising :class:`CorruptStreamError` on anything out of bounds."""

    data: bytes
    offset: int = 0
    version: int = VERSION

    @classmethod
    def open(cls, data: bytes) -> Reader:
        data = bytes(data)
        if len(data) < len(MAGIC) + 5 or data[: len(MAGIC)] != MAGIC:
            raise CorruptStreamError("not an ICQuant stream (bad magic bytes or too short)")
        body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
        if zlib.crc32(body) != crc:
            raise CorruptStreamError("ICQuant stream is corrupted or truncated (CRC-32 mismatch)")
        reader = cls(body, len(MAGIC))
        reader.version = reader.u8()
        if reader.version not in READABLE_VERSIONS:
            raise CorruptStreamError(f"ICQuant stream version {reader.version}; this reader "
                                     f"knows versions {', '.join(map(str, READABLE_VERSIONS))}")
        return reader

    def take(self, size: int) -> bytes:
        if size < 0 or self.offset + size > len(self.data):
            raise CorruptStreamError(f"ICQuant stream truncated at byte {self.offset}")
        raw = self.data[self.offset: self.offset + size]
        self.offset += size
        return raw

    def u8(self) -> int:
        return struct.unpack("<B", self.take(1))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def i8(self) -> int:
        return struct.unpack("<b", self.take(1))[0]

    def text(self) -> str:
        raw = self.take(self.u8())
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as error:
            raise CorruptStreamError("ICQuant stream has a non-ascii name field") from error

    def blob(self) -> bytes:
        return self.take(self.u32())

    def done(self) -> None:
        if self.offset != len(self.data):
            raise CorruptStreamError(f"ICQuant stream has {len(self.data) - self.offset} "
                                     "unexpected trailing bytes")
