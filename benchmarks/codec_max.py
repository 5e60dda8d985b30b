"""Rate-distortion of the max preset (overfitted per-image coding) against x265 and VVC intra.

    nice -n 10 .venv/bin/python benchmarks/codec_max.py [--images chelsea,coffee]
        [--qualities 2,4,6,8] [--minutes-per-768x512 15] [--iterations 20000]
        [--seconds S] [--no-vvc]

Held-out images (never trained on; see training/prepare_data.py), each coded at four
qualities with real bitstreams (header included) and decoded by the real decoder in this
process. Baselines come from `benchmarks/codec_rd.py` (same sweeps, same cache, same
BD-rate: pchip on log-rate over the overlapping RGB-PSNR range, per image, then the mean).
Prints a table, the BD-rates, encode seconds per megapixel and decode time; writes the RD
plot and raw points to artifacts/codec_max/. The LAST line is one JSON object.

Budget: by default each encode gets the issue's target time, 15 minutes per 768x512 image
in proportion to its pixels (chelsea 0.135 MP: 5.2 minutes; coffee 0.24 MP: 9.2 minutes),
and fits as many iterations as fit in it (the count is planned from the measured speed;
the table shows it), so the figures answer "how good within the target time on this machine"
and vary with the machine's speed. `--minutes-per-768x512 0` turns that off and
`--iterations N` gives a fixed, deterministic budget (same bytes on every run).

How long it takes: the default run (chelsea and coffee, 4 qualities) takes about an hour
(4 x 5.2 + 4 x 9.2 minutes); baselines add a minute the first time (cached afterwards).
A fit costs about iterations x pixels x 0.5 us with two threads on a quiet 2-core
machine. Run nothing else meanwhile: with a time budget, a busy machine means fewer
iterations. On a machine whose cores are busy use CODEC_ENGINE_THREADS=1 (two threads
thrash there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from codec_rd import bd_rate, run_baselines  # noqa: E402

from codec_engine import api, baselines  # noqa: E402
from codec_engine.metrics import measure  # noqa: E402
from training.prepare_data import held_out_images  # noqa: E402

OUT = ROOT / "artifacts" / "codec_max"
REFERENCE_PIXELS = 768 * 512  # the time target is per 768x512 image
ANCHORS = ("x265", "x265-444", "vvc")

Point = dict[str, Any]


def image_seconds(
    img: np.ndarray, seconds: float | None, minutes_768: float | None
) -> float | None:
    """The time budget of one encode: flat (`--seconds`), or in proportion to the pixels."""
    if seconds is not None:
        return seconds
    if minutes_768:
        return minutes_768 * 60.0 * int(img.shape[0]) * int(img.shape[1]) / REFERENCE_PIXELS
    return None


def run_ours(
    images: dict[str, np.ndarray],
    qualities: list[int],
    iterations: int,
    seconds: float | None,
    minutes_768: float | None = None,
) -> tuple[dict[str, list[Point]], float, float]:
    """Encode and decode every image at every quality; (points, encode s/MP, decode s/MP)."""
    points: dict[str, list[Point]] = {name: [] for name in images}
    enc_s = dec_s = mp = 0.0
    for name, img in images.items():
        budget = image_seconds(img, seconds, minutes_768)
        for q in qualities:
            model = api.load_model(
                quality=q, preset="max", max_iterations=iterations, max_seconds=budget
            )
            done = [0]

            def count(i: int, _planned: int, done: list[int] = done) -> None:
                done[0] = i

            t0 = time.perf_counter()
            res = model.encode_image(img, keep_reconstruction=False, iteration_progress=count)
            t1 = time.perf_counter()
            dec = api.decode(res.data).frames[0]
            t2 = time.perf_counter()
            megapixels = img.shape[0] * img.shape[1] / 1e6
            enc_s += t1 - t0
            dec_s += t2 - t1
            mp += megapixels
            qual = measure([img], [dec], with_ms_ssim=False)
            points[name].append(
                {
                    "param": q,
                    "bytes": res.num_bytes,
                    "iterations": done[0],
                    "bpp": res.bpp,
                    "psnr": qual.psnr,
                    "psnr_y": qual.psnr_y,
                    "encode_s": t1 - t0,
                    "decode_s": t2 - t1,
                    "megapixels": megapixels,
                }
            )
            print(
                f"  max q{q} {name:<12} {res.bpp:.4f} bpp {qual.psnr:6.2f} dB  {done[0]} it  "
                f"encode {t1 - t0:6.1f} s  decode {t2 - t1:5.2f} s",
                file=sys.stderr,
                flush=True,
            )
    return points, enc_s / mp, dec_s / mp


def matched_saving(anchor: list[Point], point: Point) -> float | None:
    """Bytes saved against the anchor at our PSNR (log-rate interpolated), or None."""
    pts = sorted((p["psnr"], np.log(p["bpp"])) for p in anchor if p["bpp"] > 0)
    xs = [p for p, _ in pts]
    if not xs or not xs[0] <= point["psnr"] <= xs[-1]:
        return None
    ref = float(np.exp(np.interp(point["psnr"], xs, [r for _, r in pts])))
    return float((1.0 - point["bpp"] / ref) * 100.0)


def plot(ours: dict[str, list[Point]], base: dict[str, dict[str, list[Point]]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib missing: no plot", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, len(ours), figsize=(6 * len(ours), 5), squeeze=False)
    for ax, name in zip(axes[0], ours, strict=True):
        for codec, curves in base.items():
            pts = sorted(curves[name], key=lambda p: p["bpp"])
            ax.plot(
                [p["bpp"] for p in pts],
                [p["psnr"] for p in pts],
                "o-",
                ms=3,
                lw=1,
                label=baselines.CODECS[codec].description,
            )
        pts = sorted(ours[name], key=lambda p: p["bpp"])
        ax.plot(
            [p["bpp"] for p in pts],
            [p["psnr"] for p in pts],
            "s-",
            ms=5,
            lw=2.5,
            color="black",
            label="ours, max preset",
        )
        top = max(p["bpp"] for p in pts) * 1.3
        ax.set_xlim(0, top)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel("RGB PSNR (dB)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def budget_text(args: argparse.Namespace) -> str:
    if args.seconds is None and args.minutes_768:
        return (
            f"{args.minutes_768:g} min per 768x512 (in proportion to pixels), "
            f"at most {args.iterations} iterations"
        )
    return f"{args.iterations} iterations" + (f" / {args.seconds:.0f} s" if args.seconds else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default="chelsea,coffee", help="held-out image names")
    parser.add_argument("--qualities", default="2,4,6,8", help="comma-separated 1..8")
    parser.add_argument(
        "--iterations", type=int, default=20000, help="at most this many per image and quality"
    )
    parser.add_argument("--seconds", type=float, help="time budget per image and quality")
    parser.add_argument(
        "--minutes-per-768x512",
        type=float,
        dest="minutes_768",
        default=15.0,
        help="time budget per image and quality in proportion to its pixels "
        "(default 15: the issue's target; 0: none)",
    )
    parser.add_argument("--no-vvc", action="store_true")
    args = parser.parse_args()
    if args.minutes_768 < 0:
        parser.error("--minutes-per-768x512 must be 0 (no time budget) or positive")

    held = held_out_images()
    names = [n.strip() for n in args.images.split(",") if n.strip()]
    unknown = [n for n in names if n not in held]
    if unknown:
        parser.error(f"unknown images {unknown}; held-out set: {', '.join(held)}")
    images = {n: held[n] for n in names}
    qualities = [int(v) for v in args.qualities.split(",")]
    total_mp = sum(v.shape[0] * v.shape[1] for v in images.values()) / 1e6
    print(
        f"images: {', '.join(f'{k} {v.shape[1]}x{v.shape[0]}' for k, v in images.items())} "
        f"({total_mp:.3f} MP); qualities {qualities}; budget {budget_text(args)}"
        + f"; {api.engine_threads()} threads",
        file=sys.stderr,
    )
    started = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    anchors = [c for c in ANCHORS if not (args.no_vvc and c == "vvc")]
    base = run_baselines(images, anchors)
    ours, enc_s_per_mp, dec_s_per_mp = run_ours(
        images, qualities, args.iterations, args.seconds, args.minutes_768
    )

    print(f"\nmax preset, budget per image and quality: {budget_text(args)}")
    head = (
        f"{'image':<12} {'q':>2} {'iters':>6} {'bytes':>8} {'bpp':>7} {'PSNR':>6} "
        f"{'enc s':>7} {'dec s':>6}"
    )
    print(head + "".join(f" {'vs ' + c:>12}" for c in base))
    for name, pts in ours.items():
        for p in pts:
            row = (
                f"{name:<12} {p['param']:>2} {p['iterations']:>6} {p['bytes']:>8,} "
                f"{p['bpp']:7.4f} {p['psnr']:6.2f} "
                f"{p['encode_s']:7.1f} {p['decode_s']:6.2f}"
            )
            for codec in base:
                s = matched_saving(base[codec][name], p)
                row += f" {'n/a' if s is None else f'{-s:+.1f}%':>12}"
            print(row)
    print("(vs columns: our bytes against the anchor's at equal PSNR; negative = fewer)")

    print("\nBD-rate of the max preset (negative = fewer bytes at equal RGB PSNR)")
    result: dict[str, float | None] = {}
    for codec in base:
        per = {n: bd_rate(base[codec][n], ours[n]) for n in ours}
        vals = [v for v in per.values() if v is not None]
        result[codec] = float(np.mean(vals)) if vals else None
        shown = ", ".join(f"{n} {'n/a' if v is None else f'{v:+.1f}%'}" for n, v in per.items())
        mean = "n/a" if result[codec] is None else f"{result[codec]:+.1f}%"
        print(f"  {codec:<9} {mean:>8}  ({shown})  {baselines.CODECS[codec].description}")
    elapsed = time.perf_counter() - started
    print(
        f"\nencode {enc_s_per_mp:.0f} s/MP ({enc_s_per_mp * 0.393:.0f} s for a 768x512 image), "
        f"decode {dec_s_per_mp:.2f} s/MP; benchmark took {elapsed / 60:.1f} min"
    )
    plot(ours, base, OUT / "codec_max_rd.png")
    (OUT / "points.json").write_text(json.dumps({"ours": ours, "baselines": base}, indent=1))
    print(f"plot: {OUT / 'codec_max_rd.png'}; points: {OUT / 'points.json'}")

    def rounded(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    print(
        json.dumps(
            {
                "max_bd_rate_vs_x265_intra": rounded(result.get("x265")),
                "max_bd_rate_vs_vvc_intra": rounded(result.get("vvc")),
                "max_encode_s_per_mp": round(enc_s_per_mp, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
