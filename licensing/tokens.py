"""The three signed artifacts: envelope, payload formats, issuing and verification.

Envelope (all ASCII):  <prefix> "." base64url(payload) "." base64url(signature)
  prefix   "NC" + purpose letter (L licence key, C activation certificate, R revocation list)
           + format version (decimal, no leading zero). Version 1 means Ed25519 and the
           payload layouts below; nothing else in a token can choose an algorithm.
Signature: Ed25519 over  "ncodec-licensing\\0" || prefix || "\\0" || u32be(len(payload)) || payload
  so the visible prefix (purpose + version) is inside the signed bytes: a certificate can
  never be accepted as a licence key even if someone rewrites its prefix.

Verification runs the checks in the documented precedence (see licensing.errors.Code and
docs/licensing.md) and raises LicensingError with the first failing code.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Final

from cryptography.exceptions import InvalidSignature

from licensing._binary import (
    READ_ERRORS,
    Reader,
    Writer,
    b64url_decode_checked,
    b64url_encode,
    malformed,
)
from licensing.claims import (
    CertificateClaims,
    Entitlements,
    LicenceClaims,
    Requirement,
    RevocationList,
    check_entitlements,
)
from licensing.errors import Code, LicensingError
from licensing.fingerprint import Fingerprint
from licensing.keys import Keyring, SigningKey

FORMAT_VERSION: Final = 1
LICENCE_PREFIX: Final = "NCL1"
CERTIFICATE_PREFIX: Final = "NCC1"
REVOCATION_LIST_PREFIX: Final = "NCR1"
PURPOSES: Final = {"L": "licence_key", "C": "certificate", "R": "revocation_list"}
MAX_TOKEN_CHARS: Final = 4096
MAX_REVOCATION_LIST_CHARS: Final = 1 << 20
DEVICE_PUBLIC_KEY_BYTES: Final = 32

_SIGNATURE_DOMAIN = b"ncodec-licensing\x00"
_SUPPORTED_VERSION = "1"
_TOKEN_RE = re.compile(r"NC([LCR])([1-9][0-9]{0,3})\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")

Clock = Callable[[int | None], int]


def signed_message(prefix: str, payload: bytes) -> bytes:
    """The exact bytes the issuer signs for a token with `prefix` and `payload`."""
    return (
        _SIGNATURE_DOMAIN
        + prefix.encode("ascii")
        + b"\x00"
        + len(payload).to_bytes(4, "big")
        + payload
    )


# ---------------------------------------------------------------------------- envelope


def _open(token: object, expected: str | None) -> tuple[str, str, bytes, bytes]:
    """Split and decode the envelope: (purpose letter, prefix, payload, signature).

    Checks in precedence order: MALFORMED (shape), UNSUPPORTED_VERSION, WRONG_PURPOSE,
    MALFORMED (base64url, signature length)."""
    if not isinstance(token, str):
        raise malformed("a token is a text string")
    size = len(token)
    # Cap before any regex or decoding: only revocation lists may be long.
    if size > MAX_TOKEN_CHARS and (size > MAX_REVOCATION_LIST_CHARS or not token.startswith("NCR")):
        raise malformed("the token is too long")
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        raise malformed("not a token: expected NC<purpose><version>.<payload>.<signature>")
    letter, version, payload_text, signature_text = match.groups()
    if version != _SUPPORTED_VERSION:
        raise LicensingError(
            Code.UNSUPPORTED_VERSION, f"format version {version} is not supported (only 1)"
        )
    if expected is not None and letter != expected:
        raise LicensingError(
            Code.WRONG_PURPOSE,
            f"expected a {PURPOSES[expected]} token, got a {PURPOSES[letter]} token",
        )
    if len(signature_text) != 86:
        raise malformed("the signature segment must be 86 base64url characters")
    payload = b64url_decode_checked(payload_text)
    signature = b64url_decode_checked(signature_text)
    return letter, token[:4], payload, signature


def _key_id(key: SigningKey) -> str:
    if not isinstance(key, SigningKey):
        raise malformed("issuing needs a licensing.SigningKey")
    return key.key_id


def _seal(prefix: str, payload: bytes, key: SigningKey) -> str:
    signature = key.sign(signed_message(prefix, payload))
    token = f"{prefix}.{b64url_encode(payload)}.{b64url_encode(signature)}"
    limit = MAX_REVOCATION_LIST_CHARS if prefix == REVOCATION_LIST_PREFIX else MAX_TOKEN_CHARS
    if len(token) > limit:
        raise malformed(f"the token would be {len(token)} characters; the limit is {limit}")
    return token


def _authenticate(
    keyring: Keyring, key_id: str, prefix: str, payload: bytes, signature: bytes
) -> None:
    public_key = keyring.verifier(key_id)  # UNKNOWN_KEY, KEY_RETIRED
    try:
        public_key.verify(signature, signed_message(prefix, payload))
    except InvalidSignature:
        raise LicensingError(Code.BAD_SIGNATURE) from None


# ---------------------------------------------------------------------------- payloads


def _write_fixed(w: Writer, claims: LicenceClaims | CertificateClaims) -> None:
    e = claims.entitlements
    if not isinstance(e, Entitlements):
        raise malformed("entitlements must be a licensing.Entitlements")
    w.u32s(
        {
            "issued_at": claims.issued_at,
            "not_before": claims.not_before,
            "expires_at": claims.expires_at,
            "offline_grace_s": claims.offline_grace_s,
            "max_width": e.max_width,
            "max_height": e.max_height,
            "max_fps": e.max_fps,
            "max_activations": e.max_activations,
        }
    )
    w.strings(e.features, "features")
    w.strings(e.platforms, "platforms")
    w.strings(e.model_versions, "model_versions")


def encode_licence_payload(claims: LicenceClaims, key_id: str) -> bytes:
    if not isinstance(claims, LicenceClaims):
        raise malformed("issue_licence_key needs LicenceClaims")
    w = Writer()
    w.string(key_id, "key_id")
    w.string(claims.licence_id, "licence_id")
    w.string(claims.customer_id, "customer_id")
    w.string(claims.product, "product")
    _write_fixed(w, claims)
    return w.getvalue()


def decode_licence_payload(payload: bytes) -> LicenceClaims:
    r = Reader(payload)
    string = r.string
    try:
        key_id = string()
        licence_id = string()
        customer_id = string()
        product = string()
        issued, start, expires, grace, width, height, fps, activations = r.u32s(8)
        entitlements = Entitlements(
            r.strings(), width, height, fps, activations, r.strings(), r.strings()
        )
    except READ_ERRORS:
        raise malformed("the licence key payload is truncated or not UTF-8") from None
    r.end()
    return LicenceClaims(
        licence_id, customer_id, product, entitlements, issued, start, expires, grace, key_id
    )


def encode_certificate_payload(claims: CertificateClaims, key_id: str) -> bytes:
    if not isinstance(claims, CertificateClaims):
        raise malformed("issue_certificate needs CertificateClaims")
    # A certificate must carry a fingerprint the verifier can match.
    Fingerprint.from_string(claims.fingerprint)
    w = Writer()
    w.string(key_id, "key_id")
    w.string(claims.licence_id, "licence_id")
    w.string(claims.activation_id, "activation_id")
    w.string(claims.customer_id, "customer_id")
    w.string(claims.fingerprint, "fingerprint")
    w.raw(claims.device_public_key, DEVICE_PUBLIC_KEY_BYTES, "device_public_key")
    _write_fixed(w, claims)
    return w.getvalue()


def decode_certificate_payload(payload: bytes) -> CertificateClaims:
    r = Reader(payload)
    string = r.string
    try:
        key_id = string()
        licence_id = string()
        activation_id = string()
        customer_id = string()
        fingerprint = string()
        device_public_key = r.raw(DEVICE_PUBLIC_KEY_BYTES)
        issued, start, expires, grace, width, height, fps, activations = r.u32s(8)
        entitlements = Entitlements(
            r.strings(), width, height, fps, activations, r.strings(), r.strings()
        )
    except READ_ERRORS:
        raise malformed("the certificate payload is truncated or not UTF-8") from None
    r.end()
    return CertificateClaims(
        licence_id,
        activation_id,
        customer_id,
        fingerprint,
        device_public_key,
        entitlements,
        issued,
        start,
        expires,
        grace,
        key_id,
    )


def encode_revocation_payload(rl: RevocationList, key_id: str) -> bytes:
    if not isinstance(rl, RevocationList):
        raise malformed("issue_revocation_list needs a RevocationList")
    w = Writer()
    w.string(key_id, "key_id")
    w.u32s({"serial": rl.serial, "issued_at": rl.issued_at})
    w.sorted_strings(rl.licence_ids, "licence_ids")
    w.sorted_strings(rl.activation_ids, "activation_ids")
    return w.getvalue()


def decode_revocation_payload(payload: bytes) -> RevocationList:
    r = Reader(payload)
    try:
        key_id = r.string()
        serial, issued_at = r.u32s(2)
        licence_ids = r.sorted_strings()
        activation_ids = r.sorted_strings()
    except READ_ERRORS:
        raise malformed("the revocation list payload is truncated or not UTF-8") from None
    r.end()
    return RevocationList(
        serial, issued_at, frozenset(licence_ids), frozenset(activation_ids), key_id
    )


_DECODERS: dict[str, Callable[[bytes], LicenceClaims | CertificateClaims | RevocationList]] = {
    "L": decode_licence_payload,
    "C": decode_certificate_payload,
    "R": decode_revocation_payload,
}


# ---------------------------------------------------------------------------- issuing


def issue_licence_key(claims: LicenceClaims, key: SigningKey) -> str:
    """Sign `claims` with `key`; the key id written into the token is `key.key_id`."""
    return _seal(LICENCE_PREFIX, encode_licence_payload(claims, _key_id(key)), key)


def issue_certificate(claims: CertificateClaims, key: SigningKey) -> str:
    return _seal(CERTIFICATE_PREFIX, encode_certificate_payload(claims, _key_id(key)), key)


def issue_revocation_list(rl: RevocationList, key: SigningKey) -> str:
    return _seal(REVOCATION_LIST_PREFIX, encode_revocation_payload(rl, _key_id(key)), key)


# ---------------------------------------------------------------------------- verification


def _check_time_arguments(now: int | None, skew_s: int) -> None:
    # Caller errors are reported before the token is judged, whatever the token holds.
    if isinstance(skew_s, bool) or not isinstance(skew_s, int) or skew_s < 0:
        raise malformed("skew_s must be a non-negative integer")
    if now is not None and (isinstance(now, bool) or not isinstance(now, int)):
        raise malformed("now must be an integer (Unix seconds)")


def _resolve_now(now: int | None, clock: Clock | None) -> int:
    if clock is not None:
        return clock(now)  # CLOCK_ROLLBACK comes before every time-based check
    return int(time.time()) if now is None else now


#: Clock skew tolerated between issuer and verifier, either way, unless a caller says otherwise.
DEFAULT_SKEW_S = 300


def check_validity_window(
    *,
    issued_at: int,
    not_before: int,
    expires_at: int,
    now: int,
    skew_s: int,
    grace_s: int = 0,
) -> None:
    """NOT_YET_VALID when now < max(issued_at, not_before) - skew_s;
    EXPIRED when now >= expires_at + grace_s + skew_s."""
    start = max(issued_at, not_before)
    if now < start - skew_s:
        raise LicensingError(
            Code.NOT_YET_VALID, f"valid from {start}; now is {now} (skew {skew_s} s)"
        )
    if now >= expires_at + grace_s + skew_s:
        raise LicensingError(
            Code.EXPIRED,
            f"expired at {expires_at} (+{grace_s} s grace, {skew_s} s skew); now is {now}",
        )


def _as_fingerprint(fingerprint: Fingerprint | str) -> Fingerprint:
    if isinstance(fingerprint, Fingerprint):
        return fingerprint
    return Fingerprint.from_string(fingerprint)


def _verify_licence(
    token: str,
    keyring: Keyring,
    *,
    now: int | None,
    skew_s: int,
    revocations: RevocationList | None,
    require: Requirement | None,
    apply_grace: bool,
    clock: Clock | None,
) -> LicenceClaims:
    _check_time_arguments(now, skew_s)
    _, prefix, payload, signature = _open(token, "L")
    claims = decode_licence_payload(payload)
    _authenticate(keyring, claims.key_id, prefix, payload, signature)
    now = _resolve_now(now, clock)
    check_validity_window(
        issued_at=claims.issued_at,
        not_before=claims.not_before,
        expires_at=claims.expires_at,
        now=now,
        skew_s=skew_s,
        grace_s=claims.offline_grace_s if apply_grace else 0,
    )
    if revocations is not None and claims.licence_id in revocations.licence_ids:
        raise LicensingError(Code.REVOKED, f"licence {claims.licence_id!r} is revoked")
    if require is not None:
        check_entitlements(claims.entitlements, require)
    return claims


def _verify_certificate(
    token: str,
    keyring: Keyring,
    *,
    now: int | None,
    skew_s: int,
    fingerprint: Fingerprint | str | None,
    revocations: RevocationList | None,
    require: Requirement | None,
    apply_grace: bool,
    clock: Clock | None,
) -> CertificateClaims:
    _check_time_arguments(now, skew_s)
    expected = None if fingerprint is None else _as_fingerprint(fingerprint)
    _, prefix, payload, signature = _open(token, "C")
    claims = decode_certificate_payload(payload)
    _authenticate(keyring, claims.key_id, prefix, payload, signature)
    now = _resolve_now(now, clock)
    check_validity_window(
        issued_at=claims.issued_at,
        not_before=claims.not_before,
        expires_at=claims.expires_at,
        now=now,
        skew_s=skew_s,
        grace_s=claims.offline_grace_s if apply_grace else 0,
    )
    if revocations is not None:
        if claims.licence_id in revocations.licence_ids:
            raise LicensingError(Code.REVOKED, f"licence {claims.licence_id!r} is revoked")
        if claims.activation_id in revocations.activation_ids:
            raise LicensingError(Code.REVOKED, f"activation {claims.activation_id!r} is revoked")
    # Same canonical string means same machine: skip parsing on the common path.
    if expected is not None and claims.fingerprint != expected.to_string():
        try:
            bound = Fingerprint.from_string(claims.fingerprint)
        except LicensingError:
            raise LicensingError(
                Code.FINGERPRINT_MISMATCH, "the certificate's fingerprint is unreadable"
            ) from None
        if not bound.matches(expected):
            raise LicensingError(
                Code.FINGERPRINT_MISMATCH, "this machine is not the one the certificate names"
            )
    if require is not None:
        check_entitlements(claims.entitlements, require)
    return claims


def verify_licence_key(
    token: str,
    keyring: Keyring,
    *,
    now: int | None = None,
    skew_s: int = DEFAULT_SKEW_S,
    revocations: RevocationList | None = None,
    require: Requirement | None = None,
    apply_grace: bool = False,
) -> LicenceClaims:
    """Verify a licence key; return its claims (key_id = the key that signed it).

    `apply_grace` extends the validity by the token's offline_grace_s (what an offline
    verifier does); online callers leave it off."""
    return _verify_licence(
        token,
        keyring,
        now=now,
        skew_s=skew_s,
        revocations=revocations,
        require=require,
        apply_grace=apply_grace,
        clock=None,
    )


def verify_certificate(
    token: str,
    keyring: Keyring,
    *,
    now: int | None = None,
    skew_s: int = DEFAULT_SKEW_S,
    fingerprint: Fingerprint | str | None = None,
    revocations: RevocationList | None = None,
    require: Requirement | None = None,
    apply_grace: bool = False,
) -> CertificateClaims:
    """Verify an activation certificate; `fingerprint` (this machine) is matched tolerantly."""
    return _verify_certificate(
        token,
        keyring,
        now=now,
        skew_s=skew_s,
        fingerprint=fingerprint,
        revocations=revocations,
        require=require,
        apply_grace=apply_grace,
        clock=None,
    )


def verify_revocation_list(token: str, keyring: Keyring, *, min_serial: int = 0) -> RevocationList:
    """Verify a revocation list; STALE_REVOCATION_LIST when its serial is below `min_serial`
    (the newest serial this verifier has already accepted)."""
    _, prefix, payload, signature = _open(token, "R")
    rl = decode_revocation_payload(payload)
    _authenticate(keyring, rl.key_id, prefix, payload, signature)
    if rl.serial < min_serial:
        raise LicensingError(
            Code.STALE_REVOCATION_LIST,
            f"serial {rl.serial} is older than serial {min_serial} already seen",
        )
    return rl


def inspect_token(token: str) -> dict[str, Any]:
    """Decode a token WITHOUT verifying anything: for display and support only."""
    letter, prefix, payload, _ = _open(token, None)
    claims = _DECODERS[letter](payload)
    return {
        "purpose": PURPOSES[letter],
        "prefix": prefix,
        "version": FORMAT_VERSION,
        "key_id": claims.key_id,
        "claims": claims.to_dict(),
        "verified": False,
    }
