"""Signing keys and the keyring: PEM, raw bytes, JSON, rotation and retirement."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from licensing import Code, Keyring, LicensingError, SigningKey
from tests.licensing import make_vectors as mv


def code_of(call: object) -> Code:
    assert callable(call)
    try:
        call()
    except LicensingError as exc:
        return exc.code
    return Code.VALID


def test_raw_bytes_round_trip() -> None:
    key = SigningKey.generate("k1")
    again = SigningKey.from_private_bytes("k1", key.private_bytes())
    assert again.public_key_bytes() == key.public_key_bytes()
    assert len(key.private_bytes()) == 32 and len(key.public_key_bytes()) == 32
    assert repr(key) == "SigningKey(key_id='k1')"  # never the private bytes


def test_pem_plain_and_encrypted() -> None:
    key = SigningKey.generate("k1")
    plain = key.to_pem()
    assert plain.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert SigningKey.from_pem("k1", plain).private_bytes() == key.private_bytes()
    locked = key.to_pem(b"correct horse")
    assert locked.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert (
        SigningKey.from_pem("k1", locked, b"correct horse").private_bytes() == key.private_bytes()
    )


@pytest.mark.parametrize(
    ("data", "passphrase", "fragment"),
    [
        ("locked", None, "passphrase is needed"),
        ("locked", b"wrong", "passphrase is wrong"),
        ("plain", b"unexpected", "not encrypted"),
        ("garbage", None, "not a PEM"),
        ("ec", None, "not an Ed25519"),
    ],
)
def test_pem_errors(data: str, passphrase: bytes | None, fragment: str) -> None:
    key = SigningKey.generate("k1")
    pem = {
        "locked": key.to_pem(b"secret"),
        "plain": key.to_pem(),
        "garbage": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "ec": generate_private_key(SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }[data]
    with pytest.raises(LicensingError) as info:
        SigningKey.from_pem("k1", pem, passphrase)
    assert info.value.code is Code.MALFORMED
    assert fragment in info.value.message


@pytest.mark.parametrize("key_id", ["", "-lead", "a b", "x" * 65, "ключ", 5])
def test_key_id_syntax(key_id: object) -> None:
    assert code_of(lambda: SigningKey.generate(key_id)) is Code.MALFORMED  # type: ignore[arg-type]


def test_private_bytes_must_be_32() -> None:
    assert code_of(lambda: SigningKey.from_private_bytes("k", b"\x00" * 31)) is Code.MALFORMED


def test_keyring_add_retire_and_lookups() -> None:
    ring = Keyring()
    a, b = SigningKey.generate("a"), SigningKey.generate("b")
    ring.add("a", a.public_key_bytes())
    ring.add("b", b.public_key_bytes())
    assert ring.key_ids() == ["a", "b"] and len(ring) == 2 and "a" in ring
    assert ring.public_key("a") == a.public_key_bytes()
    assert ring.newest_active_key_id() == "b"
    ring.retire("b")
    assert ring.is_retired("b") and not ring.is_retired("a")
    assert ring.newest_active_key_id() == "a"
    assert code_of(lambda: ring.verifier("b")) is Code.KEY_RETIRED
    ring.retire("a")
    assert ring.newest_active_key_id() is None
    for call in (
        lambda: ring.retire("c"),
        lambda: ring.is_retired("c"),
        lambda: ring.public_key("c"),
        lambda: ring.verifier("c"),
    ):
        assert code_of(call) is Code.UNKNOWN_KEY


def test_keyring_re_add_is_idempotent_and_retirement_sticks() -> None:
    ring = Keyring()
    key = SigningKey.generate("a")
    ring.add("a", key.public_key_bytes(), retired=True)
    ring.add("a", key.public_key_bytes())
    assert ring.is_retired("a")
    other = SigningKey.generate("a")
    assert code_of(lambda: ring.add("a", other.public_key_bytes())) is Code.MALFORMED
    assert code_of(lambda: ring.add("b", b"\x00" * 31)) is Code.MALFORMED


def test_keyring_json_round_trip() -> None:
    ring = mv.keyring()
    text = ring.to_json()
    data = json.loads(text)
    assert data["format"] == 1
    assert data["keys"][0] == {
        "key_id": mv.RETIRED,
        "algorithm": "Ed25519",
        "public_key": data["keys"][0]["public_key"],
        "retired": True,
    }
    again = Keyring.from_json(text)
    assert again.key_ids() == ring.key_ids()
    assert [again.is_retired(k) for k in again.key_ids()] == [True, False, False]
    assert Keyring.from_json(text.encode()).key_ids() == ring.key_ids()  # type: ignore[arg-type]


ENTRY = json.dumps(
    {"key_id": "a", "algorithm": "Ed25519", "public_key": "A" * 43, "retired": False}
)


def keys_json(*entries: str) -> str:
    return '{"format": 1, "keys": [' + ", ".join(entries) + "]}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        "{",
        '{"format": 1}',
        '{"format": 2, "keys": []}',
        '{"format": true, "keys": []}',
        '{"format": 1, "keys": {}}',
        '{"format": 1, "keys": [], "keys": []}',
        '{"format": 1, "keys": [], "extra": 1}',
        '{"format": 1, "keys": [1]}',
        '{"format": 1, "keys": [{"key_id": "a"}]}',
        keys_json(ENTRY.replace("Ed25519", "RS256")),
        keys_json(ENTRY.replace("false", '"no"')),
        keys_json(ENTRY.replace('"A', '"+')),
        keys_json(ENTRY.replace('"a"', '"bad id"')),
        keys_json(ENTRY, ENTRY),
        '{"format": NaN, "keys": []}',
        '{"format": 1e999, "keys": []}',
        "[" * 100_000,
        b"\xff",
        None,
    ],
)
def test_keyring_from_json_is_strict(text: object) -> None:
    assert code_of(lambda: Keyring.from_json(text)) is Code.MALFORMED  # type: ignore[arg-type]


def test_keyring_from_json_accepts_a_valid_entry() -> None:
    assert Keyring.from_json(keys_json(ENTRY)).key_ids() == ["a"]
