"""Generalised divisive normalisation (Ballé et al. 2016) and the strided convolutions.

The normalisation is `y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)` (or the inverse, a
multiplication, on the synthesis side). `beta` and `gamma` are kept non-negative by
squaring a clamped parameter, which keeps the gradient alive near zero.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

_PEDESTAL = 2.0**-18


class GDN(nn.Module):
    """GDN (or IGDN with `inverse=True`) over the channel dimension."""

    def __init__(self, channels: int, *, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + _PEDESTAL))
        gamma = 0.1 * torch.eye(channels) + _PEDESTAL
        self.gamma = nn.Parameter(torch.sqrt(gamma))

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        beta = self.beta.clamp(min=(1e-6 + _PEDESTAL) ** 0.5) ** 2 - _PEDESTAL
        gamma = self.gamma.clamp(min=_PEDESTAL**0.5) ** 2 - _PEDESTAL
        norm = F.conv2d(x * x, gamma.view(channels, channels, 1, 1).to(x.dtype), beta.to(x.dtype))
        if self.inverse:
            return x * torch.sqrt(norm)
        return x * torch.rsqrt(norm)


def conv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    """A 'same'-padded convolution that downsamples by `stride`."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def deconv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """A transposed convolution that upsamples exactly by `stride`."""
    return nn.ConvTranspose2d(
        in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )
