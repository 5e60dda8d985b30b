"""Rate-distortion of the neural codec against conventional codecs on the held-out test set.

    .venv/bin/python benchmarks/codec_rd.py [--qualities 1-8] [--refine 60] [--no-vvc]

Held-out set (never trained on; see training/prepare_data.py): scikit-image astronaut,
chelsea, coffee, motorcycle_left and a 1024x768 centre crop of libjxl-testdata flower.png.
For every image: our codec at each quality (real bitstreams, header included, decoded
through the real decoder) and a parameter sweep of each baseline (elementary streams, no
container). Ours runs twice: the default fast encode, and with `--refine` steps of latent
refinement (the encoder option for assets coded once and delivered often; same decoder).
The headline figures are the refined run's (`--refine 0` makes them the fast run's).
Prints an RD table, a BD-rate table (pchip on log-rate over the overlapping PSNR range,
per image, then the mean over the images that overlap), encode and decode megapixels per
second on this CPU, and writes an RD plot (PNG) and the raw points (JSON) to
artifacts/codec_rd/. Baseline points are cached there (they do not depend on our
weights). The LAST line is one JSON object with the headline figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codec_engine import api, baselines  # noqa: E402
from codec_engine.metrics import measure  # noqa: E402
from codec_engine.zoo.registry import find_weights  # noqa: E402
from training.prepare_data import held_out_images  # noqa: E402

OUT = ROOT / "artifacts" / "codec_rd"
SWEEPS: dict[str, list[int]] = {
    "jpeg": [2, 3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "webp": [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "avif": [2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90],
    "x264": [51, 47, 43, 39, 35, 31, 27, 23],
    "x265": [51, 47, 43, 39, 35, 31, 27, 23],
    "x265-444": [51, 47, 43, 39, 35, 31, 27, 23],
    "svtav1": [63, 58, 53, 48, 43, 38, 33, 28, 23],
    "vvc": [50, 46, 42, 38, 34, 30, 26, 22],
}
BD_ANCHORS = ("jpeg", "webp", "avif", "x265", "x265-444", "x264", "svtav1", "vvc")
JSON_KEYS = {
    "jpeg": "bd_rate_vs_jpeg",
    "webp": "bd_rate_vs_webp",
    "avif": "bd_rate_vs_avif",
    "x265": "bd_rate_vs_x265",
}

Point = dict[str, Any]


def bd_rate(anchor: list[Point], test: list[Point]) -> float | None:
    """Bjontegaard delta rate (percent) of `test` against `anchor`, pchip on log-rate."""
    from scipy.interpolate import PchipInterpolator

    def curve(points: list[Point]) -> tuple[np.ndarray, np.ndarray]:
        pts = sorted((p["psnr"], math.log(p["bpp"])) for p in points if p["bpp"] > 0)
        xs: list[float] = []
        ys: list[float] = []
        for x, y in pts:
            if xs and x <= xs[-1] + 1e-6:
                continue
            xs.append(x)
            ys.append(y)
        return np.array(xs), np.array(ys)

    pa, ra = curve(anchor)
    pt, rt = curve(test)
    if len(pa) < 2 or len(pt) < 2:
        return None
    lo, hi = max(pa.min(), pt.min()), min(pa.max(), pt.max())
    if hi - lo < 0.1:
        return None
    fa = PchipInterpolator(pa, ra).antiderivative()
    ft = PchipInterpolator(pt, rt).antiderivative()
    diff = ((ft(hi) - ft(lo)) - (fa(hi) - fa(lo))) / (hi - lo)
    return float((math.exp(diff) - 1.0) * 100.0)


def run_ours(
    images: dict[str, np.ndarray], qualities: list[int], refine: int
) -> tuple[dict[str, list[Point]], float, float]:
    points: dict[str, list[Point]] = {name: [] for name in images}
    enc_time = dec_time = 0.0
    pixels = 0
    api.load_model(quality=1)  # load once, outside the timings
    for q in qualities:
        model = api.load_model(quality=q)
        for name, img in images.items():
            t0 = time.perf_counter()
            res = model.encode([img], keep_reconstruction=False, refine_steps=refine)
            t1 = time.perf_counter()
            dec = api.decode(res.data).frames[0]
            t2 = time.perf_counter()
            enc_time += t1 - t0
            dec_time += t2 - t1
            pixels += img.shape[0] * img.shape[1]
            qual = measure([img], [dec])
            points[name].append(
                {
                    "param": q,
                    "bytes": res.num_bytes,
                    "bpp": res.bpp,
                    "psnr": qual.psnr,
                    "psnr_y": qual.psnr_y,
                    "ms_ssim": qual.ms_ssim,
                }
            )
            print(
                f"  ours q{q} {name:<16} {res.bpp:.4f} bpp {qual.psnr:6.2f} dB "
                f"(Y {qual.psnr_y:6.2f}, MS-SSIM {qual.ms_ssim or 0:.4f})",
                file=sys.stderr,
            )
    return points, pixels / 1e6 / enc_time, pixels / 1e6 / dec_time


def run_baselines(
    images: dict[str, np.ndarray], names: list[str]
) -> dict[str, dict[str, list[Point]]]:
    cache_path = OUT / "baselines_cache.json"
    cache: dict[str, Any] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    out: dict[str, dict[str, list[Point]]] = {}
    for codec in names:
        if not baselines.available(codec):
            print(f"  {codec}: unavailable, skipped", file=sys.stderr)
            continue
        out[codec] = {}
        for name, img in images.items():
            digest = hashlib.sha256(img.tobytes()).hexdigest()[:16]
            pts = []
            for param in SWEEPS[codec]:
                key = f"{codec}|{digest}|{param}"
                if key not in cache:
                    p = baselines.run(codec, [img], param)
                    cache[key] = {
                        "param": param,
                        "bytes": p.num_bytes,
                        "bpp": 8.0 * p.num_bytes / (img.shape[0] * img.shape[1]),
                        "psnr": p.quality.psnr,
                        "psnr_y": p.quality.psnr_y,
                    }
                pts.append(cache[key])
            out[codec][name] = pts
        print(f"  {codec}: done", file=sys.stderr)
        OUT.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(cache))
    return out


def mean_bd(
    anchor: dict[str, list[Point]], ours: dict[str, list[Point]]
) -> tuple[float | None, int]:
    values = [v for name in ours if (v := bd_rate(anchor[name], ours[name])) is not None]
    return (float(np.mean(values)) if values else None), len(values)


def plot(
    ours: dict[str, list[Point]],
    fast: dict[str, list[Point]] | None,
    base: dict[str, dict[str, list[Point]]],
    path: Path,
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib missing: no plot", file=sys.stderr)
        return

    def avg(curves: dict[str, list[Point]]) -> tuple[list[float], list[float]]:
        n = min(len(v) for v in curves.values())
        bpp = [float(np.mean([curves[k][i]["bpp"] for k in curves])) for i in range(n)]
        psnr = [float(np.mean([curves[k][i]["psnr"] for k in curves])) for i in range(n)]
        return bpp, psnr

    fig, ax = plt.subplots(figsize=(8, 6))
    for codec, curves in base.items():
        b, p = avg(curves)
        ax.plot(b, p, "o-", ms=3, lw=1, label=baselines.CODECS[codec].description)
    if fast is not None:
        b, p = avg(fast)
        ax.plot(b, p, "s--", ms=4, lw=1.5, color="grey", label="ours, fast encode")
    b, p = avg(ours)
    label = "ours (msh-v1, q1..q8)" if fast is None else "ours, refined latents"
    ax.plot(b, p, "s-", ms=5, lw=2.5, color="black", label=label)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("RGB PSNR (dB)")
    ax.set_xlim(0, 2.0)
    ax.set_ylim(22, 42)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Held-out set (5 images), mean of per-image points")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_qualities(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(v) for v in text.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qualities", default="1-8")
    parser.add_argument(
        "--refine", type=int, default=60, help="latent refinement steps of the headline run"
    )
    parser.add_argument("--no-vvc", action="store_true")
    parser.add_argument("--images", help="comma-separated subset of the held-out names")
    args = parser.parse_args()

    images = held_out_images()
    if args.images:
        images = {k: v for k, v in images.items() if k in args.images.split(",")}
    total_mp = sum(v.shape[0] * v.shape[1] for v in images.values()) / 1e6
    print(
        f"held-out set: {', '.join(f'{k} {v.shape[1]}x{v.shape[0]}' for k, v in images.items())} "
        f"({total_mp:.2f} MP)",
        file=sys.stderr,
    )
    OUT.mkdir(parents=True, exist_ok=True)
    names = [c for c in SWEEPS if not (args.no_vvc and c == "vvc")]
    base = run_baselines(images, names)
    qualities = parse_qualities(args.qualities)
    fast, fast_enc_mps, _ = run_ours(images, qualities, 0)
    if args.refine:
        ours, enc_mps, dec_mps = run_ours(images, qualities, args.refine)
    else:
        ours, enc_mps, dec_mps = fast, fast_enc_mps, _

    weights = find_weights("msh-v1")
    print(f"\nours: {weights.path.name}, {api.engine_threads()} threads")
    print(
        f"{'quality':>8} {'bpp':>8} {'PSNR':>7} {'PSNR-Y':>7} {'MS-SSIM':>8}   (mean over images)"
    )
    print(f"(encoder: {args.refine} refinement steps)" if args.refine else "(fast encoder)")
    for i, q in enumerate(qualities):
        pts = [ours[n][i] for n in ours]
        ssim = [p["ms_ssim"] for p in pts if p["ms_ssim"] is not None]
        bpp, ps, py = (float(np.mean([p[k] for p in pts])) for k in ("bpp", "psnr", "psnr_y"))
        ms = float(np.mean(ssim)) if ssim else float("nan")
        print(f"{q:>8} {bpp:8.4f} {ps:7.2f} {py:7.2f} {ms:8.4f}")

    print("\nBD-rate of ours against each anchor (negative = fewer bytes at equal RGB PSNR)")
    print(f"{'anchor':<10} {'refined':>9} {'fast':>9}  images  description")
    result: dict[str, float | None] = {}
    fast_result: dict[str, float | None] = {}
    for codec in BD_ANCHORS:
        if codec not in base:
            continue
        value, n = mean_bd(base[codec], ours)
        result[codec] = value
        fast_result[codec], _ = mean_bd(base[codec], fast)
        shown = ["n/a" if v is None else f"{v:+.1f}%" for v in (value, fast_result[codec])]
        print(
            f"{codec:<10} {shown[0]:>9} {shown[1]:>9}  {n}/{len(ours)}    "
            f"{baselines.CODECS[codec].description}"
        )
    if args.refine:
        gain, _ = mean_bd(fast, ours)
        print(f"refined against fast: {gain:+.1f}%" if gain is not None else "")

    print("\nanchors against JPEG (sanity check of the test set; cf. Kodak: WebP -36%, x265 -59%)")
    for codec in BD_ANCHORS:
        if codec in base and codec != "jpeg":
            vals = [
                v for n in images if (v := bd_rate(base["jpeg"][n], base[codec][n])) is not None
            ]
            print(
                f"  {codec:<10} {np.mean(vals):+.1f}% ({len(vals)} images)"
                if vals
                else f"  {codec:<10} n/a"
            )

    print(
        f"\nspeed on this CPU ({api.engine_threads()} threads, whole held-out set x "
        f"{len(qualities)} qualities): encode {enc_mps:.3f} MP/s with {args.refine} "
        f"refinement steps, {fast_enc_mps:.3f} MP/s fast; decode {dec_mps:.3f} MP/s"
    )
    plot(ours, fast if args.refine else None, base, OUT / "codec_rd.png")
    (OUT / "points.json").write_text(
        json.dumps({"ours": ours, "ours_fast": fast, "baselines": base}, indent=1)
    )
    print(f"plot: {OUT / 'codec_rd.png'}; points: {OUT / 'points.json'}")

    def rounded(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    final = {key: rounded(result.get(codec)) for codec, key in JSON_KEYS.items()}
    final["encode_mp_per_s"] = round(enc_mps, 3)
    final["decode_mp_per_s"] = round(dec_mps, 3)
    final["refine_steps"] = args.refine
    final["fast_bd_rate_vs_jpeg"] = rounded(fast_result.get("jpeg"))
    final["fast_bd_rate_vs_webp"] = rounded(fast_result.get("webp"))
    final["fast_encode_mp_per_s"] = round(fast_enc_mps, 3)
    print(json.dumps(final))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
