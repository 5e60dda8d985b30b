"""Quantisation and coding of the overfitted decoder's parameters (their bits count in the rate).

Each group (ARM, upsampler, synthesis) has one step 2^-shift, chosen by the encoder, and
its integers are written as signed Exp-Golomb codes of one order per group (the cheapest).

    params = 3 x (shift u8 | order u8) | Exp-Golomb bits of every value (PARAM_SPEC order),
             zero-padded to a byte boundary
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from codec_engine.errors import CorruptBitstreamError
from codec_engine.overfit.entropy import IntArm

I64 = npt.NDArray[np.int64]
IntParams = dict[str, I64]

MAX_ABS = (1 << 16) - 1  # bounds every integer so the int64 ARM can never overflow
MAX_SHIFT = 16
MAX_ORDER = 16
_MAX_PREFIX = 24


def spec() -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    from codec_engine.overfit.network import PARAM_SPEC

    return PARAM_SPEC


GROUPS = ("arm", "up", "syn")


def quantise(values: dict[str, npt.NDArray[np.float64]], shifts: dict[str, int]) -> IntParams:
    out: IntParams = {}
    for group, name, _ in spec():
        q = np.rint(values[name].astype(np.float64) * float(1 << shifts[group]))
        out[name] = np.clip(q, -MAX_ABS, MAX_ABS).astype(np.int64)
    return out


def dequantise(ints: IntParams, shifts: dict[str, int]) -> dict[str, npt.NDArray[np.float32]]:
    """Exact: every value is an integer times a power of two, representable in float32."""
    return {
        name: (ints[name].astype(np.float64) / float(1 << shifts[group])).astype(np.float32)
        for group, name, _ in spec()
    }


def int_arm(ints: IntParams, shift: int) -> IntArm:
    return IntArm(
        shift,
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
    n = np.floor(np.log2(u + (1 << k))).astype(np.int64) + 1
    return int((2 * n - k - 1).sum())


def group_bits(ints: IntParams, group: str) -> tuple[int, int]:
    """(bits, order) of the cheapest Exp-Golomb order for one group's integers."""
    u = np.concatenate([_zigzag(ints[n]).ravel() for g, n, _ in spec() if g == group])
    costs = [(_eg_bits(u, k), k) for k in range(MAX_ORDER + 1)]
    return min(costs)


def encode_params(ints: IntParams, shifts: dict[str, int]) -> bytes:
    head = bytearray()
    bits: list[str] = []
    orders = {}
    for group in GROUPS:
        orders[group] = group_bits(ints, group)[1]
        head += bytes([shifts[group], orders[group]])
    for group, name, _ in spec():
        k = orders[group]
        for u in _zigzag(ints[name]).ravel().tolist():
            v = u + (1 << k)
            n = v.bit_length()
            bits.append("0" * (n - k - 1) + format(v, "b"))
    text = "".join(bits)
    text += "0" * (-len(text) % 8)
    body = int(text, 2).to_bytes(len(text) // 8, "big") if text else b""
    return bytes(head) + body


def decode_params(data: bytes) -> tuple[IntParams, dict[str, int]]:
    """Inverse of `encode_params`; the whole of `data` must be used (up to byte padding)."""
    if len(data) < 2 * len(GROUPS):
        raise CorruptBitstreamError("parameter section too short")
    shifts, orders = {}, {}
    for i, group in enumerate(GROUPS):
        shifts[group], orders[group] = data[2 * i], data[2 * i + 1]
        if shifts[group] > MAX_SHIFT or orders[group] > MAX_ORDER:
            raise CorruptBitstreamError("implausible parameter quantisation")
    if shifts["arm"] < 4:
        raise CorruptBitstreamError("implausible ARM precision")
    body = data[2 * len(GROUPS) :]
    text = format(int.from_bytes(body, "big"), f"0{8 * len(body)}b") if body else ""
    pos = 0
    ints: IntParams = {}
    for group, name, shape in spec():
        k = orders[group]
        count = int(np.prod(shape))
        vals = np.empty(count, dtype=np.int64)
        for i in range(count):
            zeros = 0
            while pos < len(text) and text[pos] == "0":
                zeros += 1
                pos += 1
                if zeros > _MAX_PREFIX:
                    raise CorruptBitstreamError("implausible parameter code")
            end = pos + zeros + k + 1
            if end > len(text):
                raise CorruptBitstreamError("parameter section ends inside a value")
            u = int(text[pos:end], 2) - (1 << k)
            pos = end
            v = (u + 1) // 2 if u % 2 else -(u // 2)
            if abs(v) > MAX_ABS:
                raise CorruptBitstreamError("parameter value out of range")
            vals[i] = v
        ints[name] = vals.reshape(shape)
    if len(text) - pos >= 8 or "1" in text[pos:]:
        raise CorruptBitstreamError("parameter section has data after its last value")
    return ints, shifts
