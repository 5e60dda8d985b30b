"""End-to-end coding with the shipped weights: determinism, cross-process decode, refusals."""

from __future__ import annotations

import hashlib
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from codec_engine import api, container
from codec_engine.errors import (
    BitstreamError,
    CorruptBitstreamError,
    DecodeMismatchError,
    WeightsMismatchError,
)
from codec_engine.metrics import psnr
from tests.codec_engine.conftest import run_script

DECODE_SCRIPT = """
import sys, numpy as np
from codec_engine import api
data = open(sys.argv[1], "rb").read()
out = api.decode(data)
np.save(sys.argv[2], np.stack(out.frames))
"""

ENCODE_SCRIPT = """
import sys, numpy as np
from codec_engine import api
frames = list(np.load(sys.argv[1]))
res = api.load_model("msh-v1", int(sys.argv[3])).encode(frames, tile=64)
open(sys.argv[2], "wb").write(res.data)
"""


def test_same_input_same_bytes(model_q4: api.Model, small_image: np.ndarray) -> None:
    a = model_q4.encode_image(small_image)
    b = model_q4.encode_image(small_image.copy())
    assert a.data == b.data
    assert a.header.width == 128 and a.header.height == 96
    assert 0.05 < a.bpp < 4.0


def test_decode_in_another_process_gives_identical_pixels(
    model_q4: api.Model, tiny_frames: list[np.ndarray], tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the host's setting must not matter: the engine pins its own
    try:
        _cross_process(model_q4, tiny_frames, tmp_path)
    finally:
        torch.set_num_threads(before)


def _cross_process(model_q4: api.Model, tiny_frames: list[np.ndarray], tmp_path: Path) -> None:
    # Encoder and decoder in separate fresh processes, multi-tile frames (tile 64).
    np.save(tmp_path / "frames.npy", np.stack(tiny_frames))
    run_script(ENCODE_SCRIPT, str(tmp_path / "frames.npy"), str(tmp_path / "a.nce"), "4")
    data = (tmp_path / "a.nce").read_bytes()
    here = model_q4.encode(tiny_frames, tile=64)
    assert data == here.data, "another process encoded other bytes"
    run_script(DECODE_SCRIPT, str(tmp_path / "a.nce"), str(tmp_path / "dec.npy"))
    decoded = np.load(tmp_path / "dec.npy")
    assert decoded.shape == (3, 64, 80, 3)
    for frame, rec in zip(decoded, here.reconstruction, strict=True):
        assert np.array_equal(frame, rec)
    local = api.decode(data)
    assert all(np.array_equal(a, b) for a, b in zip(local.frames, decoded, strict=True))
    assert local.header.frame_count == 3 and local.header.tiles_per_frame() == 2


def test_quality_levels_are_monotonic(small_image: np.ndarray) -> None:
    sizes, psnrs = [], []
    for q in range(1, 9):
        res = api.load_model("msh-v1", q).encode_image(small_image)
        sizes.append(res.num_bytes)
        psnrs.append(psnr(small_image, res.reconstruction[0]))
    assert sizes == sorted(sizes) and len(set(sizes)) == 8, sizes
    assert psnrs == sorted(psnrs), psnrs


def test_corrupted_payload_is_refused(model_q4: api.Model, small_image: np.ndarray) -> None:
    data = bytearray(model_q4.encode_image(small_image).data)
    data[-5] ^= 0x01
    with pytest.raises(CorruptBitstreamError):
        api.decode(bytes(data))
    with pytest.raises(BitstreamError):
        api.decode(bytes(data[:-9]))


def test_entropy_parameter_mismatch_is_refused(
    model_q4: api.Model, small_image: np.ndarray
) -> None:
    # What a decoder on a platform that rebuilt other entropy parameters would see: the
    # tile's parameter checksum disagrees. Frame CRC recomputed, so only that check fires.
    res = model_q4.encode_image(small_image)
    header, frames = container.read_stream(res.data)
    tile = frames[0].tiles[0]
    record = container.TileRecord(tile.data, tile.params_crc ^ 1)
    bad = container.write_stream(header, [container.Frame(frames[0].frame_type, (record,))])
    with pytest.raises(DecodeMismatchError):
        api.decode(bad)


def test_truncated_tile_stream_is_refused(model_q4: api.Model, small_image: np.ndarray) -> None:
    res = model_q4.encode_image(small_image)
    header, frames = container.read_stream(res.data)
    tile = frames[0].tiles[0]
    for data in (tile.data[:-4], tile.data[:-1], b""):
        record = container.TileRecord(data, tile.params_crc)
        bad = container.write_stream(header, [container.Frame(frames[0].frame_type, (record,))])
        with pytest.raises(BitstreamError):
            api.decode(bad)


def test_other_weights_are_refused(model_q4: api.Model, small_image: np.ndarray) -> None:
    data = model_q4.encode_image(small_image).data
    body = bytearray(data[: container.HEADER_SIZE - 4])
    body[12:44] = hashlib.sha256(b"other weights").digest()
    forged = (
        bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))) + data[container.HEADER_SIZE :]
    )
    with pytest.raises(WeightsMismatchError):
        api.decode(forged)


