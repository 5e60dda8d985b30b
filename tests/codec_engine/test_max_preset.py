"""The max preset (overfitted per-image coding): determinism across processes, refusals, the
licence gate, and rate-distortion sanity. Tiny images and iteration budgets keep it fast."""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import licensing
from codec_engine import api, container
from codec_engine.errors import (
    BitstreamError,
    CorruptBitstreamError,
    DecodeMismatchError,
    LicenceError,
    TruncatedBitstreamError,
    WeightsMismatchError,
)
from codec_engine.metrics import psnr
from codec_engine.overfit import MODEL_ID, MODEL_NAME, arch_digest, params
from codec_engine.overfit.codec import LAYOUT, decode_payload
from tests.codec_engine import test_gate
from tests.codec_engine.conftest import run_script, save_png

ITERS = 30

ENCODE_SCRIPT = """
import sys, numpy as np
from codec_engine import api
img = np.load(sys.argv[1])
res = api.load_model(quality=5, preset="max", max_iterations=int(sys.argv[3])).encode_image(img)
open(sys.argv[2], "wb").write(res.data)
np.save(sys.argv[2] + ".npy", res.reconstruction[0])
"""

DECODE_SCRIPT = """
import sys, numpy as np
from codec_engine import api
np.save(sys.argv[2], api.decode(open(sys.argv[1], "rb").read()).frames[0])
"""


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    # One thread: fast on a shared CI machine (2 threads thrash when the cores are busy);
    # the subprocesses inherit it, and encoder and decoder must use the same count.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODEC_ENGINE_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def image(small_image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(small_image[16:80, 24:88])  # 64x64


@pytest.fixture(scope="module")
def coded(image: np.ndarray) -> api.EncodeResult:
    model = api.load_model(quality=4, preset="max", max_iterations=ITERS)
    return model.encode_image(image)


def test_header_records_the_architecture(coded: api.EncodeResult) -> None:
    h = container.peek_header(coded.data)
    assert (h.preset, h.model_id, h.quality) == (container.Preset.MAX, MODEL_ID, 4)
    assert h.weights_sha256 == arch_digest()
    assert (h.width, h.height, h.tiles_per_frame()) == (64, 64, 1)


def test_round_trip_across_processes_is_bit_exact(tmp_path: Path, image: np.ndarray) -> None:
    np.save(tmp_path / "in.npy", image)
    a, b = tmp_path / "a.nce", tmp_path / "b.nce"
    run_script(ENCODE_SCRIPT, str(tmp_path / "in.npy"), str(a), "12")
    run_script(ENCODE_SCRIPT, str(tmp_path / "in.npy"), str(b), "12")
    assert a.read_bytes() == b.read_bytes(), "same input and seed must give the same bytes"
    run_script(DECODE_SCRIPT, str(a), str(tmp_path / "out.npy"))
    decoded = np.load(tmp_path / "out.npy")
    assert np.array_equal(decoded, np.load(str(a) + ".npy"))
    assert np.array_equal(decoded, api.decode(a.read_bytes()).frames[0])


def test_decode_matches_the_encoder_reconstruction(
    coded: api.EncodeResult, image: np.ndarray
) -> None:
    decoded = api.decode(coded.data).frames[0]
    assert np.array_equal(decoded, coded.reconstruction[0])
    assert psnr(image, decoded) > 18.0


def test_corrupted_and_truncated_streams_are_refused(coded: api.EncodeResult) -> None:
    data = bytearray(coded.data)
    data[-5] ^= 0x01
    with pytest.raises(CorruptBitstreamError):
        api.decode(bytes(data))
    with pytest.raises(TruncatedBitstreamError):
        api.decode(coded.data[:-9])


def _with_tile(coded: api.EncodeResult, data: bytes, crc: int) -> bytes:
    header, frames = container.read_stream(coded.data)
    record = container.TileRecord(data, crc)
    return container.write_stream(header, [container.Frame(frames[0].frame_type, (record,))])


def test_damaged_payload_behind_valid_checksums_is_refused(coded: api.EncodeResult) -> None:
    # Frame CRC recomputed: only the max decoder's own checks can catch these.
    _, frames = container.read_stream(coded.data)
    tile = frames[0].tiles[0]
    rng = np.random.default_rng(0)
    damaged = [tile.data[:-4], tile.data[:-1], tile.data[:3], b"", tile.data + bytes(4)]
    for pos in rng.integers(0, len(tile.data), size=12):
        flipped = bytearray(tile.data)
        flipped[int(pos)] ^= 1 << int(rng.integers(0, 8))
        damaged.append(bytes(flipped))
    for data in damaged:
        with pytest.raises(BitstreamError):
            api.decode(_with_tile(coded, data, tile.params_crc))
    with pytest.raises(DecodeMismatchError):
        api.decode(_with_tile(coded, tile.data, tile.params_crc ^ 1))


