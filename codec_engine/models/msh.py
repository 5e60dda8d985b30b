"""Variable-rate mean-scale hyperprior (Minnen et al. 2018 without the serial context).

One network serves every quality level: the latent is multiplied by a learned per-channel
gain vector of the chosen level before quantisation and by a matching inverse gain after
it. The network codes YCbCr. Training runs the four transforms under bf16 autocast (the
entropy model and the loss stay in float32); coding runs the hyper-synthesis in float64,
so that the entropy parameters the decoder rebuilds match the encoder's even across
machines whose float32 kernels round differently.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from codec_engine.colour import rgb_to_ycbcr, ycbcr_to_rgb
from codec_engine.entropy.factorized import FactorizedDensity
from codec_engine.entropy.gaussian import gaussian_likelihood
from codec_engine.layers import GDN, conv, deconv

#: Rate-distortion trade-off of each quality level (index 0 = quality 1, lowest rate):
#: geometric from 0.0003 (about 0.12 bpp on the held-out set) to 0.18 (about 1.5 bpp).
LAMBDAS: tuple[float, ...] = (0.0003, 0.00075, 0.00186, 0.0046, 0.0115, 0.0287, 0.0716, 0.18)
#: Pixel alignment the transforms need (y at 1/16, z at 1/64).
ALIGN = 64


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a mean-scale hyperprior; stored with the weights."""

    n: int = 64
    m: int = 96
    qualities: int = len(LAMBDAS)


@dataclass
class ForwardOutput:
    """Training-time outputs: reconstruction (YCbCr, float32) and bits per image."""

    x_hat_ycc: Tensor
    bits_y: Tensor
    bits_z: Tensor


def _ste_round(x: Tensor) -> Tensor:
    return x + (torch.round(x) - x).detach()


class MeanScaleHyperprior(nn.Module):
    """The network; see `codec_engine.models.codec` for the bitstream side."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        n, m, q = config.n, config.m, config.qualities
        self.config = config
        self.g_a = nn.Sequential(
            conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m)
        )
        self.g_s = nn.Sequential(
            deconv(m, n),
            GDN(n, inverse=True),
            deconv(n, n),
            GDN(n, inverse=True),
            deconv(n, n),
            GDN(n, inverse=True),
            deconv(n, 3),
        )
        self.h_a = nn.Sequential(
            conv(m, n, 3, 1),
            nn.LeakyReLU(inplace=True),
            conv(n, n),
            nn.LeakyReLU(inplace=True),
            conv(n, n),
        )
        self.h_s = nn.Sequential(
            deconv(n, m),
            nn.LeakyReLU(inplace=True),
            deconv(m, m * 3 // 2),
            nn.LeakyReLU(inplace=True),
            conv(m * 3 // 2, m * 2, 3, 1),
        )
        self.density_z = FactorizedDensity(n)
        # Quality 1 quantises coarsely (small gain), quality Q finely.
        init = torch.exp(torch.linspace(-1.2, 1.2, q)).view(q, 1).expand(q, m).clone()
        self.gain_enc = nn.Parameter(init)
        self.gain_dec = nn.Parameter(1.0 / init)

    # ---- pieces shared by training and coding -------------------------------------------
    @staticmethod
    def to_input(x_rgb: Tensor) -> Tensor:
        """RGB in [0, 1] -> the centred YCbCr the analysis transform expects."""
        return rgb_to_ycbcr(x_rgb) - 0.5

    @staticmethod
    def from_output(x_ycc: Tensor) -> Tensor:
        """Synthesis output -> RGB in [0, 1] (clamped)."""
        return ycbcr_to_rgb(x_ycc + 0.5).clamp(0.0, 1.0)

    def gains(self, quality_index: Tensor) -> tuple[Tensor, Tensor]:
        """(encoder gain, decoder gain), each (B, M, 1, 1), for 0-based quality indices."""
        enc = self.gain_enc.abs().clamp(min=1e-3)[quality_index]
        dec = self.gain_dec.abs().clamp(min=1e-3)[quality_index]
        return enc[:, :, None, None], dec[:, :, None, None]

    @staticmethod
    def split_params(params: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw = params.chunk(2, dim=1)
        return mean, F.softplus(raw)

    # ---- training ---------------------------------------------------------------------
    def forward(self, x_rgb: Tensor, quality_index: Tensor, *, bf16: bool = True) -> ForwardOutput:
        x = self.to_input(x_rgb)
        enc_gain, dec_gain = self.gains(quality_index)
        with _autocast(x, bf16):
            y = self.g_a(x)
        y = y.float() * enc_gain
        with _autocast(x, bf16):
            z = self.h_a(y)
        z = z.float()
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5) if self.training else torch.round(z)
        z_lik = self.density_z.likelihood(z_noisy)
        with _autocast(x, bf16):
            params = self.h_s(_ste_round(z))
        mean, scale = self.split_params(params.float())
        y_hat = _ste_round(y - mean) + mean
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else y_hat
        y_lik = gaussian_likelihood(y_noisy, mean, scale)
        with _autocast(x, bf16):
            x_hat = self.g_s(y_hat * dec_gain)
        bits_y = -torch.log2(y_lik).sum(dim=(1, 2, 3))
        bits_z = -torch.log2(z_lik).sum(dim=(1, 2, 3))
        return ForwardOutput(x_hat_ycc=x_hat.float() + 0.5, bits_y=bits_y, bits_z=bits_z)


@contextlib.contextmanager
def _autocast(x: Tensor, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
        yield


@torch.no_grad()
def remap_quality_gains(
    net: MeanScaleHyperprior, old: Sequence[float], new: Sequence[float]
) -> None:
    """Move the per-level gain vectors from rate weights `old` to `new` (same level count).

    Log-gains are interpolated piecewise-linearly in log-lambda and extrapolated from the
    two outermost levels, which lands within a few percent of the rate a trained level
    would give; training then refines them.
    """
    if len(old) != len(new) or len(new) != net.config.qualities:
        raise ValueError("remap_quality_gains needs one rate weight per existing level")
    xs = torch.tensor([math.log(v) for v in old], dtype=torch.float64)
    for param in (net.gain_enc, net.gain_dec):
        log_gain = param.detach().abs().clamp(min=1e-3).double().log()
        rows = []
        for lam in new:
            x = math.log(lam)
            i = int(torch.searchsorted(xs, torch.tensor(x, dtype=torch.float64))) - 1
            i = min(max(i, 0), len(old) - 2)
            t = (x - float(xs[i])) / float(xs[i + 1] - xs[i])
            rows.append(log_gain[i] * (1 - t) + log_gain[i + 1] * t)
        param.copy_(torch.stack(rows).exp().to(param.dtype))
