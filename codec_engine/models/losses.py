"""The rate-distortion objective shared by training and encoder-side refinement."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from codec_engine.colour import rgb_to_ycbcr

#: Loss weights of the YCbCr channels. Their sum is close to the RGB-MSE equivalent
#: (about 1 + 1.09 + 0.83 for Y, Cb, Cr), so the lambdas keep their usual meaning, but luma
#: gets twice the chroma's weight: eyes notice blurred luma at once, colour error hardly.
W_Y, W_CB, W_CR = 1.5, 0.75, 0.75
#: Extra luma weight on edges: up to (1 + EDGE_GAIN) times on strong gradients.
EDGE_GAIN = 1.0
EDGE_SCALE = 0.15
_SOBEL = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]) / 4.0


def distortion(x_rgb: Tensor, x_hat_ycc: Tensor) -> Tensor:
    """Per-image weighted YCbCr MSE: luma over chroma, and luma edges over flat areas."""
    ycc = rgb_to_ycbcr(x_rgb)
    err = (x_hat_ycc - ycc) ** 2
    luma = ycc[:, :1]
    kx = _SOBEL.to(luma.device, luma.dtype).view(1, 1, 3, 3)
    ky = kx.transpose(2, 3)
    grad = torch.sqrt(F.conv2d(luma, kx, padding=1) ** 2 + F.conv2d(luma, ky, padding=1) ** 2)
    weight = 1.0 + EDGE_GAIN * (grad / EDGE_SCALE).clamp(max=1.0)
    weight = weight / weight.mean(dim=(2, 3), keepdim=True)
    mse_y = (weight * err[:, :1]).mean(dim=(1, 2, 3))
    return W_Y * mse_y + W_CB * err[:, 1].mean(dim=(1, 2)) + W_CR * err[:, 2].mean(dim=(1, 2))
