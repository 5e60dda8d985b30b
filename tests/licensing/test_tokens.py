"""Issuing and verifying the three artifacts: round trips, codes, skew, grace, rotation."""

from __future__ import annotations

import pickle
import re
import time
from dataclasses import replace

import pytest

from licensing import (
    MAX_REVOCATION_LIST_CHARS,
    MAX_TOKEN_CHARS,
    PRECEDENCE,
    CertificateClaims,
    Code,
    Entitlements,
    Keyring,
    LicenceClaims,
    LicensingError,
    Requirement,
    RevocationList,
    SigningKey,
    check_validity_window,
    inspect_token,
    issue_certificate,
    issue_licence_key,
    issue_revocation_list,
    verify_certificate,
    verify_licence_key,
    verify_revocation_list,
)
from tests.licensing import make_vectors as mv

NOW = mv.NOW


def code_of(call: object, *args: object, **kwargs: object) -> Code:
    assert callable(call)
    try:
        call(*args, **kwargs)
    except LicensingError as exc:
        return exc.code
    return Code.VALID


# ---------------------------------------------------------------------------- round trips


def test_licence_round_trip(licence_token: str, keyring: Keyring, licence: LicenceClaims) -> None:
    claims = verify_licence_key(licence_token, keyring, now=NOW)
    assert claims == replace(licence, key_id=mv.NEWEST)


def test_licence_key_is_compact_copy_pasteable_ascii(licence_token: str) -> None:
    assert re.fullmatch(r"NCL1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{86}", licence_token)
    # Full entitlements, two UUID-sized ids: still short enough for an e-mail or a form field.
    assert len(licence_token) < 320


def test_certificate_round_trip(
    certificate_token: str, keyring: Keyring, certificate_claims: CertificateClaims
) -> None:
    claims = verify_certificate(certificate_token, keyring, now=NOW, fingerprint=mv.FINGERPRINT)
    assert claims == replace(certificate_claims, key_id=mv.NEWEST)
    assert claims.device_public_key == mv.DEVICE_PUBLIC


def test_certificate_default_validity_is_30_days(certificate_claims: CertificateClaims) -> None:
    assert certificate_claims.expires_at - certificate_claims.issued_at == 30 * 86_400


def test_certificate_validity_never_outlives_the_licence(licence: LicenceClaims) -> None:
    claims = CertificateClaims.for_activation(
        licence,
        activation_id="act_1",
        fingerprint=mv.FINGERPRINT.to_string(),
        device_public_key=mv.DEVICE_PUBLIC,
        now=licence.expires_at - 10,
    )
    assert claims.expires_at == licence.expires_at
    assert claims.entitlements == licence.entitlements


def test_revocation_list_round_trip(
    revocation_token: str, keyring: Keyring, revocations: RevocationList
) -> None:
    rl = verify_revocation_list(revocation_token, keyring)
    assert rl == replace(revocations, key_id=mv.NEWEST)
    assert rl.is_revoked(licence_id="lic_revoked_0001")
    assert rl.is_revoked(activation_id="act_revoked_0001")
    assert not rl.is_revoked(licence_id="act_revoked_0001", activation_id="lic_revoked_0001")
    assert not rl.is_revoked()


def test_empty_lists_and_zero_values(key: SigningKey, keyring: Keyring) -> None:
    claims = LicenceClaims("", "", "", Entitlements(), 0, 0, 1, 0)
    token = issue_licence_key(claims, key)
    assert verify_licence_key(token, keyring, now=0) == replace(claims, key_id=mv.NEWEST)


def test_unicode_and_long_strings_survive(key: SigningKey, keyring: Keyring) -> None:
    claims = replace(mv.LICENCE, customer_id="Société Générale ✓", product="p" * 300)
    token = issue_licence_key(claims, key)
    assert verify_licence_key(token, keyring, now=NOW).customer_id == "Société Générale ✓"
    assert verify_licence_key(token, keyring, now=NOW).product == "p" * 300


