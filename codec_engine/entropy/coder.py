"""ANS coding of the quantised latents with `constriction`, from fixed probability tables.

Both sides build the very same `Categorical` models from tables stored with the weights
(float64 probabilities; constriction quantises them with integer arithmetic only), so the
bitstream does not depend on any platform's transcendental functions:

- y: one table per entry of the scale table (a zero-mean Gaussian, support [-R, R]);
  each symbol is the rounded residual `round(y - mu)` and picks its table by the index of
  its predicted scale. Symbols are coded grouped by table index.
- z: one table per channel (the learned factorised density frozen at export time).

Stack order: y groups are pushed first (index 63 down to 0), then the z channels
(last channel first), so the decoder pops z channel 0 first and y last, as it needs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import constriction
import numpy as np
import numpy.typing as npt

from codec_engine.errors import CorruptBitstreamError

Y_RADIUS = 255

IntArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float64]


def gaussian_tables(scales: tuple[float, ...], radius: int = Y_RADIUS) -> FloatArray:
    """(len(scales), 2R+1) float64 PMFs of N(0, s^2) integrated over unit bins.

    Computed once at export time and stored with the weights, so decoders never
    recompute them (libm implementations of erfc differ in the last bit).
    """
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    rows = []
    for s in scales:
        upper = np.array([0.5 * math.erfc(-(v + 0.5) / (s * math.sqrt(2))) for v in k])
        lower = np.array([0.5 * math.erfc(-(v - 0.5) / (s * math.sqrt(2))) for v in k])
        pmf = np.maximum(upper - lower, 0.0)
        rows.append(pmf / pmf.sum())
    return np.stack(rows)


@dataclass
class CodingTables:
    """Everything the coder needs besides the latents; built once per loaded model."""

    y_models: list[constriction.stream.model.Categorical]
    z_models: list[constriction.stream.model.Categorical]
    z_offsets: IntArray  # (C,)
    z_sizes: IntArray  # (C,) support size of each channel
    radius: int

    @classmethod
    def build(cls, y_pmfs: FloatArray, z_offsets: IntArray, z_freqs: IntArray) -> CodingTables:
        cat = constriction.stream.model.Categorical
        y_models = [
            cat(np.ascontiguousarray(row, dtype=np.float64), perfect=False) for row in y_pmfs
        ]
        z_models = []
        sizes = np.zeros(len(z_offsets), dtype=np.int32)
        for ch, row in enumerate(z_freqs):
            size = int(np.count_nonzero(row))
            sizes[ch] = size
            probs = row[:size].astype(np.float64) / float(row[:size].sum())
            z_models.append(cat(probs, perfect=False))
        radius = (y_pmfs.shape[1] - 1) // 2
        return cls(y_models, z_models, z_offsets.astype(np.int32), sizes, radius)

    def clamp_z(self, z: IntArray) -> IntArray:
        """Clamp integer z (C, H, W) into each channel's support."""
        lo = self.z_offsets[:, None, None]
        hi = lo + self.z_sizes[:, None, None] - 1
        return np.clip(z, lo, hi).astype(np.int32)


def encode(tables: CodingTables, z: IntArray, y_sym: IntArray, y_idx: IntArray) -> bytes:
    """z: (C, H, W) integers inside the support; y_sym, y_idx: (M, H', W') integers."""
    coder = constriction.stream.stack.AnsCoder()
    flat_sym = np.clip(y_sym.reshape(-1), -tables.radius, tables.radius).astype(np.int32)
    flat_idx = y_idx.reshape(-1)
    order = np.argsort(flat_idx, kind="stable")
    sorted_idx = flat_idx[order]
    bounds = np.searchsorted(sorted_idx, np.arange(len(tables.y_models) + 1))
    for k in range(len(tables.y_models) - 1, -1, -1):
        a, b = int(bounds[k]), int(bounds[k + 1])
        if b > a:
            symbols = flat_sym[order[a:b]] + tables.radius
            coder.encode_reverse(np.ascontiguousarray(symbols, dtype=np.int32), tables.y_models[k])
    for ch in range(z.shape[0] - 1, -1, -1):
        symbols = (z[ch].reshape(-1) - tables.z_offsets[ch]).astype(np.int32)
        coder.encode_reverse(np.ascontiguousarray(symbols), tables.z_models[ch])
    words = coder.get_compressed()
    return bytes(np.asarray(words, dtype="<u4").tobytes())


class LatentDecoder:
    """Decodes one tile's stream in two steps: z first, then y given the table indices."""

    def __init__(self, tables: CodingTables, data: bytes) -> None:
        if len(data) % 4:
            raise CorruptBitstreamError("tile stream length is not a multiple of 4 bytes")
        self.tables = tables
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self.coder = constriction.stream.stack.AnsCoder(words)

    def decode_z(self, channels: int, height: int, width: int) -> IntArray:
        out = np.empty((channels, height * width), dtype=np.int32)
        for ch in range(channels):
            try:
                sym = self.coder.decode(self.tables.z_models[ch], height * width)
            except Exception as exc:  # constriction raises plain errors on garbage input
                raise CorruptBitstreamError(f"cannot decode z: {exc}") from None
            out[ch] = np.asarray(sym, dtype=np.int32) + self.tables.z_offsets[ch]
        return out.reshape(channels, height, width)

    def decode_y(self, y_idx: IntArray) -> IntArray:
        flat_idx = y_idx.reshape(-1)
        order = np.argsort(flat_idx, kind="stable")
        sorted_idx = flat_idx[order]
        bounds = np.searchsorted(sorted_idx, np.arange(len(self.tables.y_models) + 1))
        out = np.empty(flat_idx.shape[0], dtype=np.int32)
        for k in range(len(self.tables.y_models)):
            a, b = int(bounds[k]), int(bounds[k + 1])
            if b > a:
                try:
                    sym = self.coder.decode(self.tables.y_models[k], b - a)
                except Exception as exc:
                    raise CorruptBitstreamError(f"cannot decode y: {exc}") from None
                out[order[a:b]] = np.asarray(sym, dtype=np.int32) - self.tables.radius
        if self.coder.num_valid_bits() != 0:
            # A well-formed stream ends exactly when its last symbol is decoded.
            raise CorruptBitstreamError("tile stream has data left after its last symbol")
        return out.reshape(y_idx.shape)
