"""Strict, canonical binary primitives shared by every artifact.

Each value has exactly one encoding, so a decoded payload re-encodes to the same bytes and two
SDKs in different languages agree on what was signed:

- u32: unsigned 32-bit big-endian (times, limits, serials); fixed width, hence canonical.
- uvarint: unsigned LEB128, minimal length, below 2**63 (only lengths and counts use it).
- str: uvarint byte length (at most 1024), then UTF-8 (strict: no overlong forms, no
  surrogates).
- list of str: uvarint count, then each str; no value twice.
- base64url: RFC 4648 section 5 alphabet, no padding, unused trailing bits zero.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import struct

from licensing.errors import Code, LicensingError

MAX_U32 = 0xFFFF_FFFF
MAX_UINT = (1 << 63) - 1
MAX_STR_BYTES = 1024

_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
_URL_TO_STD = bytes.maketrans(b"-_", b"+/")
_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Last character allowed when the segment length is 2 or 3 mod 4: the bits it carries beyond
# the data must be zero, otherwise two spellings would decode to the same bytes.
_CANONICAL_LAST = {
    2: frozenset(_B64URL_ALPHABET[0::16]),
    3: frozenset(_B64URL_ALPHABET[0::4]),
}
_PADDING = {0: b"", 2: b"==", 3: b"="}


def malformed(message: str) -> LicensingError:
    return LicensingError(Code.MALFORMED, message)


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode_checked(text: str) -> bytes:
    """Decode text already known to use only the base64url alphabet; refuse non-canonical forms."""
    rem = len(text) % 4
    if rem:
        if rem == 1:
            raise malformed("base64url segment has an impossible length")
        if text[-1] not in _CANONICAL_LAST[rem]:
            raise malformed("base64url segment is not canonical (nonzero trailing bits)")
    return binascii.a2b_base64(text.encode("ascii").translate(_URL_TO_STD) + _PADDING[rem])


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or _B64URL_RE.fullmatch(text) is None:
        raise malformed("not a base64url string (alphabet A-Z a-z 0-9 - _, no padding)")
    return b64url_decode_checked(text)


_U32 = {count: struct.Struct(f">{count}I") for count in (2, 8)}


class Reader:
    """Cursor over a payload. Callers wrap parsing in `except READ_ERRORS` so that running off
    the end or bad UTF-8 becomes MALFORMED without an explicit bounds check per byte."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def uvarint(self) -> int:
        data = self.data
        pos = self.pos
        byte = data[pos]
        pos += 1
        if byte < 0x80:
            self.pos = pos
            return byte
        result = byte & 0x7F
        shift = 7
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift >= 63:
                raise malformed("integer does not fit in 63 bits")
        if byte == 0:
            raise malformed("integer is not minimally encoded")
        self.pos = pos
        return result

    def u32s(self, count: int) -> tuple[int, ...]:
        values: tuple[int, ...] = _U32[count].unpack_from(self.data, self.pos)
        self.pos += 4 * count
        return values

    def string(self) -> str:
        data = self.data
        size = data[self.pos]
        if size < 0x80:
            start = self.pos + 1
        else:
            size = self.uvarint()
            if size > MAX_STR_BYTES:
                raise malformed(f"a string is longer than {MAX_STR_BYTES} bytes")
            start = self.pos
        end = start + size
        if end > len(data):
            raise IndexError
        self.pos = end
        return data[start:end].decode()

    def strings(self) -> tuple[str, ...]:
        count = self.uvarint()
        if not count:
            return ()
        data = self.data
        pos = self.pos
        # Each string takes at least one byte: refuse absurd counts before looping.
        if count > len(data) - pos:
            raise IndexError
        items = []
        for _ in range(count):
            # Inlined string(): lists sit on the verification hot path.
            size = data[pos]
            if size < 0x80:
                pos += 1
            else:
                self.pos = pos
                size = self.uvarint()
                if size > MAX_STR_BYTES:
                    raise malformed(f"a string is longer than {MAX_STR_BYTES} bytes")
                pos = self.pos
            end = pos + size
            if end > len(data):
                raise IndexError
            items.append(data[pos:end].decode())
            pos = end
        self.pos = pos
        if count > 1 and len(set(items)) != count:
            raise malformed("a list holds the same value twice")
        return tuple(items)

    def sorted_strings(self) -> tuple[str, ...]:
        items = self.strings()
        # Code-point order equals UTF-8 byte order, so str comparison is the canonical order.
        if any(a >= b for a, b in itertools.pairwise(items)):
            raise malformed("a set is not in canonical (sorted) order")
        return items

    def raw(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise IndexError
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def end(self) -> None:
        if self.pos != len(self.data):
            raise malformed("trailing bytes after the payload")


READ_ERRORS = (IndexError, UnicodeDecodeError, struct.error)


class Writer:
    """Builds a payload; validates every value so that issuing can never produce a token the
    strict reader would refuse."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def uvarint(self, value: int) -> None:
        while value >= 0x80:
            self.buf.append((value & 0x7F) | 0x80)
            value >>= 7
        self.buf.append(value)

    def u32s(self, fields: dict[str, int]) -> None:
        for field, value in fields.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_U32:
                raise malformed(f"{field} must be an integer from 0 to {MAX_U32}")
        self.buf += _U32[len(fields)].pack(*fields.values())

    def string(self, value: str, field: str) -> None:
        if not isinstance(value, str):
            raise malformed(f"{field} must be a string")
        try:
            encoded = value.encode()
        except UnicodeEncodeError:
            raise malformed(f"{field} is not valid Unicode text") from None
        if len(encoded) > MAX_STR_BYTES:
            raise malformed(f"{field} is longer than {MAX_STR_BYTES} UTF-8 bytes")
        self.uvarint(len(encoded))
        self.buf += encoded

    def strings(self, values: tuple[str, ...], field: str) -> None:
        if not isinstance(values, tuple | list):
            raise malformed(f"{field} must be a list of strings")
        for value in values:
            if not isinstance(value, str):
                raise malformed(f"{field} must hold strings only")
        if len(set(values)) != len(values):
            raise malformed(f"{field} holds the same value twice")
        self.uvarint(len(values))
        for value in values:
            self.string(value, field)

    def sorted_strings(self, values: frozenset[str], field: str) -> None:
        if not isinstance(values, frozenset | set):
            raise malformed(f"{field} must be a set of strings")
        for value in values:
            if not isinstance(value, str):
                raise malformed(f"{field} must hold strings only")
        self.strings(tuple(sorted(values)), field)

    def raw(self, value: bytes, size: int, field: str) -> None:
        if not isinstance(value, bytes) or len(value) != size:
            raise malformed(f"{field} must be exactly {size} bytes")
        self.buf += value

    def getvalue(self) -> bytes:
        return bytes(self.buf)
