"""The overfitted decoder's networks as plain functions of a parameter dict (torch).

One code path serves training and decoding: the encoder's final reconstruction is made by
`synthesise` on the dequantised parameters, exactly as the decoder makes it.

Per decoded pixel (7 levels, 1.33 latents per pixel): ARM 16-16-16-2 with a residual hidden
layer, 544 MAC per latent (725 MAC/px); upsampling (a separable 7-tap filter, then an 8x8
transposed kernel per 2x step), about 147 MAC/px; synthesis 1x1 7->40->3 plus two 3x3
residual convolutions 3->3, 562 MAC/px. In all about 1,430 MAC/px.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from codec_engine.overfit.arch import ARCH, Arch

Params = dict[str, torch.Tensor]
_LOG2E = 1.0 / math.log(2.0)

#: (group, name, shape) of every parameter, in bitstream order.
PARAM_SPEC: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("arm", "arm.w1", (ARCH.arm_hidden, len(ARCH.context))),
    ("arm", "arm.b1", (ARCH.arm_hidden,)),
    ("arm", "arm.w2", (ARCH.arm_hidden, ARCH.arm_hidden)),
    ("arm", "arm.b2", (ARCH.arm_hidden,)),
    ("arm", "arm.w3", (2, ARCH.arm_hidden)),
    ("arm", "arm.b3", (2,)),
    ("up", "up.k", (ARCH.levels - 1, ARCH.upsample_kernel)),
    ("up", "up.pre", (ARCH.levels - 1, ARCH.prefilter_kernel)),
    ("syn", "syn.w1", (ARCH.synth_hidden, ARCH.levels)),
    ("syn", "syn.b1", (ARCH.synth_hidden,)),
    ("syn", "syn.w2", (3, ARCH.synth_hidden)),
    ("syn", "syn.b2", (3,)),
    ("syn", "syn.c1", (3, 3, 3, 3)),
    ("syn", "syn.d1", (3,)),
    ("syn", "syn.c2", (3, 3, 3, 3)),
    ("syn", "syn.d2", (3,)),
)


def init_params(generator: torch.Generator) -> Params:
    """Fresh parameters: bicubic upsampling, identity pre-filters and residual layers, and
    an ARM that starts at the sharpest Laplace scale of the tables (exp(-3)).

    Starting sharp makes every non-zero latent expensive from the first iteration, so the
    fit spends latents only where they pay; a unit starting scale let it spread them early.
    Measured on chelsea at 1000 iterations (loss with the real coded bits, x 1e-4): quality 2
    33.0 -> 29.6 (1,764 -> 1,504 bytes, +0.26 dB), quality 4 18.6 -> 17.1 (3,739 -> 3,381
    bytes, +0.33 dB), quality 8 4.43 -> 4.39. Starting log-scales -2 and -2.5 gave 17.2 at
    quality 4. Cool-chic's ARM also starts sharp (b = e^-4)."""

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
    p["arm.b3"] = torch.tensor([0.0, ARCH.log_scale_min])
    p["up.k"] = bicubic_taps(ARCH.upsample_kernel).expand(ARCH.levels - 1, -1).clone()
    identity = torch.zeros(ARCH.prefilter_kernel)
    identity[ARCH.prefilter_kernel // 2] = 1.0
    p["up.pre"] = identity.expand(ARCH.levels - 1, -1).clone()
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
    out = _TiledArm.apply(  # type: ignore[no-untyped-call]
        ctx, p["arm.w1"], p["arm.b1"], p["arm.w2"], p["arm.b2"], p["arm.w3"], p["arm.b3"]
    )
    return out[0], out[1]


# The per-pixel MLPs run over columns in tiles of this many, and their backward passes
# recompute the hidden activations tile by tile instead of keeping them: the (16 or 40, N)
# hidden arrays then stay in cache instead of making about ten passes through memory.
# Measured on chelsea (2 threads, whole fit iterations, 5 alternating runs): median 0.094 ->
# 0.069 s per iteration.
TILE = 16384


def _relu_layer(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.addmm(b[:, None], w, x).relu_()


def _tiled_output(
    x: torch.Tensor,
    hidden: Callable[[torch.Tensor], torch.Tensor],
    w_out: torch.Tensor,
    b_out: torch.Tensor,
) -> torch.Tensor:
    """(O, N) = w_out hidden(x) + b_out, one column tile of x at a time."""
    out = torch.empty(w_out.shape[0], x.shape[1], dtype=x.dtype)
    for s in range(0, x.shape[1], TILE):
        torch.addmm(b_out[:, None], w_out, hidden(x[:, s : s + TILE]), out=out[:, s : s + TILE])
    return out


class _TiledArm(torch.autograd.Function):
    """(2, N) = w3 h2 + b3, h2 = relu(w2 h1 + b2) + h1, h1 = relu(w1 ctx + b1)."""

    @staticmethod
    def forward(
        ctx: Any,
        c: torch.Tensor,
        w1: torch.Tensor,
        b1: torch.Tensor,
        w2: torch.Tensor,
        b2: torch.Tensor,
        w3: torch.Tensor,
        b3: torch.Tensor,
    ) -> torch.Tensor:
        def hidden(cs: torch.Tensor) -> torch.Tensor:
            h1 = _relu_layer(cs, w1, b1)
            return _relu_layer(h1, w2, b2).add_(h1)

        ctx.save_for_backward(c, w1, b1, w2, b2, w3)
        return _tiled_output(c, hidden, w3, b3)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c, w1, b1, w2, b2, w3 = ctx.saved_tensors
        gc = torch.empty_like(c)
        gw1, gb1, gw2, gb2, gw3 = (torch.zeros_like(t) for t in (w1, b1, w2, b2, w3))
        for s in range(0, c.shape[1], TILE):
            cs, gs = c[:, s : s + TILE], g[:, s : s + TILE]
            h1 = _relu_layer(cs, w1, b1)
            a2 = torch.addmm(b2[:, None], w2, h1)
            h2 = a2.relu().add_(h1)
            gw3.addmm_(gs, h2.t())
            gh2 = torch.mm(w3.t(), gs)
            ga2 = gh2 * (a2 > 0)
            gw2.addmm_(ga2, h1.t())
            gb2.add_(ga2.sum(1))
            gz1 = torch.addmm(gh2, w2.t(), ga2).mul_(h1 > 0)
            gw1.addmm_(gz1, cs.t())
            gb1.add_(gz1.sum(1))
            torch.mm(w1.t(), gz1, out=gc[:, s : s + TILE])
        return gc, gw1, gb1, gw2, gb2, gw3, g.sum(1)


class _TiledMlp(torch.autograd.Function):
    """(O, N) = w2 relu(w1 x + b1) + b2."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        w1: torch.Tensor,
        b1: torch.Tensor,
        w2: torch.Tensor,
        b2: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, w1, b1, w2)
        return _tiled_output(x, lambda xs: _relu_layer(xs, w1, b1), w2, b2)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, w1, b1, w2 = ctx.saved_tensors
        gx = torch.empty_like(x)
        gw1, gb1, gw2 = (torch.zeros_like(t) for t in (w1, b1, w2))
        for s in range(0, x.shape[1], TILE):
            xs, gs = x[:, s : s + TILE], g[:, s : s + TILE]
            hid = _relu_layer(xs, w1, b1)
            gw2.addmm_(gs, hid.t())
            gh = torch.mm(w2.t(), gs).mul_(hid > 0)
            gw1.addmm_(gh, xs.t())
            gb1.add_(gh.sum(1))
            torch.mm(w1.t(), gh, out=gx[:, s : s + TILE])
        return gx, gw1, gb1, gw2, g.sum(1)


def laplace_bits(
    y: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor, arch: Arch = ARCH
) -> torch.Tensor:
    """Total -log2 P(y) of unit bins of Laplace(mu, exp(log_scale)), scale within the table,
    each latent's cost capped at 16 bits (the probability floor of the tables)."""
    top = arch.log_scale_min + (arch.scale_count - 1) / (1 << arch.log_scale_step_bits)
    inv = torch.exp(-log_scale.clamp(arch.log_scale_min, top))
    a = (y - mu.clamp(-arch.latent_max, arch.latent_max)).abs()
    # |y - mu| >= 1/2: both bin edges on one side, p = e^(-(a - 1/2)/b) (1 - e^(-1/b)) / 2,
    # taken in the log domain (no underflow, and half the element-wise passes of the CDFs).
    far = 1.0 + (a.clamp(min=0.5) - 0.5) * inv * _LOG2E - torch.log2(-torch.expm1(-inv))
    # |y - mu| < 1/2: the bin holds the mode, p = 1 - (e^(-(1/2 - a)/b) + e^(-(1/2 + a)/b)) / 2.
    an = a.clamp(max=0.5)
    near = -torch.log2(1.0 - 0.5 * (torch.exp((an - 0.5) * inv) + torch.exp(-(an + 0.5) * inv)))
    return torch.where(a >= 0.5, far, near).clamp(max=16.0).sum()


def bicubic_taps(taps: int) -> torch.Tensor:
    """1-D kernel of a 2x transposed convolution that samples the bicubic (a = -1/2)
    interpolant at the output pixel centres: tap k sits (k - (taps - 1) / 2) / 2 input
    pixels from the input pixel's centre."""

    def cubic(d: float, a: float = -0.5) -> float:
        d = abs(d)
        if d <= 1.0:
            return (a + 2.0) * d**3 - (a + 3.0) * d**2 + 1.0
        if d < 2.0:
            return a * d**3 - 5.0 * a * d**2 + 8.0 * a * d - 4.0 * a
        return 0.0

    return torch.tensor([cubic((k - (taps - 1) / 2) / 2) for k in range(taps)])


# The depthwise and 3x3 convolutions run channels-last: oneDNN's backward passes for so
# few channels are about twice as fast in that layout. Measured on chelsea (2 threads):
# upsampling forward + backward 53 -> 24 ms, one 3x3 residual convolution 14 -> 7 ms.
_FAST_LAYOUT = torch.channels_last


def _separable(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Same-size depthwise filter of (1, C, h, w) by outer(taps, taps), replicate border."""
    c, n = x.shape[1], taps.shape[0]
    r = n // 2
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, taps.view(1, 1, 1, n).expand(c, 1, 1, n), groups=c)
    return F.conv2d(x, taps.view(1, 1, n, 1).expand(c, 1, n, 1), groups=c)


def upsample_stack(
    latents: list[torch.Tensor], kernels: torch.Tensor, prefilters: torch.Tensor
) -> torch.Tensor:
    """(1, levels, H, W): every level brought to full resolution by learned 2x steps.

    Each step filters the stack so far (a learned separable kernel, identity at first),
    doubles it with a learned separable transposed convolution (bicubic at first) and
    appends the next finer grid. One kernel pair per step, shared by the channels.
    """
    taps = kernels.shape[1]
    pad = taps // 4  # input pixels each output pixel reaches on either side
    crop = 2 * pad + taps // 2 - 1  # centres the kernel on the output pixel centres
    x = latents[-1][None, None]
    for lv in range(len(latents) - 2, -1, -1):
        h, w = latents[lv].shape
        c = x.shape[1]
        x = _separable(x.contiguous(memory_format=_FAST_LAYOUT), prefilters[lv])
        weight = torch.outer(kernels[lv], kernels[lv]).expand(c, 1, taps, taps)
        up = F.conv_transpose2d(
            F.pad(x, (pad, pad, pad, pad), mode="replicate"), weight, stride=2, groups=c
        )
        x = torch.cat([up[:, :, crop : crop + h, crop : crop + w], latents[lv][None, None]], dim=1)
    return x


def synthesise(p: Params, latents: list[torch.Tensor]) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] (unclamped) from the latent grids."""
    x = upsample_stack(latents, p["up.k"], p["up.pre"])[0]
    c, h, w = x.shape
    flat = x.reshape(c, h * w)
    rgb = _TiledMlp.apply(  # type: ignore[no-untyped-call]
        flat, p["syn.w1"], p["syn.b1"], p["syn.w2"], p["syn.b2"]
    ).reshape(1, 3, h, w)
    rgb = rgb.contiguous(memory_format=_FAST_LAYOUT)
    r1 = F.conv2d(F.pad(rgb, (1, 1, 1, 1), mode="replicate"), p["syn.c1"], p["syn.d1"])
    rgb = torch.relu(rgb + r1)
    r2 = F.conv2d(F.pad(rgb, (1, 1, 1, 1), mode="replicate"), p["syn.c2"], p["syn.d2"])
    return (rgb + r2)[0]
