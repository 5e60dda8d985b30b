"""The coding side of the network: the fixed contract `compress` / `decompress` per tile.

`compress(x, quality)` turns one RGB tile (float tensor, 1x3xHxW, H and W multiples of 64)
into a `TileCode` (one byte string plus the checksum of the entropy parameters), and
`decompress(code, quality, shape)` rebuilds the tile. The hyper-synthesis runs in float64
on one thread and its outputs are snapped to fixed grids (scale-table index, mean grid),
so the decoder reproduces the encoder's entropy parameters exactly; a CRC-32 of those
parameters travels with each tile and a mismatch is refused instead of decoded to garbage.
"""

from __future__ import annotations

import contextlib
import copy
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from codec_engine.entropy import coder
from codec_engine.entropy.gaussian import quantise_mean, scale_indices
from codec_engine.errors import DecodeMismatchError, UnsupportedBitstreamError, WeightsError
from codec_engine.models import skip as skip_blocks
from codec_engine.models.inter import InterPrior
from codec_engine.models.msh import ALIGN, LAMBDAS, MeanScaleHyperprior, ModelConfig
from codec_engine.models.skip import BoolArray


@dataclass(frozen=True)
class LatentSymbols:
    """A latent ready for the entropy coder: integer z, the quantised mean (M, h, w), the
    scale indices and symbols (M, h, w, int32) and the CRC of the entropy parameters."""

    z_int: npt.NDArray[np.int32]
    mean_q: Tensor
    idx: npt.NDArray[np.int32]
    crc: int
    sym: npt.NDArray[np.int32]


