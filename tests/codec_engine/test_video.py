"""P-frames (inter coding) of the fast preset: cross-process decode, seeking, lost frames."""

from __future__ import annotations

import argparse
import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest

from codec_engine import api, commands, container
from codec_engine.container import FrameType
from codec_engine.errors import BitstreamError, CommandError, DecodeMismatchError
from tests.codec_engine.conftest import run_script

ROOT = Path(__file__).resolve().parents[2]

ENCODE_SCRIPT = """
import sys, numpy as np
from codec_engine import api
frames = list(np.load(sys.argv[1]))
res = api.load_model("msh-v1", 4).encode(frames, tile=64, intra_period=4)
open(sys.argv[2], "wb").write(res.data)
np.save(sys.argv[3], np.stack(res.reconstruction))
"""

DECODE_SCRIPT = """
import sys, numpy as np
from codec_engine import api
np.save(sys.argv[2], np.stack(api.decode(open(sys.argv[1], "rb").read()).frames))
"""


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    """Six 96x128 frames of a slow pan with a still background band (a small video)."""
    import skimage.data

    img = skimage.data.coffee()
    return [np.ascontiguousarray(img[150:246, 200 + 2 * i : 328 + 2 * i]) for i in range(6)]


def _types(data: bytes) -> list[FrameType]:
    return [f.frame_type for f in container.read_stream(data)[1]]


def _rewrite(data: bytes, keep: list[int]) -> bytes:
    """The same stream with only the frames `keep` (a frame lost in transport, re-muxed)."""
    header, frames = container.read_stream(data)
    header = dataclasses.replace(header, frame_count=len(keep))
    return container.write_stream(header, [frames[i] for i in keep])


def test_p_frames_decode_identically_in_another_process(
    clip: list[np.ndarray], tmp_path: Path
) -> None:
    np.save(tmp_path / "clip.npy", np.stack(clip))
    run_script(
        ENCODE_SCRIPT, str(tmp_path / "clip.npy"), str(tmp_path / "a.nce"), str(tmp_path / "r")
    )
    data = (tmp_path / "a.nce").read_bytes()
    assert _types(data) == [
        FrameType.INTRA,
        *[FrameType.PREDICTED_SKIP] * 3,
        FrameType.INTRA,
        FrameType.PREDICTED_SKIP,
    ]
    run_script(DECODE_SCRIPT, str(tmp_path / "a.nce"), str(tmp_path / "d.npy"))
    decoded = np.load(tmp_path / "d.npy")
    encoder_view = np.load(tmp_path / "r.npy")
    assert np.array_equal(decoded, encoder_view), "decoder drifted from the encoder"
    # ...and the same bytes as this process makes.
    here = api.load_model("msh-v1", 4).encode(clip, tile=64, intra_period=4)
    assert here.data == data


def test_p_frames_cost_less_than_intra_on_a_still_scene(clip: list[np.ndarray]) -> None:
    model = api.load_model("msh-v1", 4)
    still = [clip[0]] * 4
    inter = model.encode(still, intra_period=4)
    intra = model.encode(still, intra_period=1)
    _, frames = container.read_stream(inter.data)
    sizes = [sum(len(t.data) for t in f.tiles) for f in frames]
    assert max(sizes[1:]) < sizes[0] / 4, sizes
    assert inter.num_bytes < intra.num_bytes * 0.6
    decoded = api.decode(inter.data).frames
    assert all(np.array_equal(d, r) for d, r in zip(decoded, inter.reconstruction, strict=True))


def test_a_still_shot_costs_almost_nothing_and_does_not_drift(clip: list[np.ndarray]) -> None:
    model = api.load_model("msh-v1", 4)
    still = [clip[0]] * 4
    res = model.encode(still, intra_period=4)
    sizes = [sum(len(t.data) for t in f.tiles) for f in container.read_stream(res.data)[1]]
    # Every block is skipped: a P-frame is its side information and a map, a few dozen bytes.
    assert max(sizes[1:]) < sizes[0] / 20, sizes
    decoded = api.decode(res.data).frames
    assert all(np.array_equal(d, decoded[0]) for d in decoded), "a still shot drifted"
    # Without skip blocks the P-frames re-code the picture's quantisation noise.
    plain = model.encode(still, intra_period=4, skip_blocks=False)
    assert _types(plain.data)[1:] == [FrameType.PREDICTED] * 3
    assert res.num_bytes < plain.num_bytes * 0.85


