"""Replay the known-answer vectors (the conformance suite) and check they are up to date."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from licensing import (
    Code,
    Fingerprint,
    Keyring,
    LicensingError,
    SigningKey,
    activation_proof_message,
    device_signed_message,
    fingerprint_from_identifiers,
    inspect_token,
    signed_message,
    verify_certificate,
    verify_device_signature,
    verify_licence_key,
    verify_revocation_list,
)
from licensing._binary import b64url_decode
from tests.licensing import make_vectors

VECTORS = Path(__file__).resolve().parent / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


KEYRING = Keyring.from_json((VECTORS / "keyring.json").read_text(encoding="utf-8"))


def outcome(call: Any) -> tuple[str, Any]:
    try:
        result = call()
    except LicensingError as exc:
        return exc.code.value, None
    return Code.VALID.value, result


def _context(v: dict[str, Any]) -> dict[str, Any]:
    revocations = None
    if v["revocation_list"] is not None:
        revocations = verify_revocation_list(v["revocation_list"], KEYRING)
    require = None if v["require"] is None else make_vectors.require_from_dict(v["require"])
    return {
        "now": v["now"],
        "skew_s": v["skew_s"],
        "apply_grace": v["apply_grace"],
        "revocations": revocations,
        "require": require,
    }


def test_vector_files_are_up_to_date(tmp_path: Path) -> None:
    # Regenerating from the fixed seeds must give byte-identical files.
    assert make_vectors.main(["--out", str(tmp_path)]) == 0
    for path in sorted(VECTORS.iterdir()):
        assert (tmp_path / path.name).read_text() == path.read_text(), path.name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in VECTORS.iterdir())
    assert make_vectors.main(["--check"]) == 0


def test_check_mode_reports_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert make_vectors.main(["--check", "--out", str(tmp_path)]) == 1
    assert "stale vectors" in capsys.readouterr().out


@pytest.mark.parametrize("v", load("licence_keys.json")["vectors"], ids=lambda v: v["name"])
def test_licence_key_vector(v: dict[str, Any]) -> None:
    code, claims = outcome(lambda: verify_licence_key(v["token"], KEYRING, **_context(v)))
    assert code == v["expected"], v["description"]
    if code == "VALID":
        assert claims.to_dict() == v["claims"]
        assert inspect_token(v["token"])["claims"] == v["claims"]


@pytest.mark.parametrize("v", load("certificates.json")["vectors"], ids=lambda v: v["name"])
def test_certificate_vector(v: dict[str, Any]) -> None:
    code, claims = outcome(
        lambda: verify_certificate(v["token"], KEYRING, fingerprint=v["fingerprint"], **_context(v))
    )
    assert code == v["expected"], v["description"]
    if code == "VALID":
        assert claims.to_dict() == v["claims"]


@pytest.mark.parametrize("v", load("revocation_lists.json")["vectors"], ids=lambda v: v["name"])
def test_revocation_list_vector(v: dict[str, Any]) -> None:
    code, rl = outcome(
        lambda: verify_revocation_list(v["token"], KEYRING, min_serial=v["min_serial"])
    )
    assert code == v["expected"], v["description"]
    if code == "VALID":
        assert rl.to_dict() == v["claims"]


def test_every_code_but_clock_rollback_has_a_vector() -> None:
    # CLOCK_ROLLBACK needs persisted state, covered by test_offline.py instead.
    seen = {
        v["expected"]
        for name in ("licence_keys.json", "certificates.json", "revocation_lists.json")
        for v in load(name)["vectors"]
    }
    assert seen == {code.value for code in Code} - {Code.CLOCK_ROLLBACK.value}


def test_keys_match_keyring() -> None:
    for entry in load("keys.json")["signing_keys"]:
        key = SigningKey.from_private_bytes(
            entry["key_id"], bytes.fromhex(entry["private_key_hex"])
        )
        assert key.public_key_bytes().hex() == entry["public_key_hex"]
        assert (entry["key_id"] in KEYRING) == entry["in_keyring"]
        if entry["in_keyring"]:
            assert KEYRING.public_key(entry["key_id"]).hex() == entry["public_key_hex"]


@pytest.mark.parametrize("example", load("encoding.json")["examples"], ids=lambda e: e["artifact"])
def test_encoding_examples(example: dict[str, Any]) -> None:
    prefix, payload_text, signature_text = example["token"].split(".")
    payload = b64url_decode(payload_text)
    assert payload.hex() == example["payload_hex"]
    assert b64url_decode(signature_text).hex() == example["signature_hex"]
    assert signed_message(prefix, payload).hex() == example["signed_message_hex"]
    assert inspect_token(example["token"])["key_id"] == example["key_id"]


def test_device_signature_vectors() -> None:
    doc = load("device_signatures.json")
    public = bytes.fromhex(doc["device_public_key_hex"])
    proof = doc["activation_proof"]
    message = activation_proof_message(
        licence_key=proof["licence_key"],
        fingerprint=proof["fingerprint"],
        device_public_key=public,
        timestamp=proof["timestamp"],
    )
    assert message.hex() == proof["message_hex"]
    assert device_signed_message("activation-proof", message).hex() == proof["signed_bytes_hex"]
    for case in doc["signatures"]:
        code, _ = outcome(
            lambda case=case: verify_device_signature(
                public,
                case["purpose"],
                bytes.fromhex(case["message_hex"]),
                bytes.fromhex(case["signature_hex"]),
            )
        )
        assert code == case["expected"], case["name"]


def test_fingerprint_vectors() -> None:
    doc = load("fingerprints.json")
    secret = bytes.fromhex(doc["secret_hex"])
    for item in doc["derivations"]:
        derived = fingerprint_from_identifiers(secret, item["identifiers"])
        assert derived.to_string() == item["fingerprint"]
    for item in doc["matches"]:
        a, b = Fingerprint.from_string(item["a"]), Fingerprint.from_string(item["b"])
        assert a.matches(b, max_changed=item["max_changed"]) is item["expected"]
        assert b.matches(a, max_changed=item["max_changed"]) is item["expected"]
    for text in doc["malformed"]:
        with pytest.raises(LicensingError) as info:
            Fingerprint.from_string(text)
        assert info.value.code is Code.MALFORMED
