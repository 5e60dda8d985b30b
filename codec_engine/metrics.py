"""Quality metrics on 8-bit RGB frames: RGB PSNR, PSNR-Y (BT.601) and MS-SSIM."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]
_Y = np.array([0.299, 0.587, 0.114])


def mse(a: Frame, b: Frame) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr_from_mse(value: float) -> float:
    return 100.0 if value <= 1e-10 else 10.0 * math.log10(255.0**2 / value)


def psnr(a: Frame, b: Frame) -> float:
    return psnr_from_mse(mse(a, b))


def psnr_y(a: Frame, b: Frame) -> float:
    ya = a.astype(np.float64) @ _Y
    yb = b.astype(np.float64) @ _Y
    return psnr_from_mse(float(np.mean((ya - yb) ** 2)))


def ms_ssim(a: Frame, b: Frame) -> float | None:
    """MS-SSIM (pytorch-msssim) in [0, 1]; None for frames under 161 px a side."""
    if min(a.shape[:2]) < 161:
        return None
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    ta = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].double()
    tb = torch.from_numpy(np.ascontiguousarray(b)).permute(2, 0, 1)[None].double()
    return float(_ms_ssim(ta, tb, data_range=255.0))


@dataclass(frozen=True)
class Quality:
    """Sequence-level quality: PSNRs from the mean MSE over frames, mean MS-SSIM."""

    psnr: float
    psnr_y: float
    ms_ssim: float | None

    def ms_ssim_db(self) -> float | None:
        if self.ms_ssim is None:
            return None
        return -10.0 * math.log10(max(1.0 - self.ms_ssim, 1e-10))


def measure(
    reference: Sequence[Frame], decoded: Sequence[Frame], *, with_ms_ssim: bool = True
) -> Quality:
    if len(reference) != len(decoded) or not reference:
        raise ValueError("frame counts differ")
    m = float(np.mean([mse(a, b) for a, b in zip(reference, decoded, strict=True)]))
    my = float(
        np.mean(
            [
                np.mean(((a.astype(np.float64) - b.astype(np.float64)) @ _Y) ** 2)
                for a, b in zip(reference, decoded, strict=True)
            ]
        )
    )
    ssim: float | None = None
    if with_ms_ssim:
        values = [ms_ssim(a, b) for a, b in zip(reference, decoded, strict=True)]
        if all(v is not None for v in values):
            ssim = float(np.mean([v for v in values if v is not None]))
    return Quality(psnr_from_mse(m), psnr_from_mse(my), ssim)
