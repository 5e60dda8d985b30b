"""Full-range BT.601 RGB <-> YCbCr in [0, 1] (chroma centred on 0.5), as JPEG uses."""

from __future__ import annotations

import torch
from torch import Tensor

_RGB2YCC = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.168735892, -0.331264108, 0.5],
        [0.5, -0.418687589, -0.081312411],
    ]
)
_YCC2RGB = torch.linalg.inv(_RGB2YCC)
_OFFSET = torch.tensor([0.0, 0.5, 0.5])


def rgb_to_ycbcr(x: Tensor) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> YCbCr in [0, 1]."""
    m = _RGB2YCC.to(x.device, x.dtype)
    return torch.einsum("ij,bjhw->bihw", m, x) + _OFFSET.to(x.device, x.dtype).view(1, 3, 1, 1)


def ycbcr_to_rgb(x: Tensor) -> Tensor:
    """(B, 3, H, W) YCbCr in [0, 1] -> RGB (not clamped)."""
    m = _YCC2RGB.to(x.device, x.dtype)
    return torch.einsum("ij,bjhw->bihw", m, x - _OFFSET.to(x.device, x.dtype).view(1, 3, 1, 1))
