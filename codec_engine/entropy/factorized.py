"""Non-parametric factorised density for the hyper-latent z (Ballé et al. 2018, appendix 6.1).

Each channel has its own monotone cumulative function built from a small chain of
positive-weight affine maps with tanh gating. Training uses it through `likelihood`; for
coding, `integer_tables` freezes it into per-channel integer frequency tables that ship
with the weights, so that z is coded identically everywhere.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from torch.nn import functional as F

LIKELIHOOD_BOUND = 1e-9


class FactorizedDensity(nn.Module):
    """Per-channel learned density of a latent tensor of shape (B, C, H, W)."""

    def __init__(
        self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0
    ):
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = float(np.log(np.expm1(1.0 / scale / dims[i + 1])))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits_cumulative(self, x: Tensor) -> Tensor:
        # x: (C, 1, K) -> cumulative logits (C, 1, K)
        for i, matrix in enumerate(self.matrices):
            x = torch.matmul(F.softplus(matrix), x) + self.biases[i]
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, z: Tensor) -> Tensor:
        """P(round-interval around z) per element; z is (B, C, H, W) in float32."""
        b, c, h, w = z.shape
        flat = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self._logits_cumulative(flat - 0.5)
        upper = self._logits_cumulative(flat + 0.5)
        # Evaluate on the side of the median where the sigmoid is not saturated.
        sign = -torch.sign(lower + upper).detach()
        prob = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        prob = prob.clamp(min=LIKELIHOOD_BOUND)
        return prob.reshape(c, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def integer_tables(
        self, radius: int = 96, precision: int = 16, tail: float = 1e-7
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """Per-channel (offset, frequencies) over the support holding all but `tail` mass.

        Returns `offsets` (C,) and `freqs` (C, K) int32, zero-padded to a common width K;
        every symbol inside a channel's support has frequency >= 1 and each row sums to
        2**precision. Symbols outside the support are clamped by the encoder.
        """
        grid = torch.arange(-radius, radius + 1, dtype=torch.float32)
        x = grid.view(1, 1, -1).expand(self.channels, 1, -1)
        lower = self._logits_cumulative(x - 0.5)
        upper = self._logits_cumulative(x + 0.5)
        sign = -torch.sign(lower + upper)
        pmf_t = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))[:, 0, :]
        pmf = pmf_t.double().numpy()
        offsets = np.zeros(self.channels, dtype=np.int32)
        rows: list[npt.NDArray[np.int64]] = []
        total = 1 << precision
        for ch in range(self.channels):
            p = pmf[ch] / max(pmf[ch].sum(), 1e-30)
            cdf = np.cumsum(p)
            lo = int(np.searchsorted(cdf, tail / 2))
            hi = int(np.searchsorted(cdf, 1.0 - tail / 2))
            hi = min(max(hi, lo), len(p) - 1)
            seg = p[lo : hi + 1]
            freq = np.maximum(1, np.floor(seg / seg.sum() * (total - len(seg)))).astype(np.int64)
            freq[int(np.argmax(freq))] += total - int(freq.sum())
            offsets[ch] = lo - radius
            rows.append(freq)
        width = max(len(r) for r in rows)
        freqs = np.zeros((self.channels, width), dtype=np.int32)
        for ch, r in enumerate(rows):
            freqs[ch, : len(r)] = r
        return offsets, freqs
