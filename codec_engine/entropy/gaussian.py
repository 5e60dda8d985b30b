"""Gaussian conditional for y given (mu, sigma), and the fixed scale table used for coding.

For coding, sigma is mapped to an index into `SCALE_TABLE` and mu is rounded to a grid of
1/`MEAN_GRID`, so that the decoder rebuilds exactly the parameters the encoder used.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SCALE_MIN = 0.11
SCALE_MAX = 64.0
SCALE_LEVELS = 64
MEAN_GRID = 64
SCALE_TABLE: tuple[float, ...] = tuple(
    float(v)
    for v in torch.exp(
        torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS, dtype=torch.float64)
    ).tolist()
)
LIKELIHOOD_BOUND = 1e-9


def gaussian_likelihood(values: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
    """P(interval of width 1 around `values`) under N(mean, scale^2), bounded below."""
    scale = scale.clamp(min=SCALE_MIN)
    centred = torch.abs(values - mean)
    # Use the lower tail so the two CDF values never both round to 1.
    upper = 0.5 * torch.erfc((centred - 0.5) / (scale * math.sqrt(2.0)))
    lower = 0.5 * torch.erfc((centred + 0.5) / (scale * math.sqrt(2.0)))
    return (upper - lower).clamp(min=LIKELIHOOD_BOUND)


def scale_indices(scale: Tensor) -> Tensor:
    """Index of the table entry nearest to `scale` in the log domain (int64)."""
    log_min = math.log(SCALE_MIN)
    step = (math.log(SCALE_MAX) - log_min) / (SCALE_LEVELS - 1)
    pos = (torch.log(scale.double().clamp(min=SCALE_MIN, max=SCALE_MAX)) - log_min) / step
    return torch.round(pos).long().clamp(0, SCALE_LEVELS - 1)


def quantise_mean(mean: Tensor) -> Tensor:
    """Mean rounded to the coding grid (float32 exact multiples of 1/MEAN_GRID)."""
    return torch.round(mean.double() * MEAN_GRID).float() / MEAN_GRID