def test_large_revocation_list_is_allowed(key: SigningKey, keyring: Keyring) -> None:
    ids = frozenset(f"lic_{i:06d}" for i in range(20_000))
    token = issue_revocation_list(RevocationList(1, NOW, ids, frozenset()), key)
    assert MAX_TOKEN_CHARS < len(token) < MAX_REVOCATION_LIST_CHARS
    assert verify_revocation_list(token, keyring).licence_ids == ids


def test_verify_defaults_to_the_system_clock(key: SigningKey, keyring: Keyring) -> None:
    now = int(time.time())
    token = issue_licence_key(replace(mv.LICENCE, issued_at=now, not_before=now), key)
    assert verify_licence_key(token, keyring).issued_at == now
    stale = issue_licence_key(replace(mv.LICENCE, expires_at=now - 3600), key)
    assert code_of(verify_licence_key, stale, keyring) is Code.EXPIRED


# ---------------------------------------------------------------------------- time rules


@pytest.mark.parametrize(
    ("now", "skew", "grace", "expected"),
    [
        (100 - 10, 10, 0, Code.VALID),  # not_before - skew: first valid second
        (100 - 11, 10, 0, Code.NOT_YET_VALID),
        (200 + 10 - 1, 10, 0, Code.VALID),  # expires_at + skew - 1: last valid second
        (200 + 10, 10, 0, Code.EXPIRED),
        (200, 0, 0, Code.EXPIRED),
        (199, 0, 0, Code.VALID),
        (200 + 50 + 10 - 1, 10, 50, Code.VALID),
        (200 + 50 + 10, 10, 50, Code.EXPIRED),
    ],
)
def test_validity_window(now: int, skew: int, grace: int, expected: Code) -> None:
    code = code_of(
        check_validity_window,
        issued_at=50,
        not_before=100,
        expires_at=200,
        now=now,
        skew_s=skew,
        grace_s=grace,
    )
    assert code is expected


def test_issued_at_later_than_not_before_starts_validity() -> None:
    common = {"not_before": 0, "expires_at": 1000, "skew_s": 0}
    assert code_of(check_validity_window, issued_at=500, now=499, **common) is Code.NOT_YET_VALID
    assert code_of(check_validity_window, issued_at=500, now=500, **common) is Code.VALID


def test_grace_applies_only_when_asked(licence_token: str, keyring: Keyring) -> None:
    after = mv.LICENCE.expires_at + 300 + 60
    assert code_of(verify_licence_key, licence_token, keyring, now=after) is Code.EXPIRED
    claims = verify_licence_key(licence_token, keyring, now=after, apply_grace=True)
    assert claims.licence_id == mv.LICENCE.licence_id


@pytest.mark.parametrize("skew", [-1, True, 1.5])
def test_bad_skew_argument(licence_token: str, keyring: Keyring, skew: object) -> None:
    with pytest.raises(LicensingError) as info:
        verify_licence_key(licence_token, keyring, now=NOW, skew_s=skew)  # type: ignore[arg-type]
    assert info.value.code is Code.MALFORMED


@pytest.mark.parametrize("now", [True, 1.5, "1"])
def test_bad_now_argument(licence_token: str, keyring: Keyring, now: object) -> None:
    with pytest.raises(LicensingError) as info:
        verify_licence_key(licence_token, keyring, now=now)  # type: ignore[arg-type]
    assert info.value.code is Code.MALFORMED


# ---------------------------------------------------------------------------- purposes


@pytest.mark.parametrize("verifier", ["licence", "certificate", "revocation"])
@pytest.mark.parametrize("artifact", ["licence", "certificate", "revocation"])
def test_each_artifact_is_accepted_only_for_its_purpose(
    verifier: str,
    artifact: str,
    licence_token: str,
    certificate_token: str,
    revocation_token: str,
    keyring: Keyring,
) -> None:
    token = {"licence": licence_token, "certificate": certificate_token}.get(
        artifact, revocation_token
    )
    call = {
        "licence": lambda: verify_licence_key(token, keyring, now=NOW),
        "certificate": lambda: verify_certificate(token, keyring, now=NOW),
        "revocation": lambda: verify_revocation_list(token, keyring),
    }[verifier]
    assert code_of(call) is (Code.VALID if verifier == artifact else Code.WRONG_PURPOSE)


