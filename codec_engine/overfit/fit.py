"""The encoder's training loop: fit latents and networks to one image (rate-distortion loss).

loss = MSE(RGB in 0..1) + lambda * rate (bits per pixel: -log2 p of the latents under the ARM,
plus an estimate of the network parameters' own Exp-Golomb bits).

The parameters travel in the bitstream, so their bits are part of the rate the fit trades
against distortion; with them in the loss the fit drives weights that do not pay for
themselves to zero. Measured on chelsea at 1000 iterations, loss with the real coded bits
(quantised parameters, integer ARM), x 1e-4, with one parameter step per group: at lambda
0.016 (quality 2) 36.5 without the term, 33.7 with it (parameters 969 -> 656 bytes, 0.05 dB
less PSNR); at lambda 0.001 (quality 6) 9.73 -> 9.62. With per-tensor steps: 33.1 and 9.56;
twice the term's weight gave 33.0 and 9.68, so it stays at its face value.

Phase 1 (99 % of the iterations): the latents pass through soft rounding, Gaussian noise and
soft rounding again (Agustsson & Theis; C3), and that one value feeds both the rate and the
synthesis. The soft-round temperature falls from 0.3 to 0.1 and the noise deviation from
0.25 to 0.1 while the learning rate follows a cosine decay. Phase 2: hard rounding with a
straight-through gradient at a small learning rate, so the networks adapt to the integer
latents the decoder will see. The latents learn 16 times faster than the networks
(Cool-chic's "encoder gain").

Measured on chelsea (451x300) at lambda 0.001, 1000 iterations, loss with hard-rounded
latents: this schedule (with a 5 % straight-through phase) 8.97e-4, against 9.26e-4 for the
earlier one (rate on s(y) + u, synthesis on s(s(y) + u), uniform noise, alpha 6); one value
with Kumaraswamy noise under the same temperature schedule lost 6 % to the earlier one.
The straight-through phase is kept short: 0 / 1 / 2 / 5 / 10 / 30 % of the iterations gave
8.74 / 8.77 / 8.79 / 8.97 / 9.26 / 11.4e-4 (the noise schedule already ends close to
integers). A 4-candidate warm-up (50 iterations each, Kumaraswamy noise) gained 0.7 %, and
a synthesis of 24 hidden channels instead of 40 lost 5 %; neither is used.

With two or more threads, each iteration runs its two branches side by side: the rate
(contexts and ARM) in a helper thread, the distortion (upsampling and synthesis) in the
calling thread, each with half the threads. Their gradients meet at the latents. On this
2-core machine torch's own two threads bring little to these small tensors (chelsea: 0.110
s per iteration with one thread, 0.106 with two), while the branches side by side, one
thread each, took 0.082 s (rate 0.047, distortion 0.068 alone).

With an iteration budget the fit is deterministic (fixed seed, fixed thread count). With a
time budget the iteration count is set after timing the first iterations, so it depends on
the machine's speed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from codec_engine.overfit.arch import ARCH, level_shapes
from codec_engine.overfit.network import (
    PARAM_SPEC,
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
PHASE1 = 0.99
TEMPERATURE = (0.3, 0.1)  # soft-round temperature, start and end of phase 1
NOISE_SD = (0.25, 0.1)  # Gaussian noise deviation, start and end of phase 1
_TIMING_ITERS = 8
# With a time budget the iteration count is planned after _TIMING_ITERS iterations, then
# planned again from the steady-state speed: the first iterations of a process run up to
# 3x slower (allocation, thread start-up), and a plan made on them alone left a third of
# the budget unused. Later re-plans follow a machine whose speed changes.
_REPLAN_AT = 40
_REPLAN_EVERY = 500


def _replan(it: int) -> bool:
    return it in (_TIMING_ITERS, _REPLAN_AT) or (it > _REPLAN_AT and it % _REPLAN_EVERY == 0)


PARAM_RATE_WEIGHT = 1.0  # weight of the parameters' estimated bits in the rate term
# Steps 2^-shift the parameter rate is estimated at: near what `codec._choose_shifts` picks.
EXPECTED_SHIFT = {"arm": 6, "up": 7, "syn": 8}


def param_bits_estimate(params: Params) -> torch.Tensor:
    """Differentiable estimate of the parameters' Exp-Golomb bits at the expected steps:
    order 0 codes a step count u in about 2 log2(1 + u) + 1 bits (u = 2 |w| / step after
    the sign is folded in)."""
    total = torch.zeros(())
    for group, name, _ in PARAM_SPEC:
        u = params[name].abs() * float(2 << EXPECTED_SHIFT[group])
        total = total + (2.0 * torch.log2(1.0 + u) + 1.0).sum()
    return total


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


def _rate_grads(
    params: Params, arm_params: list[torch.Tensor], coded: list[torch.Tensor], scale: float
) -> Sequence[torch.Tensor]:
    """Gradients of the latents' bits (times `scale`) for the latents, then the ARM."""
    mu, log_scale = arm(params, contexts(coded))
    bits = laplace_bits(torch.cat([c.reshape(-1) for c in coded]), mu, log_scale)
    return torch.autograd.grad(bits * scale, [*coded, *arm_params])


