"""The R reader against streams written here by hand from the format's definition, and on the
real janeaustenr data when `make data` has installed it."""

import gzip
import struct
import zlib

import numpy as np
import pytest

from compress_extras.llm import AUSTEN_NOVELS, austen_novels, read_lazyload
from compress_extras.llm._rdata import RFormatError, unserialize
from spr.data import DatasetNotFoundError

ATTR, TAG = 1 << 9, 1 << 10


def i32(*values):
    return struct.pack(f">{len(values)}i", *values)


def charsxp(text):
    if text is None:
        return i32(9, -1)
    raw = text.encode()
    return i32(9 | (1 << 15), len(raw)) + raw  # UTF-8 flag bit, as R writes it


def strsxp(values, attrs=b""):
    body = i32(16 | (ATTR if attrs else 0), len(values)) + b"".join(map(charsxp, values))
    return body + attrs


def names_attr(names):
    # pairlist: (tag = symbol "names", value = STRSXP) then NILVALUE
    symbol = i32(1) + charsxp("names")
    return i32(2 | TAG) + symbol + strsxp(names) + i32(254)


def header(version=3):
    out = b"X\n" + i32(version, 0x040201, 0x030500)
    return out + (i32(5) + b"UTF-8" if version == 3 else b"")


@pytest.mark.parametrize("version", [2, 3])
def test_vectors_lists_and_missing_values(version):
    assert unserialize(header(version) + strsxp(["a", None, "ç"])) == ["a", None, "ç"]
    ints = unserialize(header(version) + i32(13, 3, 1, -2, 7))
    np.testing.assert_array_equal(ints, [1, -2, 7])
    reals = unserialize(header(version) + i32(14, 2) + struct.pack(">2d", 0.5, -3.25))
    np.testing.assert_array_equal(reals, [0.5, -3.25])
    assert unserialize(header(version) + i32(254)) is None
    named = i32(19 | ATTR, 2) + strsxp(["x"]) + i32(13, 1, 4) + names_attr(["s", "n"])
    value = unserialize(header(version) + named)
    assert list(value) == ["s", "n"] and value["s"] == ["x"] and value["n"].tolist() == [4]


def test_symbol_references_are_resolved():
    # a pairlist whose second tag is a reference (REFSXP, index 1) to the first symbol
    symbol = i32(1) + charsxp("k")
    stream = (i32(2 | TAG) + symbol + strsxp(["v1"]) + i32(2 | TAG) + i32(255 | (1 << 8))
              + strsxp(["v2"]) + i32(254))
    value = unserialize(header() + stream)
    assert value == {"k": ["v2"]}  # same tag twice: the second wins, both were read


def test_bad_streams_are_refused():
    with pytest.raises(RFormatError, match="XDR"):
        unserialize(b"A\n" + b"\0" * 12)
    with pytest.raises(RFormatError, match="truncated"):
        unserialize(header() + i32(16, 3) + charsxp("a"))
    with pytest.raises(RFormatError, match="not supported"):
        unserialize(header() + i32(25, 0))


def test_lazyload_database_round_trip(tmp_path):
    objects = {"first": strsxp(["one", "two"]), "second": i32(13, 2, 5, 6)}
    blob, entries = b"", {}
    for name, body in objects.items():
        serialized = header() + body
        chunk = struct.pack(">I", len(serialized)) + zlib.compress(serialized)
        entries[name] = (len(blob), len(chunk))
        blob += chunk
    variables = b"".join(i32(13, 2, offset, length) for offset, length in entries.values())
    index_list = (i32(19 | ATTR, 1) + i32(19 | ATTR, len(entries)) + variables
                  + names_attr(list(entries)) + names_attr(["variables"]))
    (tmp_path / "Rdata.rdb").write_bytes(blob)
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(header() + index_list))
    read = read_lazyload(tmp_path / "Rdata.rdb")
    assert read["first"] == ["one", "two"] and read["second"].tolist() == [5, 6]
    (tmp_path / "Rdata.rdb").write_bytes(blob[:-3])
    with pytest.raises(RFormatError, match="truncated"):
        read_lazyload(tmp_path / "Rdata.rdb")


def test_the_austen_novels():
    try:
        novels = austen_novels()
    except DatasetNotFoundError as error:
        pytest.skip(f"janeaustenr data not installed (make data): {error}")
    assert tuple(novels) == AUSTEN_NOVELS
    assert novels["persuasion"].startswith("Persuasion")
    assert novels["prideprejudice"].startswith("PRIDE AND PREJUDICE")
    assert "It is a truth universally acknowledged" in novels["prideprejudice"]
    assert all(len(text) > 400_000 for text in novels.values())


def test_missing_austen_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="make data"):
        austen_novels(root=tmp_path)