def test_signature_covers_the_prefix(key: SigningKey, keyring: Keyring) -> None:
    # Same payload bytes under two prefixes: the signature of one never verifies the other.
    from licensing.tokens import encode_licence_payload

    payload = encode_licence_payload(mv.LICENCE, key.key_id)
    as_certificate = mv.seal("NCC1", payload)
    forged = "NCL1" + as_certificate[4:]
    assert code_of(verify_licence_key, forged, keyring, now=NOW) is Code.BAD_SIGNATURE


# ---------------------------------------------------------------------------- keys and rotation


def test_rotation_retirement_and_unknown_keys(licence: LicenceClaims) -> None:
    old, new = SigningKey.generate("k-old"), SigningKey.generate("k-new")
    ring = Keyring()
    ring.add(old.key_id, old.public_key_bytes())
    ring.add(new.key_id, new.public_key_bytes())
    by_old, by_new = issue_licence_key(licence, old), issue_licence_key(licence, new)
    assert ring.newest_active_key_id() == "k-new"
    # Rotation: both stay valid until expiry.
    assert verify_licence_key(by_old, ring, now=NOW).key_id == "k-old"
    assert verify_licence_key(by_new, ring, now=NOW).key_id == "k-new"
    # Compromise of the old key: retire it, the new key is untouched.
    ring.retire("k-old")
    assert code_of(verify_licence_key, by_old, ring, now=NOW) is Code.KEY_RETIRED
    assert verify_licence_key(by_new, ring, now=NOW).key_id == "k-new"
    stranger = issue_licence_key(licence, SigningKey.generate("k-other"))
    assert code_of(verify_licence_key, stranger, ring, now=NOW) is Code.UNKNOWN_KEY


def test_same_key_id_other_key_is_a_bad_signature(licence: LicenceClaims, keyring: Keyring) -> None:
    impostor = SigningKey.generate(mv.NEWEST)
    token = issue_licence_key(licence, impostor)
    assert code_of(verify_licence_key, token, keyring, now=NOW) is Code.BAD_SIGNATURE


# ---------------------------------------------------------------------------- claims checks


def test_revocation_and_requirement(
    licence_token: str, certificate_token: str, keyring: Keyring
) -> None:
    listing = RevocationList(1, NOW, frozenset({mv.LICENCE.licence_id}), frozenset())
    assert code_of(verify_licence_key, licence_token, keyring, now=NOW, revocations=listing) is (
        Code.REVOKED
    )
    assert code_of(
        verify_certificate, certificate_token, keyring, now=NOW, revocations=listing
    ) is (Code.REVOKED)
    covered = Requirement(features=("decode",), width=3840, height=2160, fps=60)
    assert verify_licence_key(licence_token, keyring, now=NOW, require=covered)
    with pytest.raises(LicensingError) as info:
        verify_licence_key(
            licence_token, keyring, now=NOW, require=Requirement(features=("x",), fps=61)
        )
    assert info.value.code is Code.ENTITLEMENT_MISSING
    assert "feature 'x'" in info.value.message and "fps 61 > 60" in info.value.message


def test_fingerprint_binding(certificate_token: str, keyring: Keyring) -> None:
    ok = verify_certificate(
        certificate_token, keyring, now=NOW, fingerprint=mv.ONE_CHANGED.to_string()
    )
    assert ok.activation_id == mv.CERTIFICATE.activation_id
    assert (
        code_of(verify_certificate, certificate_token, keyring, now=NOW, fingerprint=mv.TWO_CHANGED)
        is Code.FINGERPRINT_MISMATCH
    )


