"""Signing keys (issuer side) and the keyring of public keys (verifier side).

The algorithm is fixed: format version 1 means Ed25519 for every key. A keyring entry pins one
32-byte public key to one key id; nothing read from a token can change the algorithm or supply
a key. Retiring a key id refuses everything it signed (KEY_RETIRED) without touching the others.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from licensing._binary import b64url_decode, b64url_encode, malformed
from licensing.errors import Code, LicensingError

ALGORITHM = "Ed25519"
KEYRING_FORMAT = 1
_KEY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_key_id(key_id: object) -> str:
    # Key ids end up in file names (CLI) and JSON: keep them short and boring.
    if not isinstance(key_id, str) or _KEY_ID_RE.fullmatch(key_id) is None:
        raise malformed("key id must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting . _ -)")
    return key_id


class SigningKey:
    """An Ed25519 private key with its key id. Never printed: repr shows the id only."""

    __slots__ = ("_private", "key_id")

    def __init__(self, key_id: str, private_key: Ed25519PrivateKey) -> None:
        self.key_id = check_key_id(key_id)
        self._private = private_key

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    @classmethod
    def generate(cls, key_id: str) -> SigningKey:
        return cls(key_id, Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, key_id: str, raw: bytes) -> SigningKey:
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise malformed("an Ed25519 private key is exactly 32 raw bytes")
        return cls(key_id, Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def public_key_bytes(self) -> bytes:
        return self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def to_pem(self, passphrase: bytes | None = None) -> bytes:
        """PKCS#8 PEM; encrypted with the best available scheme when a passphrase is given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    @classmethod
    def from_pem(cls, key_id: str, data: bytes, passphrase: bytes | None = None) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(data, password=passphrase or None)
        except TypeError:
            # cryptography raises TypeError for "encrypted but no passphrase" and the reverse.
            if passphrase:
                raise malformed("the private key is not encrypted; give no passphrase") from None
            raise malformed("the private key is encrypted; a passphrase is needed") from None
        except (ValueError, UnsupportedAlgorithm):
            raise malformed("not a PEM private key, or the passphrase is wrong") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise malformed("the private key is not an Ed25519 key")
        return cls(key_id, key)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


@dataclass(frozen=True, slots=True)
class _Entry:
    public_bytes: bytes
    public_key: Ed25519PublicKey  # parsed once here so verification never re-parses
    retired: bool


class Keyring:
    """Public keys by key id, in the order they were added (the newest last)."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def add(self, key_id: str, public_key: bytes, *, retired: bool = False) -> None:
        """Add a key. Re-adding the same key is harmless (retirement stays); another key under a
        known id is refused, since that would silently re-point every token with that id."""
        check_key_id(key_id)
        if not isinstance(public_key, bytes) or len(public_key) != 32:
            raise malformed("an Ed25519 public key is exactly 32 raw bytes")
        existing = self._entries.get(key_id)
        if existing is not None:
            if existing.public_bytes != public_key:
                raise malformed(f"key id {key_id!r} is already bound to another public key")
            retired = retired or existing.retired
        try:
            parsed = Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError:  # pragma: no cover - OpenSSL accepts every 32-byte string today
            raise malformed("not a valid Ed25519 public key") from None
        self._entries[key_id] = _Entry(public_key, parsed, retired)

    def retire(self, key_id: str) -> None:
        entry = self._entries.get(key_id)
        if entry is None:
            raise LicensingError(Code.UNKNOWN_KEY, f"key id {key_id!r} is not in the keyring")
        self._entries[key_id] = _Entry(entry.public_bytes, entry.public_key, True)

    def key_ids(self) -> list[str]:
        return list(self._entries)

    def is_retired(self, key_id: str) -> bool:
        entry = self._entries.get(key_id)
        if entry is None:
            raise LicensingError(Code.UNKNOWN_KEY, f"key id {key_id!r} is not in the keyring")
        return entry.retired

    def public_key(self, key_id: str) -> bytes:
        entry = self._entries.get(key_id)
        if entry is None:
            raise LicensingError(Code.UNKNOWN_KEY, f"key id {key_id!r} is not in the keyring")
        return entry.public_bytes

    def newest_active_key_id(self) -> str | None:
        """The key id new artifacts should be signed with: the last added, not retired."""
        for key_id in reversed(self._entries):
            if not self._entries[key_id].retired:
                return key_id
        return None

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def verifier(self, key_id: str) -> Ed25519PublicKey:
        """The pinned key for `key_id`; UNKNOWN_KEY or KEY_RETIRED otherwise."""
        entry = self._entries.get(key_id)
        if entry is None:
            raise LicensingError(Code.UNKNOWN_KEY, f"key id {key_id!r} is not in the keyring")
        if entry.retired:
            raise LicensingError(Code.KEY_RETIRED, f"key id {key_id!r} has been retired")
        return entry.public_key

    def to_json(self) -> str:
        keys = [
            {
                "key_id": key_id,
                "algorithm": ALGORITHM,
                "public_key": b64url_encode(entry.public_bytes),
                "retired": entry.retired,
            }
            for key_id, entry in self._entries.items()
        ]
        return json.dumps({"format": KEYRING_FORMAT, "keys": keys}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Keyring:
        data = load_json_object(text, "keyring")
        if set(data) != {"format", "keys"}:
            raise malformed('keyring JSON must have exactly the fields "format" and "keys"')
        if data["format"] != KEYRING_FORMAT or isinstance(data["format"], bool):
            raise malformed(f"keyring format must be {KEYRING_FORMAT}")
        if not isinstance(data["keys"], list):
            raise malformed('keyring "keys" must be a list')
        keyring = cls()
        for item in data["keys"]:
            if not isinstance(item, dict) or set(item) != {
                "key_id",
                "algorithm",
                "public_key",
                "retired",
            }:
                raise malformed(
                    "each keyring entry must have exactly key_id, algorithm, public_key, retired"
                )
            if item["algorithm"] != ALGORITHM:
                raise malformed(f"keyring algorithm must be {ALGORITHM!r}")
            if not isinstance(item["retired"], bool):
                raise malformed('keyring "retired" must be true or false')
            key_id = check_key_id(item["key_id"])
            if key_id in keyring:
                raise malformed(f"key id {key_id!r} appears twice in the keyring")
            keyring.add(key_id, b64url_decode(item["public_key"]), retired=item["retired"])
        return keyring


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise malformed(f"JSON object has the field {key!r} twice")
        result[key] = value
    return result


def _reject_constant(name: str) -> None:
    raise malformed(f"JSON holds {name}, which is not a number")


def load_json_object(text: object, what: str) -> dict[str, Any]:
    """Strict JSON: an object at the top, no duplicate fields, no NaN/Infinity."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise malformed(f"{what} is not UTF-8 text") from None
    if not isinstance(text, str):
        raise malformed(f"{what} must be JSON text")
    try:
        data = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError):
        raise malformed(f"{what} is not valid JSON") from None
    if not isinstance(data, dict):
        raise malformed(f"{what} must be a JSON object")
    return data
