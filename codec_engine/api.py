"""Python API of the engine: load a model by name and quality, encode, decode, measure.

    model = load_model("msh-v1", quality=4)
    result = model.encode_image(rgb)               # EncodeResult (bytes, bpp, reconstruction)
    model = load_model(quality=4, preset="max", max_iterations=2000)  # overfitted, slow
    decoded = decode(result.data)                   # Decoded (header, frames)
    report = compare(rgb, result, baseline="x265")  # matched-quality baseline bytes

torch is imported on first use, not when this module is imported. The licence gate
(`codec_engine.gate`) must be passed before calling `load_model` or `decode`; the CLI does
that. Encoding is deterministic: the same input, model and quality give the same bytes (for
the max preset: with an iteration budget and the same seed and thread count).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import numpy.typing as npt

from codec_engine import container
from codec_engine.container import FrameType, Header, Preset, TileRecord
from codec_engine.errors import (
    BitstreamError,
    CommandError,
    CorruptBitstreamError,
    UnsupportedBitstreamError,
    WeightsMismatchError,
)
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
IterationProgress = Callable[[int, int], None]  # (iterations done, planned) of one frame
PRESETS = ("fast", "max")
DEFAULT_MAX_ITERATIONS = 2000
DEFAULT_TILE = 1024
#: Frames from one intra frame to the next (an intra refresh every ~1.3 s at 25 frames/s).
DEFAULT_INTRA_PERIOD = 32
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


@dataclass
class _TileState:
    """What the next P-frame needs of a coded tile: its decoded latent (the reference) and,
    on the encoder, its decoded picture (the skip decision's alternative)."""

    latent: Any
    picture: Any = None


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
        references: list[Any] | None = None,
        scene_cut: bool = False,
        skip_blocks: bool = True,
    ) -> tuple[container.Frame, Frame | None, list[Any]]:
        """Code one frame: intra, or as a P-frame when `references` (what the previous frame
        left per tile) are given. With `skip_blocks`, a P-frame keeps the previous decoded
        latent on every 32x32 block where that costs less than coding it (a
        `PREDICTED_SKIP` frame). With `scene_cut`, a frame that would cost fewer bytes
        intra than as a P-frame is coded intra (a scene cut: the previous frame predicts
        nothing). Returns the container frame, its reconstruction (when asked) and the
        references of the next frame."""
        import torch

        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise CommandError("frames must be HxWx3 uint8 RGB")
        h, w = frame.shape[:2]
        tiles = []
        for top, left, th, tw in _tiles(h, w, tile):
            x = _to_tensor(frame[top : top + th, left : left + tw])
            assert isinstance(x, torch.Tensor)
            tiles.append((x, self.codec.analyse(x, self.quality), (th, tw)))
        # The plain codes of a would-be P-frame: the scene-cut test weighs them against intra
        # codes (both code every element), the skip decision starts from them, and the
        # winner is the frame's code when no refinement follows.
        codes: list[tuple[Any, Any]] | None = None
        skips: list[Any] = [None] * len(tiles)
        if references is not None and (scene_cut or skip_blocks or refine_steps == 0):
            symbols = [
                self.codec.symbols(y, ref.latent)
                for (_, y, _), ref in zip(tiles, references, strict=True)
            ]
            codes = [
                self.codec.encode_symbols(s, ref.latent)
                for s, ref in zip(symbols, references, strict=True)
            ]
            if scene_cut:
                intra = [self.codec.compress_latent(y) for _, y, _ in tiles]
                if sum(len(c.data) for c, _ in intra) <= sum(len(c.data) for c, _ in codes):
                    references, codes = None, intra
            if references is not None and skip_blocks:
                for i, ((x, _, visible), ref) in enumerate(zip(tiles, references, strict=True)):
                    skips[i], codes[i] = self._skip_blocks(x, symbols[i], ref, codes[i], visible)
        recon = np.empty_like(frame)
        records = []
        states: list[_TileState] = []
        for i, ((x, y, _), (top, left, th, tw)) in enumerate(
            zip(tiles, _tiles(h, w, tile), strict=True)
        ):
            reference = references[i].latent if references is not None else None
            if refine_steps > 0:
                from codec_engine.models.refine import refine_latent

                skip = skips[i] if reference is not None else None
                y, z = refine_latent(
                    self.codec, x, y, self.quality, refine_steps, reference=reference, skip=skip
                )
                code, y_hat = self.codec.compress_latent(y, reference, z, skip)
            elif codes is not None:
                code, y_hat = codes[i]
            else:
                code, y_hat = self.codec.compress_latent(y)
            picture = None
            if reconstruct or skip_blocks:
                if references is not None and torch.equal(y_hat, references[i].latent):
                    picture = references[i].picture  # every block skipped: the same picture
                if picture is None:
                    picture = self.codec.synthesise(y_hat, self.quality)
                recon[top : top + th, left : left + tw] = _to_uint8(picture, th, tw)
            records.append(TileRecord(code.data, code.params_crc))
            states.append(_TileState(y_hat, picture))
        if references is None:
            frame_type = FrameType.INTRA
        else:
            frame_type = FrameType.PREDICTED_SKIP if skip_blocks else FrameType.PREDICTED
        return (
            container.Frame(frame_type, tuple(records)),
            recon if reconstruct else None,
            states,
        )

    def _skip_blocks(
        self,
        x: Any,
        symbols: Any,
        reference: _TileState,
        code: tuple[Any, Any],
        visible: tuple[int, int],
    ) -> tuple[Any, tuple[Any, Any]]:
        """The skip map of a P-frame tile, from its plain P-frame code (`code`, coded from
        `symbols`), and the code with the map."""
        from codec_engine.models import skip as skip_blocks

        picture = reference.picture
        if picture is None:
            picture = self.codec.synthesise(reference.latent, self.quality)
        skip = skip_blocks.choose_skip_blocks(
            x,
            self.codec.synthesise(code[1], self.quality),
            picture,
            self.codec.element_bits(symbols),
            self.codec.lambdas[self.quality - 1],
            visible,
        )
        return skip, self.codec.encode_symbols(symbols, reference.latent, skip)

    def encode(
        self,
        frames: Iterable[Frame],
        *,
        fps: Fraction = Fraction(0),
        tile: int = DEFAULT_TILE,
        progress: Progress | None = None,
        keep_reconstruction: bool = True,
        refine_steps: int = 0,
        intra_period: int | None = None,
        scene_cuts: bool = True,
        skip_blocks: bool = True,
    ) -> EncodeResult:
        """Code a sequence of same-sized frames into one bitstream (deterministic): an intra
        frame at least every `intra_period` frames (default `DEFAULT_INTRA_PERIOD` when the
        weights carry a P-frame prior, else 1) and P-frames between them (low delay: each
        P-frame references only the previous frame). With `skip_blocks`, P-frames keep the
        previous decoded latent where that is cheaper (`models/skip.py`). With `scene_cuts`,
        a frame that costs fewer bytes intra than as a P-frame is coded intra and the
        period restarts there."""
        if tile % ALIGN or not ALIGN <= tile <= container.MAX_TILE:
            raise CommandError(
                f"tile size must be a multiple of {ALIGN} up to {container.MAX_TILE}"
            )
        if intra_period is None:
            intra_period = DEFAULT_INTRA_PERIOD if self.codec.has_inter else 1
        if intra_period < 1:
            raise CommandError("the intra period must be at least 1 frame")
        if refine_steps < 0:
            raise CommandError("refinement steps must be 0 or more")
        if intra_period > 1 and not self.codec.has_inter:
            raise CommandError(f"{self.spec.name} weights carry no P-frame prior: use period 1")
        start = time.perf_counter()
        coded: list[container.Frame] = []
        recon: list[Frame] = []
        size: tuple[int, int] | None = None
        references: list[Any] | None = None
        last_intra = 0
        for n, frame in enumerate(frames):
            if size is None:
                size = (frame.shape[0], frame.shape[1])
            elif frame.shape[:2] != size:
                raise CommandError("all frames must have the same size")
            if n - last_intra >= intra_period:
                references = None
            c, r, references = self.encode_frame(
                frame,
                tile,
                refine_steps,
                keep_reconstruction,
                references,
                scene_cuts,
                skip_blocks and intra_period > 1,
            )
            if c.frame_type == FrameType.INTRA:
                last_intra = n
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