def test_bad_fingerprint_argument_is_reported_first(keyring: Keyring) -> None:
    with pytest.raises(LicensingError) as info:
        verify_certificate("garbage", keyring, fingerprint="not a fingerprint")
    assert info.value.code is Code.MALFORMED
    assert "fingerprint" in info.value.message


def test_unreadable_fingerprint_in_a_signed_certificate(keyring: Keyring) -> None:
    # Our issuer refuses this; a certificate from elsewhere must still fail closed.
    from licensing.tokens import Writer

    w = Writer()
    for value in (mv.NEWEST, "lic", "act", "cus", "not-a-fingerprint"):
        w.string(value, "f")
    w.raw(mv.DEVICE_PUBLIC, 32, "k")
    w.u32s({f"f{i}": v for i, v in enumerate([NOW, NOW, NOW + 10, 0, 0, 0, 0, 0])})
    for _ in range(3):
        w.strings((), "l")
    token = mv.seal("NCC1", w.getvalue())
    assert verify_certificate(token, keyring, now=NOW).fingerprint == "not-a-fingerprint"
    code = code_of(verify_certificate, token, keyring, now=NOW, fingerprint=mv.FINGERPRINT)
    assert code is Code.FINGERPRINT_MISMATCH


def test_stale_revocation_list(revocation_token: str, keyring: Keyring) -> None:
    assert verify_revocation_list(revocation_token, keyring, min_serial=7).serial == 7
    assert (
        code_of(verify_revocation_list, revocation_token, keyring, min_serial=8)
        is Code.STALE_REVOCATION_LIST
    )


# ---------------------------------------------------------------------------- issuing refuses


@pytest.mark.parametrize(
    "claims",
    [
        replace(mv.LICENCE, expires_at=2**32),
        replace(mv.LICENCE, issued_at=-1),
        replace(mv.LICENCE, offline_grace_s=True),
        replace(mv.LICENCE, licence_id=7),
        replace(mv.LICENCE, product="x" * 1025),
        replace(mv.LICENCE, customer_id="\ud800"),
        replace(mv.LICENCE, entitlements=replace(mv.ENTITLEMENTS, features=("a", "a"))),
        replace(mv.LICENCE, entitlements=replace(mv.ENTITLEMENTS, platforms="linux")),
        replace(mv.LICENCE, entitlements=replace(mv.ENTITLEMENTS, model_versions=(1,))),
        replace(mv.LICENCE, entitlements=replace(mv.ENTITLEMENTS, max_fps=-1)),
        replace(mv.LICENCE, entitlements={"features": []}),
        replace(mv.LICENCE, entitlements=replace(mv.ENTITLEMENTS, features=("f" * 1025,))),
        mv.CERTIFICATE,
    ],
    ids=lambda c: type(c).__name__,
)
def test_issue_licence_refuses_bad_claims(claims: object, key: SigningKey) -> None:
    with pytest.raises(LicensingError) as info:
        issue_licence_key(claims, key)  # type: ignore[arg-type]
    assert info.value.code is Code.MALFORMED


def test_issue_refuses_oversized_tokens(key: SigningKey) -> None:
    many = tuple(f"feature-{i:04d}-{'x' * 40}" for i in range(80))
    claims = replace(mv.LICENCE, entitlements=replace(mv.ENTITLEMENTS, features=many))
    with pytest.raises(LicensingError, match="limit is 4096"):
        issue_licence_key(claims, key)


@pytest.mark.parametrize(
    "claims",
    [
        replace(mv.CERTIFICATE, fingerprint="nope"),
        replace(mv.CERTIFICATE, device_public_key=b"\x00" * 31),
        replace(mv.CERTIFICATE, device_public_key="a" * 32),
        mv.LICENCE,
    ],
)
def test_issue_certificate_refuses_bad_claims(claims: object, key: SigningKey) -> None:
    with pytest.raises(LicensingError) as info:
        issue_certificate(claims, key)  # type: ignore[arg-type]
    assert info.value.code is Code.MALFORMED


