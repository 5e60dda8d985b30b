"""The encoder's training loop: fit latents and networks to one image (rate-distortion loss).

loss = MSE(RGB in 0..1) + lambda * rate (bits per pixel, -log2 p of the latents under the ARM).

Phase 1 (95 % of the iterations): soft rounding (Agustsson & Theis, alpha 6) with additive
uniform noise, as in C3: the rate is measured on `s(y) + u`, the synthesis sees
`s(s(y) + u)`; cosine learning-rate decay. Phase 2: hard rounding with a straight-through
gradient at a small learning rate, so the networks adapt to the integer latents the decoder
will see. The latents learn 16 times faster than the networks (Cool-chic's "encoder gain").

Measured on 256x256 crops of chelsea at 400 iterations (bytes against x265 at equal PSNR):
fixed alpha 6 beat 3.3 (+87 % vs +93 %), plain noise (+189 %), alpha 10 (+412 %) and a
1 -> 12 anneal (+136 %); half-amplitude noise (+310 %) and a 40 % STE phase (+133 %) lost.

With an iteration budget the fit is deterministic (fixed seed, fixed thread count). With a
time budget the iteration count is set after timing the first iterations, so it depends on
the machine's speed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from codec_engine.overfit.arch import ARCH, level_shapes
from codec_engine.overfit.network import (
    Params,
    arm,
    contexts,
    init_params,
    laplace_bits,
    synthesise,
)

FitProgress = Callable[[int, int], None]  # (iterations done, planned total)

LR = 1e-2
LR_MIN = 2e-4
LR_STE = 1e-4
LATENT_LR_GAIN = 16.0
PHASE1 = 0.95
ALPHA = 6.0
_TIMING_ITERS = 8


@dataclass
class Fitted:
    params: Params
    latents: list[torch.Tensor]
    iterations: int
    seconds: float


def soft_round(y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Differentiable rounding: identity-like for small alpha, rounding for large alpha."""
    m = torch.floor(y) + 0.5
    return m + torch.tanh(alpha * (y - m)) / (2.0 * math.tanh(alpha / 2.0))


def image_tensor(image: npt.NDArray[np.uint8]) -> torch.Tensor:
    # A copy: the caller's array may be read-only (torch warns on those).
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0


def fit(
    image: npt.NDArray[np.uint8],
    lam: float,
    *,
    iterations: int,
    seconds: float | None = None,
    seed: int = 0,
    progress: FitProgress | None = None,
) -> Fitted:
    """Fit the overfitted decoder to `image` (HxWx3 uint8) within the budget."""
    start = time.perf_counter()
    x = image_tensor(image)
    h, w = x.shape[1:]
    pixels = float(h * w)
    gen = torch.Generator().manual_seed(seed)
    params = init_params(gen)
    for t in params.values():
        t.requires_grad_(True)
    latents = [torch.zeros(s, requires_grad=True) for s in level_shapes(h, w)]
    groups: list[dict[str, object]] = [
        {"params": list(params.values()), "gain": 1.0},
        {"params": latents, "gain": LATENT_LR_GAIN},
    ]
    opt = torch.optim.Adam(groups, lr=LR)
    total = max(1, iterations)
    lim = float(ARCH.latent_max)
    it = 0
    while it < total:
        if seconds is not None and it == _TIMING_ITERS:
            per_iter = (time.perf_counter() - start) / it
            # Keep a margin for quantisation and entropy coding after the fit.
            left = seconds * 0.97 - 3.0 - (time.perf_counter() - start)
            total = max(it + 1, min(total, it + int(left / per_iter)))
        phase1 = max(1, int(PHASE1 * total))
        if it < phase1:
            frac = it / phase1
            lr = LR_MIN + 0.5 * (LR - LR_MIN) * (1.0 + math.cos(math.pi * frac))
            noisy = [
                soft_round(y.clamp(-lim, lim), ALPHA) + torch.rand(y.shape, generator=gen) - 0.5
                for y in latents
            ]
            coded = noisy
            shown = [soft_round(v, ALPHA) for v in noisy]
        else:
            lr = LR_STE
            coded = [(y + (torch.round(y) - y).detach()).clamp(-lim, lim) for y in latents]
            shown = coded
        for group in opt.param_groups:
            group["lr"] = lr * group["gain"]
        mu, log_scale = arm(params, contexts(coded))
        bits = laplace_bits(torch.cat([c.reshape(-1) for c in coded]), mu, log_scale)
        rec = synthesise(params, shown)
        loss = torch.mean((rec - x) ** 2) + lam * bits / pixels
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        it += 1
        if progress is not None:
            progress(it, total)
    detached = {k: v.detach() for k, v in params.items()}
    return Fitted(detached, [y.detach() for y in latents], it, time.perf_counter() - start)
