"""Each licence refusal carries its code, loads no model and writes nothing."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import licensing
from codec_engine import api, commands
from codec_engine.errors import LicenceError
from tests.codec_engine.conftest import save_png

NOW = int(time.time())
SECRET = b"test-fingerprint-secret"
KEY = licensing.SigningKey.generate("k1")
OTHER_KEY = licensing.SigningKey.generate("k2")
FULL = licensing.Entitlements(
    features=("encode", "decode"),
    max_width=4096,
    max_height=4096,
    max_fps=60,
    model_versions=("msh-v1",),
)
CLAIMS = licensing.LicenceClaims(
    licence_id="lic-1",
    customer_id="cust-1",
    product="codec-engine",
    entitlements=FULL,
    issued_at=NOW - 100,
    not_before=NOW - 100,
    expires_at=NOW + 3600,
    offline_grace_s=0,
)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.fixture()
def env(
    tmp_path: Path, small_image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    for var in ("LICENCE_KEY", "CERTIFICATE", "KEYRING", "STATE_DIR", "REVOCATION_LIST"):
        monkeypatch.delenv(f"CODEC_ENGINE_{var}", raising=False)
    monkeypatch.setenv("CODEC_ENGINE_FINGERPRINT_SECRET", SECRET.decode())
    ring = licensing.Keyring()
    ring.add("k1", KEY.public_key_bytes())
    (tmp_path / "keyring.json").write_text(ring.to_json())
    work = tmp_path / "work"
    work.mkdir()
    return {
        "keyring": tmp_path / "keyring.json",
        "image": save_png(tmp_path / "in.png", small_image),
        "out": work / "out.nce",
        "work": work,
        "state": tmp_path / "state",
    }


def _encode(env: dict[str, Path], *extra: str) -> int:
    args = _parse(
        [
            "encode",
            str(env["image"]),
            str(env["out"]),
            "-q",
            "2",
            "--keyring",
            str(env["keyring"]),
            *extra,
        ]
    )
    return int(args.handler(args))


def _refused(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch, code: str, *extra: str) -> None:
    def no_model(*a: object, **k: object) -> None:
        raise AssertionError("a model was loaded before the licence check")

    monkeypatch.setattr(api, "load_model", no_model)
    with pytest.raises(LicenceError) as err:
        _encode(env, *extra)
    assert err.value.code == code
    assert list(env["work"].iterdir()) == [], "a refused job wrote something"


def _key(**changes: object) -> str:
    return licensing.issue_licence_key(replace(CLAIMS, **changes), KEY)  # type: ignore[arg-type]


def test_valid_licence_key_encodes(env: dict[str, Path]) -> None:
    assert _encode(env, "--licence-key", _key()) == 0
    assert env["out"].stat().st_size > 100


def test_a_frame_sequence_encodes_with_or_without_skip_blocks(
    env: dict[str, Path], small_image: np.ndarray
) -> None:
    from codec_engine import container

    frames = env["work"].parent / "frames"
    frames.mkdir()
    for i in range(3):
        save_png(frames / f"f{i}.png", small_image)
    env = {**env, "image": frames}
    kinds = {}
    for extra in ((), ("--no-skip-blocks",)):
        assert _encode(env, "--licence-key", _key(), *extra) == 0
        _, coded = container.read_stream(env["out"].read_bytes())
        kinds[extra] = [f.frame_type for f in coded]
    intra, p_skip, p_plain = (
        container.FrameType.INTRA,
        container.FrameType.PREDICTED_SKIP,
        container.FrameType.PREDICTED,
    )
    assert kinds[()] == [intra, p_skip, p_skip]
    assert kinds[("--no-skip-blocks",)] == [intra, p_plain, p_plain]


def test_no_credentials(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _refused(env, monkeypatch, "LICENCE_REQUIRED")


def test_expired(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _refused(
        env,
        monkeypatch,
        licensing.Code.EXPIRED.value,
        "--licence-key",
        _key(issued_at=NOW - 9000, not_before=NOW - 9000, expires_at=NOW - 3600),
    )


def test_not_yet_valid(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _refused(
        env,
        monkeypatch,
        licensing.Code.NOT_YET_VALID.value,
        "--licence-key",
        _key(not_before=NOW + 3600),
    )


def test_unknown_signing_key(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    token = licensing.issue_licence_key(CLAIMS, OTHER_KEY)
    _refused(env, monkeypatch, licensing.Code.UNKNOWN_KEY.value, "--licence-key", token)


def test_forged_signature(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    forged = licensing.issue_licence_key(CLAIMS, licensing.SigningKey.generate("k1"))
    _refused(env, monkeypatch, licensing.Code.BAD_SIGNATURE.value, "--licence-key", forged)


def test_revoked(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    rl = licensing.issue_revocation_list(
        licensing.RevocationList(
            serial=2,
            issued_at=NOW - 10,
            licence_ids=frozenset({"lic-1"}),
            activation_ids=frozenset(),
        ),
        KEY,
    )
    _refused(
        env,
        monkeypatch,
        licensing.Code.REVOKED.value,
        "--licence-key",
        _key(),
        "--revocation-list",
        rl,
    )


def test_stale_revocation_list(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def rl(serial: int) -> str:
        return licensing.issue_revocation_list(
            licensing.RevocationList(
                serial=serial,
                issued_at=NOW - 10,
                licence_ids=frozenset(),
                activation_ids=frozenset(),
            ),
            KEY,
        )

    verifier = licensing.OfflineVerifier(
        licensing.Keyring.from_json(env["keyring"].read_text()), env["state"]
    )
    verifier.accept_revocation_list(rl(5))
    _refused(
        env,
        monkeypatch,
        licensing.Code.STALE_REVOCATION_LIST.value,
        "--licence-key",
        _key(),
        "--state-dir",
        str(env["state"]),
        "--revocation-list",
        rl(3),
    )


@pytest.mark.parametrize(
    "entitlements",
    [
        replace(FULL, features=("decode",)),
        replace(FULL, max_width=64),
        replace(FULL, max_height=64),
        replace(FULL, model_versions=("msh-v0",)),
        replace(FULL, platforms=("android-arm64",)),
    ],
    ids=["feature", "width", "height", "model", "platform"],
)
def test_entitlement_missing(
    env: dict[str, Path], monkeypatch: pytest.MonkeyPatch, entitlements: licensing.Entitlements
) -> None:
    _refused(
        env,
        monkeypatch,
        licensing.Code.ENTITLEMENT_MISSING.value,
        "--licence-key",
        _key(entitlements=entitlements),
    )


def _certificate(fingerprint: str) -> str:
    device = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    claims = licensing.CertificateClaims(
        licence_id="lic-1",
        activation_id="act-1",
        customer_id="cust-1",
        fingerprint=fingerprint,
        device_public_key=device,
        entitlements=FULL,
        issued_at=NOW - 100,
        not_before=NOW - 100,
        expires_at=NOW + 3600,
        offline_grace_s=0,
    )
    return licensing.issue_certificate(claims, KEY)


def test_certificate_for_another_machine(
    env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = licensing.machine_fingerprint(b"another machine's secret").to_string()
    _refused(
        env,
        monkeypatch,
        licensing.Code.FINGERPRINT_MISMATCH.value,
        "--certificate",
        _certificate(other),
        "--state-dir",
        str(env["state"]),
    )


def test_certificate_for_this_machine(env: dict[str, Path]) -> None:
    mine = licensing.machine_fingerprint(SECRET).to_string()
    cert_file = env["state"].parent / "cert.txt"
    cert_file.write_text(_certificate(mine))
    assert _encode(env, "--certificate", str(cert_file), "--state-dir", str(env["state"])) == 0
    assert env["out"].exists()


def test_decode_refusal_writes_nothing(
    env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _encode(env, "--licence-key", _key()) == 0
    target = env["work"] / "decoded.png"
    args = _parse(
        [
            "decode",
            str(env["out"]),
            str(target),
            "--keyring",
            str(env["keyring"]),
            "--licence-key",
            _key(entitlements=replace(FULL, features=("encode",))),
        ]
    )
    with pytest.raises(LicenceError) as err:
        args.handler(args)
    assert err.value.code == licensing.Code.ENTITLEMENT_MISSING.value
    assert sorted(p.name for p in env["work"].iterdir()) == ["out.nce"]
    ok = _parse(
        [
            "decode",
            str(env["out"]),
            str(target),
            "--keyring",
            str(env["keyring"]),
            "--licence-key",
            _key(),
        ]
    )
    assert ok.handler(ok) == 0 and target.exists()


def test_truncated_or_foreign_input_to_decode_writes_nothing(env: dict[str, Path]) -> None:
    from codec_engine.errors import BitstreamError

    assert _encode(env, "--licence-key", _key()) == 0
    data = env["out"].read_bytes()
    for name, content in (
        ("cut.nce", data[: len(data) // 2]),
        ("png.nce", env["image"].read_bytes()),
    ):
        bad = env["work"].parent / name
        bad.write_bytes(content)
        target = env["work"] / f"{name}.png"
        args = _parse(
            [
                "decode",
                str(bad),
                str(target),
                "--keyring",
                str(env["keyring"]),
                "--licence-key",
                _key(),
            ]
        )
        with pytest.raises(BitstreamError):
            args.handler(args)
        assert not target.exists()
    assert sorted(p.name for p in env["work"].iterdir()) == ["out.nce"]