@pytest.mark.parametrize(
    "rl",
    [
        RevocationList(2**32, NOW, frozenset(), frozenset()),
        RevocationList(1, NOW, ["a"], frozenset()),  # type: ignore[arg-type]
        RevocationList(1, NOW, frozenset({1}), frozenset()),  # type: ignore[arg-type]
        mv.LICENCE,
    ],
)
def test_issue_revocation_list_refuses_bad_input(rl: object, key: SigningKey) -> None:
    with pytest.raises(LicensingError) as info:
        issue_revocation_list(rl, key)  # type: ignore[arg-type]
    assert info.value.code is Code.MALFORMED


def test_issue_needs_a_signing_key() -> None:
    with pytest.raises(LicensingError):
        issue_licence_key(mv.LICENCE, "key")  # type: ignore[arg-type]


def test_revocation_list_beyond_one_mebibyte_is_refused(key: SigningKey) -> None:
    ids = frozenset(f"{i:0200d}" for i in range(4000))
    with pytest.raises(LicensingError, match="limit is 1048576"):
        issue_revocation_list(RevocationList(1, NOW, ids, frozenset()), key)


# ---------------------------------------------------------------------------- inspect


def test_inspect_never_claims_verification(
    licence_token: str, certificate_token: str, revocation_token: str
) -> None:
    for token, purpose in (
        (licence_token, "licence_key"),
        (certificate_token, "certificate"),
        (revocation_token, "revocation_list"),
    ):
        decoded = inspect_token(token)
        assert decoded["purpose"] == purpose
        assert decoded["verified"] is False
        assert decoded["key_id"] == mv.NEWEST
        assert decoded["version"] == 1
        assert decoded["prefix"] == token[:4]


def test_inspect_decodes_tokens_it_would_refuse(licence: LicenceClaims) -> None:
    token = issue_licence_key(licence, SigningKey.generate("stranger"))
    assert inspect_token(token)["claims"]["licence_id"] == licence.licence_id
    with pytest.raises(LicensingError) as info:
        inspect_token("NCL9" + token[4:])
    assert info.value.code is Code.UNSUPPORTED_VERSION


# ---------------------------------------------------------------------------- the error type


def test_precedence_order_is_the_documented_one() -> None:
    assert [c.value for c in PRECEDENCE] == [
        "MALFORMED",
        "UNSUPPORTED_VERSION",
        "WRONG_PURPOSE",
        "UNKNOWN_KEY",
        "KEY_RETIRED",
        "BAD_SIGNATURE",
        "CLOCK_ROLLBACK",
        "NOT_YET_VALID",
        "EXPIRED",
        "REVOKED",
        "STALE_REVOCATION_LIST",
        "FINGERPRINT_MISMATCH",
        "ENTITLEMENT_MISSING",
        "VALID",
    ]


def test_error_is_one_line_and_picklable() -> None:
    err = LicensingError(Code.EXPIRED, "expired\n  at   noon")
    assert str(err) == "EXPIRED: expired at noon"
    assert err.message == "expired at noon"
    again = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert (again.code, again.message) == (Code.EXPIRED, "expired at noon")
    assert LicensingError(Code.REVOKED).message
    assert Code.REVOKED == "REVOKED"


@pytest.mark.parametrize("token", [None, b"NCL1.AA.AA", 5, ["NCL1"]])
def test_non_text_tokens_are_malformed(token: object, keyring: Keyring) -> None:
    assert code_of(verify_licence_key, token, keyring) is Code.MALFORMED
    assert code_of(inspect_token, token) is Code.MALFORMED


def test_bad_arguments_are_reported_before_the_token(keyring: Keyring) -> None:
    retired = issue_licence_key(mv.LICENCE, mv.signing_key(mv.RETIRED))
    assert code_of(verify_licence_key, retired, keyring, now=NOW) is Code.KEY_RETIRED
    assert code_of(verify_licence_key, retired, keyring, skew_s=-1) is Code.MALFORMED
    assert code_of(verify_certificate, retired, keyring, now="x") is Code.MALFORMED
