"""`codec-engine encode | decode | compare`: the codec's command-line interface.

Every command checks the licence first (before any model is loaded) and writes its output
atomically, so a refused or failed job leaves no file behind.
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

from codec_engine import gate
from codec_engine.errors import CommandError, InputError
from codec_engine.zoo.registry import DEFAULT_MODEL, MODELS

COMPARE_BASELINES = ("jpeg", "webp", "avif", "x264", "x265", "svtav1", "vvc")


def _add_licence_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("licence (also from CODEC_ENGINE_* environment variables)")
    g.add_argument("--licence-key", help="licence key, or a file holding it (our workers)")
    g.add_argument("--certificate", help="activation certificate, or a file holding it")
    g.add_argument("--keyring", help="keyring JSON of trusted licence-signing keys, or its path")
    g.add_argument("--state-dir", type=Path, help="licensing state directory of this device")
    g.add_argument("--revocation-list", help="latest revocation list, or a file holding it")


def _add_preset_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        default="fast",
        choices=("fast", "max"),
        help="fast: the trained model (default); max: a decoder overfitted to each frame "
        "(minutes per image, licence feature preset:max)",
    )
    g = p.add_argument_group("max preset budget (per frame)")
    g.add_argument(
        "--max-iterations",
        type=_positive_int,
        default=2000,
        metavar="N",
        help="training iterations (default 2000; deterministic output)",
    )
    g.add_argument(
        "--max-seconds",
        type=float,
        metavar="S",
        help="stop training after about S seconds (the output then depends on machine speed)",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed of the fit (default 0)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    enc = subparsers.add_parser("encode", help="encode an image, frame sequence or video")
    enc.add_argument("input", help="image file, directory or glob of frames, or video file")
    enc.add_argument("output", type=Path, help="bitstream file to write (.nce)")
    enc.add_argument("--quality", "-q", type=int, default=4, help="1 (smallest) .. 8 (best)")
    enc.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS))
    enc.add_argument(
        "--baseline", help="also report bytes saved against this codec at matched quality"
    )
    enc.add_argument("--metric", default="psnr", choices=("psnr", "psnr-y", "ms-ssim"))
    enc.add_argument("--declared-bitrate", type=float, help="contract baseline in kbit/s")
    enc.add_argument("--fps", type=Fraction, help="frame rate of a frame sequence (default 25)")
    enc.add_argument("--max-frames", type=int, help="code only the first N frames")
    enc.add_argument("--tile", type=int, default=1024, help="tile size in pixels (multiple of 64)")
    enc.add_argument(
        "--refine",
        type=_non_negative_int,
        default=0,
        metavar="STEPS",
        help="encoder-side latent refinement steps (slower, smaller)",
    )
    enc.add_argument(
        "--intra-period",
        type=_positive_int,
        metavar="N",
        help="video: an intra frame at least every N frames, P-frames between, and at scene "
        "cuts (fast preset; default 32 with weights that carry a P-frame prior; 1 = every "
        "frame intra)",
    )
    enc.add_argument(
        "--no-skip-blocks",
        dest="skip_blocks",
        action="store_false",
        help="video: write P-frames without skip blocks (frame type 1), for decoders older "
        "than them (larger streams)",
    )
    _add_preset_options(enc)
    _add_licence_options(enc)
    enc.set_defaults(handler=cmd_encode)

    dec = subparsers.add_parser("decode", help="decode a bitstream to PNG, frames or video")
    dec.add_argument("input", type=Path)
    dec.add_argument("output", type=Path, help=".png (one frame), a directory, .mkv or .mp4")
    _add_licence_options(dec)
    dec.set_defaults(handler=cmd_decode)

    cmp_ = subparsers.add_parser("compare", help="ours against the baselines at matched quality")
    cmp_.add_argument("input")
    cmp_.add_argument("--quality", "-q", type=int, default=4)
    cmp_.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS))
    cmp_.add_argument("--baselines", default=",".join(COMPARE_BASELINES))
    cmp_.add_argument("--metric", default="psnr", choices=("psnr", "psnr-y", "ms-ssim"))
    cmp_.add_argument("--fps", type=Fraction)
    cmp_.add_argument("--max-frames", type=int, help="compare on the first N frames only")
    _add_preset_options(cmp_)
    _add_licence_options(cmp_)
    cmp_.set_defaults(handler=cmd_compare)


def _credentials(args: argparse.Namespace) -> gate.Credentials:
    return gate.Credentials.from_env(
        licence_key=args.licence_key,
        certificate=args.certificate,
        keyring=args.keyring,
        state_dir=args.state_dir,
        revocation_list=args.revocation_list,
    )


def _source(args: argparse.Namespace) -> tuple[Any, Fraction]:
    from codec_engine.media import MediaSource

    src = MediaSource(args.input, max_frames=args.max_frames)
    fps = src.info.fps
    if args.fps is not None:
        fps = Fraction(args.fps)
    elif src.info.kind == "sequence" and fps == 0:
        fps = Fraction(25)
    return src, fps


def _job(args: argparse.Namespace, operation: str, width: int, height: int, fps: float) -> gate.Job:
    """The licence job of an encode: the max preset needs `preset:max` and its own model
    version (`overfit-v1`) in the licence."""
    if args.preset == "max":
        from codec_engine.overfit import MODEL_NAME

        return gate.Job(operation, width, height, fps, MODEL_NAME, "max")
    return gate.Job(operation, width, height, fps, args.model)


def _load(args: argparse.Namespace) -> Any:
    from codec_engine import api

    return api.load_model(
        args.model,
        args.quality,
        preset=args.preset,
        max_iterations=args.max_iterations,
        max_seconds=args.max_seconds,
        seed=args.seed,
    )


class _IterationBar:
    """tqdm bar over the training iterations of the max preset (the total may be revised
    once a time budget has been converted into iterations)."""

    def __init__(self, frames: int, iterations: int) -> None:
        self.bar = _bar(frames * iterations, "fit", unit="it", force=True)
        self.base = 0
        self.last = 0

    def __call__(self, done: int, total: int) -> None:
        if done < self.last:  # a new frame starts
            self.base += self.last
        self.last = done
        if self.bar.total != self.base + total:
            self.bar.total = self.base + total
        self.bar.n = self.base + done
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _encode(model: Any, frames: Any, args: argparse.Namespace, frame_count: int, **kw: Any) -> Any:
    if args.preset != "max":
        return model.encode(frames, **kw)
    bar = _IterationBar(frame_count, args.max_iterations)
    try:
        return model.encode(frames, iteration_progress=bar, **kw)
    finally:
        bar.close()


def _bar(total: int, desc: str, unit: str = "frame", force: bool = False) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        leave=False,
        disable=not force and total <= 1 and not sys.stderr.isatty(),
    )


def _fmt_bytes(n: int) -> str:
    return f"{n:,}"


def cmd_encode(args: argparse.Namespace) -> int:
    from codec_engine.media import atomic_output

    src, fps = _source(args)
    info = src.info
    gate.check(_job(args, "encode", info.width, info.height, float(fps)), _credentials(args))
    if args.output.exists() and args.output.is_dir():
        raise CommandError(f"{args.output} is a directory")
    from codec_engine import api

    model = _load(args)
    keep = args.baseline is not None
    frames: list[Any] = []

    def frame_iter() -> Any:
        for f in src.frames():
            if keep:
                frames.append(f)
            yield f

    with _bar(info.frame_count, "encode") as bar:
        result = _encode(
            model,
            frame_iter(),
            args,
            info.frame_count,
            fps=fps,
            tile=args.tile,
            progress=bar.update,
            keep_reconstruction=True,
            refine_steps=args.refine,
            **(
                {"intra_period": args.intra_period, "skip_blocks": args.skip_blocks}
                if args.preset == "fast"
                else {}
            ),
        )
    if not keep:
        # PSNR of ours needs the originals once more; re-read them (streams stay bounded).
        frames = list(src.frames())
    from codec_engine.metrics import measure

    quality = measure(frames, result.reconstruction, with_ms_ssim=args.metric == "ms-ssim")
    parts = [
        f"{args.output}: {_fmt_bytes(result.num_bytes)} bytes",
        f"{result.bpp:.4f} bpp",
        f"PSNR {quality.psnr:.2f} dB (Y {quality.psnr_y:.2f})",
        f"{info.frame_count} frame(s) {info.width}x{info.height}",
        f"{result.pixels / 1e6 / max(result.seconds, 1e-9):.3g} MP/s",
    ]
    if args.baseline:
        comparison = api.compare(
            frames, result, baseline=args.baseline, metric=args.metric, fps=fps
        )
        note = "" if comparison.matched else " (baseline never reached our quality)"
        parts.append(
            f"baseline {args.baseline} {_fmt_bytes(comparison.baseline_bytes)} bytes at "
            f"{comparison.baseline_quality.psnr:.2f} dB{note}"
        )
        parts.append(f"saving {comparison.saving * 100:+.1f}%")
    if args.declared_bitrate:
        declared = api.declared_baseline_bytes(args.declared_bitrate * 1000, info.frame_count, fps)
        parts.append(
            f"declared {_fmt_bytes(declared)} bytes, saving "
            f"{(declared - result.num_bytes) / max(declared, 1) * 100:+.1f}%"
        )
    with atomic_output(args.output) as tmp:
        tmp.write_bytes(result.data)
    print(", ".join(parts))
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from codec_engine import container
    from codec_engine.zoo.registry import spec_by_id

    path: Path = args.input
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    size = path.stat().st_size
    with path.open("rb") as fh:
        header = container.parse_header(fh.read(container.HEADER_SIZE))
    if header.preset == container.Preset.MAX:
        from codec_engine.overfit import MODEL_NAME

        model_name = MODEL_NAME
    else:
        model_name = spec_by_id(header.model_id).name
    gate.check(
        gate.Job(
            "decode",
            header.width,
            header.height,
            header.fps,
            model_name,
            header.preset.name.lower(),
        ),
        _credentials(args),
    )
    from codec_engine import api
    from codec_engine.media import write_frames

    frames = []
    with path.open("rb") as fh, _bar(header.frame_count, "decode") as bar:
        for _, frame in api.decode_stream(fh, size, progress=bar.update):
            frames.append(frame)
    write_frames(args.output, frames, Fraction(header.fps_num, header.fps_den or 1))
    bpp = 8 * size / (header.width * header.height * header.frame_count)
    print(
        f"{args.output}: {header.frame_count} frame(s) {header.width}x{header.height} "
        f"from {_fmt_bytes(size)} bytes ({bpp:.4f} bpp), "
        f"model {model_name} ({header.preset.name.lower()} preset) quality {header.quality}"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    src, fps = _source(args)
    info = src.info
    gate.check(_job(args, "encode", info.width, info.height, float(fps)), _credentials(args))
    from tqdm import tqdm

    from codec_engine import api, baselines

    frames = list(src.frames())
    model = _load(args)
    result = _encode(model, frames, args, len(frames), fps=fps)
    names = [n.strip() for n in args.baselines.split(",") if n.strip()]
    rows = []
    for name in tqdm(names, desc="baselines", file=sys.stderr, leave=False):
        if not baselines.available(name):
            rows.append(f"  {name:<9} unavailable on this machine")
            continue
        c = api.compare(frames, result, baseline=name, metric=args.metric, fps=fps)
        flag = "" if c.matched else "  (never reached our quality)"
        rows.append(
            f"  {name:<9} {c.baseline_bytes:>10,} bytes  {c.baseline_quality.psnr:6.2f} dB  "
            f"param {c.baseline_param:>3}  ours saves {c.saving * 100:+6.1f}%{flag}"
        )
    from codec_engine.metrics import measure

    ours = measure(frames, result.reconstruction, with_ms_ssim=False)
    print(
        f"ours (model {model.name} q{args.quality}, {args.preset} preset): "
        f"{result.num_bytes:,} bytes, "
        f"{result.bpp:.4f} bpp, PSNR {ours.psnr:.2f} dB (Y {ours.psnr_y:.2f})"
    )
    print("\n".join(rows))
    return 0