class MaxModel:
    """The max preset at one quality: a small decoder overfitted to each frame at encode time
    (`codec_engine.overfit`). Frames are coded independently, one tile each."""

    def __init__(
        self, quality: int, *, iterations: int, seconds: float | None, seed: int = 0
    ) -> None:
        from codec_engine.overfit import QUALITY_LAMBDAS

        if not 1 <= quality <= len(QUALITY_LAMBDAS):
            raise CommandError(f"quality must be 1..{len(QUALITY_LAMBDAS)}, got {quality}")
        if iterations < 1:
            raise CommandError("the max preset needs at least one iteration")
        if seconds is not None and seconds <= 0:
            raise CommandError("the time budget must be positive")
        self.quality = quality
        self.lam = QUALITY_LAMBDAS[quality - 1]
        self.iterations = iterations
        self.seconds = seconds
        self.seed = seed

    @property
    def name(self) -> str:
        from codec_engine.overfit import MODEL_NAME

        return MODEL_NAME

    def encode(
        self,
        frames: Iterable[Frame],
        *,
        fps: Fraction = Fraction(0),
        tile: int = DEFAULT_TILE,
        progress: Progress | None = None,
        keep_reconstruction: bool = True,
        refine_steps: int = 0,
        iteration_progress: IterationProgress | None = None,
    ) -> EncodeResult:
        """Fit and code each frame (`tile` and `refine_steps` do not apply to this preset)."""
        from codec_engine.overfit import MODEL_ID, arch_digest
        from codec_engine.overfit.codec import encode_image

        start = time.perf_counter()
        coded: list[container.Frame] = []
        recon: list[Frame] = []
        size: tuple[int, int] | None = None
        for frame in frames:
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise CommandError("frames must be HxWx3 uint8 RGB")
            if size is None:
                size = (frame.shape[0], frame.shape[1])
                if max(size) > container.MAX_TILE:
                    raise CommandError(f"the max preset codes up to {container.MAX_TILE} px a side")
            elif frame.shape[:2] != size:
                raise CommandError("all frames must have the same size")
            enc = encode_image(
                frame,
                self.lam,
                iterations=self.iterations,
                seconds=self.seconds,
                seed=self.seed,
                threads=engine_threads(),
                progress=iteration_progress,
            )
            coded.append(
                container.Frame(FrameType.INTRA, (TileRecord(enc.payload, enc.params_crc),))
            )
            if keep_reconstruction:
                recon.append(enc.reconstruction)
            if progress is not None:
                progress(1)
        if size is None:
            raise CommandError("no frames to encode")
        fps = Fraction(fps).limit_denominator(1 << 16)
        header = Header(
            model_id=MODEL_ID,
            preset=Preset.MAX,
            quality=self.quality,
            weights_sha256=arch_digest(),
            width=size[1],
            height=size[0],
            frame_count=len(coded),
            fps_num=fps.numerator,
            fps_den=fps.denominator if fps else 1,
            tile_size=max(ALIGN, -(-max(size) // ALIGN) * ALIGN),
        )
        data = container.write_stream(header, coded)
        return EncodeResult(data, header, time.perf_counter() - start, recon)

    def encode_image(self, image: Frame, **kwargs: object) -> EncodeResult:
        return self.encode([image], **kwargs)  # type: ignore[arg-type]


def load_model(
    name: str = DEFAULT_MODEL,
    quality: int = 4,
    *,
    preset: str = "fast",
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    max_seconds: float | None = None,
    seed: int = 0,
) -> Model | MaxModel:
    """Load a zoo model (weights checked against their content hash) at a quality level, or,
    with `preset="max"`, the overfitted codec (no weights; `name` is ignored) with its
    per-frame budget of iterations and/or seconds."""
    if preset == "max":
        return MaxModel(quality, iterations=max_iterations, seconds=max_seconds, seed=seed)
    if preset != "fast":
        raise CommandError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
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
    fh: BinaryIO, size: int, *, progress: Progress | None = None, start: int = 0
) -> Iterator[tuple[Header, Frame]]:
    """Decode frame by frame from a file (memory bounded by one frame). With `start`, yield
    from that frame on: decoding begins at the intra frame at or before it (the frames in
    between are decoded as references, not yielded)."""
    reader = container.StreamReader(fh, size)
    header = reader.header
    if header.preset == Preset.MAX:
        yield from _decode_max(reader, progress, start)
        return
    _, weights = weights_for_header(header)
    codec = _codec(weights)
    if header.quality > codec.qualities:
        raise UnsupportedBitstreamError(f"quality {header.quality} is not in the model")
    import torch

    from codec_engine.models.coding import TileCode

    references: list[Any] = []  # the previous frame's decoded latents, one per tile
    previous: Frame = np.empty((0, 0, 3), dtype=np.uint8)  # and its picture
    for n, frame in reader.frames_from(start):
        predicted = frame.frame_type != FrameType.INTRA
        if predicted and not codec.has_inter:
            raise UnsupportedBitstreamError("these weights carry no P-frame prior")
        out = np.empty((header.height, header.width, 3), dtype=np.uint8)
        latents = []
        for i, (record, (top, left, th, tw)) in enumerate(
            zip(frame.tiles, _tiles(header.height, header.width, header.tile_size), strict=True)
        ):
            shape = (th + (-th) % ALIGN, tw + (-tw) % ALIGN)
            reference = references[i] if predicted else None
            try:
                y_hat = codec.decode_latent(
                    TileCode(record.data, record.params_crc),
                    shape,
                    reference,
                    with_skip_map=frame.frame_type == FrameType.PREDICTED_SKIP,
                )
            except BitstreamError as exc:
                kind = "P-frame" if reference is not None else "frame"
                raise type(exc)(f"{kind} {n}, tile {i}: {exc}") from None
            if reference is not None and torch.equal(y_hat, reference):
                # Every block skipped: the same latent gives the same picture, bit for bit.
                out[top : top + th, left : left + tw] = previous[top : top + th, left : left + tw]
            else:
                rec = codec.synthesise(y_hat, header.quality)
                out[top : top + th, left : left + tw] = _to_uint8(rec, th, tw)
            latents.append(y_hat)
        references, previous = latents, out
        if n < start:
            continue
        if progress is not None:
            progress(1)
        yield header, out


def _decode_max(
    reader: container.StreamReader, progress: Progress | None, start: int = 0
) -> Iterator[tuple[Header, Frame]]:
    from codec_engine.overfit import MODEL_ID, arch_digest
    from codec_engine.overfit.codec import decode_payload

    header = reader.header
    if header.model_id != MODEL_ID:
        raise UnsupportedBitstreamError(f"max-preset architecture {header.model_id} is unknown")
    if header.weights_sha256 != arch_digest():
        raise WeightsMismatchError(
            "the overfitted architecture digest differs from this engine's (other version, or "
            "this platform builds other probability tables)"
        )
    for n, frame in reader.frames_from(start):  # every max frame is intra: starts at `start`
        if frame.frame_type != FrameType.INTRA:
            raise UnsupportedBitstreamError(f"frame {n}: the max preset codes intra frames only")
        if len(frame.tiles) != 1:
            raise CorruptBitstreamError("a max-preset frame must be a single tile")
        record = frame.tiles[0]
        out = decode_payload(
            record.data, record.params_crc, header.height, header.width, engine_threads()
        )
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
