"""The `.nce` bitstream container (see docs/bitstream.md). Pure Python, no torch.

Layout (all integers little-endian):

    file   = header, frame index, frame payloads (in index order), nothing after
    header = magic "\\x89NCE" | version u8 | flags u8 | header length u16 |
             model id u16 | preset u8 | quality u8 | weights SHA-256 (32 bytes) |
             width u32 | height u32 | frame count u32 | fps numerator u32 |
             fps denominator u32 | tile size u16 | reserved u16 | header CRC-32 u32
    index  = frame count x (type u8 | flags u8 | reserved u16 | length u32 | CRC-32 u32),
             then the index CRC-32 u32
    frame  = tile count x (length u32 | entropy-parameter CRC-32 u32), then the tile streams

Every read is bounded by the file's real size before anything is allocated, so a
truncated, corrupted or foreign file raises a `BitstreamError` subclass, never crashes
and never allocates more than the file holds.
"""

from __future__ import annotations

import enum
import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from codec_engine.errors import (
    BitstreamError,
    CorruptBitstreamError,
    ForeignBitstreamError,
    TruncatedBitstreamError,
    UnsupportedBitstreamError,
)

MAGIC = b"\x89NCE"
VERSION = 1
_HEADER = struct.Struct("<4sBBHHBB32sIIIIIHH")
_HEADER_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size + _HEADER_CRC.size
_INDEX_ENTRY = struct.Struct("<BBHII")
_TILE_ENTRY = struct.Struct("<II")
_U32 = struct.Struct("<I")

MAX_DIMENSION = 1 << 15  # 32768 px per side
MAX_FRAMES = 1 << 20
MAX_TILE = 4096


class Preset(enum.IntEnum):
    """Coding preset: `FAST` (the trained zoo model) or `MAX` (per-content overfitted coding,
    `codec_engine.overfit`: one tile per frame carrying the decoder's parameters and latents)."""

    FAST = 0
    MAX = 1


class FrameType(enum.IntEnum):
    """Frame coding type: intra, or predicted from the previous frame (low delay); the tiles
    of a `PREDICTED_SKIP` frame start with a skip-block map (`codec_engine.models.skip`)."""

    INTRA = 0
    PREDICTED = 1
    PREDICTED_SKIP = 2


SUPPORTED_PRESETS = frozenset({Preset.FAST, Preset.MAX})
#: Model ids of the overfitted architecture versions (`codec_engine.overfit.arch.MODEL_ID`).
MAX_MODEL_IDS = frozenset({0x100})
SUPPORTED_FRAME_TYPES = frozenset({FrameType.INTRA, FrameType.PREDICTED, FrameType.PREDICTED_SKIP})


