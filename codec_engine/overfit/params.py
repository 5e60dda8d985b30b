"""Quantisation and coding of the overfitted decoder's parameters (their bits count in the rate).

Each tensor has its own step 2^-shift, chosen by the encoder (the ARM's tensors share one:
the integer ARM runs at a single fixed-point precision), and its integers are written as
signed Exp-Golomb codes of the tensor's cheapest order. Per tensor rather than per group:
on chelsea the orders alone saved 5 % of the parameter bits, and the steps let a tensor
that matters little (a 3x3 residual kernel) go coarser than its neighbours.

    params = 16 x (shift u4 << 4 | order u4) (PARAM_SPEC order) |
             Exp-Golomb bits of every value (PARAM_SPEC order), zero-padded to a byte
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from codec_engine.errors import CorruptBitstreamError
from codec_engine.overfit.entropy import IntArm

I64 = npt.NDArray[np.int64]
IntParams = dict[str, I64]

MAX_ABS = (1 << 16) - 1  # bounds every integer so the int64 ARM can never overflow
MAX_SHIFT = 15
MAX_ORDER = 15
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
    n = np.floor(np.log2(u + (1 << k))).astype(np.int64) + 1
    return int((2 * n - k - 1).sum())


def tensor_bits(values: I64) -> tuple[int, int]:
    """(bits, order) of the cheapest Exp-Golomb order for one tensor's integers."""
    u = _zigzag(values).ravel()
    return min((_eg_bits(u, k), k) for k in range(MAX_ORDER + 1))


def group_bits(ints: IntParams, group: str) -> int:
    return sum(tensor_bits(ints[name])[0] for name in names(group))


def encode_params(ints: IntParams, shifts: Shifts) -> bytes:
    head = bytearray()
    bits: list[str] = []
    for name in names():
        if not 0 <= shifts[name] <= MAX_SHIFT:  # it shares a byte with the order
            raise ValueError(f"shift {shifts[name]} of {name} does not fit the layout")
        k = tensor_bits(ints[name])[1]
        head.append(shifts[name] << 4 | k)
        for u in _zigzag(ints[name]).ravel().tolist():
            v = u + (1 << k)
            n = v.bit_length()
            bits.append("0" * (n - k - 1) + format(v, "b"))
    text = "".join(bits)
    text += "0" * (-len(text) % 8)
    body = int(text, 2).to_bytes(len(text) // 8, "big") if text else b""
    return bytes(head) + body


def decode_params(data: bytes) -> tuple[IntParams, Shifts]:
    """Inverse of `encode_params`; the whole of `data` must be used (up to byte padding)."""
    tensors = names()
    if len(data) < len(tensors):
        raise CorruptBitstreamError("parameter section too short")
    shifts = {name: data[i] >> 4 for i, name in enumerate(tensors)}
    orders = {name: data[i] & 0x0F for i, name in enumerate(tensors)}
    arm_shifts = {shifts[name] for name in names("arm")}
    if len(arm_shifts) != 1 or min(arm_shifts) < MIN_ARM_SHIFT:
        raise CorruptBitstreamError("implausible ARM precision")
    body = data[len(tensors) :]
    text = format(int.from_bytes(body, "big"), f"0{8 * len(body)}b") if body else ""
    pos = 0
    ints: IntParams = {}
    for _, name, shape in spec():
        k = orders[name]
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