def test_video_header_carries_frame_rate(
    model_q4: api.Model, tiny_frames: list[np.ndarray]
) -> None:
    res = model_q4.encode(tiny_frames, fps=Fraction(30000, 1001))
    header = container.peek_header(res.data)
    assert (header.fps_num, header.fps_den, header.frame_count) == (30000, 1001, 3)
    # One intra frame, then P-frames (the default intra period is longer than the clip).
    assert [f.frame_type for f in container.read_stream(res.data)[1]] == [
        container.FrameType.INTRA,
        container.FrameType.PREDICTED_SKIP,
        container.FrameType.PREDICTED_SKIP,
    ]


def test_refinement_decodes_with_the_same_decoder(
    model_q4: api.Model, small_image: np.ndarray
) -> None:
    plain = model_q4.encode_image(small_image)
    refined = model_q4.encode([small_image], refine_steps=3)
    out = api.decode(refined.data)
    assert np.array_equal(out.frames[0], refined.reconstruction[0])
    assert refined.data != plain.data


def test_refinement_is_deterministic_and_lowers_the_rate_distortion_cost(
    model_q4: api.Model, small_image: np.ndarray
) -> None:
    lam = model_q4.codec.lambdas[3]  # the rate weight quality 4 was trained for

    def cost(res: api.EncodeResult) -> float:
        # The objective refinement minimises, measured on the real bitstream: bits per
        # pixel plus lambda times the squared error (RGB, 8-bit scale).
        err = res.reconstruction[0].astype(np.float64) - small_image.astype(np.float64)
        return res.bpp + lam * float(np.mean(err**2))

    plain = model_q4.encode_image(small_image)
    refined = model_q4.encode([small_image], refine_steps=16)
    again = model_q4.encode([small_image.copy()], refine_steps=16)
    assert refined.data == again.data
    assert cost(refined) < cost(plain)


def test_respacing_quality_levels_keeps_trained_levels_and_interpolates_between() -> None:
    import math

    import torch

    from codec_engine.models.msh import MeanScaleHyperprior, ModelConfig, remap_quality_gains

    old = (0.001, 0.004, 0.016)
    net = MeanScaleHyperprior(ModelConfig(n=8, m=8, qualities=3))
    with torch.no_grad():
        net.gain_enc.copy_(torch.tensor([[0.5] * 8, [1.0] * 8, [2.0] * 8]))
    # Same level kept, a level half-way in log-lambda, and one below the lowest.
    remap_quality_gains(net, old, (0.004, 0.008, 0.00025))
    enc = net.gain_enc.detach()
    assert torch.allclose(enc[0], torch.full((8,), 1.0))
    assert torch.allclose(enc[1], torch.full((8,), math.sqrt(2.0)), rtol=1e-5)
    assert torch.allclose(enc[2], torch.full((8,), 0.25), rtol=1e-5)  # coarser quantisation
    with pytest.raises(ValueError):
        remap_quality_gains(net, old, (0.001, 0.002))
