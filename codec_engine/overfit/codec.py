"""Encode one image with the max preset into a tile payload, and decode it back.

    payload = layout u8 (3; 2 is still decoded) | reserved u8 | parameter section length u16 |
              parameter section (see `params`) | latent ANS stream (32-bit words)

The tile record's CRC-32 is over the parameter section, then each latent's entropy
parameters and value in decode order (see `entropy`); the decoder rebuilds them and refuses
a mismatch (`DECODE_MISMATCH`).
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from codec_engine.errors import CorruptBitstreamError, DecodeMismatchError
from codec_engine.overfit import entropy, params
from codec_engine.overfit.arch import ARCH, level_shapes
from codec_engine.overfit.fit import FitProgress, fit, image_tensor
from codec_engine.overfit.network import synthesise

Image = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
LAYOUT = params.LAYOUT  # the payload's layout is its parameter section's
_HEAD = struct.Struct("<BBH")
ARM_SHIFTS = range(5, 13)
NET_SHIFTS = range(4, 13)


@dataclass(frozen=True)
class MaxEncoded:
    """A coded image: the tile payload, its entropy-parameter CRC and the reconstruction."""

    payload: bytes
    params_crc: int
    reconstruction: Image
    iterations: int
    fit_seconds: float
    param_bytes: int


def reconstruct(
    ints: params.IntParams, shifts: params.Shifts, latents: list[I64], threads: int
) -> Image:
    """The decoder's pixels (the encoder calls this too, so both agree to the bit)."""
    torch.set_num_threads(threads)
    p = {k: torch.from_numpy(v) for k, v in params.dequantise(ints, shifts).items()}
    with torch.no_grad():
        rgb = synthesise(p, [torch.from_numpy(y.astype(np.float32)) for y in latents])
    out = torch.round(rgb.clamp(0.0, 1.0) * 255.0).to(torch.uint8)
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())


def _choose_shifts(
    fitted_params: dict[str, npt.NDArray[np.float64]],
    latents: list[I64],
    image: Image,
    lam: float,
) -> params.Shifts:
    """The parameter steps 2^-shift of least MSE + lambda * (parameter + latent) bpp.

    The ARM's shared shift is searched on the real integer-ARM code length. The upsampling
    and synthesis shifts are searched per group, then refined per tensor within 2 steps of
    the group's (one pass, each tensor given the others' steps)."""
    h, w = image.shape[:2]
    pixels = float(h * w)
    x = image_tensor(image)
    lat = [torch.from_numpy(y.astype(np.float32)) for y in latents]
    fitted = {k: torch.from_numpy(v) for k, v in fitted_params.items()}
    shifts = params.uniform_shifts(8, 12, 12)

    def distortion(s: params.Shifts, names: list[str]) -> float:
        trial = dict(fitted)
        for name in names:  # only the tensors under trial are quantised
            q = params.quantise_tensor(fitted_params[name], s[name])
            trial[name] = torch.from_numpy(q.astype(np.float64) / float(1 << s[name]))
        with torch.no_grad():
            rec = synthesise({k: v.float() for k, v in trial.items()}, lat)
        return float(torch.mean((rec.clamp(0, 1) - x) ** 2))

    arm_names = params.names("arm")
    best: tuple[float, int] | None = None
    for s in ARM_SHIFTS:
        trial = {**shifts, **dict.fromkeys(arm_names, s)}
        ints = params.quantise(fitted_params, trial)
        bits = entropy.latent_bits(params.int_arm(ints, trial), latents)
        bits += params.group_bits(ints, "arm")
        if best is None or bits < best[0]:
            best = (bits, s)
    assert best is not None
    shifts.update(dict.fromkeys(arm_names, best[1]))

    net_names = params.names("up") + params.names("syn")
    for group in ("up", "syn"):
        group_names = params.names(group)
        best = None
        for s in NET_SHIFTS:
            trial = {**shifts, **dict.fromkeys(group_names, s)}
            ints = params.quantise(fitted_params, trial)
            cost = distortion(trial, net_names) + lam * params.group_bits(ints, group) / pixels
            if best is None or cost < best[0]:
                best = (cost, s)
        assert best is not None
        shifts.update(dict.fromkeys(group_names, best[1]))
    for name in net_names:
        costs = []
        for s in range(
            max(NET_SHIFTS[0], shifts[name] - 2), min(NET_SHIFTS[-1], shifts[name] + 2) + 1
        ):
            trial = {**shifts, name: s}
            bits = params.tensor_bits(params.quantise_tensor(fitted_params[name], s))
            costs.append((distortion(trial, net_names) + lam * bits / pixels, s))
        shifts[name] = min(costs)[1]
    return shifts


def encode_image(
    image: Image,
    lam: float,
    *,
    iterations: int,
    seconds: float | None = None,
    seed: int = 0,
    threads: int = 2,
    progress: FitProgress | None = None,
) -> MaxEncoded:
    """Fit, quantise and entropy-code one HxWx3 uint8 image (deterministic for a fixed
    iteration budget, seed and thread count)."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    fitted = fit(
        image,
        lam,
        iterations=iterations,
        seconds=seconds,
        seed=seed,
        threads=threads,
        progress=progress,
    )
    lim = ARCH.latent_max
    latents = [
        torch.round(y).clamp(-lim, lim).to(torch.int64).numpy().copy() for y in fitted.latents
    ]
    float_params = {k: v.double().numpy() for k, v in fitted.params.items()}
    shifts = _choose_shifts(float_params, latents, image, lam)
    ints = params.quantise(float_params, shifts)
    param_section = params.encode_params(ints, shifts)
    if len(param_section) > 0xFFFF:
        raise CorruptBitstreamError("parameter section too large")  # cannot happen: ~2 kB
    # The tile CRC covers the parameter section and every latent's entropy parameters and
    # value, so damage that still parses (a flipped weight) is refused too.
    stream, crc = entropy.encode_latents(
        params.int_arm(ints, shifts), latents, zlib.crc32(param_section)
    )
    payload = _HEAD.pack(LAYOUT, 0, len(param_section)) + param_section + stream
    recon = reconstruct(ints, shifts, latents, threads)
    return MaxEncoded(
        payload, crc, recon, fitted.iterations, time.perf_counter() - start, len(param_section)
    )


def decode_payload(payload: bytes, params_crc: int, height: int, width: int, threads: int) -> Image:
    """Inverse of `encode_image`; raises `BitstreamError` subclasses on bad data."""
    if len(payload) < _HEAD.size:
        raise CorruptBitstreamError("max payload shorter than its header")
    layout, _reserved, plen = _HEAD.unpack_from(payload)
    if layout not in params.DECODABLE_LAYOUTS:
        raise CorruptBitstreamError(f"unknown max payload layout {layout}")
    if _HEAD.size + plen > len(payload):
        raise CorruptBitstreamError("parameter section exceeds the payload")
    section = payload[_HEAD.size : _HEAD.size + plen]
    ints, shifts = params.decode_params(section, layout)
    latents, crc = entropy.decode_latents(
        params.int_arm(ints, shifts),
        payload[_HEAD.size + plen :],
        height,
        width,
        zlib.crc32(section),
    )
    if crc != params_crc:
        raise DecodeMismatchError("rebuilt entropy parameters differ from the encoder's")
    if [y.shape for y in latents] != level_shapes(height, width):
        raise CorruptBitstreamError("latent shapes do not match the header")
    return reconstruct(ints, shifts, latents, threads)
