"""Checks an upload before a job is created: kind, resolution, frame count, size.

Only headers are read (Pillow's `Image.open` and PyAV's probe decode no pixel data), so a
file whose header is fine but whose data is corrupt passes here and fails in the worker
with a readable error. Nothing here imports codec_engine or torch.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import PurePosixPath
from typing import IO

from django.conf import settings
from PIL import Image, UnidentifiedImageError

from jobs.errors import InputRejected, InputTooLarge
from jobs.models import EncodeJob

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".y4m", ".m4v"})
FRAMES_SUFFIXES = frozenset({".zip"})
MIN_SIDE = 16
DEFAULT_SEQUENCE_FPS = 25.0


@dataclass(frozen=True)
class Limits:
    """What one job may ask of a worker (settings JOBS_MAX_*; see docs/jobs.md)."""

    max_input_bytes: int
    max_width: int
    max_height: int
    max_frames: int
    max_total_pixels: int

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            max_input_bytes=settings.JOBS_MAX_INPUT_BYTES,
            max_width=settings.JOBS_MAX_WIDTH,
            max_height=settings.JOBS_MAX_HEIGHT,
            max_frames=settings.JOBS_MAX_FRAMES,
            max_total_pixels=settings.JOBS_MAX_TOTAL_PIXELS,
        )


@dataclass(frozen=True)
class ProbedInput:
    kind: str
    suffix: str  # the extension the stored file gets
    width: int
    height: int
    frame_count: int
    fps: float


def suffix_of(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).suffix.lower()


def infer_kind(name: str) -> str | None:
    suffix = suffix_of(name)
    if suffix in IMAGE_SUFFIXES:
        return EncodeJob.Kind.IMAGE
    if suffix in VIDEO_SUFFIXES:
        return EncodeJob.Kind.VIDEO
    if suffix in FRAMES_SUFFIXES:
        return EncodeJob.Kind.FRAMES
    return None


def _unsupported(message: str) -> InputRejected:
    return InputRejected(message, code="UNSUPPORTED_INPUT")


def _image_size(fh: IO[bytes], what: str) -> tuple[int, int]:
    try:
        with Image.open(fh) as im:
            return int(im.width), int(im.height)
    except Image.DecompressionBombError as exc:
        raise InputRejected(f"{what}: {exc}", code="RESOLUTION_TOO_LARGE") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise _unsupported(f"{what} is not a readable image ({exc}).") from None


def frame_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The images of a frame-sequence ZIP in name order (folders and dot-files skipped).

    Shared with the worker so both sides agree on which files are frames and in what order.
    """
    members = []
    for info in zf.infolist():
        name = PurePosixPath(info.filename)
        if info.is_dir() or name.name.startswith(".") or "__MACOSX" in name.parts:
            continue
        if name.suffix.lower() not in IMAGE_SUFFIXES:
            raise _unsupported(f"{info.filename}: only images may be in a frame-sequence ZIP.")
        members.append(info)
    return sorted(members, key=lambda i: i.filename)


def _probe_frames(fh: IO[bytes], limits: Limits) -> tuple[int, int, int]:
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _unsupported(f"The frame sequence is not a readable ZIP archive ({exc}).") from None
    with zf:
        members = frame_members(zf)
        if not members:
            raise InputRejected("The ZIP archive holds no images.", code="EMPTY_INPUT")
        if len(members) > limits.max_frames:
            raise InputRejected(
                f"{len(members)} frames; at most {limits.max_frames} per job.",
                code="TOO_MANY_FRAMES",
            )
        # Uncompressed sizes are checked before anything is inflated (ZIP bombs).
        total = sum(m.file_size for m in members)
        if total > limits.max_input_bytes * 4:
            raise InputTooLarge(
                f"The frames inflate to {total} bytes; at most {limits.max_input_bytes * 4}."
            )
        size: tuple[int, int] | None = None
        for member in members:
            data = zf.read(member)
            this = _image_size(io.BytesIO(data), member.filename)
            if size is None:
                size = this
            elif this != size:
                raise InputRejected(
                    f"{member.filename} is {this[0]}x{this[1]}, the first frame "
                    f"{size[0]}x{size[1]}: all frames must have the same size.",
                    code="FRAME_SIZE_MISMATCH",
                )
        assert size is not None
        return size[0], size[1], len(members)


def _probe_video(fh: IO[bytes]) -> tuple[int, int, int, float]:
    import av  # PyAV, not codec_engine: probing reads only the container header

    try:
        with av.open(fh, mode="r") as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            frames = int(stream.frames or 0)
            if frames <= 0 and container.duration:
                # No frame count in the header: estimate from the duration (µs). The worker
                # counts the real frames and enforces the limit again.
                frames = max(1, round(container.duration / 1_000_000 * float(rate)))
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    except (av.FFmpegError, IndexError, ValueError, OSError) as exc:
        raise _unsupported(f"The video cannot be read ({exc}).") from None
    return width, height, max(frames, 1), float(rate)


def probe_upload(
    fh: IO[bytes], *, name: str, size: int, kind: str | None, fps: float | None, limits: Limits
) -> ProbedInput:
    """Validate an upload against `limits`; raise InputTooLarge / InputRejected with a code."""
    if size <= 0:
        raise InputRejected("The uploaded file is empty.", code="EMPTY_INPUT")
    if size > limits.max_input_bytes:
        raise InputTooLarge(
            f"The upload is {size} bytes; at most {limits.max_input_bytes} bytes per job."
        )
    inferred = infer_kind(name)
    kind = kind or inferred
    if kind is None:
        raise _unsupported(
            f"Cannot tell what {name!r} is: use an image ({', '.join(sorted(IMAGE_SUFFIXES))}), "
            f"a video ({', '.join(sorted(VIDEO_SUFFIXES))}) or a ZIP of frames."
        )
    suffix = suffix_of(name)
    fh.seek(0)
    if kind == EncodeJob.Kind.IMAGE:
        if suffix not in IMAGE_SUFFIXES:
            suffix = ".img"
        width, height = _image_size(fh, "The upload")
        frame_count, rate = 1, 0.0
    elif kind == EncodeJob.Kind.FRAMES:
        suffix = ".zip"
        width, height, frame_count = _probe_frames(fh, limits)
        rate = fps or DEFAULT_SEQUENCE_FPS
    else:
        if suffix not in VIDEO_SUFFIXES:
            raise _unsupported(f"A video must be one of {', '.join(sorted(VIDEO_SUFFIXES))}.")
        width, height, frame_count, rate = _probe_video(fh)
    fh.seek(0)
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InputRejected(
            f"{width}x{height} is too small; at least {MIN_SIDE}x{MIN_SIDE}.",
            code="RESOLUTION_TOO_SMALL",
        )
    if width > limits.max_width or height > limits.max_height:
        raise InputRejected(
            f"{width}x{height} is above the limit of {limits.max_width}x{limits.max_height}.",
            code="RESOLUTION_TOO_LARGE",
            details={"width": width, "height": height},
        )
    if frame_count > limits.max_frames:
        raise InputRejected(
            f"{frame_count} frames; at most {limits.max_frames} per job.", code="TOO_MANY_FRAMES"
        )
    if width * height * frame_count > limits.max_total_pixels:
        raise InputRejected(
            f"{frame_count} frames of {width}x{height} exceed {limits.max_total_pixels} pixels "
            "per job; split the input into shorter jobs.",
            code="INPUT_TOO_LONG",
        )
    return ProbedInput(kind, suffix, width, height, frame_count, rate)
