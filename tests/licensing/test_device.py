"""Device-key signatures: activation proof of possession and purpose separation."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from licensing import (
    ACTIVATION_PROOF_PURPOSE,
    USAGE_BATCH_PURPOSE,
    Code,
    LicensingError,
    activation_proof_message,
    device_signed_message,
    sign_with_device_key,
    verify_device_signature,
)
from tests.licensing import make_vectors as mv


def code_of(call: object) -> Code:
    assert callable(call)
    try:
        call()
    except LicensingError as exc:
        return exc.code
    return Code.VALID


def proof(**changes: object) -> bytes:
    args: dict[str, object] = {
        "licence_key": "NCL1.x.y",
        "fingerprint": mv.FINGERPRINT.to_string(),
        "device_public_key": mv.DEVICE_PUBLIC,
        "timestamp": mv.NOW,
    }
    args.update(changes)
    return activation_proof_message(**args)  # type: ignore[arg-type]


def test_proof_of_possession() -> None:
    message = proof()
    signature = sign_with_device_key(mv.DEVICE_KEY, ACTIVATION_PROOF_PURPOSE, message)
    verify_device_signature(mv.DEVICE_PUBLIC, ACTIVATION_PROOF_PURPOSE, message, signature)
    # Another device, another purpose, another message: all refused.
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    for call in (
        lambda: verify_device_signature(other, ACTIVATION_PROOF_PURPOSE, message, signature),
        lambda: verify_device_signature(mv.DEVICE_PUBLIC, USAGE_BATCH_PURPOSE, message, signature),
        lambda: verify_device_signature(
            mv.DEVICE_PUBLIC, ACTIVATION_PROOF_PURPOSE, proof(timestamp=mv.NOW + 1), signature
        ),
        lambda: verify_device_signature(
            mv.DEVICE_PUBLIC, ACTIVATION_PROOF_PURPOSE, message, signature[:-1]
        ),
        lambda: verify_device_signature(
            mv.DEVICE_PUBLIC,
            ACTIVATION_PROOF_PURPOSE,
            message,
            "sig",  # type: ignore[arg-type]
        ),
    ):
        assert code_of(call) is Code.BAD_SIGNATURE


def test_fields_are_length_framed() -> None:
    # Moving a character between adjacent fields must change the signed bytes.
    a = proof(licence_key="NCL1.ab", fingerprint="cd")
    b = proof(licence_key="NCL1.a", fingerprint="bcd")
    assert a != b
    assert device_signed_message("ab", b"c") != device_signed_message("a", b"bc")


@pytest.mark.parametrize(
    "changes",
    [
        {"licence_key": "ключ"},
        {"licence_key": 5},
        {"fingerprint": "é"},
        {"device_public_key": b"\x00" * 31},
        {"device_public_key": "k" * 32},
        {"timestamp": -1},
        {"timestamp": 2**63},
        {"timestamp": True},
        {"timestamp": 1.0},
    ],
)
def test_proof_message_refuses_bad_input(changes: dict[str, object]) -> None:
    assert code_of(lambda: proof(**changes)) is Code.MALFORMED


@pytest.mark.parametrize("purpose", ["", "x" * 65, "tab\there", "é", 5])
def test_purpose_syntax(purpose: object) -> None:
    assert (
        code_of(lambda: sign_with_device_key(mv.DEVICE_KEY, purpose, b"m"))  # type: ignore[arg-type]
        is Code.MALFORMED
    )


def test_bad_arguments() -> None:
    assert code_of(lambda: sign_with_device_key("key", "p", b"m")) is Code.MALFORMED  # type: ignore[arg-type]
    assert code_of(lambda: device_signed_message("p", "m")) is Code.MALFORMED  # type: ignore[arg-type]
    assert (
        code_of(lambda: verify_device_signature(b"\x00" * 31, "p", b"m", b"\x00" * 64))
        is Code.MALFORMED
    )
