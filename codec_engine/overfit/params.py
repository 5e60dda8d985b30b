"""Quantisation and coding of the overfitted decoder's parameters (their bits count in the rate).

Each tensor has its own step 2^-shift, chosen by the encoder (the ARM's tensors share one:
the integer ARM runs at a single fixed-point precision), and its integers are written in
the cheaper of two codes:

- signed Exp-Golomb codes of the tensor's cheapest order (dense tensors);
- run-length: for every non-zero value the run of zeros before it (Exp-Golomb of order r),
  its sign bit and |v| - 1 (Exp-Golomb of order k), then the run of zeros after the last
  one. The parameter rate in the fit drives most weights of a low-rate fit to exactly zero
  and leaves the others large (on chelsea at quality 2: 75 % of the ARM's first layer is
  zero, almost no value is +-1), a shape no single Exp-Golomb order fits: at the same
  steps, run-length coding took that fit's parameter section from 558 to 487 bytes, 4.7 %
  of the whole file.

Per tensor rather than per group: on chelsea the orders alone saved 5 % of the parameter
bits, and the steps let a tensor that matters little (a 3x3 residual kernel) go coarser
than its neighbours.

    params = 16 x (shift u4 << 4 | mode u4) (PARAM_SPEC order; mode 0..14: Exp-Golomb of
             that order, 15: run-length) |
             one byte (r u4 << 4 | k u4) per run-length tensor, in the same order |
             the codes of every tensor (PARAM_SPEC order), zero-padded to a byte

Layout 2 (until the run-length mode came on 2026-11-29) had no run-length mode: its mode
nibble is always an Exp-Golomb order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from codec_engine.errors import CorruptBitstreamError
from codec_engine.overfit.entropy import IntArm

I64 = npt.NDArray[np.int64]
IntParams = dict[str, I64]

MAX_ABS = (1 << 16) - 1  # bounds every integer so the int64 ARM can never overflow
MAX_SHIFT = 15
LAYOUT = 3  # the parameter section's layout: see the module docstring
_RUN_LENGTH_SINCE = 3  # first layout with the run-length mode
# Layout 1 (one shift and order per parameter group, until 2026-11-29) is refused.
DECODABLE_LAYOUTS = (2, LAYOUT)
RUN_LENGTH = 15  # mode nibble of a run-length coded tensor
MAX_ORDER = 14  # highest Exp-Golomb order of a dense tensor (15 is RUN_LENGTH)
_NIBBLE = 15  # highest run and magnitude order (one nibble each)
MIN_ARM_SHIFT = 4  # coarser ARM weights would leave the fixed point too few fraction bits
_MAX_PREFIX = 24


def spec() -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    from codec_engine.overfit.network import PARAM_SPEC

    return PARAM_SPEC


Shifts = dict[str, int]  # tensor name -> shift (step 2^-shift)


def names(group: str | None = None) -> list[str]:
    return [name for g, name, _ in spec() if group is None or g == group]


def uniform_shifts(arm: int, up: int, syn: int) -> Shifts:
    by_group = {"arm": arm, "up": up, "syn": syn}
    return {name: by_group[group] for group, name, _ in spec()}


def quantise_tensor(value: npt.NDArray[np.float64], shift: int) -> I64:
    q = np.rint(value.astype(np.float64) * float(1 << shift))
    return np.clip(q, -MAX_ABS, MAX_ABS).astype(np.int64)


def quantise(values: dict[str, npt.NDArray[np.float64]], shifts: Shifts) -> IntParams:
    return {name: quantise_tensor(values[name], shifts[name]) for name in names()}


def dequantise(ints: IntParams, shifts: Shifts) -> dict[str, npt.NDArray[np.float32]]:
    """Exact: every value is an integer times a power of two, representable in float32."""
    return {
        name: (ints[name].astype(np.float64) / float(1 << shifts[name])).astype(np.float32)
        for name in names()
    }


def int_arm(ints: IntParams, shifts: Shifts) -> IntArm:
    return IntArm(
        shifts["arm.w1"],
        ints["arm.w1"],
        ints["arm.b1"],
        ints["arm.w2"],
        ints["arm.b2"],
        ints["arm.w3"],
        ints["arm.b3"],
    )


def _zigzag(v: I64) -> I64:
    return np.where(v > 0, 2 * v - 1, -2 * v)


def _eg_bits(u: I64, k: int) -> int:
    if u.size == 0:
        return 0
    n = np.floor(np.log2(u + (1 << k))).astype(np.int64) + 1
    return int((2 * n - k - 1).sum())


def _cheapest_order(u: I64, max_order: int) -> tuple[int, int]:
    return min((_eg_bits(u, k), k) for k in range(max_order + 1))


@dataclass(frozen=True)
class TensorCode:
    """How one tensor's integers are written, and what that costs (bits, head included
    beyond the tensor's one shared head byte)."""

    bits: int
    mode: int  # Exp-Golomb order 0..MAX_ORDER, or RUN_LENGTH
    run_order: int = 0
    magnitude_order: int = 0


def _runs(values: I64) -> tuple[I64, npt.NDArray[np.bool_], I64]:
    """(zero runs before each non-zero value plus the run after the last one, negative
    flags, |v| - 1) of a flat tensor."""
    nonzero = np.flatnonzero(values)
    runs = np.diff(np.concatenate([[-1], nonzero, [values.size]])) - 1
    return runs, values[nonzero] < 0, np.abs(values[nonzero]) - 1


