"""Generate the known-answer test vectors in tests/licensing/vectors/ (deterministic).

Every key comes from a fixed seed and Ed25519 signatures are deterministic, so running this
script again writes byte-identical files; tests/licensing/test_vectors.py checks that and
replays every vector. SDKs in other languages use the same files as their conformance suite
(see docs/licensing.md, "Conformance vectors").

    .venv/bin/python tests/licensing/make_vectors.py          # rewrite the files
    .venv/bin/python tests/licensing/make_vectors.py --check  # exit 1 if they are stale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from licensing import (
    ACTIVATION_PROOF_PURPOSE,
    USAGE_BATCH_PURPOSE,
    CertificateClaims,
    Code,
    Entitlements,
    Keyring,
    LicenceClaims,
    Requirement,
    RevocationList,
    SigningKey,
    activation_proof_message,
    device_signed_message,
    fingerprint_from_identifiers,
    issue_certificate,
    issue_licence_key,
    issue_revocation_list,
    sign_with_device_key,
    signed_message,
)
from licensing._binary import b64url_decode, b64url_encode
from licensing.tokens import (
    encode_certificate_payload,
    encode_licence_payload,
    encode_revocation_payload,
)

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400
SKEW = 300
GRACE = 7 * DAY

NEWEST, OLDER, RETIRED, UNKNOWN = "vk-2026", "vk-2025", "vk-2024", "vk-unknown"


def seed(label: str) -> bytes:
    """32 fixed bytes per label: SHA-256 of a public string. TEST KEYS ONLY."""
    return hashlib.sha256(f"ncodec-licensing-test-vectors/{label}".encode()).digest()


def signing_key(key_id: str) -> SigningKey:
    return SigningKey.from_private_bytes(key_id, seed(f"signing-key/{key_id}"))


def keyring() -> Keyring:
    ring = Keyring()
    ring.add(RETIRED, signing_key(RETIRED).public_key_bytes(), retired=True)
    ring.add(OLDER, signing_key(OLDER).public_key_bytes())
    ring.add(NEWEST, signing_key(NEWEST).public_key_bytes())
    return ring


DEVICE_KEY = Ed25519PrivateKey.from_private_bytes(seed("device-key"))
DEVICE_PUBLIC = DEVICE_KEY.public_key().public_bytes_raw()
FINGERPRINT_SECRET = seed("fingerprint-secret")
IDENTIFIERS = {
    "machine_id": "4c4c4544-0042-3510-8052-b4c04f4d4e31",
    "hostname": "encoder-01",
    "mac": "0242ac110002",
    "disk": "6f1c3d2a-9b8e-4f7a-a1b2-c3d4e5f60718",
    "cpu": "x86_64 AMD EPYC 7763 64-Core Processor",
}
FINGERPRINT = fingerprint_from_identifiers(FINGERPRINT_SECRET, IDENTIFIERS)
ONE_CHANGED = fingerprint_from_identifiers(
    FINGERPRINT_SECRET, {**IDENTIFIERS, "disk": "0d6e1f2a-replacement-disk"}
)
TWO_CHANGED = fingerprint_from_identifiers(
    FINGERPRINT_SECRET,
    {**IDENTIFIERS, "disk": "0d6e1f2a-replacement-disk", "mac": "0242ac1100ff"},
)

ENTITLEMENTS = Entitlements(
    features=("encode", "decode"),
    max_width=3840,
    max_height=2160,
    max_fps=60,
    max_activations=5,
    platforms=("linux-x86_64", "android-arm64"),
    model_versions=("msh-v1",),
)
LICENCE = LicenceClaims(
    licence_id="lic_01J9ZK3Q8W6T4M2N7P5R1S0V9X",
    customer_id="cus_01J9ZK3Q8W6T4M2N7P5R1S0V9Y",
    product="ncodec-sdk",
    entitlements=ENTITLEMENTS,
    issued_at=NOW - DAY,
    not_before=NOW - DAY,
    expires_at=NOW + 365 * DAY,
    offline_grace_s=GRACE,
)
CERTIFICATE = CertificateClaims.for_activation(
    LICENCE,
    activation_id="act_01J9ZK3Q8W6T4M2N7P5R1S0V9Z",
    fingerprint=FINGERPRINT.to_string(),
    device_public_key=DEVICE_PUBLIC,
    now=NOW - DAY,
)
REVOCATIONS = RevocationList(
    serial=7,
    issued_at=NOW - 3600,
    licence_ids=frozenset({"lic_revoked_0001", "lic_revoked_0002"}),
    activation_ids=frozenset({"act_revoked_0001"}),
)
REQUIRE = Requirement(
    features=("encode",), width=1920, height=1080, fps=30, platform="linux-x86_64"
)


def seal(prefix: str, payload: bytes, key_id: str = NEWEST) -> str:
    """Sign arbitrary payload bytes: the way to build refused-but-authentic tokens."""
    signature = signing_key(key_id).sign(signed_message(prefix, payload))
    return f"{prefix}.{b64url_encode(payload)}.{b64url_encode(signature)}"


def split(token: str) -> tuple[str, bytes, bytes]:
    prefix, payload, signature = token.split(".")
    return prefix, b64url_decode(payload), b64url_decode(signature)


def with_payload(token: str, payload: bytes) -> str:
    """`token` with its payload replaced and its signature kept (a forgery attempt)."""
    prefix, _, signature_text = token.split(".")
    return f"{prefix}.{b64url_encode(payload)}.{signature_text}"


def flip_signature(token: str) -> str:
    prefix, payload, signature = split(token)
    bad = bytes([signature[0] ^ 0x01]) + signature[1:]
    return f"{prefix}.{b64url_encode(payload)}.{b64url_encode(bad)}"


def require_dict(require: Requirement) -> dict[str, Any]:
    return {
        "features": list(require.features),
        "width": require.width,
        "height": require.height,
        "fps": require.fps,
        "platform": require.platform,
        "model_version": require.model_version,
    }


def require_from_dict(data: dict[str, Any]) -> Requirement:
    return Requirement(
        features=tuple(data["features"]),
        width=data["width"],
        height=data["height"],
        fps=data["fps"],
        platform=data["platform"],
        model_version=data["model_version"],
    )


def vector(
    name: str,
    description: str,
    token: str,
    expected: Code,
    *,
    now: int = NOW,
    skew_s: int = SKEW,
    apply_grace: bool = False,
    revocation_list: str | None = None,
    fingerprint: str | None = None,
    require: Requirement | None = None,
    claims: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "token": token,
        "now": now,
        "skew_s": skew_s,
        "apply_grace": apply_grace,
        "revocation_list": revocation_list,
        "fingerprint": fingerprint,
        "require": None if require is None else require_dict(require),
        "expected": expected.value,
        "claims": claims,
    }


def _malformed_envelopes(valid: str) -> list[tuple[str, str, str]]:
    prefix, payload_text, signature_text = valid.split(".")
    # Standard base64 spells 62 and 63 as + and /; force one in so the case always differs.
    std_payload = payload_text.replace("-", "+").replace("_", "/")
    if std_payload == payload_text:
        std_payload = "+" + payload_text[1:]
    return [
        ("empty", "the empty string", ""),
        ("truncated", "last character removed", valid[:-1]),
        ("truncated-payload", "payload segment cut short", f"{prefix}.{payload_text[:20]}"),
        ("padded", "base64 padding appended", valid + "=="),
        ("trailing-newline", "a newline after the token", valid + "\n"),
        ("leading-space", "a space before the token", " " + valid),
        ("lowercase-prefix", "prefix in lower case", prefix.lower() + valid[4:]),
        (
            "std-base64",
            "standard base64 alphabet in the payload",
            f"{prefix}.{std_payload}.{signature_text}",
        ),
        ("extra-segment", "four dot-separated parts", valid + ".AA"),
        ("non-ascii", "a non-ASCII character", valid[:10] + "\u00e9" + valid[11:]),
        ("too-long", "longer than 4096 characters", valid + "A" * (4097 - len(valid))),
        (
            "noncanonical-signature-bits",
            "the signature's last character carries nonzero unused bits",
            f"{prefix}.{payload_text}.{signature_text[:-1]}B",
        ),
        (
            "short-signature",
            "a 63-byte signature",
            f"{prefix}.{payload_text}.{b64url_encode(split(valid)[2][:63])}",
        ),
    ]


def licence_vectors() -> list[dict[str, Any]]:
    valid = issue_licence_key(LICENCE, signing_key(NEWEST))
    claims = replace(LICENCE, key_id=NEWEST).to_dict()
    payload = encode_licence_payload(LICENCE, NEWEST)
    revoked_list = issue_revocation_list(
        replace(REVOCATIONS, licence_ids=REVOCATIONS.licence_ids | {LICENCE.licence_id}),
        signing_key(NEWEST),
    )
    expired_at = LICENCE.expires_at + SKEW
    start = LICENCE.not_before - SKEW
    out = [
        vector("valid", "signed with the newest key", valid, Code.VALID, claims=claims),
        vector(
            "valid-with-requirement",
            "requirement covered; revocation list does not name it",
            valid,
            Code.VALID,
            require=REQUIRE,
            revocation_list=issue_revocation_list(REVOCATIONS, signing_key(NEWEST)),
            claims=claims,
        ),
        vector(
            "valid-older-key",
            "signed with an older key that is not retired (rotation)",
            issue_licence_key(LICENCE, signing_key(OLDER)),
            Code.VALID,
            claims=replace(LICENCE, key_id=OLDER).to_dict(),
        ),
        vector(
            "retired-key",
            "signed with a retired key",
            issue_licence_key(LICENCE, signing_key(RETIRED)),
            Code.KEY_RETIRED,
        ),
        vector(
            "unknown-key",
            "signed with a key id the keyring does not hold",
            issue_licence_key(LICENCE, signing_key(UNKNOWN)),
            Code.UNKNOWN_KEY,
        ),
        vector(
            "bad-signature",
            "first signature byte flipped",
            flip_signature(valid),
            Code.BAD_SIGNATURE,
        ),
        vector(
            "tampered-payload",
            "max_width changed after signing (payload still well formed)",
            with_payload(
                valid,
                encode_licence_payload(
                    replace(LICENCE, entitlements=replace(ENTITLEMENTS, max_width=7680)), NEWEST
                ),
            ),
            Code.BAD_SIGNATURE,
        ),
        vector(
            "key-id-swapped",
            "key id rewritten to another trusted key",
            with_payload(valid, encode_licence_payload(LICENCE, OLDER)),
            Code.BAD_SIGNATURE,
        ),
        vector("expired", "now = expires_at + skew", valid, Code.EXPIRED, now=expired_at),
        vector(
            "expiry-edge",
            "now = expires_at + skew - 1",
            valid,
            Code.VALID,
            now=expired_at - 1,
            claims=claims,
        ),
        vector(
            "grace",
            "past expiry but inside the offline grace (apply_grace)",
            valid,
            Code.VALID,
            now=expired_at + GRACE - 1,
            apply_grace=True,
            claims=claims,
        ),
        vector(
            "grace-over",
            "now = expires_at + offline_grace_s + skew (apply_grace)",
            valid,
            Code.EXPIRED,
            now=expired_at + GRACE,
            apply_grace=True,
        ),
        vector(
            "not-yet-valid", "now = not_before - skew - 1", valid, Code.NOT_YET_VALID, now=start - 1
        ),
        vector(
            "not-yet-valid-edge",
            "now = not_before - skew",
            valid,
            Code.VALID,
            now=start,
            claims=claims,
        ),
        vector(
            "issued-in-future",
            "issued_at after not_before: validity starts at issued_at",
            issue_licence_key(replace(LICENCE, issued_at=NOW + DAY), signing_key(NEWEST)),
            Code.NOT_YET_VALID,
        ),
        vector(
            "zero-skew",
            "one second past expiry with skew_s = 0",
            valid,
            Code.EXPIRED,
            now=LICENCE.expires_at,
            skew_s=0,
        ),
        vector(
            "revoked",
            "licence id on the revocation list",
            valid,
            Code.REVOKED,
            revocation_list=revoked_list,
        ),
        vector(
            "expired-and-revoked",
            "precedence: EXPIRED before REVOKED",
            valid,
            Code.EXPIRED,
            now=expired_at,
            revocation_list=revoked_list,
        ),
        vector(
            "missing-feature",
            "requirement names a feature the licence lacks",
            valid,
            Code.ENTITLEMENT_MISSING,
            require=Requirement(features=("preset:max",)),
        ),
        vector(
            "resolution-too-high",
            "8K requested, 4K licensed",
            valid,
            Code.ENTITLEMENT_MISSING,
            require=Requirement(width=7680, height=4320),
        ),
        vector(
            "wrong-platform",
            "platform not in the licence",
            valid,
            Code.ENTITLEMENT_MISSING,
            require=Requirement(platform="windows-x86_64"),
        ),
        vector(
            "wrong-model",
            "model version not in the licence",
            valid,
            Code.ENTITLEMENT_MISSING,
            require=Requirement(model_version="msh-v2"),
        ),
        vector(
            "revoked-and-unentitled",
            "precedence: REVOKED before ENTITLEMENT_MISSING",
            valid,
            Code.REVOKED,
            revocation_list=revoked_list,
            require=Requirement(features=("preset:max",)),
        ),
        vector(
            "certificate-as-licence",
            "an activation certificate presented as a licence key",
            issue_certificate(CERTIFICATE, signing_key(NEWEST)),
            Code.WRONG_PURPOSE,
        ),
        vector(
            "revocation-list-as-licence",
            "a revocation list presented as a licence key",
            issue_revocation_list(REVOCATIONS, signing_key(NEWEST)),
            Code.WRONG_PURPOSE,
        ),
        vector(
            "prefix-rewritten",
            "certificate with its prefix rewritten to NCL1 (the prefix is signed)",
            "NCL1" + issue_certificate(CERTIFICATE, signing_key(NEWEST))[4:],
            Code.MALFORMED,
        ),
        vector(
            "prefix-rewritten-same-layout",
            "licence payload signed as NCC1, prefix rewritten to NCL1",
            seal("NCC1", payload).replace("NCC1", "NCL1", 1),
            Code.BAD_SIGNATURE,
        ),
        vector("unsupported-version", "prefix NCL2", "NCL2" + valid[4:], Code.UNSUPPORTED_VERSION),
        vector(
            "unsupported-version-other-purpose",
            "precedence: UNSUPPORTED_VERSION before WRONG_PURPOSE (NCC2)",
            "NCC2" + valid[4:],
            Code.UNSUPPORTED_VERSION,
        ),
        vector("version-leading-zero", "prefix NCL01", "NCL01" + valid[4:], Code.MALFORMED),
        vector(
            "trailing-payload-byte",
            "a byte after the last field, correctly signed",
            seal("NCL1", payload + b"\x00"),
            Code.MALFORMED,
        ),
        vector(
            "overlong-length",
            "key id length 7 written as two varint bytes (0x87 0x00), correctly signed",
            seal("NCL1", b"\x87\x00" + payload[1:]),
            Code.MALFORMED,
        ),
        vector(
            "duplicate-feature",
            "features list holds encode twice, correctly signed",
            seal(
                "NCL1",
                payload.replace(b"\x02\x06encode\x06decode", b"\x02\x06encode\x06encode"),
            ),
            Code.MALFORMED,
        ),
        vector(
            "invalid-utf8",
            "product holds an invalid UTF-8 byte, correctly signed",
            seal("NCL1", payload.replace(b"ncodec-sdk", b"ncodec-sd\xff")),
            Code.MALFORMED,
        ),
        vector(
            "malformed-before-key",
            "precedence: MALFORMED payload before UNKNOWN_KEY",
            seal("NCL1", encode_licence_payload(LICENCE, UNKNOWN) + b"\x00", UNKNOWN),
            Code.MALFORMED,
        ),
        vector(
            "retired-and-bad-signature",
            "precedence: KEY_RETIRED before BAD_SIGNATURE",
            flip_signature(issue_licence_key(LICENCE, signing_key(RETIRED))),
            Code.KEY_RETIRED,
        ),
        vector(
            "bad-signature-and-expired",
            "precedence: BAD_SIGNATURE before EXPIRED",
            flip_signature(valid),
            Code.BAD_SIGNATURE,
            now=expired_at,
        ),
    ]
    for name, description, token in _malformed_envelopes(valid):
        out.append(vector(f"malformed-{name}", description, token, Code.MALFORMED))
    return out


def certificate_vectors() -> list[dict[str, Any]]:
    valid = issue_certificate(CERTIFICATE, signing_key(NEWEST))
    claims = replace(CERTIFICATE, key_id=NEWEST).to_dict()
    fp = FINGERPRINT.to_string()
    expired_at = CERTIFICATE.expires_at + SKEW

    def listing(**changes: frozenset[str]) -> str:
        return issue_revocation_list(replace(REVOCATIONS, **changes), signing_key(NEWEST))

    out = [
        vector(
            "valid", "this machine, newest key", valid, Code.VALID, fingerprint=fp, claims=claims
        ),
        vector(
            "valid-no-fingerprint",
            "no fingerprint given: binding not checked",
            valid,
            Code.VALID,
            claims=claims,
        ),
        vector(
            "one-component-changed",
            "the disk was replaced: tolerant match still holds",
            valid,
            Code.VALID,
            fingerprint=ONE_CHANGED.to_string(),
            claims=claims,
        ),
        vector(
            "two-components-changed",
            "disk and network card replaced: another machine",
            valid,
            Code.FINGERPRINT_MISMATCH,
            fingerprint=TWO_CHANGED.to_string(),
        ),
        vector(
            "default-validity",
            "30 days after issue (the default validity) plus skew",
            valid,
            Code.EXPIRED,
            now=expired_at,
            fingerprint=fp,
        ),
        vector(
            "grace",
            "inside the offline grace (apply_grace)",
            valid,
            Code.VALID,
            now=expired_at + GRACE - 1,
            apply_grace=True,
            fingerprint=fp,
            claims=claims,
        ),
        vector(
            "grace-over",
            "past the offline grace (apply_grace)",
            valid,
            Code.EXPIRED,
            now=expired_at + GRACE,
            apply_grace=True,
            fingerprint=fp,
        ),
        vector(
            "activation-revoked",
            "activation id on the revocation list",
            valid,
            Code.REVOKED,
            fingerprint=fp,
            revocation_list=listing(
                activation_ids=REVOCATIONS.activation_ids | {CERTIFICATE.activation_id}
            ),
        ),
        vector(
            "licence-revoked",
            "licence id on the revocation list",
            valid,
            Code.REVOKED,
            fingerprint=fp,
            revocation_list=listing(licence_ids=REVOCATIONS.licence_ids | {CERTIFICATE.licence_id}),
        ),
        vector(
            "revoked-and-other-machine",
            "precedence: REVOKED before FINGERPRINT_MISMATCH",
            valid,
            Code.REVOKED,
            fingerprint=TWO_CHANGED.to_string(),
            revocation_list=listing(
                activation_ids=REVOCATIONS.activation_ids | {CERTIFICATE.activation_id}
            ),
        ),
        vector(
            "other-machine-and-unentitled",
            "precedence: FINGERPRINT_MISMATCH before ENTITLEMENT_MISSING",
            valid,
            Code.FINGERPRINT_MISMATCH,
            fingerprint=TWO_CHANGED.to_string(),
            require=Requirement(features=("preset:max",)),
        ),
        vector(
            "entitlement-missing",
            "60 fps licensed, 120 requested",
            valid,
            Code.ENTITLEMENT_MISSING,
            fingerprint=fp,
            require=Requirement(fps=120),
        ),
        vector(
            "licence-as-certificate",
            "a licence key presented as a certificate",
            issue_licence_key(LICENCE, signing_key(NEWEST)),
            Code.WRONG_PURPOSE,
        ),
        vector(
            "retired-key",
            "signed with a retired key",
            issue_certificate(CERTIFICATE, signing_key(RETIRED)),
            Code.KEY_RETIRED,
        ),
        vector(
            "unknown-key",
            "signed with an unknown key",
            issue_certificate(CERTIFICATE, signing_key(UNKNOWN)),
            Code.UNKNOWN_KEY,
        ),
        vector(
            "bad-signature", "signature byte flipped", flip_signature(valid), Code.BAD_SIGNATURE
        ),
        vector(
            "device-key-swapped",
            "device public key replaced after signing",
            with_payload(
                valid,
                encode_certificate_payload(
                    replace(CERTIFICATE, device_public_key=bytes(32)), NEWEST
                ),
            ),
            Code.BAD_SIGNATURE,
        ),
        vector(
            "truncated-device-key",
            "payload ends inside the device public key, correctly signed",
            seal("NCC1", encode_certificate_payload(CERTIFICATE, NEWEST)[:120]),
            Code.MALFORMED,
        ),
    ]
    for name, description, token in _malformed_envelopes(valid):
        out.append(vector(f"malformed-{name}", description, token, Code.MALFORMED))
    return out


def revocation_vectors() -> list[dict[str, Any]]:
    valid = issue_revocation_list(REVOCATIONS, signing_key(NEWEST))
    claims = replace(REVOCATIONS, key_id=NEWEST).to_dict()
    payload = encode_revocation_payload(REVOCATIONS, NEWEST)

    def rl(name: str, description: str, token: str, expected: Code, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "description": description,
            "token": token,
            "min_serial": extra.get("min_serial", 0),
            "expected": expected.value,
            "claims": extra.get("claims"),
        }

    empty = RevocationList(
        serial=1, issued_at=NOW, licence_ids=frozenset(), activation_ids=frozenset()
    )
    return [
        rl("valid", "serial 7", valid, Code.VALID, claims=claims),
        rl(
            "same-serial",
            "min_serial 7: a list may be delivered twice",
            valid,
            Code.VALID,
            min_serial=7,
            claims=claims,
        ),
        rl(
            "stale",
            "min_serial 8: an older list than one already seen",
            valid,
            Code.STALE_REVOCATION_LIST,
            min_serial=8,
        ),
        rl(
            "empty",
            "nothing revoked",
            issue_revocation_list(empty, signing_key(OLDER)),
            Code.VALID,
            claims=replace(empty, key_id=OLDER).to_dict(),
        ),
        rl(
            "retired-key",
            "signed with a retired key",
            issue_revocation_list(REVOCATIONS, signing_key(RETIRED)),
            Code.KEY_RETIRED,
        ),
        rl(
            "unknown-key",
            "signed with an unknown key",
            issue_revocation_list(REVOCATIONS, signing_key(UNKNOWN)),
            Code.UNKNOWN_KEY,
        ),
        rl("bad-signature", "signature byte flipped", flip_signature(valid), Code.BAD_SIGNATURE),
        rl(
            "bad-signature-and-stale",
            "precedence: BAD_SIGNATURE before STALE_REVOCATION_LIST",
            flip_signature(valid),
            Code.BAD_SIGNATURE,
            min_serial=8,
        ),
        rl(
            "unsorted-ids",
            "licence ids out of order, correctly signed",
            seal(
                "NCR1",
                payload.replace(b"lic_revoked_0001", b"lic_revoked_000X")
                .replace(b"lic_revoked_0002", b"lic_revoked_0001")
                .replace(b"lic_revoked_000X", b"lic_revoked_0002"),
            ),
            Code.MALFORMED,
        ),
        rl(
            "licence-as-list",
            "a licence key presented as a revocation list",
            issue_licence_key(LICENCE, signing_key(NEWEST)),
            Code.WRONG_PURPOSE,
        ),
        rl("truncated", "last character removed", valid[:-1], Code.MALFORMED),
        rl("unsupported-version", "prefix NCR2", "NCR2" + valid[4:], Code.UNSUPPORTED_VERSION),
    ]


def device_vectors() -> dict[str, Any]:
    licence_key = issue_licence_key(LICENCE, signing_key(NEWEST))
    proof = activation_proof_message(
        licence_key=licence_key,
        fingerprint=FINGERPRINT.to_string(),
        device_public_key=DEVICE_PUBLIC,
        timestamp=NOW,
    )
    proof_signature = sign_with_device_key(DEVICE_KEY, ACTIVATION_PROOF_PURPOSE, proof)
    batch = b'{"activation_id":"act_01J9ZK3Q8W6T4M2N7P5R1S0V9Z","seq":1,"bytes":1048576}'
    batch_signature = sign_with_device_key(DEVICE_KEY, USAGE_BATCH_PURPOSE, batch)

    def case(
        name: str, purpose: str, message: bytes, signature: bytes, expected: Code
    ) -> dict[str, Any]:
        return {
            "name": name,
            "purpose": purpose,
            "message_hex": message.hex(),
            "signature_hex": signature.hex(),
            "expected": expected.value,
        }

    return {
        "device_private_key_hex": seed("device-key").hex(),
        "device_public_key_hex": DEVICE_PUBLIC.hex(),
        "activation_proof": {
            "licence_key": licence_key,
            "fingerprint": FINGERPRINT.to_string(),
            "timestamp": NOW,
            "message_hex": proof.hex(),
            "signed_bytes_hex": device_signed_message(ACTIVATION_PROOF_PURPOSE, proof).hex(),
        },
        "signatures": [
            case("activation-proof", ACTIVATION_PROOF_PURPOSE, proof, proof_signature, Code.VALID),
            case("usage-batch", USAGE_BATCH_PURPOSE, batch, batch_signature, Code.VALID),
            case("wrong-purpose", USAGE_BATCH_PURPOSE, proof, proof_signature, Code.BAD_SIGNATURE),
            case(
                "altered-message",
                USAGE_BATCH_PURPOSE,
                batch + b" ",
                batch_signature,
                Code.BAD_SIGNATURE,
            ),
            case(
                "short-signature",
                USAGE_BATCH_PURPOSE,
                batch,
                batch_signature[:63],
                Code.BAD_SIGNATURE,
            ),
        ],
    }


def fingerprint_vectors() -> dict[str, Any]:
    return {
        "secret_hex": FINGERPRINT_SECRET.hex(),
        "derivations": [
            {"identifiers": IDENTIFIERS, "fingerprint": FINGERPRINT.to_string()},
            {
                "identifiers": {**IDENTIFIERS, "disk": "0d6e1f2a-replacement-disk"},
                "fingerprint": ONE_CHANGED.to_string(),
            },
        ],
        "matches": [
            {
                "a": FINGERPRINT.to_string(),
                "b": FINGERPRINT.to_string(),
                "max_changed": 1,
                "expected": True,
            },
            {
                "a": FINGERPRINT.to_string(),
                "b": ONE_CHANGED.to_string(),
                "max_changed": 1,
                "expected": True,
            },
            {
                "a": FINGERPRINT.to_string(),
                "b": ONE_CHANGED.to_string(),
                "max_changed": 0,
                "expected": False,
            },
            {
                "a": FINGERPRINT.to_string(),
                "b": TWO_CHANGED.to_string(),
                "max_changed": 1,
                "expected": False,
            },
            {
                "a": FINGERPRINT.to_string(),
                "b": TWO_CHANGED.to_string(),
                "max_changed": 2,
                "expected": True,
            },
            {
                "a": "fp1:a=0000000000000000,b=1111111111111111",
                "b": "fp1:a=0000000000000000,b=2222222222222222",
                "max_changed": 1,
                "expected": False,
            },
        ],
        "malformed": [
            "",
            "fp1:",
            "FP1:a=0000000000000000",
            "fp1:b=0000000000000000,a=1111111111111111",
            "fp1:a=0000000000000000,a=1111111111111111",
            "fp1:a=00000000",
            "fp1:A=0000000000000000",
            "fp1:a=000000000000000G",
            "fp1:a=0000000000000000,",
        ],
    }


def keys_document() -> dict[str, Any]:
    return {
        "warning": "TEST KEYS ONLY: derived from public strings; never trust them in production",
        "derivation": (
            "private key = SHA-256('ncodec-licensing-test-vectors/signing-key/' + key_id)"
        ),
        "signing_keys": [
            {
                "key_id": key_id,
                "private_key_hex": seed(f"signing-key/{key_id}").hex(),
                "public_key_hex": signing_key(key_id).public_key_bytes().hex(),
                "in_keyring": key_id != UNKNOWN,
            }
            for key_id in (RETIRED, OLDER, NEWEST, UNKNOWN)
        ],
    }


def encoding_document() -> dict[str, Any]:
    """Byte-level examples: one of each artifact with its payload and the signed bytes."""
    out = []
    for name, prefix, payload, key_id in (
        ("licence_key", "NCL1", encode_licence_payload(LICENCE, NEWEST), NEWEST),
        ("certificate", "NCC1", encode_certificate_payload(CERTIFICATE, NEWEST), NEWEST),
        ("revocation_list", "NCR1", encode_revocation_payload(REVOCATIONS, NEWEST), NEWEST),
    ):
        message = signed_message(prefix, payload)
        signature = signing_key(key_id).sign(message)
        out.append(
            {
                "artifact": name,
                "key_id": key_id,
                "payload_hex": payload.hex(),
                "signed_message_hex": message.hex(),
                "signature_hex": signature.hex(),
                "token": f"{prefix}.{b64url_encode(payload)}.{b64url_encode(signature)}",
            }
        )
    return {"examples": out}


def build() -> dict[str, Any]:
    """File name -> JSON document."""
    common = {"format_version": 1, "generated_by": "tests/licensing/make_vectors.py"}
    return {
        "keyring.json": json.loads(keyring().to_json()),
        "keys.json": {**common, **keys_document()},
        "encoding.json": {**common, **encoding_document()},
        "licence_keys.json": {
            **common,
            "function": "verify_licence_key",
            "vectors": licence_vectors(),
        },
        "certificates.json": {
            **common,
            "function": "verify_certificate",
            "vectors": certificate_vectors(),
        },
        "revocation_lists.json": {
            **common,
            "function": "verify_revocation_list",
            "vectors": revocation_vectors(),
        },
        "device_signatures.json": {**common, **device_vectors()},
        "fingerprints.json": {**common, **fingerprint_vectors()},
    }


def render(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=VECTORS_DIR)
    args = parser.parse_args(argv)
    stale = []
    for name, document in build().items():
        path = args.out / name
        text = render(document)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale vectors: {', '.join(stale)} (run tests/licensing/make_vectors.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
