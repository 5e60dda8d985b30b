"""Architecture version of the max preset: every constant both encoder and decoder must share.

The bitstream header of a max stream records `MODEL_ID` and `arch_digest()`: the SHA-256 of
this configuration (canonical JSON) and of the probability tables built from it. A decoder
whose tables differ (another version, or a platform whose `exp` rounds differently) refuses
the stream with `WEIGHTS_MISMATCH` instead of decoding garbage.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

MODEL_NAME = "overfit-v1"  # also the licence's model version for the max preset
MODEL_ID = 0x100  # header model id of max streams (zoo models use small ids)

#: lambda of `MSE(0..1) + lambda * bpp` per quality 1..8 (about 0.1 to 1.5 bpp).
QUALITY_LAMBDAS: tuple[float, ...] = (0.03, 0.016, 0.008, 0.004, 0.002, 0.001, 5e-4, 2.5e-4)


@dataclass(frozen=True)
class Arch:
    levels: int = 7  # one latent channel per level, full resolution down to 1/64
    # Causal context of the ARM as (dy, dx); the largest dx of the row above (3) makes the
    # wavefront slope 4: position (i, j) is decoded at step 4 * i + j.
    context: tuple[tuple[int, int], ...] = (
        (-3, 0),
        (-2, -2),
        (-2, -1),
        (-2, 0),
        (-2, 1),
        (-2, 2),
        (-1, -3),
        (-1, -2),
        (-1, -1),
        (-1, 0),
        (-1, 1),
        (-1, 2),
        (-1, 3),
        (0, -3),
        (0, -2),
        (0, -1),
    )
    wave_slope: int = 4
    arm_hidden: int = 16
    synth_hidden: int = 40
    upsample_kernel: int = 8  # separable taps of the 2x transposed convolution
    prefilter_kernel: int = 7  # separable taps of the filter before each 2x step
    latent_max: int = 31  # latents are integers in [-31, 31]
    frac_bits: int = 8  # fixed-point fraction bits of the ARM activations
    # The ARM's mean is rounded to the nearest 1/16. Before 2026-11-29 it was floored to a
    # 1/8 grid (a bias of -1/16 on average); the change saved 5.4 % of the latent bits on
    # chelsea at quality 4.
    mu_bits: int = 4
    log_scale_min: float = -3.0  # Laplace scale table: exp(-3 + k / 8), k = 0..47
    log_scale_step_bits: int = 3
    scale_count: int = 48

    @property
    def radius(self) -> int:
        """Residual symbols `y - floor(mu)` lie in [-radius, radius] (mu on its grid)."""
        return 2 * self.latent_max

    @property
    def pad(self) -> tuple[int, int, int]:
        """Zero border (top, left, right) that every context position needs."""
        top = -min(dy for dy, _ in self.context)
        left = -min(dx for _, dx in self.context)
        right = max(dx for _, dx in self.context)
        return top, left, right

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


ARCH = Arch()

FloatArray = npt.NDArray[np.float64]


def level_shapes(height: int, width: int, levels: int = ARCH.levels) -> list[tuple[int, int]]:
    """Latent grid of each level: ceil(size / 2^l) (the synthesis crops after upsampling)."""
    return [(-(-height // (1 << lv)), -(-width // (1 << lv))) for lv in range(levels)]


@functools.cache
def laplace_tables(arch: Arch = ARCH) -> FloatArray:
    """(2^mu_bits * scale_count, 2R+1) PMFs of a Laplace(frac / 2^mu_bits, scale) over unit
    bins of the residual; the two end bins take the tails. Row = frac * scale_count + k."""
    r = arch.radius
    s = np.arange(-r, r + 1, dtype=np.float64)
    fracs = 1 << arch.mu_bits
    rows = np.empty((fracs * arch.scale_count, 2 * r + 1), dtype=np.float64)
    for f in range(fracs):
        for k in range(arch.scale_count):
            b = math.exp(arch.log_scale_min + k / (1 << arch.log_scale_step_bits))
            hi = _laplace_cdf(s + 0.5 - f / fracs, b)
            lo = _laplace_cdf(s - 0.5 - f / fracs, b)
            hi[-1], lo[0] = 1.0, 0.0
            pmf = np.maximum(hi - lo, 0.0)
            rows[f * arch.scale_count + k] = pmf / pmf.sum()
    return rows


def _laplace_cdf(x: FloatArray, b: float) -> FloatArray:
    e = 0.5 * np.exp(-np.abs(x) / b)
    return np.where(x < 0, e, 1.0 - e)


@functools.cache
def arch_digest(arch: Arch = ARCH) -> bytes:
    """SHA-256 of the architecture config and its tables: the header's weights digest."""
    h = hashlib.sha256(b"codec-engine overfit architecture\x00")
    h.update(arch.to_json().encode())
    h.update(np.ascontiguousarray(laplace_tables(arch), dtype="<f8").tobytes())
    return h.digest()