def test_claimed_parameter_length_is_bounded_by_the_data() -> None:
    with pytest.raises(CorruptBitstreamError):
        decode_payload(struct.pack("<BBH", LAYOUT, 0, 0xFFFF) + bytes(8), 0, 64, 64, 1)


def test_stream_of_the_earlier_layout_is_refused_by_name() -> None:
    with pytest.raises(CorruptBitstreamError, match="layout 1"):
        decode_payload(struct.pack("<BBH", 1, 0, 8) + bytes(8), 0, 64, 64, 1)


def _random_params(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.laplace(0.0, 0.2, shape) for _, name, shape in params.spec()}


def test_parameters_round_trip_with_a_step_per_tensor() -> None:
    values = _random_params(1)
    shifts = params.uniform_shifts(7, 8, 9)
    shifts.update({"syn.c1": 4, "syn.b1": 12, "up.pre": 5})
    ints = params.quantise(values, shifts)
    ints["syn.w1"][0, 0] = params.MAX_ABS  # the largest value survives too
    back, back_shifts = params.decode_params(params.encode_params(ints, shifts))
    assert back_shifts == shifts
    assert all(np.array_equal(back[name], ints[name]) for name in params.names())
    deq = params.dequantise(back, back_shifts)
    assert np.allclose(deq["syn.c1"], np.round(values["syn.c1"] * 16) / 16)


def _sparse_params(seed: int) -> dict[str, np.ndarray]:
    """What a low-rate fit leaves: most weights exactly zero, the others far from it."""
    rng = np.random.default_rng(seed)
    values = _random_params(seed)
    for name in ("arm.w1", "arm.w2", "syn.w1", "syn.c1"):
        keep = rng.random(values[name].shape) < 0.2
        values[name] = np.where(keep, np.sign(values[name]) * (0.3 + np.abs(values[name])), 0.0)
    return values


