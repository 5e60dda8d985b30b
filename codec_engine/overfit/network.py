"""The overfitted decoder's networks as plain functions of a parameter dict (torch).

One code path serves training and decoding: the encoder's final reconstruction is made by
`synthesise` on the dequantised parameters, exactly as the decoder makes it.

Per decoded pixel (7 levels, 1.33 latents per pixel): ARM 16-16-16-2 with a residual hidden
layer, 544 MAC per latent (725 MAC/px); upsampling 4x4 transposed kernels, about 31 MAC/px;
synthesis 1x1 7->40->3 plus two 3x3 residual convolutions 3->3, 562 MAC/px. In all about
1,320 MAC/px.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from codec_engine.overfit.arch import ARCH, Arch

Params = dict[str, torch.Tensor]

#: (group, name, shape) of every parameter, in bitstream order.
PARAM_SPEC: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("arm", "arm.w1", (ARCH.arm_hidden, len(ARCH.context))),
    ("arm", "arm.b1", (ARCH.arm_hidden,)),
    ("arm", "arm.w2", (ARCH.arm_hidden, ARCH.arm_hidden)),
    ("arm", "arm.b2", (ARCH.arm_hidden,)),
    ("arm", "arm.w3", (2, ARCH.arm_hidden)),
    ("arm", "arm.b3", (2,)),
    ("up", "up.k", (ARCH.levels - 1, ARCH.upsample_kernel, ARCH.upsample_kernel)),
    ("syn", "syn.w1", (ARCH.synth_hidden, ARCH.levels)),
    ("syn", "syn.b1", (ARCH.synth_hidden,)),
    ("syn", "syn.w2", (3, ARCH.synth_hidden)),
    ("syn", "syn.b2", (3,)),
    ("syn", "syn.c1", (3, 3, 3, 3)),
    ("syn", "syn.d1", (3,)),
    ("syn", "syn.c2", (3, 3, 3, 3)),
    ("syn", "syn.d2", (3,)),
)
GROUPS = ("arm", "up", "syn")


def init_params(generator: torch.Generator) -> Params:
    """Fresh parameters: bilinear upsampling, identity residual layers, unit Laplace scale."""

    def uniform(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
        bound = 1.0 / math.sqrt(fan_in)
        return (torch.rand(shape, generator=generator) * 2.0 - 1.0) * bound

    p: Params = {}
    for _, name, shape in PARAM_SPEC:
        p[name] = torch.zeros(shape)
    c = len(ARCH.context)
    p["arm.w1"] = uniform(p["arm.w1"].shape, c)
    p["arm.w2"] = uniform(p["arm.w2"].shape, ARCH.arm_hidden)
    p["syn.w1"] = uniform(p["syn.w1"].shape, ARCH.levels)
    p["syn.b1"] = uniform(p["syn.b1"].shape, ARCH.levels)
    p["syn.w2"] = uniform(p["syn.w2"].shape, ARCH.synth_hidden)
    p["syn.b2"] = torch.full((3,), 0.5)
    k1 = torch.tensor([0.25, 0.75, 0.75, 0.25])
    p["up.k"] = torch.outer(k1, k1).expand(ARCH.levels - 1, 4, 4).clone()
    return p


def contexts(latents: list[torch.Tensor], arch: Arch = ARCH) -> torch.Tensor:
    """(len(context), N) causal neighbours of every latent of every level (zero outside)."""
    top, left, right = arch.pad
    cols = []
    for y in latents:
        h, w = y.shape
        yp = F.pad(y[None, None], (left, right, top, 0))[0, 0]
        cols.append(
            torch.stack(
                [yp[top + dy : top + dy + h, left + dx : left + dx + w] for dy, dx in arch.context]
            ).reshape(len(arch.context), h * w)
        )
    return torch.cat(cols, dim=1)


def arm(p: Params, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float ARM (training): mean and log-scale of each latent from its (C, N) contexts."""
    h1 = torch.relu(torch.addmm(p["arm.b1"][:, None], p["arm.w1"], ctx))
    h2 = torch.relu(torch.addmm(p["arm.b2"][:, None], p["arm.w2"], h1)) + h1
    out = torch.addmm(p["arm.b3"][:, None], p["arm.w3"], h2)
    return out[0], out[1]


def laplace_bits(
    y: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor, arch: Arch = ARCH
) -> torch.Tensor:
    """Total -log2 P(y) of unit bins of Laplace(mu, exp(log_scale)), scale within the table."""
    top = arch.log_scale_min + (arch.scale_count - 1) / (1 << arch.log_scale_step_bits)
    b = torch.exp(log_scale.clamp(arch.log_scale_min, top))
    m = mu.clamp(-arch.latent_max, arch.latent_max)
    u = (y - m + 0.5) / b
    lo = (y - m - 0.5) / b

    def cdf(x: torch.Tensor) -> torch.Tensor:
        e = 0.5 * torch.exp(-x.abs())
        return torch.where(x < 0, e, 1.0 - e)

    # Both bin edges on the same side: the difference of the small tails is the stable form.
    pos = 0.5 * (torch.exp(-lo.clamp(min=0)) - torch.exp(-u.clamp(min=0)))
    neg = 0.5 * (torch.exp(u.clamp(max=0)) - torch.exp(lo.clamp(max=0)))
    p = torch.where(lo >= 0, pos, torch.where(u <= 0, neg, cdf(u) - cdf(lo)))
    return -torch.log2(p.clamp(min=2.0**-16)).sum()


def upsample_stack(latents: list[torch.Tensor], kernels: torch.Tensor) -> torch.Tensor:
    """(1, levels, H, W): every level brought to full resolution by learned 2x steps."""
    x = latents[-1][None, None]
    for lv in range(len(latents) - 2, -1, -1):
        h, w = latents[lv].shape
        c = x.shape[1]
        weight = kernels[lv].expand(c, 1, *kernels.shape[1:])
        up = F.conv_transpose2d(
            F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, stride=2, groups=c
        )
        # Offset 3 aligns the transposed kernel with bilinear sampling (pixel centres).
        x = torch.cat([up[:, :, 3 : 3 + h, 3 : 3 + w], latents[lv][None, None]], dim=1)
    return x


def synthesise(p: Params, latents: list[torch.Tensor]) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] (unclamped) from the latent grids."""
    x = upsample_stack(latents, p["up.k"])[0]
    c, h, w = x.shape
    flat = x.reshape(c, h * w)
    hid = torch.relu(torch.addmm(p["syn.b1"][:, None], p["syn.w1"], flat))
    rgb = torch.addmm(p["syn.b2"][:, None], p["syn.w2"], hid).reshape(1, 3, h, w)
    r1 = F.conv2d(F.pad(rgb, (1, 1, 1, 1), mode="replicate"), p["syn.c1"], p["syn.d1"])
    rgb = torch.relu(rgb + r1)
    r2 = F.conv2d(F.pad(rgb, (1, 1, 1, 1), mode="replicate"), p["syn.c2"], p["syn.d2"])
    return (rgb + r2)[0]
