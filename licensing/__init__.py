"""Signed licence keys, activation certificates and revocation lists (Ed25519).

Pure library: depends on `cryptography` and the standard library only. Every public function
raises `LicensingError` (with one `Code`) for any bad input or refusal. The formats, the code
precedence and the conformance vectors are specified in docs/licensing.md.
"""

from __future__ import annotations

from licensing.claims import (
    DEFAULT_CERTIFICATE_VALIDITY_S,
    CertificateClaims,
    Entitlements,
    LicenceClaims,
    Requirement,
    RevocationList,
    check_entitlements,
)
from licensing.device import (
    ACTIVATION_PROOF_PURPOSE,
    USAGE_BATCH_PURPOSE,
    activation_proof_message,
    device_signed_message,
    sign_with_device_key,
    verify_device_signature,
)
from licensing.errors import PRECEDENCE, Code, LicensingError
from licensing.fingerprint import (
    Fingerprint,
    collect_identifiers,
    fingerprint_from_identifiers,
    machine_fingerprint,
)
from licensing.keys import Keyring, SigningKey
from licensing.offline import OfflineVerifier, TrustedClock
from licensing.tokens import (
    CERTIFICATE_PREFIX,
    DEFAULT_SKEW_S,
    FORMAT_VERSION,
    LICENCE_PREFIX,
    MAX_REVOCATION_LIST_CHARS,
    MAX_TOKEN_CHARS,
    REVOCATION_LIST_PREFIX,
    check_validity_window,
    inspect_token,
    issue_certificate,
    issue_licence_key,
    issue_revocation_list,
    signed_message,
    verify_certificate,
    verify_licence_key,
    verify_revocation_list,
)

__all__ = [
    "ACTIVATION_PROOF_PURPOSE",
    "CERTIFICATE_PREFIX",
    "DEFAULT_CERTIFICATE_VALIDITY_S",
    "DEFAULT_SKEW_S",
    "FORMAT_VERSION",
    "LICENCE_PREFIX",
    "MAX_REVOCATION_LIST_CHARS",
    "MAX_TOKEN_CHARS",
    "PRECEDENCE",
    "REVOCATION_LIST_PREFIX",
    "USAGE_BATCH_PURPOSE",
    "CertificateClaims",
    "Code",
    "Entitlements",
    "Fingerprint",
    "Keyring",
    "LicenceClaims",
    "LicensingError",
    "OfflineVerifier",
    "Requirement",
    "RevocationList",
    "SigningKey",
    "TrustedClock",
    "activation_proof_message",
    "check_entitlements",
    "check_validity_window",
    "collect_identifiers",
    "device_signed_message",
    "fingerprint_from_identifiers",
    "inspect_token",
    "issue_certificate",
    "issue_licence_key",
    "issue_revocation_list",
    "machine_fingerprint",
    "sign_with_device_key",
    "signed_message",
    "verify_certificate",
    "verify_device_signature",
    "verify_licence_key",
    "verify_revocation_list",
]
