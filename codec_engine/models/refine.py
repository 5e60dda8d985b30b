"""Encoder-side latent refinement: gradient steps on y for one image, decoder unchanged.

The analysis transform is amortised and so suboptimal for any single image; a few dozen
Adam steps on the latent itself, against the same rate-distortion objective as training
(straight-through rounding), lower the cost of this image's bitstream. The decoder
needs nothing new, so refined and unrefined streams decode alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from codec_engine.entropy.gaussian import gaussian_likelihood
from codec_engine.models.losses import distortion
from codec_engine.models.msh import LAMBDAS, MeanScaleHyperprior

if TYPE_CHECKING:
    from codec_engine.models.coding import NeuralImageCodec


def _ste(x: Tensor) -> Tensor:
    return x + (torch.round(x) - x).detach()


def refine_latent(
    codec: NeuralImageCodec, x_rgb: Tensor, y: Tensor, quality: int, steps: int, lr: float = 0.02
) -> Tensor:
    """Return a refined gained latent (same shape as `y`), never worse in loss than `y`."""
    net = codec.net
    lam = LAMBDAS[quality - 1]
    _, dec_gain = codec._gains(quality)
    pixels = x_rgb.shape[2] * x_rgb.shape[3]
    latent = y.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([latent], lr=lr)

    def loss_of(v: Tensor) -> Tensor:
        z_hat = _ste(net.h_a(v))
        mean, scale = MeanScaleHyperprior.split_params(net.h_s(z_hat))
        y_hat = _ste(v - mean) + mean
        bits = -torch.log2(gaussian_likelihood(y_hat, mean, scale)).sum()
        bits = bits - torch.log2(net.density_z.likelihood(z_hat)).sum()
        x_hat = net.g_s(y_hat * dec_gain) + 0.5
        return lam * 255.0**2 * distortion(x_rgb, x_hat).sum() + bits / pixels

    with torch.enable_grad():
        best = y.detach().clone()
        best_loss = float(loss_of(best))
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_of(latent)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            current = loss.item()
            if current < best_loss:
                best_loss = current
                best = latent.detach().clone()
    return best
