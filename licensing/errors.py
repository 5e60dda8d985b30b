"""The one error type of the library and its fixed list of codes.

The order of `Code` is the documented precedence (docs/licensing.md, "Codes"): when a token
fails several checks, the verifier reports the first failing check in this order. MALFORMED is
reported at two points of the sequence (the envelope before UNSUPPORTED_VERSION and
WRONG_PURPOSE, the payload after them) because the version and the purpose are read from the
visible prefix before the payload can be decoded.
"""

from __future__ import annotations

import enum


class Code(enum.StrEnum):
    """Verification outcomes, in precedence order (first failing check wins)."""

    MALFORMED = "MALFORMED"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    WRONG_PURPOSE = "WRONG_PURPOSE"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    KEY_RETIRED = "KEY_RETIRED"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    CLOCK_ROLLBACK = "CLOCK_ROLLBACK"
    NOT_YET_VALID = "NOT_YET_VALID"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"
    STALE_REVOCATION_LIST = "STALE_REVOCATION_LIST"
    FINGERPRINT_MISMATCH = "FINGERPRINT_MISMATCH"
    ENTITLEMENT_MISSING = "ENTITLEMENT_MISSING"
    VALID = "VALID"


PRECEDENCE: tuple[Code, ...] = tuple(Code)

_DEFAULT_MESSAGES: dict[Code, str] = {
    Code.MALFORMED: "the input cannot be decoded",
    Code.UNSUPPORTED_VERSION: "the format version is not supported by this verifier",
    Code.WRONG_PURPOSE: "the token is a different kind of artifact",
    Code.UNKNOWN_KEY: "the signing key id is not in the keyring",
    Code.KEY_RETIRED: "the signing key has been retired",
    Code.BAD_SIGNATURE: "the signature does not verify",
    Code.CLOCK_ROLLBACK: "the system clock is behind the newest trusted time",
    Code.NOT_YET_VALID: "the artifact is not valid yet",
    Code.EXPIRED: "the artifact has expired",
    Code.REVOKED: "the licence or activation has been revoked",
    Code.STALE_REVOCATION_LIST: "the revocation list is older than one already seen",
    Code.FINGERPRINT_MISMATCH: "the machine fingerprint does not match",
    Code.ENTITLEMENT_MISSING: "the entitlements do not cover the requirement",
    Code.VALID: "valid",
}


class LicensingError(Exception):
    """Raised by every public function of the library for any bad input or refusal.

    `code` is one `Code`; `message` is a readable one-liner (never multi-line, never a secret).
    """

    code: Code
    message: str

    def __init__(self, code: Code, message: str = "") -> None:
        # Collapse whitespace so CLI output and logs stay one line per error.
        text = " ".join((message or _DEFAULT_MESSAGES[code]).split())
        super().__init__(code, text)
        self.code = code
        self.message = text

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"