@dataclass(frozen=True)
class Header:
    model_id: int
    preset: Preset
    quality: int
    weights_sha256: bytes
    width: int
    height: int
    frame_count: int
    fps_num: int
    fps_den: int
    tile_size: int

    @property
    def fps(self) -> float:
        return self.fps_num / self.fps_den if self.fps_den else 0.0

    def tiles_per_frame(self) -> int:
        return -(-self.width // self.tile_size) * -(-self.height // self.tile_size)

    def pack(self) -> bytes:
        body = _HEADER.pack(
            MAGIC,
            VERSION,
            0,
            HEADER_SIZE,
            self.model_id,
            int(self.preset),
            self.quality,
            self.weights_sha256,
            self.width,
            self.height,
            self.frame_count,
            self.fps_num,
            self.fps_den,
            self.tile_size,
            0,
        )
        return body + _HEADER_CRC.pack(zlib.crc32(body))


@dataclass(frozen=True)
class TileRecord:
    data: bytes
    params_crc: int


@dataclass(frozen=True)
class Frame:
    frame_type: FrameType
    tiles: tuple[TileRecord, ...]

    def pack(self) -> bytes:
        parts = [_TILE_ENTRY.pack(len(t.data), t.params_crc) for t in self.tiles]
        parts.extend(t.data for t in self.tiles)
        return b"".join(parts)


@dataclass(frozen=True)
class IndexEntry:
    frame_type: FrameType
    length: int
    crc: int


def validate_header_fields(h: Header) -> None:
    """Raise `BitstreamError` subclasses for values this version cannot hold or decode."""
    if not 1 <= h.width <= MAX_DIMENSION or not 1 <= h.height <= MAX_DIMENSION:
        raise CorruptBitstreamError(f"implausible dimensions {h.width}x{h.height}")
    if not 1 <= h.frame_count <= MAX_FRAMES:
        raise CorruptBitstreamError(f"implausible frame count {h.frame_count}")
    if h.tile_size % 64 or not 64 <= h.tile_size <= MAX_TILE:
        raise CorruptBitstreamError(f"implausible tile size {h.tile_size}")
    if not 1 <= h.quality <= 255:
        raise CorruptBitstreamError(f"implausible quality {h.quality}")
    if len(h.weights_sha256) != 32:
        raise CorruptBitstreamError("weights digest must be 32 bytes")
    if h.preset == Preset.MAX and h.tiles_per_frame() != 1:
        # The overfitted decoder codes a frame as a whole: its one tile covers the frame.
        raise CorruptBitstreamError("a max-preset frame must be a single tile")


def write_stream(header: Header, frames: list[Frame]) -> bytes:
    """Serialise a whole bitstream (header, index, frames)."""
    if len(frames) != header.frame_count:
        raise ValueError("frame count does not match the header")
    validate_header_fields(header)
    payloads = [f.pack() for f in frames]
    index = b"".join(
        _INDEX_ENTRY.pack(int(f.frame_type), 0, 0, len(p), zlib.crc32(p))
        for f, p in zip(frames, payloads, strict=True)
    )
    return b"".join([header.pack(), index, _U32.pack(zlib.crc32(index)), *payloads])


def _read_exact(fh: BinaryIO, n: int, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise TruncatedBitstreamError(f"file ends inside the {what}")
    return data


def parse_header(data: bytes) -> Header:
    """Parse and check the fixed-size header (the first `HEADER_SIZE` bytes)."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise ForeignBitstreamError("not a codec-engine bitstream (bad magic bytes)")
    if len(data) < HEADER_SIZE:
        raise TruncatedBitstreamError("file ends inside the header")
    fields = _HEADER.unpack(data[: _HEADER.size])
    (_, version, _flags, header_len, model_id, preset, quality, digest) = fields[:8]
    (width, height, frames, fps_num, fps_den, tile, _reserved) = fields[8:]
    (crc,) = _HEADER_CRC.unpack(data[_HEADER.size : HEADER_SIZE])
    if version != VERSION:
        raise UnsupportedBitstreamError(f"bitstream version {version}; this engine reads {VERSION}")
    if zlib.crc32(data[: _HEADER.size]) != crc:
        raise CorruptBitstreamError("header checksum mismatch")
    if header_len != HEADER_SIZE:
        raise CorruptBitstreamError(f"unexpected header length {header_len}")
    try:
        preset_v = Preset(preset)
    except ValueError:
        raise UnsupportedBitstreamError(f"unknown preset {preset}") from None
    if preset_v not in SUPPORTED_PRESETS:
        raise UnsupportedBitstreamError(f"preset {preset_v.name.lower()} is not supported here")
    if preset_v == Preset.MAX and model_id not in MAX_MODEL_IDS:
        raise UnsupportedBitstreamError(
            f"max-preset architecture {model_id} is not supported here (known: "
            f"{', '.join(str(i) for i in sorted(MAX_MODEL_IDS))})"
        )
    header = Header(
        model_id=model_id,
        preset=preset_v,
        quality=quality,
        weights_sha256=digest,
        width=width,
        height=height,
        frame_count=frames,
        fps_num=fps_num,
        fps_den=fps_den,
        tile_size=tile,
    )
    validate_header_fields(header)
    return header


class StreamReader:
    """Reads a bitstream frame by frame from a seekable binary file of known size."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh = fh
        self.size = size
        head = fh.read(HEADER_SIZE)
        self.header = parse_header(head)
        n = self.header.frame_count
        index_bytes = n * _INDEX_ENTRY.size + _U32.size
        if HEADER_SIZE + index_bytes > size:
            raise TruncatedBitstreamError("file ends inside the frame index")
        raw = _read_exact(fh, n * _INDEX_ENTRY.size, "frame index")
        (crc,) = _U32.unpack(_read_exact(fh, _U32.size, "frame index"))
        if zlib.crc32(raw) != crc:
            raise CorruptBitstreamError("frame index checksum mismatch")
        self.index: list[IndexEntry] = []
        for i in range(n):
            ftype, _fl, _res, length, fcrc = _INDEX_ENTRY.unpack_from(raw, i * _INDEX_ENTRY.size)
            try:
                ft = FrameType(ftype)
            except ValueError:
                raise UnsupportedBitstreamError(f"frame {i}: unknown frame type {ftype}") from None
            if ft not in SUPPORTED_FRAME_TYPES:
                raise UnsupportedBitstreamError(
                    f"frame {i}: {ft.name.lower()} frames not supported"
                )
            if i == 0 and ft != FrameType.INTRA:
                raise CorruptBitstreamError("frame 0: a stream must start with an intra frame")
            self.index.append(IndexEntry(ft, length, fcrc))
        self.payload_start = HEADER_SIZE + index_bytes
        total = self.payload_start + sum(e.length for e in self.index)
        if total > size:
            raise TruncatedBitstreamError(
                f"file is truncated: {size} bytes, the index needs {total}"
            )
        if total < size:
            raise CorruptBitstreamError(f"{size - total} unexpected bytes after the last frame")

    def frames(self) -> Iterator[Frame]:
        for _, frame in self.frames_from(0):
            yield frame

    def intra_at_or_before(self, n: int) -> int:
        """The index of the last intra frame at or before frame `n` (where decoding starts)."""
        if not 0 <= n < len(self.index):
            raise BitstreamError(f"frame {n} is not in this stream of {len(self.index)} frames")
        while self.index[n].frame_type != FrameType.INTRA:
            n -= 1
        return n

    def frames_from(self, n: int) -> Iterator[tuple[int, Frame]]:
        """(index, frame) from the intra frame at or before frame `n` to the end; the file is
        read from that frame's offset (the index gives every frame's length)."""
        first = self.intra_at_or_before(n) if n else 0
        self.fh.seek(self.payload_start + sum(e.length for e in self.index[:first]))
        tiles_n = self.header.tiles_per_frame()
        for i in range(first, len(self.index)):
            entry = self.index[i]
            payload = _read_exact(self.fh, entry.length, f"frame {i}")
            if zlib.crc32(payload) != entry.crc:
                raise CorruptBitstreamError(f"frame {i}: checksum mismatch")
            yield i, _parse_frame(payload, entry.frame_type, tiles_n, i)


def _parse_frame(payload: bytes, ftype: FrameType, tiles_n: int, i: int) -> Frame:
    table = tiles_n * _TILE_ENTRY.size
    if table > len(payload):
        raise CorruptBitstreamError(f"frame {i}: tile table exceeds the frame")
    pos = table
    tiles = []
    for t in range(tiles_n):
        length, pcrc = _TILE_ENTRY.unpack_from(payload, t * _TILE_ENTRY.size)
        if pos + length > len(payload):
            raise CorruptBitstreamError(f"frame {i}: tile {t} exceeds the frame")
        tiles.append(TileRecord(payload[pos : pos + length], pcrc))
        pos += length
    if pos != len(payload):
        raise CorruptBitstreamError(f"frame {i}: tile lengths do not add up")
    return Frame(ftype, tuple(tiles))


def read_stream(data: bytes) -> tuple[Header, list[Frame]]:
    """Parse a whole in-memory bitstream (checks everything)."""
    reader = StreamReader(io.BytesIO(data), len(data))
    return reader.header, list(reader.frames())


def peek_header(data: bytes) -> Header:
    """Parse only the header (e.g. for the licence gate before any model is loaded)."""
    if not isinstance(data, bytes | bytearray):
        raise BitstreamError("expected bytes")
    return parse_header(bytes(data[:HEADER_SIZE]))
