"""Signing keys: encrypted at rest under the KEK, never exposed, rotation and retirement."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from customers.models import Customer
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from licences import keys
from licences.models import Licence, LicencePolicy, SigningKey
from licences.services import signing_key_rotate

import licensing
from core.audit import Actor
from tests.core.fixtures import Http, Persona, error_code, keyring_of


def test_private_keys_are_sealed_under_the_kek(signing_key: str) -> None:
    row = SigningKey.objects.get(key_id=signing_key)
    keys._key_cache.clear()
    opened = keys.open_private_key(signing_key, bytes(row.encrypted_private_key))
    raw = opened.private_bytes()
    envelope = bytes(row.encrypted_private_key)
    assert raw not in envelope
    assert len(envelope) == 12 + 32 + 16  # nonce, key, GCM tag
    assert opened.public_key_bytes() == bytes(row.public_key)
    assert raw.hex() not in repr(row) and raw.hex() not in str(row)
    keys._key_cache.clear()
    with override_settings(SIGNING_KEY_KEK="another-kek"), pytest.raises(ImproperlyConfigured):
        keys.open_private_key(signing_key, envelope)
    # The envelope is bound to its key id: moved to another row it does not open.
    with pytest.raises(ImproperlyConfigured):
        keys.open_private_key("some-other-id", envelope)


def test_signing_key_api_never_returns_private_material(
    operator: Persona, signing_key: str
) -> None:
    row = SigningKey.objects.get(key_id=signing_key)
    raw = keys.open_private_key(signing_key, bytes(row.encrypted_private_key)).private_bytes()
    listed = operator.http.get("/api/v1/signing-keys/")
    assert listed.status_code == 200
    (entry,) = listed.json()["results"]
    assert set(entry) == {"key_id", "public_key", "state", "created_at", "retired_at"}
    for response in (listed, operator.http.get("/api/v1/sdk/keyring")):
        for encoding in (raw.hex(), licensing_b64(raw)):
            assert encoding not in response.text


def licensing_b64(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_rotation_signs_new_licences_with_the_new_key_and_old_ones_still_verify(
    operator: Persona,
    make_licence: Callable[..., Licence],
    acme: Customer,
    policy: LicencePolicy,
    signing_key: str,
) -> None:
    old = make_licence(acme, policy)
    rotated = operator.http.post("/api/v1/signing-keys/rotate/")
    assert rotated.status_code == 201
    new_id = rotated.json()["key_id"]
    assert new_id != signing_key
    new = make_licence(acme, policy)
    keyring = keyring_of(operator.http)
    assert licensing.verify_licence_key(old.key, keyring).key_id == signing_key
    assert licensing.verify_licence_key(new.key, keyring).key_id == new_id


def test_retirement_rules(
    operator: Persona,
    make_licence: Callable[..., Licence],
    acme: Customer,
    policy: LicencePolicy,
    signing_key: str,
) -> None:
    last = operator.http.post(f"/api/v1/signing-keys/{signing_key}/retire/")
    assert last.status_code == 409
    assert error_code(last) == "LAST_ACTIVE_KEY"

    licence = make_licence(acme, policy)
    new_id = signing_key_rotate(actor=Actor.cli("test")).key_id
    in_use = operator.http.post(f"/api/v1/signing-keys/{signing_key}/retire/")
    assert in_use.status_code == 409
    assert error_code(in_use) == "SIGNING_KEY_IN_USE"
    assert in_use.json()["error"]["details"] == {"licences": 1, "certificates": 0}
    assert SigningKey.objects.get(key_id=signing_key).state == "active"

    operator.http.post(f"/api/v1/licences/{licence.pk}/revoke/")
    retired = operator.http.post(f"/api/v1/signing-keys/{signing_key}/retire/")
    assert retired.status_code == 200
    assert retired.json()["state"] == "retired"
    keyring = keyring_of(operator.http)
    assert keyring.key_ids() == [signing_key, new_id]
    with pytest.raises(licensing.LicensingError) as info:
        licensing.verify_licence_key(licence.key, keyring)
    assert info.value.code == licensing.Code.KEY_RETIRED
    twice = operator.http.post(f"/api/v1/signing-keys/{signing_key}/retire/")
    assert twice.status_code == 409
    unknown = operator.http.post("/api/v1/signing-keys/nope/retire/")
    assert unknown.status_code == 404


def test_no_signing_key_is_a_clear_503(
    operator: Persona, acme: Customer, policy: LicencePolicy
) -> None:
    response = operator.http.post(
        "/api/v1/licences/", {"customer_id": str(acme.pk), "policy_id": str(policy.pk)}
    )
    assert response.status_code == 503
    assert error_code(response) == "NO_SIGNING_KEY"


def test_keyring_lists_keys_in_creation_order(http: Http, signing_key: str) -> None:
    second = signing_key_rotate(actor=Actor.cli("test")).key_id
    assert [k["key_id"] for k in http.get("/api/v1/sdk/keyring").json()["keys"]] == [
        signing_key,
        second,
    ]
