"""Signatures made by a device's own Ed25519 key (activation proof, usage batches).

The device key is generated on the device at activation; its public half goes into the
activation certificate. Device signatures use their own domain string and a purpose, so a
device signature can never stand in for a token signature or for another purpose.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from licensing._binary import MAX_UINT, malformed
from licensing.errors import Code, LicensingError

ACTIVATION_PROOF_PURPOSE = "activation-proof"
USAGE_BATCH_PURPOSE = "usage-batch"

_DEVICE_DOMAIN = b"ncodec-device-signature\x00"
_PROOF_DOMAIN = b"ncodec-activation-proof-v1\x00"


def _frame(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _purpose_bytes(purpose: str) -> bytes:
    if (
        not isinstance(purpose, str)
        or not 1 <= len(purpose) <= 64
        or not purpose.isascii()
        or not purpose.isprintable()
    ):
        raise malformed("a device signature purpose is 1-64 printable ASCII characters")
    return purpose.encode("ascii")


def device_signed_message(purpose: str, message: bytes) -> bytes:
    """The exact bytes a device key signs for `purpose` (documented for other SDKs)."""
    if not isinstance(message, bytes):
        raise malformed("the message to sign must be bytes")
    return _DEVICE_DOMAIN + _frame(_purpose_bytes(purpose)) + _frame(message)


def activation_proof_message(
    *, licence_key: str, fingerprint: str, device_public_key: bytes, timestamp: int
) -> bytes:
    """Canonical bytes the device signs (purpose ACTIVATION_PROOF_PURPOSE) to prove it holds the
    private half of `device_public_key` when it asks for an activation certificate."""
    if not isinstance(licence_key, str) or not licence_key.isascii():
        raise malformed("the licence key must be ASCII text")
    if not isinstance(fingerprint, str) or not fingerprint.isascii():
        raise malformed("the fingerprint must be ASCII text")
    if not isinstance(device_public_key, bytes) or len(device_public_key) != 32:
        raise malformed("the device public key is exactly 32 raw bytes")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise malformed("the timestamp must be an integer")
    if not 0 <= timestamp <= MAX_UINT:
        raise malformed("the timestamp must be from 0 to 2**63-1")
    return (
        _PROOF_DOMAIN
        + _frame(licence_key.encode("ascii"))
        + _frame(fingerprint.encode("ascii"))
        + device_public_key
        + timestamp.to_bytes(8, "big")
    )


def sign_with_device_key(private_key: Ed25519PrivateKey, purpose: str, message: bytes) -> bytes:
    if not isinstance(private_key, Ed25519PrivateKey):
        raise malformed("the device key must be an Ed25519 private key")
    return private_key.sign(device_signed_message(purpose, message))


def verify_device_signature(
    public_key: bytes, purpose: str, message: bytes, signature: bytes
) -> None:
    """Return quietly when `signature` is the device's signature of `message` for `purpose`;
    raise BAD_SIGNATURE otherwise (MALFORMED for a public key that is not 32 bytes)."""
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        raise malformed("the device public key is exactly 32 raw bytes")
    signed = device_signed_message(purpose, message)
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise LicensingError(Code.BAD_SIGNATURE, "a device signature is exactly 64 bytes")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, signed)
    except (InvalidSignature, ValueError):
        raise LicensingError(Code.BAD_SIGNATURE, "the device signature does not verify") from None