def _distortion_grads(
    params: Params, net_params: list[torch.Tensor], coded: list[torch.Tensor], x: torch.Tensor
) -> Sequence[torch.Tensor]:
    """Gradients of the MSE for the latents, then the upsampling and synthesis."""
    mse = torch.mean((synthesise(params, coded) - x) ** 2)
    return torch.autograd.grad(mse, [*coded, *net_params])


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
    threads: int = 1,
    progress: FitProgress | None = None,
) -> Fitted:
    """Fit the overfitted decoder to `image` (HxWx3 uint8) within the budget, on `threads`
    threads (two or more: rate and distortion side by side)."""
    pool = ThreadPoolExecutor(1) if threads >= 2 else None
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // 2))
    try:
        return _fit(image, lam, iterations, seconds, seed, pool, progress)
    finally:
        torch.set_num_threads(previous_threads)
        if pool is not None:
            pool.shutdown()


def _fit(
    image: npt.NDArray[np.uint8],
    lam: float,
    iterations: int,
    seconds: float | None,
    seed: int,
    pool: ThreadPoolExecutor | None,
    progress: FitProgress | None,
) -> Fitted:
    start = time.perf_counter()
    x = image_tensor(image)
    h, w = x.shape[1:]
    pixels = float(h * w)
    gen = torch.Generator().manual_seed(seed)
    params = init_params(gen)
    for t in params.values():
        t.requires_grad_(True)
    arm_params = [params[name] for group, name, _ in PARAM_SPEC if group == "arm"]
    net_params = [params[name] for group, name, _ in PARAM_SPEC if group != "arm"]
    latents = [torch.zeros(s, requires_grad=True) for s in level_shapes(h, w)]
    groups: list[dict[str, object]] = [
        {"params": list(params.values()), "gain": 1.0},
        {"params": latents, "gain": LATENT_LR_GAIN},
    ]
    opt = torch.optim.Adam(groups, lr=LR)
    total = max(1, iterations)
    lim = float(ARCH.latent_max)
    it = 0
    warm = start
    while it < total:
        if seconds is not None and _replan(it) and it < int(PHASE1 * total):
            now = time.perf_counter()
            if it == _TIMING_ITERS:
                warm = now
                per_iter = (now - start) / it  # includes the cold start: cautious
            else:
                per_iter = (now - warm) / (it - _TIMING_ITERS)
            # Keep a margin for quantisation and entropy coding after the fit.
            left = seconds * 0.97 - 3.0 - (now - start)
            total = max(it + 1, min(iterations, it + int(left / per_iter)))
        phase1 = max(1, int(PHASE1 * total))
        if it < phase1:
            frac = it / phase1
            lr = LR_MIN + 0.5 * (LR - LR_MIN) * (1.0 + math.cos(math.pi * frac))
            alpha = 1.0 / (TEMPERATURE[0] + (TEMPERATURE[1] - TEMPERATURE[0]) * frac)
            sd = NOISE_SD[0] + (NOISE_SD[1] - NOISE_SD[0]) * frac
            coded = [
                soft_round(
                    soft_round(y.clamp(-lim, lim), alpha)
                    + sd * torch.randn(y.shape, generator=gen),
                    alpha,
                )
                for y in latents
            ]
        else:
            lr = LR_STE
            coded = [(y + (torch.round(y) - y).detach()).clamp(-lim, lim) for y in latents]
        for group in opt.param_groups:
            group["lr"] = lr * group["gain"]
        # Both branches start from the same detached latents; their gradients are summed
        # there and carried back through the quantiser proxy.
        leaves = [c.detach().requires_grad_(True) for c in coded]
        if pool is not None:
            rate_job = pool.submit(_rate_grads, params, arm_params, leaves, lam / pixels)
            dist = _distortion_grads(params, net_params, leaves, x)
            rate = rate_job.result()
        else:
            rate = _rate_grads(params, arm_params, leaves, lam / pixels)
            dist = _distortion_grads(params, net_params, leaves, x)
        n = len(leaves)
        opt.zero_grad(set_to_none=True)
        if PARAM_RATE_WEIGHT:
            param_rate = PARAM_RATE_WEIGHT * lam / pixels * param_bits_estimate(params)
            param_rate.backward(inputs=list(params.values()))  # type: ignore[no-untyped-call]
        for t, g in zip([*arm_params, *net_params], [*rate[n:], *dist[n:]], strict=True):
            t.grad = g if t.grad is None else t.grad + g
        torch.autograd.backward(
            coded, [r + d for r, d in zip(rate[:n], dist[:n], strict=True)], inputs=latents
        )
        opt.step()
        it += 1
        if progress is not None:
            progress(it, total)
    detached = {k: v.detach() for k, v in params.items()}
    return Fitted(detached, [y.detach() for y in latents], it, time.perf_counter() - start)
