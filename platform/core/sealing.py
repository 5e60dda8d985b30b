"""Secrets at rest, sealed under the key-encryption key (KEK) from the environment.

One KEK (`SIGNING_KEY_KEK`) protects every secret the control plane must be able to read
back: signing keys' private halves (licences.keys) and portal users' TOTP seeds
(portal.services); `keyed_digest` keys the digests of one-time secrets it only compares
(portal recovery codes). Each kind has its own HKDF salt and info, so its AES-256-GCM key is
independent of the others, and each envelope is bound to its row by the associated data
(a sealed value copied onto another row does not open). Envelope: 12-byte nonce || ciphertext
with its 16-byte tag. The KEK never reaches the database, a response or a log.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

NONCE_BYTES = 12

_lock = threading.Lock()
_aead_cache: dict[tuple[str, bytes, bytes], AESGCM] = {}
_mac_keys: dict[tuple[str, bytes, bytes], bytes] = {}


class SealedValueUnreadable(Exception):
    """The envelope does not open: another KEK sealed it, or it was altered or moved."""


@dataclass(frozen=True)
class Purpose:
    """What a kind of sealed secret is: its own derived key (salt, info)."""

    salt: bytes
    info: bytes


def kek_secret() -> str:
    secret = getattr(settings, "SIGNING_KEY_KEK", "")
    if not secret:
        raise ImproperlyConfigured("SIGNING_KEY_KEK is not set")
    return str(secret)


def kek_id(secret: str | None = None) -> str:
    """A short, non-secret name of the KEK in use (for caches keyed by KEK)."""
    value = kek_secret() if secret is None else secret
    return hashlib.sha256(b"kek-id:" + value.encode()).hexdigest()[:16]


def _derived_key(purpose: Purpose, secret: str) -> bytes:
    """32 uniform bytes for `purpose` from any KEK string (passphrase, base64 blob): HKDF."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=purpose.salt, info=purpose.info).derive(
        secret.encode()
    )


def _aead(purpose: Purpose, secret: str) -> AESGCM:
    cache_key = (kek_id(secret), purpose.salt, purpose.info)
    aead = _aead_cache.get(cache_key)
    if aead is None:
        aead = AESGCM(_derived_key(purpose, secret))
        with _lock:
            _aead_cache[cache_key] = aead
    return aead


def seal(purpose: Purpose, aad: bytes, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + _aead(purpose, kek_secret()).encrypt(nonce, plaintext, aad)


def unseal(purpose: Purpose, aad: bytes, envelope: bytes | memoryview) -> bytes:
    envelope = bytes(envelope)  # a BinaryField reads back as memoryview on PostgreSQL
    try:
        return _aead(purpose, kek_secret()).decrypt(
            envelope[:NONCE_BYTES], envelope[NONCE_BYTES:], aad
        )
    except (InvalidTag, ValueError) as exc:
        raise SealedValueUnreadable(str(exc) or "the sealed value does not open") from exc


def keyed_digest(purpose: Purpose, message: bytes) -> str:
    """HMAC-SHA256 of `message` under a key derived from the KEK: for one-time secrets kept
    only as digests (recovery codes). Without the KEK a stolen digest cannot be searched for
    its code, however short the code."""
    secret = kek_secret()
    cache_key = (kek_id(secret), purpose.salt, purpose.info)
    key = _mac_keys.get(cache_key)
    if key is None:
        key = _derived_key(purpose, secret)
        with _lock:
            _mac_keys[cache_key] = key
    return hmac.new(key, message, hashlib.sha256).hexdigest()
