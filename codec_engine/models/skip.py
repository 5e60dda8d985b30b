"""Skip blocks of P-frames: blocks of the latent copied exactly from the reference.

Where the picture did not change (a still background, an animation's held cel), the
cheapest P-frame code is no code: the decoder keeps the previous decoded latent. A P-frame
tile of type `PREDICTED_SKIP` starts with a bit map over blocks of `SKIP_BLOCK` x
`SKIP_BLOCK` latent elements (32x32 px); the elements of a set block are not in the
stream and their decoded value is the reference's, exactly (an integer-grid copy, so the
next frame's reference stays identical on both sides). The encoder sets a block when
copying costs less than coding it under the rate-distortion objective of the quality level
(`choose_skip_blocks`): `lambda * 255^2 * distortion + bits`, as in training.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from codec_engine.colour import rgb_to_ycbcr
from codec_engine.errors import CorruptBitstreamError
from codec_engine.models.losses import W_CB, W_CR, W_Y

#: Latent elements per side of a skip block (16 px each: 32x32 px; 64 px blocks measured
#: 1-3 % worse on the benchmark clips, 16 px blocks pay too much for an uncompressed map).
SKIP_BLOCK = 2

BoolArray = npt.NDArray[np.bool_]


def block_grid(height: int, width: int) -> tuple[int, int]:
    """Skip-map blocks (rows, columns) of a latent of `height` x `width` elements."""
    return -(-height // SKIP_BLOCK), -(-width // SKIP_BLOCK)


def element_mask(blocks: BoolArray, height: int, width: int) -> BoolArray:
    """The per-element mask (height, width) of a block map."""
    full = np.repeat(np.repeat(blocks, SKIP_BLOCK, axis=0), SKIP_BLOCK, axis=1)
    return np.ascontiguousarray(full[:height, :width])


def pack_map(blocks: BoolArray) -> bytes:
    return np.packbits(blocks.reshape(-1).astype(np.uint8)).tobytes()


def unpack_map(data: bytes, height: int, width: int) -> tuple[BoolArray, bytes]:
    """(block map, the rest of the tile stream) from a P-frame tile with a skip map."""
    rows, cols = block_grid(height, width)
    size = -(-(rows * cols) // 8)
    if len(data) < size:
        raise CorruptBitstreamError("the tile ends inside its skip map")
    bits = np.unpackbits(np.frombuffer(data[:size], dtype=np.uint8))[: rows * cols]
    return bits.astype(bool).reshape(rows, cols), data[size:]


def _weighted_sse(a_rgb: Tensor, b_rgb: Tensor) -> Tensor:
    """Per-pixel weighted YCbCr squared error (H, W) of two 1x3xHxW RGB pictures."""
    err = (rgb_to_ycbcr(a_rgb) - rgb_to_ycbcr(b_rgb)) ** 2
    return W_Y * err[0, 0] + W_CB * err[0, 1] + W_CR * err[0, 2]


@torch.no_grad()
def choose_skip_blocks(
    x_rgb: Tensor,
    coded: Tensor,
    reference: Tensor,
    element_bits: npt.NDArray[np.float64],
    lam: float,
    visible: tuple[int, int],
) -> BoolArray:
    """The blocks where keeping the reference picture costs less than the coded one.

    `x_rgb`, `coded` and `reference` are the padded tile, its P-frame decode and the previous
    decoded picture (1x3xHxW in [0, 1]); `element_bits` (H/16, W/16) the coded bits per
    latent position (all channels); `visible` the tile's size before padding (padding
    blocks are always skipped: nobody sees them)."""
    th, tw = visible
    px = 16 * SKIP_BLOCK
    d_coded = torch.zeros(x_rgb.shape[2:], dtype=torch.float64)
    d_skip = torch.zeros_like(d_coded)
    d_coded[:th, :tw] = _weighted_sse(coded[..., :th, :tw], x_rgb[..., :th, :tw]).double()
    d_skip[:th, :tw] = _weighted_sse(reference[..., :th, :tw], x_rgb[..., :th, :tw]).double()
    rows, cols = block_grid(*element_bits.shape)

    def per_block(d: Tensor) -> npt.NDArray[np.float64]:
        out: npt.NDArray[np.float64] = (
            d.reshape(rows, px, cols, px).sum(dim=(1, 3)).numpy() * lam * 255.0**2
        )
        return out

    bits = element_bits.reshape(rows, SKIP_BLOCK, cols, SKIP_BLOCK).sum(axis=(1, 3))
    skip: BoolArray = per_block(d_skip) <= per_block(d_coded) + bits
    return skip