def test_skip_blocks_lower_the_rate_distortion_cost_and_old_p_frames_still_decode(
    clip: list[np.ndarray],
) -> None:
    model = api.load_model("msh-v1", 4)
    lam = model.codec.lambdas[3]
    pixels = sum(f.shape[0] * f.shape[1] for f in clip)

    def cost(res: api.EncodeResult) -> float:
        pairs = zip(res.reconstruction, clip, strict=True)
        err = [np.mean((r.astype(np.float64) - f) ** 2) for r, f in pairs]
        return res.num_bytes * 8 / pixels + lam * float(np.mean(err))

    skipping = model.encode(clip, tile=64, intra_period=6)
    plain = model.encode(clip, tile=64, intra_period=6, skip_blocks=False)
    assert cost(skipping) < cost(plain)
    assert skipping.num_bytes < plain.num_bytes
    # A stream of P-frames without skip maps (frame type 1, as written before them) decodes.
    assert _types(plain.data)[1:] == [FrameType.PREDICTED] * 5
    decoded = api.decode(plain.data).frames
    assert all(np.array_equal(d, r) for d, r in zip(decoded, plain.reconstruction, strict=True))


def test_a_truncated_skip_map_is_reported(clip: list[np.ndarray]) -> None:
    res = api.load_model("msh-v1", 4).encode(clip[:2], tile=64, intra_period=4)
    header, frames = container.read_stream(res.data)
    p_frame = frames[1]
    tiles = (container.TileRecord(b"", p_frame.tiles[0].params_crc), *p_frame.tiles[1:])
    damaged = container.write_stream(header, [frames[0], dataclasses.replace(p_frame, tiles=tiles)])
    with pytest.raises(BitstreamError, match="P-frame 1, tile 0: the tile ends inside its skip"):
        api.decode(damaged)


def test_a_refined_p_frame_costs_less_and_decodes_with_the_same_decoder(
    clip: list[np.ndarray], tmp_path: Path
) -> None:
    model = api.load_model("msh-v1", 4)
    lam = model.codec.lambdas[3]  # the rate weight quality 4 was trained for
    _, _, references = model.encode_frame(clip[0], tile=64)

    def p_frame(steps: int) -> tuple[int, float]:
        coded, recon, _ = model.encode_frame(
            clip[1], tile=64, refine_steps=steps, references=references
        )
        assert coded.frame_type == FrameType.PREDICTED_SKIP and recon is not None
        err = recon.astype(np.float64) - clip[1].astype(np.float64)
        return sum(len(t.data) for t in coded.tiles), float(np.mean(err**2))

    # The objective refinement minimises, on the real P-frame bitstream, from the same
    # reference: bits per pixel plus lambda times the squared error.
    pixels = clip[1].shape[0] * clip[1].shape[1]
    (plain_bytes, plain_mse), (refined_bytes, refined_mse) = p_frame(0), p_frame(12)
    assert (
        refined_bytes * 8 / pixels + lam * refined_mse < plain_bytes * 8 / pixels + lam * plain_mse
    )

    refined = model.encode(clip[:3], tile=64, intra_period=4, refine_steps=4)
    assert model.encode(clip[:3], tile=64, intra_period=4, refine_steps=4).data == refined.data
    (tmp_path / "r.nce").write_bytes(refined.data)
    run_script(DECODE_SCRIPT, str(tmp_path / "r.nce"), str(tmp_path / "d.npy"))
    decoded = np.load(tmp_path / "d.npy")
    assert np.array_equal(decoded, np.stack(refined.reconstruction)), "decoder drifted"