@dataclass(frozen=True)
class TileCode:
    """One coded tile: the ANS stream and the CRC-32 of its entropy parameters."""

    data: bytes
    params_crc: int


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class NeuralImageCodec:
    """A loaded network with its frozen coding tables."""

    def __init__(self, payload: dict[str, Any], threads: int = 2) -> None:
        cfg = payload["config"]
        config = ModelConfig(n=int(cfg["n"]), m=int(cfg["m"]), qualities=int(cfg["qualities"]))
        net = MeanScaleHyperprior(config)
        state = {
            k: (v.float() if v.is_floating_point() else v) for k, v in payload["state_dict"].items()
        }
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise WeightsError(f"weights do not fit the model: {exc}") from None
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.net = net
        self.config = config
        # A float64 copy of the hyper-synthesis: its outputs select probability tables.
        self.h_s64 = MeanScaleHyperprior(config).h_s.double()
        self.h_s64.load_state_dict(net.h_s.state_dict())
        self.h_s64.eval()
        # Bits of each symbol under each scale table: the skip decision's rate estimate.
        self.y_bits = -np.log2(np.maximum(payload["y_pmfs"].double().numpy(), 1e-300))
        self.tables = coder.CodingTables.build(
            payload["y_pmfs"].double().numpy(),
            payload["z_offsets"].numpy(),
            payload["z_freqs"].numpy(),
        )
        self.meta: dict[str, Any] = dict(payload.get("meta", {}))
        # The rate weight each quality level was trained for (encoder-side refinement uses it).
        self.lambdas: tuple[float, ...] = tuple(float(v) for v in payload.get("lambdas", LAMBDAS))
        if len(self.lambdas) != config.qualities:
            raise WeightsError("weights list a rate weight per quality level that does not fit")
        # The P-frame prior (models/inter.py), in float64 like h_s64; absent in older weights.
        self.inter64: InterPrior | None = None
        inter = payload.get("inter")
        if inter is not None:
            prior = InterPrior(config.m, int(inter["hidden"]))
            try:
                prior.load_state_dict({k: v.double() for k, v in inter["state_dict"].items()})
            except RuntimeError as exc:
                raise WeightsError(f"P-frame prior does not fit the model: {exc}") from None
            self.inter64 = prior.double().eval()
        self._inter32: InterPrior | None = None
        # oneDNN picks kernels (and so float rounding) by shape *and* thread count: every
        # transform runs under this fixed count, whatever the host process set globally.
        self.threads = threads

    @property
    def qualities(self) -> int:
        return self.config.qualities

    # ---- shared by both sides -----------------------------------------------------------
    @property
    def has_inter(self) -> bool:
        return self.inter64 is not None

    def inter_prior(self) -> InterPrior:
        """A float32 copy of the P-frame prior for encoder-side refinement (gradients flow
        through it; the coded entropy parameters still come from the float64 one)."""
        if self.inter64 is None:
            raise UnsupportedBitstreamError("these weights carry no P-frame prior")
        if self._inter32 is None:
            self._inter32 = copy.deepcopy(self.inter64).float().requires_grad_(False)
        return self._inter32

    def _entropy_params(
        self, z_hat: npt.NDArray[np.int32], reference: Tensor | None = None
    ) -> tuple[Tensor, Tensor, int]:
        """(quantised mean, scale index, CRC) from integer z, identically on both sides; for a
        P-frame, also from the previous decoded latent `reference` (1, M, h, w)."""
        with _threads(1), torch.no_grad():
            params = self.h_s64(torch.from_numpy(z_hat.astype(np.float64))[None])
            mean, scale = MeanScaleHyperprior.split_params(params)
            if reference is not None:
                if self.inter64 is None:
                    raise UnsupportedBitstreamError("these weights carry no P-frame prior")
                mean, scale = self.inter64(reference.double(), mean, scale)
        mean_q = quantise_mean(mean)[0]
        idx = scale_indices(scale)[0]
        mean_grid = torch.round(mean_q.double() * 64).to(torch.int32).numpy()
        crc = zlib.crc32(idx.to(torch.uint8).numpy().tobytes())
        crc = zlib.crc32(mean_grid.astype("<i4").tobytes(), crc)
        return mean_q, idx, crc

    def _gains(self, quality: int) -> tuple[Tensor, Tensor]:
        q = torch.tensor([quality - 1])
        return self.net.gains(q)

    # ---- contract -------------------------------------------------------------------------
    @torch.no_grad()
    def analyse(self, x_rgb: Tensor, quality: int) -> Tensor:
        """The gained latent y (1, M, H/16, W/16) of a padded tile."""
        enc_gain, _ = self._gains(quality)
        x = MeanScaleHyperprior.to_input(x_rgb).contiguous(memory_format=torch.channels_last)
        with _threads(self.threads):
            y: Tensor = self.net.g_a(x).contiguous() * enc_gain
        return y

    @torch.no_grad()
    def compress_latent(
        self,
        y: Tensor,
        reference: Tensor | None = None,
        z: Tensor | None = None,
        skip: BoolArray | None = None,
    ) -> tuple[TileCode, Tensor]:
        """Code a gained latent (as a P-frame tile when `reference`, the previous decoded
        latent of the tile, is given); returns the code and the dequantised latent y_hat.
        `z`, the unrounded hyper-latent, defaults to the hyper-analysis of y (refinement
        passes its own). With `skip` (a P-frame's block map, `models/skip.py`), the code
        starts with the map and the set blocks keep the reference's values exactly."""
        return self.encode_symbols(self.symbols(y, reference, z), reference, skip)

    @torch.no_grad()
    def symbols(
        self, y: Tensor, reference: Tensor | None = None, z: Tensor | None = None
    ) -> LatentSymbols:
        """What coding a latent takes (see `compress_latent`), before the entropy coder: a P
        tile's plain code, its skip decision and its skip code all start from one."""
        if z is None:
            with _threads(self.threads):
                # A P-frame's side information describes what changed, not the whole picture.
                z = self.net.h_a(y if reference is None else y - reference)
        z_int = self.tables.clamp_z(torch.round(z[0]).to(torch.int32).numpy())
        mean_q, idx, crc = self._entropy_params(z_int, reference)
        sym = torch.round(y[0].double() - mean_q.double()).clamp(-coder.Y_RADIUS, coder.Y_RADIUS)
        return LatentSymbols(
            z_int, mean_q, idx.to(torch.int32).numpy(), crc, sym.to(torch.int32).numpy()
        )

    def encode_symbols(
        self, s: LatentSymbols, reference: Tensor | None = None, skip: BoolArray | None = None
    ) -> tuple[TileCode, Tensor]:
        """The entropy-coded tile and its y_hat; with `skip`, the elements of set blocks are
        left out of the stream and take the reference's values."""
        y_hat = (torch.from_numpy(s.sym).float() + s.mean_q)[None]
        if skip is None:
            data = coder.encode(self.tables, s.z_int, s.sym, s.idx)
        else:
            if reference is None:
                raise ValueError("skip blocks need a reference")
            keep = ~skip_blocks.element_mask(skip, s.sym.shape[1], s.sym.shape[2])
            coded = np.broadcast_to(keep, s.sym.shape)
            data = skip_blocks.pack_map(skip) + coder.encode(
                self.tables, s.z_int, s.sym[coded], s.idx[coded]
            )
            y_hat = torch.where(torch.from_numpy(keep)[None, None], y_hat, reference)
        return TileCode(data=data, params_crc=s.crc), y_hat

    def element_bits(self, s: LatentSymbols) -> npt.NDArray[np.float64]:
        """The bits the plain code of `s` spends on each latent position (all channels; z
        not counted): the skip decision weighs them against distortion."""
        bits: npt.NDArray[np.float64] = self.y_bits[s.idx, s.sym + coder.Y_RADIUS].sum(0)
        return bits

    def compress(self, x_rgb: Tensor, quality: int) -> TileCode:
        """Contract: one padded RGB tile in [0, 1] -> its code."""
        _check_aligned(x_rgb)
        code, _ = self.compress_latent(self.analyse(x_rgb, quality))
        return code

    @torch.no_grad()
    def synthesise(self, y_hat: Tensor, quality: int) -> Tensor:
        _, dec_gain = self._gains(quality)
        y_in = (y_hat * dec_gain).contiguous(memory_format=torch.channels_last)
        with _threads(self.threads):
            out: Tensor = self.net.g_s(y_in)
        return MeanScaleHyperprior.from_output(out).contiguous()

    @torch.no_grad()
    def decompress(self, code: TileCode, quality: int, shape: tuple[int, int]) -> Tensor:
        """Contract: code + padded tile shape (H, W) -> RGB tile in [0, 1] (1x3xHxW)."""
        return self.synthesise(self.decode_latent(code, shape), quality)

    @torch.no_grad()
    def decode_latent(
        self,
        code: TileCode,
        shape: tuple[int, int],
        reference: Tensor | None = None,
        with_skip_map: bool = False,
    ) -> Tensor:
        """The dequantised latent y_hat of a tile of padded shape (H, W); a P-frame tile needs
        the previous decoded latent of the tile as `reference`, and `with_skip_map` when its
        frame type says the tile starts with a skip map."""
        h, w = shape
        if h % ALIGN or w % ALIGN:
            raise ValueError("tile shape must be a multiple of 64")
        data, keep = code.data, None
        if with_skip_map:
            if reference is None:
                raise ValueError("skip blocks need a reference")
            skip, data = skip_blocks.unpack_map(data, h // 16, w // 16)
            keep = ~skip_blocks.element_mask(skip, h // 16, w // 16)
        dec = coder.LatentDecoder(self.tables, data)
        z_int = dec.decode_z(self.config.n, h // ALIGN, w // ALIGN)
        mean_q, idx, crc = self._entropy_params(z_int, reference)
        if crc != code.params_crc:
            raise DecodeMismatchError(
                "the decoder's entropy parameters differ from the encoder's (a corrupted "
                "tile, a lost or damaged reference frame, or an incompatible platform)"
            )
        idx_np = idx.to(torch.int32).numpy()
        if keep is None:
            sym = dec.decode_y(idx_np)
            return (torch.from_numpy(sym).float() + mean_q)[None]
        assert reference is not None
        coded = np.broadcast_to(keep, idx_np.shape)
        sym = np.zeros(idx_np.shape, dtype=np.int32)
        sym[coded] = dec.decode_y(np.ascontiguousarray(idx_np[coded]))
        y_hat = (torch.from_numpy(sym).float() + mean_q)[None]
        return torch.where(torch.from_numpy(keep)[None, None], y_hat, reference)


def _check_aligned(x: Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] % ALIGN or x.shape[3] % ALIGN:
        raise ValueError(
            f"expected a 1x3xHxW tile with H, W multiples of {ALIGN}, got {tuple(x.shape)}"
        )
