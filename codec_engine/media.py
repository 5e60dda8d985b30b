"""Reading inputs (still image, frame sequence, video file) and writing decoded outputs.

Frames are HxWx3 uint8 RGB numpy arrays. Nothing here imports torch.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from codec_engine.errors import InputError

Frame = npt.NDArray[np.uint8]
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".y4m", ".m4v"})
MAX_PIXELS = 1 << 28  # refuse absurd images before decoding them


@dataclass(frozen=True)
class MediaInfo:
    """What the gate and the container need before any frame is coded."""

    width: int
    height: int
    frame_count: int
    fps: Fraction  # 0 for still images
    kind: str  # "image", "sequence" or "video"


def load_image(path: Path) -> Frame:
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise InputError(f"{path}: image too large ({im.width}x{im.height})")
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None


class MediaSource:
    """An input path resolved to frames: image file, directory or glob of images, or video."""

    def __init__(self, spec: str | Path, *, max_frames: int | None = None) -> None:
        if max_frames is not None and max_frames < 1:
            raise InputError("max_frames must be at least 1")
        self.max_frames = max_frames
        text = str(spec)
        path = Path(text)
        self.paths: list[Path] = []
        self.video: Path | None = None
        if any(ch in text for ch in "*?["):
            self.paths = sorted(Path(p) for p in glob.glob(text))
            self.paths = [p for p in self.paths if p.suffix.lower() in IMAGE_SUFFIXES]
            self.kind = "sequence"
        elif path.is_dir():
            self.paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            self.kind = "sequence"
        elif not path.exists():
            raise InputError(f"{text}: no such file or directory")
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            self.video = path
            self.kind = "video"
        else:
            self.paths = [path]
            self.kind = "image"
        if self.video is None and not self.paths:
            raise InputError(f"{text}: no images found")
        self.info = self._probe()

    def _probe(self) -> MediaInfo:
        if self.video is not None:
            import av

            try:
                with av.open(str(self.video)) as container:
                    stream = container.streams.video[0]
                    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
                    count = stream.frames or sum(1 for _ in container.decode(video=0))
                    w, h = stream.codec_context.width, stream.codec_context.height
            except (av.FFmpegError, IndexError) as exc:
                raise InputError(f"{self.video}: not a readable video ({exc})") from None
            count = min(int(count), self.max_frames or int(count))
            return MediaInfo(w, h, count, Fraction(rate), "video")
        try:
            with Image.open(self.paths[0]) as im:
                w, h = im.size
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{self.paths[0]}: not a readable image ({exc})") from None
        fps = Fraction(0) if self.kind == "image" else Fraction(25)
        if self.max_frames is not None:
            self.paths = self.paths[: self.max_frames]
        return MediaInfo(w, h, len(self.paths), fps, self.kind)

    def frames(self) -> Iterator[Frame]:
        if self.video is not None:
            import av

            try:
                with av.open(str(self.video)) as container:
                    for i, frame in enumerate(container.decode(video=0)):
                        if i >= self.info.frame_count:
                            break
                        yield np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
            except av.FFmpegError as exc:
                raise InputError(f"{self.video}: decoding failed ({exc})") from None
            return
        for p in self.paths:
            img = load_image(p)
            if img.shape[:2] != (self.info.height, self.info.width):
                raise InputError(f"{p}: frame size differs from the first frame")
            yield img


@contextmanager
def atomic_output(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; move it into place only on success."""
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    tmp_path.chmod(0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual mode
    try:
        yield tmp_path
        tmp_path.replace(target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_frames(target: Path, frames: list[Frame], fps: Fraction) -> None:
    """Write decoded frames: one image file, a directory of PNGs, or a lossless video."""
    target = Path(target)
    suffix = target.suffix.lower()
    if suffix in IMAGE_SUFFIXES and len(frames) == 1:
        with atomic_output(target) as tmp:
            Image.fromarray(frames[0]).save(tmp, format=Image.registered_extensions()[suffix])
        return
    if suffix in (".mkv", ".mp4", ".mov"):
        import av

        with (
            atomic_output(target) as tmp,
            av.open(str(tmp), mode="w", format="matroska" if suffix == ".mkv" else "mp4") as out,
        ):
            rate = fps if fps > 0 else Fraction(25)
            if suffix == ".mkv":
                stream = out.add_stream("ffv1", rate=rate)
                stream.pix_fmt = "bgr0"
            else:
                stream = out.add_stream("libx264rgb", rate=rate)
                stream.pix_fmt = "rgb24"
                stream.options = {"qp": "0", "preset": "veryfast"}
            stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
            for f in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        return
    if suffix == "" or target.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(frames):
            with atomic_output(target / f"frame_{i:05d}.png") as tmp:
                Image.fromarray(f).save(tmp, format="PNG")
        return
    raise InputError(
        f"{target}: cannot write {len(frames)} frame(s) there "
        "(use .png for one frame, a directory, .mkv or .mp4)"
    )
