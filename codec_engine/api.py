"""Python API of the engine: load a model by name and quality, encode, decode, measure.

    model = load_model("msh-v1", quality=4)
    result = model.encode_image(rgb)               # EncodeResult (bytes, bpp, reconstruction)
    decoded = decode(result.data)                   # Decoded (header, frames)
    report = compare(rgb, result, baseline="x265")  # matched-quality baseline bytes

torch is imported on first use, not when this module is imported. The licence gate
(`codec_engine.gate`) must be passed before calling `load_model` or `decode`; the CLI does
that. Encoding is deterministic: the same input, model and quality give the same bytes.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import numpy.typing as npt

from codec_engine import container
from codec_engine.container import FrameType, Header, Preset, TileRecord
from codec_engine.errors import CommandError, UnsupportedBitstreamError, WeightsMismatchError
from codec_engine.metrics import Quality, measure
from codec_engine.zoo.registry import (
    DEFAULT_MODEL,
    HASH_PREFIX_LEN,
    ModelSpec,
    WeightsInfo,
    find_weights,
    model_spec,
    sha256_file,
    spec_by_id,
    weights_dir,
)

if TYPE_CHECKING:
    from codec_engine.models.coding import NeuralImageCodec

Frame = npt.NDArray[np.uint8]
Progress = Callable[[int], None]
DEFAULT_TILE = 1024
ALIGN = 64

_CODECS: dict[tuple[bytes, int], NeuralImageCodec] = {}


#: Threads of every transform. Fixed, not taken from the machine: the float rounding of
#: the convolutions depends on the thread count, and encoder and decoder must agree on the
#: reconstruction to the bit. Override with CODEC_ENGINE_THREADS (same value both sides).
DEFAULT_THREADS = 2


def engine_threads() -> int:
    value = os.environ.get("CODEC_ENGINE_THREADS", "")
    try:
        n = int(value) if value else DEFAULT_THREADS
    except ValueError:
        raise CommandError(f"CODEC_ENGINE_THREADS must be an integer, got {value!r}") from None
    return max(1, n)


def configure_torch() -> None:
    """Deterministic algorithms only (the thread count is pinned per call by the codec)."""
    import torch

    torch.use_deterministic_algorithms(True)


def _codec(weights: WeightsInfo) -> NeuralImageCodec:
    cached = _CODECS.get((weights.sha256, engine_threads()))
    if cached is not None:
        return cached
    import torch

    from codec_engine.models.coding import NeuralImageCodec

    configure_torch()
    payload = torch.load(weights.path, map_location="cpu", weights_only=True)
    codec = NeuralImageCodec(payload, threads=engine_threads())
    _CODECS[(weights.sha256, codec.threads)] = codec
    return codec


@dataclass
class EncodeResult:
    """A finished bitstream and what it cost."""

    data: bytes
    header: Header
    seconds: float
    reconstruction: list[Frame] = field(default_factory=list)

    @property
    def num_bytes(self) -> int:
        return len(self.data)

    @property
    def pixels(self) -> int:
        return self.header.width * self.header.height * self.header.frame_count

    @property
    def bpp(self) -> float:
        return 8.0 * self.num_bytes / self.pixels


@dataclass
class Decoded:
    header: Header
    frames: list[Frame]


def _tiles(height: int, width: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            yield top, left, min(tile, height - top), min(tile, width - left)


def _to_tensor(patch: Frame) -> object:
    import torch
    from torch.nn import functional as F

    h, w = patch.shape[:2]
    x = torch.from_numpy(patch.copy()).permute(2, 0, 1).float().div(255.0)[None]
    ph, pw = (-h) % ALIGN, (-w) % ALIGN
    if ph or pw:
        mode = "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x


def _to_uint8(x: object, h: int, w: int) -> Frame:
    import torch

    assert isinstance(x, torch.Tensor)
    out = torch.round(x[0, :, :h, :w].clamp(0, 1) * 255.0).to(torch.uint8)
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())


class Model:
    """A model of the zoo at one quality level, ready to encode."""

    def __init__(self, spec: ModelSpec, weights: WeightsInfo, quality: int) -> None:
        self.spec = spec
        self.weights = weights
        self.codec = _codec(weights)
        if not 1 <= quality <= self.codec.qualities:
            raise CommandError(f"quality must be 1..{self.codec.qualities}, got {quality}")
        self.quality = quality

    @property
    def name(self) -> str:
        return self.spec.name

    def encode_frame(
        self,
        frame: Frame,
        tile: int = DEFAULT_TILE,
        refine_steps: int = 0,
        reconstruct: bool = True,
    ) -> tuple[container.Frame, Frame | None]:
        """Intra-code one frame; returns the container frame and (optionally) its reconstruction."""
        import torch

        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise CommandError("frames must be HxWx3 uint8 RGB")
        h, w = frame.shape[:2]
        recon = np.empty_like(frame)
        records = []
        for top, left, th, tw in _tiles(h, w, tile):
            x = _to_tensor(frame[top : top + th, left : left + tw])
            assert isinstance(x, torch.Tensor)
            y = self.codec.analyse(x, self.quality)
            if refine_steps > 0:
                from codec_engine.models.refine import refine_latent

                y = refine_latent(self.codec, x, y, self.quality, refine_steps)
            code, y_hat = self.codec.compress_latent(y)
            if reconstruct:
                rec = self.codec.synthesise(y_hat, self.quality)
                recon[top : top + th, left : left + tw] = _to_uint8(rec, th, tw)
            records.append(TileRecord(code.data, code.params_crc))
        return container.Frame(FrameType.INTRA, tuple(records)), recon if reconstruct else None

    def encode(
        self,
        frames: Iterable[Frame],
        *,
        fps: Fraction = Fraction(0),
        tile: int = DEFAULT_TILE,
        progress: Progress | None = None,
        keep_reconstruction: bool = True,
        refine_steps: int = 0,
    ) -> EncodeResult:
        """Intra-code a sequence of same-sized frames into one bitstream (deterministic)."""
        if tile % ALIGN or not ALIGN <= tile <= container.MAX_TILE:
            raise CommandError(
                f"tile size must be a multiple of {ALIGN} up to {container.MAX_TILE}"
            )
        start = time.perf_counter()
        coded: list[container.Frame] = []
        recon: list[Frame] = []
        size: tuple[int, int] | None = None
        for frame in frames:
            if size is None:
                size = (frame.shape[0], frame.shape[1])
            elif frame.shape[:2] != size:
                raise CommandError("all frames must have the same size")
            c, r = self.encode_frame(frame, tile, refine_steps, keep_reconstruction)
            coded.append(c)
            if r is not None:
                recon.append(r)
            if progress is not None:
                progress(1)
        if size is None:
            raise CommandError("no frames to encode")
        fps = Fraction(fps).limit_denominator(1 << 16)
        header = Header(
            model_id=self.spec.model_id,
            preset=Preset.FAST,
            quality=self.quality,
            weights_sha256=self.weights.sha256,
            width=size[1],
            height=size[0],
            frame_count=len(coded),
            fps_num=fps.numerator,
            fps_den=fps.denominator if fps else 1,
            tile_size=tile,
        )
        data = container.write_stream(header, coded)
        return EncodeResult(data, header, time.perf_counter() - start, recon)

    def encode_image(self, image: Frame, **kwargs: object) -> EncodeResult:
        return self.encode([image], **kwargs)  # type: ignore[arg-type]


def load_model(name: str = DEFAULT_MODEL, quality: int = 4) -> Model:
    """Load a zoo model (weights checked against their content hash) at a quality level."""
    spec = model_spec(name)
    return Model(spec, find_weights(name), quality)


def weights_for_header(header: Header) -> tuple[ModelSpec, WeightsInfo]:
    """The installed weights a bitstream needs, or `WeightsMismatchError`."""
    spec = spec_by_id(header.model_id)
    prefix = header.weights_sha256.hex()[:HASH_PREFIX_LEN]
    path = weights_dir() / f"{spec.name}-{prefix}.pt"
    if not path.exists():
        raise WeightsMismatchError(
            f"the bitstream was encoded with {spec.name} weights {prefix}, which are not installed"
        )
    digest = sha256_file(path)
    if digest != header.weights_sha256:
        raise WeightsMismatchError(f"installed weights {path.name} do not match the bitstream")
    return spec, WeightsInfo(path, digest)


def decode_stream(
    fh: BinaryIO, size: int, *, progress: Progress | None = None
) -> Iterator[tuple[Header, Frame]]:
    """Decode frame by frame from a file (memory bounded by one frame)."""
    reader = container.StreamReader(fh, size)
    header = reader.header
    _, weights = weights_for_header(header)
    codec = _codec(weights)
    if header.quality > codec.qualities:
        raise UnsupportedBitstreamError(f"quality {header.quality} is not in the model")
    for frame in reader.frames():
        out = np.empty((header.height, header.width, 3), dtype=np.uint8)
        for record, (top, left, th, tw) in zip(
            frame.tiles, _tiles(header.height, header.width, header.tile_size), strict=True
        ):
            from codec_engine.models.coding import TileCode

            shape = (th + (-th) % ALIGN, tw + (-tw) % ALIGN)
            rec = codec.decompress(TileCode(record.data, record.params_crc), header.quality, shape)
            out[top : top + th, left : left + tw] = _to_uint8(rec, th, tw)
        if progress is not None:
            progress(1)
        yield header, out


def decode(data: bytes, *, progress: Progress | None = None) -> Decoded:
    """Decode a whole in-memory bitstream."""
    header = container.peek_header(data)
    frames = [f for _, f in decode_stream(io.BytesIO(data), len(data), progress=progress)]
    return Decoded(header, frames)


@dataclass(frozen=True)
class Comparison:
    """Ours against one baseline at matched quality (bytes saved may be negative)."""

    ours_bytes: int
    ours_quality: Quality
    baseline: str
    baseline_bytes: int
    baseline_quality: Quality
    baseline_param: int
    matched: bool  # False when the baseline could not reach our quality at all

    @property
    def saved_bytes(self) -> int:
        return self.baseline_bytes - self.ours_bytes

    @property
    def saving(self) -> float:
        return self.saved_bytes / self.baseline_bytes if self.baseline_bytes else 0.0


def compare(
    reference: list[Frame],
    result: EncodeResult,
    *,
    baseline: str = "x265",
    metric: str = "psnr",
    fps: Fraction | None = None,
) -> Comparison:
    """Matched-quality baseline: the baseline's cheapest setting whose quality >= ours."""
    from codec_engine.baselines import matched_quality

    ours = measure(reference, result.reconstruction, with_ms_ssim=metric == "ms-ssim")
    rate = fps if fps is not None else result.header.fps
    point, matched = matched_quality(baseline, reference, ours, metric=metric, fps=Fraction(rate))
    return Comparison(
        ours_bytes=result.num_bytes,
        ours_quality=ours,
        baseline=baseline,
        baseline_bytes=point.num_bytes,
        baseline_quality=point.quality,
        baseline_param=point.param,
        matched=matched,
    )


def declared_baseline_bytes(bitrate_bps: float, frame_count: int, fps: Fraction) -> int:
    """Contract baseline: bitrate x duration (needs a frame rate)."""
    if fps <= 0:
        raise CommandError("a declared baseline needs a frame rate (video or --fps)")
    return round(bitrate_bps / 8.0 * frame_count / float(fps))
