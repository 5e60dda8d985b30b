"""Fixtures for the licensing tests: fixed keys and claims shared with make_vectors."""

from __future__ import annotations

import pytest

from licensing import (
    CertificateClaims,
    Keyring,
    LicenceClaims,
    RevocationList,
    SigningKey,
    issue_certificate,
    issue_licence_key,
    issue_revocation_list,
)
from tests.licensing import make_vectors as mv

NOW = mv.NOW


@pytest.fixture
def key() -> SigningKey:
    return mv.signing_key(mv.NEWEST)


@pytest.fixture
def older_key() -> SigningKey:
    return mv.signing_key(mv.OLDER)


@pytest.fixture
def keyring() -> Keyring:
    return mv.keyring()


@pytest.fixture
def licence() -> LicenceClaims:
    return mv.LICENCE


@pytest.fixture
def certificate_claims() -> CertificateClaims:
    return mv.CERTIFICATE


@pytest.fixture
def revocations() -> RevocationList:
    return mv.REVOCATIONS


@pytest.fixture
def licence_token(key: SigningKey) -> str:
    return issue_licence_key(mv.LICENCE, key)


@pytest.fixture
def certificate_token(key: SigningKey) -> str:
    return issue_certificate(mv.CERTIFICATE, key)


@pytest.fixture
def revocation_token(key: SigningKey) -> str:
    return issue_revocation_list(mv.REVOCATIONS, key)
