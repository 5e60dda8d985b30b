"""Matched-quality baseline search and the declared baseline."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from codec_engine import api, baselines
from codec_engine.errors import BaselineError, CommandError
from codec_engine.metrics import Quality


def test_matched_search_finds_the_cheapest_setting_at_least_as_good(
    small_image: np.ndarray,
) -> None:
    target = Quality(psnr=30.0, psnr_y=30.0, ms_ssim=None)
    point, matched = baselines.matched_quality("jpeg", [small_image], target)
    assert matched and point.quality.psnr >= 30.0
    codec = baselines.CODECS["jpeg"]
    below = codec.params[codec.params.index(point.param) - 1]
    assert baselines.run("jpeg", [small_image], below).quality.psnr < 30.0


def test_unreachable_quality_is_flagged(small_image: np.ndarray) -> None:
    target = Quality(psnr=99.0, psnr_y=99.0, ms_ssim=None)
    point, matched = baselines.matched_quality("webp", [small_image], target)
    assert not matched and point.param == 100


def test_video_baseline_and_odd_sizes(tiny_frames: list[np.ndarray]) -> None:
    odd = [f[:63, :79] for f in tiny_frames]
    point = baselines.run("x265", odd, 30, fps=Fraction(25))
    assert len(point.frames) == 3 and point.frames[0].shape == (63, 79, 3)
    assert point.num_bytes > 0 and point.quality.psnr > 25


def test_unknown_baseline() -> None:
    with pytest.raises(BaselineError):
        baselines.get_codec("mpeg1")


def test_declared_baseline() -> None:
    assert api.declared_baseline_bytes(2_000_000, 50, Fraction(25)) == 500_000
    with pytest.raises(CommandError):
        api.declared_baseline_bytes(2_000_000, 1, Fraction(0))


def test_compare_reports_negative_savings_honestly(
    model_q4: api.Model, small_image: np.ndarray
) -> None:
    result = model_q4.encode_image(small_image)
    c = api.compare([small_image], result, baseline="jpeg")
    assert c.baseline_quality.psnr >= c.ours_quality.psnr or not c.matched
    assert c.saved_bytes == c.baseline_bytes - c.ours_bytes
    assert c.saving == pytest.approx(c.saved_bytes / c.baseline_bytes)
