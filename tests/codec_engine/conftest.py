"""Shared fixtures: small natural test images and the shipped model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

Frame = npt.NDArray[np.uint8]


def _skimage(name: str) -> Frame:
    import skimage

    path = Path(skimage.__file__).resolve().parent / "data" / f"{name}.png"
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


@pytest.fixture(scope="session")
def small_image() -> Frame:
    """A 96x128 natural crop (odd-sized against the 64-pixel alignment on purpose)."""
    return np.ascontiguousarray(_skimage("astronaut")[40:136, 180:308])


@pytest.fixture(scope="session")
def tiny_frames() -> list[Frame]:
    """Three 64x80 frames of a panning crop (a tiny video)."""
    img = _skimage("coffee")
    return [np.ascontiguousarray(img[100:164, 200 + 4 * i : 280 + 4 * i]) for i in range(3)]


@pytest.fixture(scope="session")
def model_q4():  # type: ignore[no-untyped-def]
    from codec_engine import api

    return api.load_model("msh-v1", 4)


def save_png(path: Path, frame: Frame) -> Path:
    Image.fromarray(frame).save(path)
    return path


def run_script(script: str, *args: str) -> None:
    """Run `python -c script args...` in a fresh process at the repository root (the other
    side of a cross-process determinism check)."""
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=root,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
