"""P-frames: the latent of a frame coded conditionally on the previous decoded latent.

A P-frame tile is coded like an intra tile (the same analysis transform, tables and stream
layout) with two differences: its hyperprior side information z describes the change
`y_t - y_hat_{t-1}` (the intra hyper-analysis applied to the difference), and the mean and
scale of each latent element come from `InterPrior`, a small network at latent resolution
(1/16) that sees the previous frame's decoded latent next to the hyper-synthesis output.
Untrained, it predicts the old latent with the scale the side information gives; trained
(training/train_inter.py), it also corrects both where the picture moved. No motion is
estimated (DCVC-RT's implicit conditioning idea, at its simplest). The decoder keeps the
previous decoded latent per tile; an intra frame resets it.

Like the intra hyper-synthesis, the prior runs in float64 on one thread on both sides, its
outputs are quantised to the coding grid, and their CRC travels with the tile: a decoder
whose reference differs from the encoder's (a lost or corrupted earlier frame) is told so
instead of decoding garbage.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from codec_engine.layers import conv


class InterPrior(nn.Module):
    """(mean, scale) of y_t from (previous decoded latent, hyper-synthesis mean and scale)."""

    def __init__(self, m: int, hidden: int = 96) -> None:
        super().__init__()
        self.m = m
        self.hidden = hidden
        self.net = nn.Sequential(
            conv(3 * m, hidden, 1, 1),
            nn.LeakyReLU(inplace=True),
            conv(hidden, hidden, 3, 1),
            nn.LeakyReLU(inplace=True),
            conv(hidden, hidden, 3, 1),
            nn.LeakyReLU(inplace=True),
            conv(hidden, 2 * m, 1, 1),
        )
        # Start from "the old latent, with the side information's scale": usable untrained.
        last = self.net[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def forward(
        self, prev_hat: Tensor, intra_mean: Tensor, intra_scale: Tensor
    ) -> tuple[Tensor, Tensor]:
        log_scale = torch.log(intra_scale.clamp(min=1e-3))
        out = self.net(torch.cat([prev_hat, intra_mean, log_scale], dim=1))
        d_mean, d_scale = out.chunk(2, dim=1)
        mean = prev_hat + d_mean
        scale = torch.exp(log_scale + d_scale).clamp(max=1e4)
        return mean, F.relu(scale - 1e-6) + 1e-6