def tensor_code(values: I64) -> TensorCode:
    """The cheapest code for one tensor's integers."""
    flat = values.ravel()
    bits, order = _cheapest_order(_zigzag(flat), MAX_ORDER)
    best = TensorCode(bits, order)
    runs, negative, magnitudes = _runs(flat)
    run_bits, r = _cheapest_order(runs, _NIBBLE)
    mag_bits, k = _cheapest_order(magnitudes, _NIBBLE)
    rl_bits = 8 + run_bits + negative.size + mag_bits
    if rl_bits < best.bits:
        best = TensorCode(rl_bits, RUN_LENGTH, r, k)
    return best


def tensor_bits(values: I64) -> int:
    return tensor_code(values).bits


def group_bits(ints: IntParams, group: str) -> int:
    return sum(tensor_bits(ints[name]) for name in names(group))


def _eg_text(u: int, k: int) -> str:
    v = u + (1 << k)
    return "0" * (v.bit_length() - k - 1) + format(v, "b")


def encode_params(ints: IntParams, shifts: Shifts) -> bytes:
    head = bytearray()
    orders = bytearray()
    text: list[str] = []
    for name in names():
        if not 0 <= shifts[name] <= MAX_SHIFT:  # it shares a byte with the mode
            raise ValueError(f"shift {shifts[name]} of {name} does not fit the layout")
        code = tensor_code(ints[name])
        head.append(shifts[name] << 4 | code.mode)
        flat = ints[name].ravel()
        if code.mode != RUN_LENGTH:
            text.extend(_eg_text(u, code.mode) for u in _zigzag(flat).tolist())
            continue
        orders.append(code.run_order << 4 | code.magnitude_order)
        runs, negative, magnitudes = _runs(flat)
        for run, neg, mag in zip(
            runs[:-1].tolist(), negative.tolist(), magnitudes.tolist(), strict=True
        ):
            text.append(_eg_text(run, code.run_order) + ("1" if neg else "0"))
            text.append(_eg_text(mag, code.magnitude_order))
        text.append(_eg_text(int(runs[-1]), code.run_order))
    bits = "".join(text)
    bits += "0" * (-len(bits) % 8)
    body = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    return bytes(head) + bytes(orders) + body


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self.text = format(int.from_bytes(data, "big"), f"0{8 * len(data)}b") if data else ""
        self.pos = 0

    def bit(self) -> int:
        if self.pos >= len(self.text):
            raise CorruptBitstreamError("parameter section ends inside a value")
        self.pos += 1
        return int(self.text[self.pos - 1])

    def exp_golomb(self, k: int) -> int:
        zeros = 0
        while self.pos < len(self.text) and self.text[self.pos] == "0":
            zeros += 1
            self.pos += 1
            if zeros > _MAX_PREFIX:
                raise CorruptBitstreamError("implausible parameter code")
        end = self.pos + zeros + k + 1
        if end > len(self.text):
            raise CorruptBitstreamError("parameter section ends inside a value")
        u = int(self.text[self.pos : end], 2) - (1 << k)
        self.pos = end
        return u

    def check_end(self) -> None:
        if len(self.text) - self.pos >= 8 or "1" in self.text[self.pos :]:
            raise CorruptBitstreamError("parameter section has data after its last value")


def _read_tensor(reader: _BitReader, count: int, order: int | None, orders: int) -> I64:
    """One tensor's integers: Exp-Golomb of `order`, or run-length (None) with the run and
    magnitude orders packed in `orders`."""
    vals = np.zeros(count, dtype=np.int64)
    if order is not None:
        for i in range(count):
            u = reader.exp_golomb(order)
            vals[i] = (u + 1) // 2 if u % 2 else -(u // 2)
    else:
        r, k = orders >> 4, orders & 0x0F
        pos = reader.exp_golomb(r)
        while pos < count:
            negative = reader.bit()
            magnitude = reader.exp_golomb(k) + 1
            vals[pos] = -magnitude if negative else magnitude
            pos += 1 + reader.exp_golomb(r)
        if pos != count:
            raise CorruptBitstreamError("parameter zero run beyond its tensor")
    if np.any(np.abs(vals) > MAX_ABS):
        raise CorruptBitstreamError("parameter value out of range")
    return vals


def decode_params(data: bytes, layout: int = LAYOUT) -> tuple[IntParams, Shifts]:
    """Inverse of `encode_params` (or of layout 2's, which had no run-length mode); the
    whole of `data` must be used (up to byte padding)."""
    tensors = names()
    if len(data) < len(tensors):
        raise CorruptBitstreamError("parameter section too short")
    shifts = {name: data[i] >> 4 for i, name in enumerate(tensors)}
    # Exp-Golomb order of each tensor, None for run-length (layout 2 had no run-length).
    modes: dict[str, int | None] = {
        name: None
        if layout >= _RUN_LENGTH_SINCE and data[i] & 0x0F == RUN_LENGTH
        else data[i] & 0x0F
        for i, name in enumerate(tensors)
    }
    arm_shifts = {shifts[name] for name in names("arm")}
    if len(arm_shifts) != 1 or min(arm_shifts) < MIN_ARM_SHIFT:
        raise CorruptBitstreamError("implausible ARM precision")
    coded_runs = [name for name in tensors if modes[name] is None]
    body = len(tensors) + len(coded_runs)
    if len(data) < body:
        raise CorruptBitstreamError("parameter section too short")
    orders = dict(zip(coded_runs, data[len(tensors) : body], strict=True))
    reader = _BitReader(data[body:])
    ints: IntParams = {}
    for _, name, shape in spec():
        count = int(np.prod(shape))
        ints[name] = _read_tensor(reader, count, modes[name], orders.get(name, 0)).reshape(shape)
    reader.check_end()
    return ints, shifts