def test_sparse_parameters_are_run_length_coded_and_round_trip() -> None:
    shifts = params.uniform_shifts(7, 8, 9)
    ints = params.quantise(_sparse_params(3), shifts)
    ints["syn.c1"][-1, -1, -1, -1] = -params.MAX_ABS  # a non-zero last value (no final run)
    modes = {name: params.tensor_code(ints[name]).mode for name in params.names()}
    assert modes["arm.w1"] == modes["syn.w1"] == params.RUN_LENGTH
    assert modes["up.k"] != params.RUN_LENGTH  # dense: Exp-Golomb
    section = params.encode_params(ints, shifts)
    back, back_shifts = params.decode_params(section)
    assert back_shifts == shifts
    assert all(np.array_equal(back[name], ints[name]) for name in params.names())
    # Cheaper than the best single Exp-Golomb order per tensor, by the measured amount.
    dense = sum(
        min(
            params._eg_bits(params._zigzag(ints[n].ravel()), k) for k in range(params.MAX_ORDER + 1)
        )
        for n in params.names()
    )
    assert 8 * len(section) < dense - 8 * 100
    # The encoder's step search prices exactly what is written (16 head bytes, then bits).
    priced = sum(params.group_bits(ints, group) for group in ("arm", "up", "syn"))
    assert len(section) == 16 + -(-priced // 8)


def test_damaged_run_length_sections_are_refused_not_misread() -> None:
    shifts = params.uniform_shifts(7, 8, 9)
    ints = params.quantise(_sparse_params(4), shifts)
    section = params.encode_params(ints, shifts)
    refused = 0
    for i in range(16, len(section)):
        for bit in (0x01, 0x10, 0x80):
            damaged = bytearray(section)
            damaged[i] ^= bit
            try:
                back, _ = params.decode_params(bytes(damaged))
            except CorruptBitstreamError:
                refused += 1
                continue
            # What still parses is a different, in-range parameter set (the tile CRC
            # catches it); never an exception of another kind.
            assert any(not np.array_equal(back[n], ints[n]) for n in params.names())
    assert refused > 0


def test_sections_of_the_earlier_layout_still_decode() -> None:
    # Layout 2 wrote every tensor in Exp-Golomb; its nibble 15 meant order 15.
    shifts = params.uniform_shifts(7, 8, 9)
    ints = params.quantise(_random_params(5), shifts)
    orders = {name: 15 if name == "up.k" else 1 for name in params.names()}
    bits = "".join(
        params._eg_text(u, orders[name])
        for name in params.names()
        for u in params._zigzag(ints[name].ravel()).tolist()
    )
    bits += "0" * (-len(bits) % 8)
    section = bytes(shifts[n] << 4 | orders[n] for n in params.names())
    section += int(bits, 2).to_bytes(len(bits) // 8, "big")
    back, back_shifts = params.decode_params(section, layout=2)
    assert back_shifts == shifts
    assert all(np.array_equal(back[n], ints[n]) for n in params.names())
    with pytest.raises(CorruptBitstreamError):  # read as layout 3, up.k would be run-length
        params.decode_params(section)


def test_arm_tensors_at_different_precisions_are_refused() -> None:
    shifts = params.uniform_shifts(7, 8, 9)
    ints = params.quantise(_random_params(2), shifts)
    section = bytearray(params.encode_params(ints, shifts))
    section[1] = (8 << 4) | (section[1] & 0x0F)  # arm.b1 one step finer than arm.w1
    with pytest.raises(CorruptBitstreamError, match="ARM precision"):
        params.decode_params(bytes(section))


def test_other_architecture_digest_is_refused(coded: api.EncodeResult) -> None:
    body = bytearray(coded.data[: container.HEADER_SIZE - 4])
    body[12] ^= 0xFF  # first byte of the architecture digest
    resealed = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
    with pytest.raises(WeightsMismatchError):
        api.decode(resealed + coded.data[container.HEADER_SIZE :])


def test_higher_quality_costs_more_bytes_and_gives_higher_psnr(image: np.ndarray) -> None:
    low = api.load_model(quality=1, preset="max", max_iterations=80).encode_image(image)
    high = api.load_model(quality=7, preset="max", max_iterations=80).encode_image(image)
    assert high.num_bytes > low.num_bytes
    assert psnr(image, high.reconstruction[0]) > psnr(image, low.reconstruction[0]) + 1.0


def test_time_budget_stops_the_fit(image: np.ndarray) -> None:
    seen: list[tuple[int, int]] = []
    model = api.load_model(quality=4, preset="max", max_iterations=100_000, max_seconds=4.0)
    assert isinstance(model, api.MaxModel)
    res = model.encode([image], iteration_progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] < 100_000
    assert np.array_equal(api.decode(res.data).frames[0], res.reconstruction[0])


def test_time_budget_is_planned_on_the_steady_speed_not_the_slow_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fake clock: the first 8 iterations take 3 s each (a cold process), the rest 1 s.
    # Planning on the first iterations alone would stop near a third of the budget.
    from codec_engine.overfit import fit

    clock = [0.0]
    monkeypatch.setattr(fit.time, "perf_counter", lambda: clock[0])

    def tick(done: int, _planned: int) -> None:
        clock[0] += 3.0 if done <= 8 else 1.0

    rng = np.random.default_rng(0)
    tiny = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    fitted = fit.fit(tiny, 0.004, iterations=100_000, seconds=500.0, progress=tick)
    assert 0.9 * 500 <= clock[0] <= 500
    assert fitted.iterations == round(clock[0] - 24) + 8


def test_fit_with_rate_and_distortion_side_by_side_equals_the_one_thread_fit() -> None:
    # With two threads the rate and distortion branches run at once, one thread each; the
    # fit must come out identical to the one-thread fit, and leave torch's threads as found.
    import torch

    from codec_engine.overfit import fit

    rng = np.random.default_rng(1)
    tiny = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    torch.set_num_threads(2)
    one = fit.fit(tiny, 0.004, iterations=40, threads=1)
    two = fit.fit(tiny, 0.004, iterations=40, threads=2)
    assert torch.get_num_threads() == 2
    assert all(torch.equal(one.params[k], two.params[k]) for k in one.params)
    assert all(torch.equal(a, b) for a, b in zip(one.latents, two.latents, strict=True))
    assert not torch.equal(one.latents[0], torch.zeros_like(one.latents[0]))


def test_branch_gradients_add_up_to_the_whole_loss_gradient() -> None:
    import torch

    from codec_engine.overfit import fit, network
    from codec_engine.overfit.arch import level_shapes

    gen = torch.Generator().manual_seed(5)
    p = {
        k: (v + 0.2 * torch.randn(v.shape, generator=gen)).requires_grad_(True)
        for k, v in network.init_params(gen).items()
    }
    arm_p = [p[k] for k in params.names("arm")]
    net_p = [p[k] for k in params.names("up") + params.names("syn")]
    lat = [(3 * torch.randn(s, generator=gen)).requires_grad_(True) for s in level_shapes(24, 40)]
    x = torch.rand(3, 24, 40, generator=gen)
    scale = 0.01 / (24 * 40)
    mu, log_scale = network.arm(p, network.contexts(lat))
    bits = network.laplace_bits(torch.cat([y.reshape(-1) for y in lat]), mu, log_scale)
    loss = torch.mean((network.synthesise(p, lat) - x) ** 2) + scale * bits
    want = torch.autograd.grad(loss, [*lat, *arm_p, *net_p])
    rate = fit._rate_grads(p, arm_p, lat, scale)
    dist = fit._distortion_grads(p, net_p, lat, x)
    n = len(lat)
    got = [r + d for r, d in zip(rate[:n], dist[:n], strict=True)] + [*rate[n:], *dist[n:]]
    assert all(torch.allclose(w, g, atol=1e-6) for w, g in zip(want, got, strict=True))


# ---- licence gate ----------------------------------------------------------------------------
def _max_key(features: tuple[str, ...]) -> str:
    ent = replace(test_gate.FULL, features=features, model_versions=("msh-v1", MODEL_NAME))
    return test_gate._key(entitlements=ent)


@pytest.fixture()
def env(gate_env: dict[str, Path], image: np.ndarray) -> dict[str, Path]:
    save_png(gate_env["image"], image)
    return gate_env


gate_env = test_gate.env  # the gate tests' keyring and work folder, reused


def test_gate_refuses_max_without_the_entitlement(
    env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_model(*a: object, **k: object) -> None:
        raise AssertionError("a model was loaded before the licence check")

    monkeypatch.setattr(api, "load_model", no_model)
    key = _max_key(("encode", "decode"))
    with pytest.raises(LicenceError) as err:
        test_gate._encode(env, "--licence-key", key, "--preset", "max", "--max-iterations", "5")
    assert err.value.code == licensing.Code.ENTITLEMENT_MISSING.value
    assert list(env["work"].iterdir()) == [], "a refused job wrote something"


def test_gate_admits_max_with_the_entitlement_and_refuses_its_decode_without(
    env: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    full = _max_key(("encode", "decode", "preset:max"))
    args = ("--licence-key", full, "--preset", "max", "--max-iterations", "5")
    assert test_gate._encode(env, *args) == 0
    assert "bpp" in capsys.readouterr().out
    assert container.peek_header(env["out"].read_bytes()).preset == container.Preset.MAX
    target = env["work"] / "decoded.png"

    def decode(key: str) -> int:
        parsed = test_gate._parse(
            [
                *("decode", str(env["out"]), str(target)),
                *("--keyring", str(env["keyring"]), "--licence-key", key),
            ]
        )
        return int(parsed.handler(parsed))

    with pytest.raises(LicenceError) as err:
        decode(_max_key(("encode", "decode")))
    assert err.value.code == licensing.Code.ENTITLEMENT_MISSING.value
    assert not target.exists()
    assert decode(full) == 0
    assert target.exists()


def test_tiled_networks_give_the_plain_formulas_values_and_gradients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fit's MLPs recompute their hidden layers tile by tile in the backward pass; with
    # tiles of 7 columns over 40 (a partial last tile) they must match plain autograd.
    import torch

    from codec_engine.overfit import network

    monkeypatch.setattr(network, "TILE", 7)
    gen = torch.Generator().manual_seed(3)
    p = {
        k: (v + 0.3 * torch.randn(v.shape, generator=gen)).double().requires_grad_(True)
        for k, v in network.init_params(gen).items()
    }
    ctx = torch.randn(16, 40, generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.randn(7, 40, generator=gen, dtype=torch.float64, requires_grad=True)

    def plain() -> torch.Tensor:
        h1 = torch.relu(p["arm.w1"] @ ctx + p["arm.b1"][:, None])
        h2 = torch.relu(p["arm.w2"] @ h1 + p["arm.b2"][:, None]) + h1
        out = p["arm.w3"] @ h2 + p["arm.b3"][:, None]
        hid = torch.relu(p["syn.w1"] @ x + p["syn.b1"][:, None])
        rgb = p["syn.w2"] @ hid + p["syn.b2"][:, None]
        return (out[0] ** 2).sum() + out[1].exp().sum() + (rgb**3).sum()

    def tiled() -> torch.Tensor:
        mu, log_scale = network.arm(p, ctx)
        rgb = network._TiledMlp.apply(x, p["syn.w1"], p["syn.b1"], p["syn.w2"], p["syn.b2"])
        return (mu**2).sum() + log_scale.exp().sum() + (rgb**3).sum()

    inputs = [
        ctx,
        x,
        *(
            p[k]
            for k in (
                "arm.w1",
                "arm.b1",
                "arm.w2",
                "arm.b2",
                "arm.w3",
                "arm.b3",
                "syn.w1",
                "syn.b1",
                "syn.w2",
                "syn.b2",
            )
        ),
    ]
    want_value, got_value = plain(), tiled()
    want = torch.autograd.grad(want_value, inputs)
    got = torch.autograd.grad(got_value, inputs)
    assert torch.allclose(got_value, want_value, rtol=1e-12)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
