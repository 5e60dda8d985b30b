"""Latent coding of the max preset: integer ARM, wavefront order and ANS (constriction).

The decoder must rebuild the encoder's probability tables to the bit. The ARM therefore runs
in integer arithmetic here (int64 numpy: integer weights `round(w * 2^s)`, activations with
`frac_bits` fraction bits, floor shifts); integer sums do not depend on the order or the
batching of the additions, so the encoder computes all positions at once while the decoder
goes step by step, and both get the same means and scales. These are rounded to a 1/16
grid (mean) and a 48-entry log-scale table and pick one of the fixed Laplace tables of
`arch.laplace_tables`; constriction quantises those float64 tables with integers only.

Decode order: all levels together in wavefront steps (step = 4 * row + column), so a
768x512 image needs about 2,800 steps, each decoding up to a few hundred latents at once.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import constriction
import numpy as np
import numpy.typing as npt

from codec_engine.errors import CorruptBitstreamError
from codec_engine.overfit.arch import ARCH, Arch, laplace_tables, level_shapes

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_CHUNK = 1 << 15


@dataclass(frozen=True)
class IntArm:
    """The ARM in fixed point: integer weights and biases at step 2^-shift."""

    shift: int
    w1: I64
    b1: I64
    w2: I64
    b2: I64
    w3: I64
    b3: I64

    def params(self, ctx: I64, arch: Arch = ARCH) -> tuple[I64, I64]:
        """(mean on the 1/16 grid, scale-table index) of each row of integer contexts (n, C)."""
        p, s = arch.frac_bits, self.shift
        x = ctx << p
        h1 = np.maximum((x @ self.w1.T + (self.b1 << p)) >> s, 0)
        h2 = np.maximum((h1 @ self.w2.T + (self.b2 << p)) >> s, 0) + h1
        out = (h2 @ self.w3.T + (self.b3 << p)) >> s
        lim = arch.latent_max << arch.mu_bits
        # Round to nearest: a floored mean would sit half a grid step low on average.
        mu_shift = p - arch.mu_bits
        mu = np.clip((out[:, 0] + (1 << (mu_shift - 1))) >> mu_shift, -lim, lim)
        step = p - arch.log_scale_step_bits
        lmin = round(arch.log_scale_min * (1 << p))
        idx = np.clip((out[:, 1] - lmin + (1 << (step - 1))) >> step, 0, arch.scale_count - 1)
        return mu, idx


@dataclass(frozen=True)
class Wavefront:
    """Decode order of every latent of every level, and where its context lives.

    All levels share one flat int64 buffer, each level zero-padded (top, left, right) so a
    context read never leaves its own grid.
    """

    shapes: list[tuple[int, int]]
    buffer_size: int
    level_offsets: list[int]
    strides: list[int]
    flat: I64  # (N,) buffer position of each latent, in decode order
    level: npt.NDArray[np.int8]  # (N,) level of each latent, in decode order
    rel_table: I64  # (levels, C) context offsets of each level relative to `flat`
    bounds: I64  # (T + 1,) step boundaries into the decode order

    @classmethod
    def build(cls, height: int, width: int, arch: Arch = ARCH) -> Wavefront:
        top, left, right = arch.pad
        shapes = level_shapes(height, width, arch.levels)
        offsets: list[int] = []
        strides: list[int] = []
        flats: list[I64] = []
        steps: list[I64] = []
        levels: list[npt.NDArray[np.int8]] = []
        size = 0
        for h, w in shapes:
            stride = w + left + right
            offsets.append(size)
            strides.append(stride)
            i, j = np.divmod(np.arange(h * w, dtype=np.int64), w)
            flats.append(size + (i + top) * stride + (j + left))
            steps.append(arch.wave_slope * i + j)
            levels.append(np.full(h * w, len(levels), dtype=np.int8))
            size += (h + top) * stride
        step = np.concatenate(steps)
        order = np.argsort(step, kind="stable")
        step_sorted = step[order]
        bounds = np.searchsorted(step_sorted, np.arange(int(step_sorted[-1]) + 2))
        return cls(
            shapes=shapes,
            buffer_size=size,
            level_offsets=offsets,
            strides=strides,
            flat=np.concatenate(flats)[order],
            level=np.concatenate(levels)[order],
            rel_table=np.array(
                [[dy * st + dx for dy, dx in arch.context] for st in strides], dtype=np.int64
            ),
            bounds=bounds.astype(np.int64),
        )

    def contexts(self, buf: I64, a: int, b: int) -> I64:
        """(b - a, C) integer contexts of the latents a..b of the decode order."""
        ctx: I64 = buf[self.flat[a:b, None] + self.rel_table[self.level[a:b]]]
        return ctx

    def scatter(self, latents: list[I64], arch: Arch = ARCH) -> I64:
        """The padded flat buffer holding the given integer latent grids."""
        top, left, _ = arch.pad
        buf = np.zeros(self.buffer_size, dtype=np.int64)
        for (h, w), off, stride, y in zip(
            self.shapes, self.level_offsets, self.strides, latents, strict=True
        ):
            view = buf[off : off + (h + top) * stride].reshape(h + top, stride)
            view[top:, left : left + w] = y
        return buf

    def gather(self, buf: I64, arch: Arch = ARCH) -> list[I64]:
        top, left, _ = arch.pad
        out = []
        for (h, w), off, stride in zip(self.shapes, self.level_offsets, self.strides, strict=True):
            view = buf[off : off + (h + top) * stride].reshape(h + top, stride)
            out.append(view[top:, left : left + w].copy())
        return out


def _symbols(arm: IntArm, y: I64, ctx: I64, arch: Arch) -> tuple[I64, I64, bytes]:
    """(table row, symbol, packed entropy parameters) of latents `y` with contexts `ctx`."""
    mu, idx = arm.params(ctx, arch)
    row = (mu & ((1 << arch.mu_bits) - 1)) * arch.scale_count + idx
    sym = y - (mu >> arch.mu_bits) + arch.radius
    return row, sym, _packed(mu, idx, y)


def _packed(mu: I64, idx: I64, y: I64) -> bytes:
    """What the tile CRC covers per latent: mean, scale index and value (int32, in order)."""
    return (((mu << 16) | (idx << 8) | (y & 0xFF)).astype("<i4")).tobytes()


def latent_bits(arm: IntArm, latents: list[I64], arch: Arch = ARCH) -> float:
    """Ideal code length (bits) of the latents under `arm` (the encoder's parameter search)."""
    wave = Wavefront.build(latents[0].shape[0], latents[0].shape[1], arch)
    buf = wave.scatter(latents, arch)
    logp = np.log2(np.maximum(laplace_tables(arch), 2.0**-24))
    total = 0.0
    for a in range(0, len(wave.flat), _CHUNK):
        flat = wave.flat[a : a + _CHUNK]
        row, sym, _ = _symbols(arm, buf[flat], wave.contexts(buf, a, a + _CHUNK), arch)
        total -= float(logp[row, sym].sum())
    return total


def encode_latents(
    arm: IntArm, latents: list[I64], crc: int = 0, arch: Arch = ARCH
) -> tuple[bytes, int]:
    """ANS stream of the integer latents (all within +-latent_max) and the CRC-32 (continued
    from `crc`) of their entropy parameters and values in decode order."""
    wave = Wavefront.build(latents[0].shape[0], latents[0].shape[1], arch)
    buf = wave.scatter(latents, arch)
    tables = laplace_tables(arch)
    family = constriction.stream.model.Categorical(perfect=False)
    chunks = []
    for a in range(0, len(wave.flat), _CHUNK):
        flat = wave.flat[a : a + _CHUNK]
        row, sym, packed = _symbols(arm, buf[flat], wave.contexts(buf, a, a + _CHUNK), arch)
        crc = zlib.crc32(packed, crc)
        chunks.append((row, sym))
    coder = constriction.stream.stack.AnsCoder()
    # ANS is a stack: push the last symbols first so the decoder pops them in decode order.
    for row, sym in reversed(chunks):
        coder.encode_reverse(sym.astype(np.int32), family, tables[row])
    words = np.asarray(coder.get_compressed(), dtype="<u4")
    return words.tobytes(), crc


def decode_latents(
    arm: IntArm, data: bytes, height: int, width: int, crc: int = 0, arch: Arch = ARCH
) -> tuple[list[I64], int]:
    """Inverse of `encode_latents`; raises `CorruptBitstreamError` on any inconsistency."""
    if len(data) % 4:
        raise CorruptBitstreamError("latent stream length is not a multiple of 4 bytes")
    wave = Wavefront.build(height, width, arch)
    buf = np.zeros(wave.buffer_size, dtype=np.int64)
    tables = laplace_tables(arch)
    family = constriction.stream.model.Categorical(perfect=False)
    try:
        coder = constriction.stream.stack.AnsCoder(
            np.frombuffer(data, dtype="<u4").astype(np.uint32)
        )
    except ValueError as exc:  # e.g. "ANS compressed data never ends in a zero word"
        raise CorruptBitstreamError(f"invalid latent stream: {exc}") from None
    bounds = wave.bounds.tolist()
    for t in range(len(bounds) - 1):
        a, b = bounds[t], bounds[t + 1]
        flat = wave.flat[a:b]
        mu, idx = arm.params(wave.contexts(buf, a, b), arch)
        row = (mu & ((1 << arch.mu_bits) - 1)) * arch.scale_count + idx
        try:
            sym = np.asarray(coder.decode(family, tables[row]), dtype=np.int64)
        except Exception as exc:  # constriction raises plain errors on garbage input
            raise CorruptBitstreamError(f"cannot decode the latents: {exc}") from None
        y = sym - arch.radius + (mu >> arch.mu_bits)
        if np.any(np.abs(y) > arch.latent_max):
            raise CorruptBitstreamError("decoded latent out of range")
        buf[flat] = y
        crc = zlib.crc32(_packed(mu, idx, y), crc)
    if coder.num_valid_bits() != 0:
        # A well-formed stream ends exactly when its last symbol is decoded.
        raise CorruptBitstreamError("latent stream has data left after its last symbol")
    return wave.gather(buf, arch), crc
