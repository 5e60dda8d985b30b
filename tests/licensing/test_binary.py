"""The canonical primitives: base64url, uvarint, strings, lists."""

from __future__ import annotations

import pytest

from licensing import Code, LicensingError
from licensing._binary import (
    MAX_STR_BYTES,
    READ_ERRORS,
    Reader,
    Writer,
    b64url_decode,
    b64url_encode,
)


def malformed(call: object) -> str:
    assert callable(call)
    with pytest.raises(LicensingError) as info:
        call()
    assert info.value.code is Code.MALFORMED
    return info.value.message


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\xfe", b"abc", bytes(range(256))])
def test_base64url_round_trip(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url_decode(text) == data


@pytest.mark.parametrize("text", ["A", "AB==", "AB=", "A+", "A/", "AB C", "AAAAA", "AB", 7, "é"])
def test_base64url_refuses_other_spellings(text: object) -> None:
    malformed(lambda: b64url_decode(text))  # type: ignore[arg-type]


def test_base64url_accepts_canonical_tails() -> None:
    assert b64url_decode("AA") == b"\x00"
    assert b64url_decode("AAA") == b"\x00\x00"
    assert b64url_decode("AAE") == b"\x00\x01"


def write_uvarint(value: int) -> bytes:
    w = Writer()
    w.uvarint(value)
    return w.getvalue()


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63 - 1])
def test_uvarint_round_trip(value: int) -> None:
    r = Reader(write_uvarint(value))
    assert r.uvarint() == value
    r.end()


def test_uvarint_refuses_overlong_and_oversized() -> None:
    assert "minimally" in malformed(lambda: Reader(b"\x80\x00").uvarint())
    assert "63 bits" in malformed(lambda: Reader(b"\xff" * 9 + b"\x01").uvarint())
    with pytest.raises(READ_ERRORS):
        Reader(b"\x80").uvarint()


def test_strings_with_multi_byte_lengths() -> None:
    w = Writer()
    w.string("x" * 200, "f")
    w.strings(("y" * 130, "z"), "f")
    r = Reader(w.getvalue())
    assert r.string() == "x" * 200
    assert r.strings() == ("y" * 130, "z")
    r.end()


def test_string_length_cap() -> None:
    too_long = write_uvarint(MAX_STR_BYTES + 1) + b"x" * (MAX_STR_BYTES + 1)
    assert "longer" in malformed(lambda: Reader(too_long).string())
    in_list = b"\x01" + too_long
    assert "longer" in malformed(lambda: Reader(in_list).strings())


@pytest.mark.parametrize(
    "data",
    [
        b"\x05ab",  # string runs past the end
        b"\x02\x01a\x05ab",  # second list item runs past the end
        b"\x02\x81\x01",  # multi-byte length, then nothing
        b"\x7f",  # count larger than the bytes left
        b"\x01\xff",  # invalid UTF-8
    ],
)
def test_truncated_or_bad_utf8_raise_read_errors(data: bytes) -> None:
    with pytest.raises(READ_ERRORS):
        Reader(data).strings()


def test_list_duplicates_and_order() -> None:
    assert "twice" in malformed(lambda: Reader(b"\x02\x01a\x01a").strings())
    assert "sorted" in malformed(lambda: Reader(b"\x02\x01b\x01a").sorted_strings())
    assert Reader(b"\x02\x01a\x01b").sorted_strings() == ("a", "b")
    assert Reader(b"\x00").strings() == ()


def test_raw_and_end() -> None:
    r = Reader(b"abc")
    assert r.raw(2) == b"ab"
    with pytest.raises(IndexError):
        r.raw(2)
    assert "trailing" in malformed(r.end)


def test_writer_validation() -> None:
    w = Writer()
    malformed(lambda: w.u32s({"a": 2**32, "b": 0}))
    malformed(lambda: w.string(b"bytes", "f"))  # type: ignore[arg-type]
    malformed(lambda: w.strings("abc", "f"))  # type: ignore[arg-type]
    malformed(lambda: w.strings(("a", 1), "f"))  # type: ignore[arg-type]
    malformed(lambda: w.sorted_strings(("a",), "f"))  # type: ignore[arg-type]
    malformed(lambda: w.sorted_strings(frozenset({1}), "f"))  # type: ignore[arg-type]
    malformed(lambda: w.raw(b"ab", 3, "f"))
    assert w.getvalue() == b""
