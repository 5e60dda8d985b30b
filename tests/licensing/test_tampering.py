"""Every alteration of a valid token is refused, each kind with its own code."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from licensing import (
    Code,
    Keyring,
    LicensingError,
    SigningKey,
    verify_certificate,
    verify_licence_key,
    verify_revocation_list,
)
from licensing._binary import b64url_decode, b64url_encode
from tests.licensing import make_vectors as mv

NOW = mv.NOW
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# What an alteration may legitimately produce; VALID is never among them.
REFUSALS = {Code.MALFORMED, Code.UNKNOWN_KEY, Code.KEY_RETIRED, Code.BAD_SIGNATURE}


def verifier(kind: str, keyring: Keyring) -> Callable[[str], Code]:
    def run(token: str) -> Code:
        try:
            if kind == "licence":
                verify_licence_key(token, keyring, now=NOW)
            elif kind == "certificate":
                verify_certificate(token, keyring, now=NOW, fingerprint=mv.FINGERPRINT)
            else:
                verify_revocation_list(token, keyring)
        except LicensingError as exc:
            return exc.code
        return Code.VALID

    return run


@pytest.fixture(params=["licence", "certificate", "revocation"])
def case(
    request: pytest.FixtureRequest,
    licence_token: str,
    certificate_token: str,
    revocation_token: str,
    keyring: Keyring,
) -> tuple[str, Callable[[str], Code]]:
    token = {"licence": licence_token, "certificate": certificate_token}.get(
        request.param, revocation_token
    )
    run = verifier(request.param, keyring)
    assert run(token) is Code.VALID
    return token, run


def test_every_character_altered_is_refused(case: tuple[str, Callable[[str], Code]]) -> None:
    token, run = case
    codes: Counter[Code] = Counter()
    for index, original in enumerate(token):
        # Every other base64url character, the separator and two outsiders, at every position.
        for replacement in ALPHABET + ".=~":
            if replacement == original:
                continue
            codes[run(token[:index] + replacement + token[index + 1 :])] += 1
    assert Code.VALID not in codes
    # Changing the visible prefix changes the version or the purpose letter.
    assert set(codes) <= REFUSALS | {Code.UNSUPPORTED_VERSION, Code.WRONG_PURPOSE}, codes


def test_every_bit_of_payload_and_signature_flipped_is_refused(
    case: tuple[str, Callable[[str], Code]],
) -> None:
    token, run = case
    prefix, payload_text, signature_text = token.split(".")
    payload, signature = b64url_decode(payload_text), b64url_decode(signature_text)
    codes: Counter[Code] = Counter()
    for index in range(len(payload)):
        for bit in range(8):
            altered = bytearray(payload)
            altered[index] ^= 1 << bit
            codes[run(f"{prefix}.{b64url_encode(bytes(altered))}.{signature_text}")] += 1
    for index in range(len(signature)):
        for bit in range(8):
            altered = bytearray(signature)
            altered[index] ^= 1 << bit
            code = run(f"{prefix}.{payload_text}.{b64url_encode(bytes(altered))}")
            assert code is Code.BAD_SIGNATURE
    assert Code.VALID not in codes
    assert set(codes) <= REFUSALS, codes


def test_every_truncation_is_malformed(case: tuple[str, Callable[[str], Code]]) -> None:
    token, run = case
    assert {run(token[:end]) for end in range(len(token))} == {Code.MALFORMED}


def test_every_signed_payload_truncation_is_malformed(
    case: tuple[str, Callable[[str], Code]],
) -> None:
    # Truncated but correctly signed: the strict parser, not the signature, refuses it.
    token, run = case
    prefix, payload_text, _ = token.split(".")
    payload = b64url_decode(payload_text)
    codes = {run(mv.seal(prefix, payload[:end])) for end in range(1, len(payload))}
    codes.add(run(mv.seal(prefix, payload + b"\x00")))
    assert codes == {Code.MALFORMED}


@pytest.mark.parametrize(
    "alter",
    [
        lambda t: t + "=",
        lambda t: t + "==",
        lambda t: t + "A",
        lambda t: t + ".",
        lambda t: t + " ",
        lambda t: t + "\n",
        lambda t: "\ufeff" + t,
        lambda t: t.replace(".", "..", 1),
        lambda t: t.replace(".", "=.", 1),
        lambda t: t[:4] + "." + t,
    ],
)
def test_padded_tokens_are_malformed(
    case: tuple[str, Callable[[str], Code]], alter: Callable[[str], str]
) -> None:
    token, run = case
    assert run(alter(token)) is Code.MALFORMED


def test_re_encoded_tokens_are_malformed(case: tuple[str, Callable[[str], Code]]) -> None:
    import base64

    token, run = case
    prefix, payload_text, signature_text = token.split(".")
    payload, signature = b64url_decode(payload_text), b64url_decode(signature_text)
    standard = (
        f"{prefix}.{base64.b64encode(payload).decode()}.{base64.b64encode(signature).decode()}"
    )
    padded = f"{prefix}.{base64.urlsafe_b64encode(payload).decode()}.{signature_text}=="
    hexed = f"{prefix}.{payload.hex()}.{signature.hex()}"
    # Same bytes, another spelling: nonzero unused bits in the last character.
    last = ALPHABET.index(signature_text[-1])
    bits = f"{prefix}.{payload_text}.{signature_text[:-1]}{ALPHABET[last | 1]}"
    for spelling in (standard, padded, hexed, bits, token.lower(), token.upper()):
        assert run(spelling) is Code.MALFORMED, spelling[:40]


def test_non_canonical_payload_bits_are_malformed(key: SigningKey, keyring: Keyring) -> None:
    payload_text = mv.seal("NCL1", b"\x00").split(".")[1]  # 1 byte -> 2 characters
    assert payload_text == "AA"
    token = mv.seal("NCL1", b"\x00").replace(".AA.", ".AB.")
    assert verifier("licence", keyring)(token) is Code.MALFORMED


def test_oversized_input_is_refused_before_parsing(keyring: Keyring) -> None:
    run = verifier("licence", keyring)
    assert run("NCL1." + "A" * 10_000_000 + "." + "A" * 86) is Code.MALFORMED
    assert run("NCR1." + "A" * (2 << 20) + "." + "A" * 86) is Code.MALFORMED