def test_a_scene_cut_is_coded_intra_and_restarts_the_intra_period(
    clip: list[np.ndarray],
) -> None:
    import skimage.data

    # A cut after the third frame of the pan, to a still shot of another part of the picture.
    still = np.ascontiguousarray(skimage.data.coffee()[280:376, 380:508])
    frames = clip[:3] + [still] * 4
    model = api.load_model("msh-v1", 4)
    res = model.encode(frames, tile=64, intra_period=4)
    assert _types(res.data) == [
        FrameType.INTRA,
        FrameType.PREDICTED_SKIP,
        FrameType.PREDICTED_SKIP,
        FrameType.INTRA,  # the cut, one frame before the period would have forced it
        *[FrameType.PREDICTED_SKIP] * 3,  # the period counts from the cut
    ]
    forced = model.encode(frames, tile=64, intra_period=4, scene_cuts=False)
    assert _types(forced.data)[3:5] == [FrameType.PREDICTED_SKIP, FrameType.INTRA]
    assert res.num_bytes < forced.num_bytes
    decoded = api.decode(res.data).frames
    assert all(np.array_equal(d, r) for d, r in zip(decoded, res.reconstruction, strict=True))
    # Seeking into the new scene starts at the cut.
    part = list(api.decode_stream(io.BytesIO(res.data), len(res.data), start=5))
    assert np.array_equal(part[0][1], decoded[5])
    reader = container.StreamReader(io.BytesIO(res.data), len(res.data))
    assert reader.intra_at_or_before(5) == 3


def test_seeking_starts_at_the_previous_intra_frame(clip: list[np.ndarray]) -> None:
    res = api.load_model("msh-v1", 4).encode(clip, intra_period=4)
    full = api.decode(res.data).frames
    for start in (0, 2, 4, 5):
        part = [f for _, f in api.decode_stream(io.BytesIO(res.data), len(res.data), start=start)]
        assert len(part) == len(clip) - start
        assert all(np.array_equal(a, b) for a, b in zip(part, full[start:], strict=True))
    reader = container.StreamReader(io.BytesIO(res.data), len(res.data))
    assert [reader.intra_at_or_before(n) for n in range(6)] == [0, 0, 0, 0, 4, 4]
    with pytest.raises(BitstreamError, match="not in this stream"):
        list(api.decode_stream(io.BytesIO(res.data), len(res.data), start=6))


def test_a_lost_frame_is_reported_not_decoded_to_garbage(clip: list[np.ndarray]) -> None:
    res = api.load_model("msh-v1", 4).encode(clip, intra_period=4)
    damaged = _rewrite(res.data, [0, 1, 3, 4, 5])  # frame 2 lost; 3 now follows 1
    frames = api.decode_stream(io.BytesIO(damaged), len(damaged))
    next(frames), next(frames)  # the intra frame and the first P-frame are intact
    with pytest.raises(DecodeMismatchError, match="P-frame 2"):
        next(frames)
    # Decoding from the next intra frame on still works.
    tail = list(api.decode_stream(io.BytesIO(damaged), len(damaged), start=3))
    assert np.array_equal(tail[0][1], api.decode(res.data).frames[4])


def test_a_stream_must_start_with_an_intra_frame(clip: list[np.ndarray]) -> None:
    res = api.load_model("msh-v1", 4).encode(clip[:3], intra_period=4)
    damaged = _rewrite(res.data, [1, 2])
    with pytest.raises(BitstreamError, match="start with an intra frame"):
        api.decode(damaged)


def test_bad_intra_period_or_refinement_is_refused(clip: list[np.ndarray]) -> None:
    model = api.load_model("msh-v1", 4)
    with pytest.raises(CommandError, match="intra period"):
        model.encode(clip, intra_period=0)
    with pytest.raises(CommandError, match="refinement steps"):
        model.encode(clip, refine_steps=-1)
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command", required=True))
    for option, value in (("--refine", "-1"), ("--intra-period", "0")):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["encode", "in.png", "out.nce", option, value])
        assert exit_.value.code == 2
