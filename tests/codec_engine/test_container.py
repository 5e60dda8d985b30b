"""The container refuses truncated, corrupted and foreign input with clear errors."""

from __future__ import annotations

import struct
import zlib

import pytest

from codec_engine import container
from codec_engine.container import Frame, FrameType, Header, Preset, TileRecord
from codec_engine.errors import (
    BitstreamError,
    CorruptBitstreamError,
    ForeignBitstreamError,
    TruncatedBitstreamError,
    UnsupportedBitstreamError,
)


def _header(**kw: object) -> Header:
    values: dict[str, object] = dict(
        model_id=1,
        preset=Preset.FAST,
        quality=3,
        weights_sha256=bytes(range(32)),
        width=130,
        height=70,
        frame_count=2,
        fps_num=25,
        fps_den=1,
        tile_size=64,
    )
    values.update(kw)
    return Header(**values)  # type: ignore[arg-type]


def _frames(h: Header) -> list[Frame]:
    n = h.tiles_per_frame()
    return [
        Frame(FrameType.INTRA, tuple(TileRecord(bytes([f, t]) * 4, 1000 + t) for t in range(n)))
        for f in range(h.frame_count)
    ]


def _stream() -> bytes:
    h = _header()
    return container.write_stream(h, _frames(h))


def test_round_trip() -> None:
    h = _header()
    frames = _frames(h)
    data = container.write_stream(h, frames)
    assert container.read_stream(data) == (h, frames)
    assert h.tiles_per_frame() == 6
    assert container.peek_header(data) == h


def test_every_truncation_is_refused() -> None:
    data = _stream()
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            container.read_stream(data[:cut])


def test_every_single_bit_flip_is_refused_or_harmless() -> None:
    data = _stream()
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises(BitstreamError):
            container.read_stream(bytes(bad))


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(CorruptBitstreamError):
        container.read_stream(_stream() + b"\0")


def test_foreign_files_are_refused() -> None:
    for data in (b"", b"\x89PNG\r\n\x1a\n" + bytes(100), b"hello world" * 20):
        with pytest.raises(ForeignBitstreamError):
            container.read_stream(data)


def _resealed(data: bytes, offset: int, value: bytes) -> bytes:
    """Patch header bytes and fix the header checksum (a well-formed but odd header)."""
    body = bytearray(data[: container.HEADER_SIZE - 4])
    body[offset : offset + len(value)] = value
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))) + data[container.HEADER_SIZE :]


def test_unknown_version_and_mismatched_preset_are_unsupported() -> None:
    data = _stream()
    # A max-preset header must name an overfitted architecture, not the fast model's id.
    with pytest.raises(UnsupportedBitstreamError):
        container.read_stream(_resealed(data, 10, bytes([int(Preset.MAX)])))
    with pytest.raises(UnsupportedBitstreamError):
        container.read_stream(_resealed(data, 4, bytes([99])))


def test_huge_claimed_frame_count_is_refused_before_allocation() -> None:
    data = _stream()
    claims = _resealed(data, 52, struct.pack("<I", container.MAX_FRAMES))
    with pytest.raises(TruncatedBitstreamError):
        container.read_stream(claims)


def test_a_stream_starting_with_a_p_frame_is_refused() -> None:
    h = _header(frame_count=2)
    intra = _frames(h)[0]
    predicted = Frame(FrameType.PREDICTED, intra.tiles)
    _, frames = container.read_stream(container.write_stream(h, [intra, predicted]))
    assert [f.frame_type for f in frames] == [FrameType.INTRA, FrameType.PREDICTED]
    with pytest.raises(CorruptBitstreamError, match="start with an intra frame"):
        container.read_stream(container.write_stream(h, [predicted, intra]))


def test_an_unknown_frame_type_is_refused() -> None:
    h = _header(frame_count=1)
    data = bytearray(container.write_stream(h, _frames(h)))
    data[container.HEADER_SIZE] = 7  # frame 0's type, then fix the index CRC
    n = container.HEADER_SIZE + 12
    data[n : n + 4] = zlib.crc32(bytes(data[container.HEADER_SIZE : n])).to_bytes(4, "little")
    with pytest.raises(UnsupportedBitstreamError, match="unknown frame type 7"):
        container.read_stream(bytes(data))


def test_light_modules_do_not_import_torch() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "import codec_engine, codec_engine.container, codec_engine.gate, codec_engine.errors\n"
        "import codec_engine.zoo, codec_engine.commands, codec_engine.metrics\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)
