"""Conventional codecs for the honest comparison, all in memory and offline.

Stills: JPEG (4:2:0), WebP (method 6) and AVIF through Pillow; x264, x265 (4:2:0 and
4:4:4) and SVT-AV1 through PyAV; VVC through the static ffmpeg of `imageio-ffmpeg` (libvvenc)
when that package is installed. Sequences: x264, x265 and SVT-AV1 with their default GOP,
or every frame coded alone by a still codec.

Bytes count the whole elementary stream (no container). `matched_quality` searches the
codec's quality parameter for the cheapest setting whose quality is at least ours.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from codec_engine.errors import BaselineError
from codec_engine.metrics import Quality, measure

Frame = npt.NDArray[np.uint8]
EncodeFn = Callable[[Sequence[Frame], int, Fraction], tuple[int, list[Frame]]]


@dataclass(frozen=True)
class BaselineCodec:
    """A codec and its quality parameter values, ordered from lowest to highest quality."""

    name: str
    description: str
    params: tuple[int, ...]
    encode: EncodeFn = field(repr=False)
    video: bool = False  # codes a sequence with inter prediction


@dataclass(frozen=True)
class BaselinePoint:
    codec: str
    param: int
    num_bytes: int
    quality: Quality
    frames: list[Frame] = field(default_factory=list, repr=False, compare=False)


# ---- helpers ------------------------------------------------------------------------------
def _pad(frame: Frame, multiple: int) -> Frame:
    h, w = frame.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return frame
    return np.pad(frame, ((0, ph), (0, pw), (0, 0)), mode="edge")


def _pillow_codec(fmt: str, **options: object) -> EncodeFn:
    def encode(frames: Sequence[Frame], param: int, fps: Fraction) -> tuple[int, list[Frame]]:
        total, out = 0, []
        for f in frames:
            buf = io.BytesIO()
            Image.fromarray(f).save(buf, format=fmt, quality=param, **options)
            total += buf.tell()
            buf.seek(0)
            with Image.open(buf) as im:
                out.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        return total, out

    return encode


def _pyav_codec(
    codec: str,
    fmt: str,
    pix_fmt: str,
    options: Callable[[int], dict[str, str]],
    align: int,
    intra: bool,
) -> EncodeFn:
    def encode(frames: Sequence[Frame], param: int, fps: Fraction) -> tuple[int, list[Frame]]:
        import av

        if codec == "libsvtav1":
            # SVT-AV1 logs its whole configuration to stderr unless told otherwise.
            os.environ.setdefault("SVT_LOG", "1")
        h, w = frames[0].shape[:2]
        rate = fps if fps > 0 else Fraction(25)
        buf = io.BytesIO()
        try:
            with av.open(buf, mode="w", format=fmt) as out:
                stream = out.add_stream(codec, rate=rate)
                assert isinstance(stream, av.VideoStream)
                padded_h, padded_w = _pad(frames[0], align).shape[:2]
                stream.width, stream.height, stream.pix_fmt = padded_w, padded_h, pix_fmt
                opts: dict[str, object] = dict(options(param))
                if intra:
                    stream.gop_size = 1
                stream.options = opts
                for f in frames:
                    vf = av.VideoFrame.from_ndarray(_pad(f, align), format="rgb24")
                    for packet in stream.encode(vf):
                        out.mux(packet)
                for packet in stream.encode():
                    out.mux(packet)
            data = buf.getvalue()
            with av.open(io.BytesIO(data), mode="r", format=fmt) as inp:
                dec = [fr.to_ndarray(format="rgb24")[:h, :w] for fr in inp.decode(video=0)]
        except av.FFmpegError as exc:
            raise BaselineError(f"{codec} failed: {exc}") from None
        if len(dec) != len(frames):
            raise BaselineError(f"{codec} returned {len(dec)} frames for {len(frames)}")
        return len(data), [np.ascontiguousarray(d) for d in dec]

    return encode


def _x265_params(extra: str) -> Callable[[int], dict[str, str]]:
    def opts(q: int) -> dict[str, str]:
        return {"preset": "medium", "x265-params": f"{extra}:info=0:log-level=error"}

    return opts


def vvc_executable() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    return exe if (exe and shutil.which(exe)) or (exe and os.path.exists(exe)) else None


def _vvc_encode(frames: Sequence[Frame], param: int, fps: Fraction) -> tuple[int, list[Frame]]:
    exe = vvc_executable()
    if exe is None:
        raise BaselineError("VVC needs the imageio-ffmpeg package (static ffmpeg with libvvenc)")
    h, w = frames[0].shape[:2]
    padded = [_pad(f, 8) for f in frames]
    ph, pw = padded[0].shape[:2]
    rate = str(fps if fps > 0 else 25)
    with tempfile.TemporaryDirectory() as tmp:
        stream = Path(tmp) / "out.266"
        raw_in = b"".join(f.tobytes() for f in padded)
        enc = subprocess.run(
            [
                exe,
                "-v",
                "error",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-s",
                f"{pw}x{ph}",
                "-r",
                rate,
                "-i",
                "-",
                "-c:v",
                "libvvenc",
                "-preset",
                "medium",
                "-qp",
                str(param),
                *(["-g", "1"] if len(frames) == 1 else []),
                "-f",
                "vvc",
                str(stream),
                "-y",
            ],
            input=raw_in,
            capture_output=True,
            check=False,
        )
        if enc.returncode != 0:
            raise BaselineError(f"vvenc failed: {enc.stderr.decode(errors='replace')[-300:]}")
        dec = subprocess.run(
            [exe, "-v", "error", "-i", str(stream), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            capture_output=True,
            check=False,
        )
        if dec.returncode != 0:
            raise BaselineError(f"VVC decode failed: {dec.stderr.decode(errors='replace')[-300:]}")
        size = stream.stat().st_size
    arr = np.frombuffer(dec.stdout, dtype=np.uint8)
    n = arr.size // (ph * pw * 3)
    out = arr[: n * ph * pw * 3].reshape(n, ph, pw, 3)[:, :h, :w]
    return size, [np.ascontiguousarray(f) for f in out]


_QP = tuple(range(51, -1, -1))

CODECS: dict[str, BaselineCodec] = {
    "jpeg": BaselineCodec(
        "jpeg",
        "JPEG 4:2:0 (Pillow, optimised Huffman)",
        tuple(range(1, 96)),
        _pillow_codec("JPEG", subsampling=2, optimize=True),
    ),
    "webp": BaselineCodec(
        "webp", "WebP (Pillow, method 6)", tuple(range(0, 101)), _pillow_codec("WEBP", method=6)
    ),
    "avif": BaselineCodec(
        "avif",
        "AVIF (Pillow/libavif, speed 6)",
        tuple(range(0, 101)),
        _pillow_codec("AVIF", speed=6),
    ),
    "x264": BaselineCodec(
        "x264",
        "H.264 x264 medium 4:2:0 (PyAV), intra for stills",
        _QP,
        _pyav_codec(
            "libx264", "h264", "yuv420p", lambda q: {"preset": "medium", "qp": str(q)}, 2, False
        ),
        video=True,
    ),
    "x265": BaselineCodec(
        "x265",
        "HEVC x265 medium 4:2:0 (PyAV), intra for stills",
        _QP,
        _pyav_codec("libx265", "hevc", "yuv420p", lambda q: _x265_params(f"qp={q}")(q), 2, False),
        video=True,
    ),
    # Low delay (video): medium preset with tune zerolatency (no B-frames, no look-ahead,
    # every frame references only earlier ones), constant QP; the anchors of our P-frames.
    "x264-ld": BaselineCodec(
        "x264-ld",
        "H.264 x264 medium, low delay (tune zerolatency), 4:2:0 (PyAV)",
        _QP,
        _pyav_codec(
            "libx264",
            "h264",
            "yuv420p",
            lambda q: {"preset": "medium", "tune": "zerolatency", "qp": str(q)},
            2,
            False,
        ),
        video=True,
    ),
    "x265-ld": BaselineCodec(
        "x265-ld",
        "HEVC x265 medium, low delay (tune zerolatency), 4:2:0 (PyAV)",
        _QP,
        _pyav_codec(
            "libx265",
            "hevc",
            "yuv420p",
            lambda q: {**_x265_params(f"qp={q}")(q), "tune": "zerolatency"},
            2,
            False,
        ),
        video=True,
    ),
    "x265-444": BaselineCodec(
        "x265-444",
        "HEVC x265 medium 4:4:4 (PyAV)",
        _QP,
        _pyav_codec("libx265", "hevc", "yuv444p", lambda q: _x265_params(f"qp={q}")(q), 1, False),
        video=True,
    ),
    "svtav1": BaselineCodec(
        "svtav1",
        "AV1 SVT-AV1 preset 8 4:2:0 (PyAV)",
        tuple(range(63, 0, -1)),
        _pyav_codec(
            "libsvtav1", "ivf", "yuv420p", lambda q: {"preset": "8", "crf": str(q)}, 8, False
        ),
        video=True,
    ),
    "vvc": BaselineCodec(
        "vvc",
        "VVC vvenc medium 4:2:0 (imageio-ffmpeg)",
        tuple(range(51, 15, -1)),
        _vvc_encode,
        video=True,
    ),
}


def available(name: str) -> bool:
    if name == "vvc":
        return vvc_executable() is not None
    return name in CODECS


def get_codec(name: str) -> BaselineCodec:
    try:
        codec = CODECS[name]
    except KeyError:
        raise BaselineError(f"unknown baseline {name!r} (known: {', '.join(CODECS)})") from None
    if not available(name):
        raise BaselineError(f"baseline {name} is not available on this machine")
    return codec


def run(
    name: str,
    frames: Sequence[Frame],
    param: int,
    *,
    fps: Fraction = Fraction(0),
    with_ms_ssim: bool = False,
) -> BaselinePoint:
    codec = get_codec(name)
    num_bytes, decoded = codec.encode(frames, param, fps)
    return BaselinePoint(
        name, param, num_bytes, measure(frames, decoded, with_ms_ssim=with_ms_ssim), decoded
    )


def _value(q: Quality, metric: str) -> float:
    if metric == "psnr":
        return q.psnr
    if metric == "psnr-y":
        return q.psnr_y
    if metric == "ms-ssim":
        return q.ms_ssim if q.ms_ssim is not None else q.psnr / 100.0
    raise BaselineError(f"unknown metric {metric!r}")


def matched_quality(
    name: str,
    frames: Sequence[Frame],
    target: Quality,
    *,
    metric: str = "psnr",
    fps: Fraction = Fraction(0),
) -> tuple[BaselinePoint, bool]:
    """Binary search of the cheapest parameter whose quality >= `target` (monotone assumption).

    Returns (point, matched); matched is False when even the best setting falls short, in
    which case the best setting is returned (and its bytes are an underestimate).
    """
    codec = get_codec(name)
    goal = _value(target, metric)
    ms = metric == "ms-ssim"
    cache: dict[int, BaselinePoint] = {}

    def point(i: int) -> BaselinePoint:
        if i not in cache:
            cache[i] = run(name, frames, codec.params[i], fps=fps, with_ms_ssim=ms)
        return cache[i]

    lo, hi = 0, len(codec.params) - 1
    if _value(point(hi).quality, metric) < goal:
        return point(hi), False
    while lo < hi:
        mid = (lo + hi) // 2
        if _value(point(mid).quality, metric) >= goal:
            hi = mid
        else:
            lo = mid + 1
    return point(lo), True
