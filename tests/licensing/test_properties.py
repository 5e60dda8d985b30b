"""Property tests: no input makes a parser raise anything but LicensingError; round trips."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from licensing import (
    CertificateClaims,
    Code,
    Entitlements,
    Fingerprint,
    Keyring,
    LicenceClaims,
    LicensingError,
    RevocationList,
    inspect_token,
    issue_certificate,
    issue_licence_key,
    issue_revocation_list,
    verify_certificate,
    verify_licence_key,
    verify_revocation_list,
)
from licensing._binary import b64url_encode
from licensing.tokens import (
    decode_certificate_payload,
    decode_licence_payload,
    decode_revocation_payload,
)
from tests.licensing import make_vectors as mv

KEYRING = mv.keyring()
KEY = mv.signing_key(mv.NEWEST)
CHEAP = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIGNING = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PARSERS: list[Callable[[str], object]] = [
    inspect_token,
    lambda t: verify_licence_key(t, KEYRING, now=mv.NOW),
    lambda t: verify_certificate(t, KEYRING, now=mv.NOW, fingerprint=mv.FINGERPRINT),
    lambda t: verify_revocation_list(t, KEYRING),
]
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def only_licensing_errors(call: Callable[[], object]) -> Code:
    try:
        call()
    except LicensingError as exc:
        assert isinstance(exc.code, Code)
        assert "\n" not in str(exc)
        return exc.code
    return Code.VALID


@CHEAP
@given(st.text(max_size=600))
def test_any_text_is_refused_cleanly(text: str) -> None:
    for parse in PARSERS:
        only_licensing_errors(lambda parse=parse: parse(text))


@CHEAP
@given(
    st.sampled_from(["NCL1", "NCC1", "NCR1", "NCL2", "NCX1"]),
    st.binary(max_size=400),
    st.binary(min_size=64, max_size=64),
)
def test_any_payload_in_a_well_formed_envelope_is_refused_cleanly(
    prefix: str, payload: bytes, signature: bytes
) -> None:
    token = f"{prefix}.{b64url_encode(payload)}.{b64url_encode(signature)}"
    for parse in PARSERS:
        assert only_licensing_errors(lambda parse=parse: parse(token)) is not Code.VALID or (
            parse is inspect_token
        )


@CHEAP
@given(st.binary(max_size=600))
def test_payload_decoders_are_total(payload: bytes) -> None:
    for decode in (decode_licence_payload, decode_certificate_payload, decode_revocation_payload):
        only_licensing_errors(lambda decode=decode: decode(payload))


@SIGNING
@given(st.sampled_from(["NCL1", "NCC1", "NCR1"]), st.binary(max_size=300))
def test_signed_garbage_is_malformed_or_parses(prefix: str, payload: bytes) -> None:
    # Authentic bytes that our issuer would never produce: still only LicensingError.
    token = mv.seal(prefix, payload)
    for parse in PARSERS:
        only_licensing_errors(lambda parse=parse: parse(token))


@CHEAP
@given(st.data())
def test_random_edits_of_a_valid_token_are_never_valid(data: st.DataObject) -> None:
    token = issue_licence_key(mv.LICENCE, KEY)
    chars = list(token)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(chars) - 1))
        op = data.draw(st.sampled_from(["replace", "delete", "insert"]))
        char = data.draw(st.sampled_from(B64URL + ".=+/ "))
        if op == "replace":
            chars[index] = char
        elif op == "delete":
            del chars[index]
        else:
            chars.insert(index, char)
    edited = "".join(chars)
    if edited != token:
        code = only_licensing_errors(lambda: verify_licence_key(edited, KEYRING, now=mv.NOW))
        assert code is not Code.VALID


small_text = st.text(max_size=40)
u32 = st.integers(0, 2**32 - 1)
unique_texts = st.lists(st.text(max_size=20), max_size=4, unique=True).map(tuple)
entitlements = st.builds(
    Entitlements,
    features=unique_texts,
    max_width=u32,
    max_height=u32,
    max_fps=u32,
    max_activations=u32,
    platforms=unique_texts,
    model_versions=unique_texts,
)
licences = st.builds(
    LicenceClaims,
    licence_id=small_text,
    customer_id=small_text,
    product=small_text,
    entitlements=entitlements,
    issued_at=u32,
    not_before=u32,
    expires_at=u32,
    offline_grace_s=u32,
)


@SIGNING
@given(licences)
def test_licence_round_trip(claims: LicenceClaims) -> None:
    token = issue_licence_key(claims, KEY)
    decoded = inspect_token(token)
    assert decoded["claims"] == replace(claims, key_id=mv.NEWEST).to_dict()
    assert LicenceClaims.from_dict(decoded["claims"]) == replace(claims, key_id=mv.NEWEST)
    now = max(claims.issued_at, claims.not_before)
    if now < claims.expires_at:
        assert verify_licence_key(token, KEYRING, now=now, skew_s=0) == replace(
            claims, key_id=mv.NEWEST
        )


@SIGNING
@given(licences, small_text, st.binary(min_size=32, max_size=32))
def test_certificate_round_trip(licence: LicenceClaims, activation: str, device: bytes) -> None:
    claims = CertificateClaims.for_activation(
        licence,
        activation_id=activation,
        fingerprint=mv.FINGERPRINT.to_string(),
        device_public_key=device,
        now=min(licence.issued_at, 2**32 - 1 - 30 * 86_400),
    )
    token = issue_certificate(claims, KEY)
    assert CertificateClaims.from_dict(inspect_token(token)["claims"]) == replace(
        claims, key_id=mv.NEWEST
    )


@SIGNING
@given(
    u32,
    u32,
    st.frozensets(st.text(max_size=30), max_size=20),
    st.frozensets(st.text(max_size=30), max_size=20),
)
def test_revocation_round_trip(
    serial: int, issued: int, licences: frozenset[str], activations: frozenset[str]
) -> None:
    rl = RevocationList(serial, issued, licences, activations)
    token = issue_revocation_list(rl, KEY)
    assert verify_revocation_list(token, KEYRING, min_serial=serial) == replace(
        rl, key_id=mv.NEWEST
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@CHEAP
@given(st.one_of(st.text(max_size=300), json_values.map(json.dumps)))
def test_keyring_json_is_total(text: str) -> None:
    only_licensing_errors(lambda: Keyring.from_json(text))


@CHEAP
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "format": json_values,
            "keys": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "key_id": json_values,
                        "algorithm": st.sampled_from(["Ed25519", "EdDSA"]),
                        "public_key": st.binary(max_size=40).map(b64url_encode) | json_values,
                        "retired": json_values,
                    },
                ),
                max_size=3,
            ),
        },
    )
)
def test_keyring_json_structures_are_total(document: dict[str, Any]) -> None:
    only_licensing_errors(lambda: Keyring.from_json(json.dumps(document)))


@CHEAP
@given(json_values)
def test_claims_from_dict_is_total(value: Any) -> None:
    for cls in (Entitlements, LicenceClaims, CertificateClaims, RevocationList):
        only_licensing_errors(lambda cls=cls: cls.from_dict(value))


@CHEAP
@given(st.text(max_size=200))
def test_fingerprint_parser_is_total(text: str) -> None:
    only_licensing_errors(lambda: Fingerprint.from_string(text))


names = st.builds(
    lambda first, rest: first + rest, st.sampled_from("abmz"), st.text("az09_", max_size=15)
)


@CHEAP
@given(
    st.dictionaries(
        names, st.binary(min_size=8, max_size=32).map(bytes.hex), min_size=1, max_size=16
    )
)
def test_fingerprint_round_trip(components: dict[str, str]) -> None:
    fingerprint = Fingerprint(components)
    again = Fingerprint.from_string(fingerprint.to_string())
    assert again == fingerprint and again.matches(fingerprint, max_changed=0)
