"""Signing keys at rest: AES-256-GCM envelopes under the KEK (core.sealing).

The envelope is `nonce (12 bytes) || ciphertext+tag`, with the key id as associated data so an
envelope cannot be moved to another row. Decrypted keys are cached in process memory, keyed by
key id and a digest of the KEK, so the hot path (activation, heartbeat) never decrypts twice.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

import licensing
from core import sealing
from licences.models import SigningKey

# The signing keys' envelope (core.sealing): this salt and info are part of every sealed key
# in every database; changing them would make those keys unreadable.
_SIGNING_KEY_PURPOSE = sealing.Purpose(
    salt=b"codec-control-plane/signing-key-kek", info=b"aes-256-gcm signing-key envelope v1"
)

_lock = threading.Lock()
_key_cache: dict[tuple[str, str], licensing.SigningKey] = {}


def _aad(key_id: str) -> bytes:
    return b"signing-key:" + key_id.encode()


def seal_private_key(key_id: str, raw_private: bytes) -> bytes:
    return sealing.seal(_SIGNING_KEY_PURPOSE, _aad(key_id), raw_private)


def open_private_key(key_id: str, envelope: bytes) -> licensing.SigningKey:
    """Decrypt (once per process) the private key of `key_id`."""
    cache_key = (key_id, sealing.kek_id())
    cached = _key_cache.get(cache_key)
    if cached is not None:
        return cached
    try:
        raw = sealing.unseal(_SIGNING_KEY_PURPOSE, _aad(key_id), envelope)
    except sealing.SealedValueUnreadable as exc:
        raise ImproperlyConfigured(
            f"signing key {key_id} cannot be decrypted: SIGNING_KEY_KEK is not the key it was "
            "sealed with"
        ) from exc
    key = licensing.SigningKey.from_private_bytes(key_id, raw)
    with _lock:
        _key_cache[cache_key] = key
    return key


@dataclass(frozen=True)
class KeyringSnapshot:
    """All public keys (for verifying) and the newest active key's row id (for signing)."""

    keyring: licensing.Keyring
    newest_key_id: str | None
    # A digest of every key's id, public half and state: equal versions verify alike, so a
    # verification result may be reused across reloads of an unchanged keyring.
    version: str


# The keyring changes only on rotation/retirement, yet every SDK request needs it: keep it for
# a few seconds per process. This process drops it at once when it rotates or retires a key
# (keyring_invalidate); other processes follow within KEYRING_TTL_S.
KEYRING_TTL_S = 10.0
_snapshot: tuple[float, KeyringSnapshot] | None = None


def keyring_invalidate() -> None:
    global _snapshot
    _snapshot = None


def keyring_snapshot(*, max_age_s: float = KEYRING_TTL_S) -> KeyringSnapshot:
    """Every key's public half, plus which key signs new tokens (one query when not cached)."""
    global _snapshot
    cached = _snapshot
    now = time.monotonic()
    if cached is not None and now - cached[0] < max_age_s:
        return cached[1]
    snapshot = _load_snapshot()
    _snapshot = (now, snapshot)
    return snapshot


def _load_snapshot() -> KeyringSnapshot:
    keyring = licensing.Keyring()
    newest: str | None = None
    rows = SigningKey.objects.order_by("created_at", "id").values_list(
        "key_id", "public_key", "state"
    )
    digest = hashlib.sha256()
    for key_id, public_key, state in rows:
        retired = state == SigningKey.State.RETIRED
        keyring.add(key_id, bytes(public_key), retired=retired)
        digest.update(f"{key_id}\0{bytes(public_key).hex()}\0{retired}\n".encode())
        if not retired:
            newest = key_id
    return KeyringSnapshot(keyring=keyring, newest_key_id=newest, version=digest.hexdigest())


def signer(key_id: str) -> licensing.SigningKey:
    """The decrypted signing key for `key_id` (cached; the envelope is read only on a miss)."""
    cached = _key_cache.get((key_id, sealing.kek_id()))
    if cached is not None:
        return cached
    envelope = SigningKey.objects.values_list("encrypted_private_key", flat=True).get(key_id=key_id)
    return open_private_key(key_id, bytes(envelope))
