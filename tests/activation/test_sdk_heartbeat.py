"""Heartbeat, deactivation and validation over HTTP; suspension and revocation reaching
devices; the stale-activation release task."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
from activation.models import Activation
from activation.tasks import release_stale_activations
from customers.models import Customer
from django.conf import settings
from django.utils import timezone
from licences.models import Licence, LicencePolicy, RevocationList

import licensing
from core.models import AuditLog
from tests.core.fixtures import Device, Http, Persona, b64, error_code, keyring_of, unused_uuid


@pytest.fixture
def device(http: Http, acme_licence: Licence) -> Device:
    device = Device()
    assert device.activate(http, acme_licence.key).status_code == 201
    return device


def test_heartbeat_renews_the_certificate_and_reports_state(http: Http, device: Device) -> None:
    before = Activation.objects.get()
    response = device.heartbeat(http)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["activation_id"] == device.activation_id
    assert body["licence"]["state"] == "active"
    assert body["reactivated"] is False
    assert body["revocation_serial"] == RevocationList.objects.order_by("-serial").first().serial  # type: ignore[union-attr]
    claims = licensing.verify_certificate(
        body["certificate"], keyring_of(http), fingerprint=device.fingerprint
    )
    assert claims.activation_id == device.activation_id
    assert claims.expires_at >= int(before.certificate_expires_at.timestamp())
    after = Activation.objects.get()
    assert after.first_heartbeat_at is not None
    assert after.last_heartbeat_at == after.first_heartbeat_at
    assert after.last_seen_at == after.last_heartbeat_at
    device.heartbeat(http)
    again = Activation.objects.get()
    assert again.first_heartbeat_at == after.first_heartbeat_at
    assert again.last_heartbeat_at > after.last_heartbeat_at  # type: ignore[operator]


def test_suspension_reaches_the_device_at_its_next_heartbeat(
    http: Http, operator: Persona, device: Device, acme_licence: Licence
) -> None:
    serial_before = RevocationList.objects.order_by("-serial").first().serial  # type: ignore[union-attr]
    seen_before = Activation.objects.get().last_seen_at
    operator.http.post(f"/api/v1/licences/{acme_licence.pk}/suspend/")
    response = device.heartbeat(http)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "LICENCE_SUSPENDED"
    assert error["details"] == {
        "licence_state": "suspended",
        "revocation_serial": serial_before + 1,
    }
    assert "certificate" not in response.text
    assert Activation.objects.get().last_seen_at == seen_before
    # ... and in the next revocation list.
    rl = http.get("/api/v1/sdk/revocations").json()
    assert rl["serial"] == serial_before + 1
    verified = licensing.verify_revocation_list(rl["token"], keyring_of(http))
    assert verified.is_revoked(licence_id=str(acme_licence.pk))
    # Reinstated: the same device heartbeats again, without re-activating.
    operator.http.post(f"/api/v1/licences/{acme_licence.pk}/reinstate/")
    assert device.heartbeat(http).status_code == 200


def test_revocation_reaches_the_device_and_ends_its_activation(
    http: Http, operator: Persona, device: Device, acme_licence: Licence
) -> None:
    operator.http.post(f"/api/v1/licences/{acme_licence.pk}/revoke/")
    response = device.heartbeat(http)
    assert response.status_code == 403
    assert error_code(response) == "LICENCE_REVOKED"
    assert Activation.objects.get().state == "revoked"
    rl = licensing.verify_revocation_list(
        http.get("/api/v1/sdk/revocations").json()["token"], keyring_of(http)
    )
    assert rl.is_revoked(licence_id=str(acme_licence.pk))


def test_heartbeat_of_an_expired_licence_is_refused(
    http: Http, make_licence: Callable[..., Licence], acme: Customer, policy: LicencePolicy
) -> None:
    licence = make_licence(acme, policy)
    device = Device()
    device.activate(http, licence.key)
    now = timezone.now()
    Licence.objects.filter(pk=licence.pk).update(
        not_before=now - dt.timedelta(days=2), expires_at=now - dt.timedelta(seconds=1)
    )
    response = device.heartbeat(http)
    assert response.status_code == 403
    assert error_code(response) == "LICENCE_EXPIRED"


def test_heartbeat_signature_and_identity_are_checked(http: Http, device: Device) -> None:
    seen = Activation.objects.get().last_seen_at
    impostor = Device(activation_id=device.activation_id)
    response = impostor.heartbeat(http)
    assert response.status_code == 401
    assert error_code(response) == "PROOF_INVALID"
    # A deactivation signature cannot be replayed as a heartbeat (purpose differs).
    body = device.signed_body("deactivate")
    assert error_code(http.post("/api/v1/sdk/heartbeat", body)) == "PROOF_INVALID"
    unknown = Device(activation_id=unused_uuid())
    response = unknown.heartbeat(http)
    assert response.status_code == 404
    assert error_code(response) == "ACTIVATION_NOT_FOUND"
    stale = device.signed_body("heartbeat", timestamp=int(time.time()) - 3600)
    assert error_code(http.post("/api/v1/sdk/heartbeat", stale)) == "CLOCK_SKEW"
    assert Activation.objects.get().last_seen_at == seen


def test_deactivation_frees_the_seat_and_lists_the_activation(
    http: Http, device: Device, acme_licence: Licence
) -> None:
    assert Device().activate(http, acme_licence.key).status_code == 201
    assert error_code(Device().activate(http, acme_licence.key)) == "SEAT_LIMIT_REACHED"
    serial = RevocationList.objects.order_by("-serial").first().serial  # type: ignore[union-attr]
    response = device.deactivate(http)
    assert response.status_code == 200
    body = response.json()
    assert (body["activation_id"], body["state"]) == (device.activation_id, "deactivated")
    assert body["revocation_serial"] == serial + 1
    rl = licensing.verify_revocation_list(
        http.get("/api/v1/sdk/revocations").json()["token"], keyring_of(http)
    )
    assert rl.is_revoked(activation_id=device.activation_id)
    assert Device().activate(http, acme_licence.key).status_code == 201
    # Once ended, heartbeats and a second deactivation are refused.
    again = device.deactivate(http)
    assert again.status_code == 409
    assert error_code(again) == "ACTIVATION_INACTIVE"
    beat = device.heartbeat(http)
    assert beat.status_code == 409
    assert beat.json()["error"]["details"] == {"activation_state": "deactivated"}
    assert AuditLog.objects.filter(action="activation.deactivate").count() == 1


def test_deactivation_rate_limit(
    http: Http,
    make_licence: Callable[..., Licence],
    acme: Customer,
    make_policy: Callable[..., LicencePolicy],
) -> None:
    licence = make_licence(acme, make_policy(max_activations=5, deactivation_rate_limit=1))
    first, second = Device(), Device()
    first.activate(http, licence.key)
    second.activate(http, licence.key)
    assert first.deactivate(http).status_code == 200
    refused = second.deactivate(http)
    assert refused.status_code == 429
    assert error_code(refused) == "RATE_LIMITED"
    assert 3590 <= int(refused.headers["Retry-After"]) <= 3600
    assert Activation.objects.get(pk=second.activation_id).state == "active"


def test_validate_reports_a_licensing_code_and_the_licence_state(
    http: Http, operator: Persona, device: Device, acme_licence: Licence
) -> None:
    def validate(**body: Any) -> dict[str, Any]:
        response = http.post("/api/v1/sdk/validate", {"licence_key": acme_licence.key, **body})
        assert response.status_code == 200, response.text
        return dict(response.json())

    plain = validate()
    assert (plain["valid"], plain["code"], plain["licence"]["state"]) == (True, "VALID", "active")
    assert plain["activation_id"] is None
    bound = validate(fingerprint=device.fingerprint.to_string())
    assert (bound["code"], bound["activation_id"]) == ("VALID", device.activation_id)
    other = validate(fingerprint=Device().fingerprint.to_string())
    assert (other["valid"], other["code"]) == (False, "FINGERPRINT_MISMATCH")
    assert validate(fingerprint="garbage")["code"] == "MALFORMED"
    operator.http.post(f"/api/v1/licences/{acme_licence.pk}/suspend/")
    suspended = validate()
    assert (suspended["valid"], suspended["code"], suspended["licence"]["state"]) == (
        False,
        "REVOKED",
        "suspended",
    )
    tampered = http.post("/api/v1/sdk/validate", {"licence_key": acme_licence.key[:-4] + "AAAA"})
    assert tampered.json()["valid"] is False
    assert tampered.json()["licence"] is None
    malformed = http.post("/api/v1/sdk/validate", {"licence_key": "hello"}).json()
    assert (malformed["valid"], malformed["code"]) == (False, "MALFORMED")


def test_validate_reports_expired(
    http: Http, make_licence: Callable[..., Licence], acme: Customer, policy: LicencePolicy
) -> None:
    now = timezone.now()
    licence = make_licence(
        acme, policy, not_before=now - dt.timedelta(days=10), expires_at=now - dt.timedelta(days=1)
    )
    body = http.post("/api/v1/sdk/validate", {"licence_key": licence.key}).json()
    assert (body["valid"], body["code"], body["licence"]["state"]) == (False, "EXPIRED", "expired")


@pytest.mark.parametrize("path", ["heartbeat", "deactivate", "validate"])
def test_bad_input_is_4xx_on_every_sdk_endpoint(http: Http, device: Device, path: str) -> None:
    good = device.signed_body("heartbeat")
    bodies: list[Any] = [
        [],
        {},
        "x",
        {**good, "activation_id": "not-a-uuid"},
        {**good, "activation_id": 5},
        {**good, "signature": "!!"},
        {**good, "signature": b64(b"1" * 65)},
        {**good, "timestamp": "now"},
        {**good, "timestamp": 2**64},
        {"licence_key": ["a"]},
        {"licence_key": "a" * 10000},
        {"licence_key": "x", "fingerprint": 3},
    ]
    for body in bodies:
        response = http.post(f"/api/v1/sdk/{path}", body)
        assert 400 <= response.status_code < 500, (path, body, response.text)
        assert "error" in response.json()
    assert Activation.objects.get().state == "active"


def test_stale_activations_are_released_by_the_beat_task(
    http: Http, device: Device, acme_licence: Licence
) -> None:
    fresh = Device()
    fresh.activate(http, acme_licence.key)
    # device's last heartbeat is older than the policy's window (3600 s).
    Activation.objects.filter(pk=device.activation_id).update(
        last_seen_at=timezone.now() - dt.timedelta(seconds=3601)
    )
    assert release_stale_activations.delay().get() == 1
    assert Activation.objects.get(pk=device.activation_id).state == "released"
    assert Activation.objects.get(pk=fresh.activation_id).state == "active"
    assert (
        AuditLog.objects.filter(action="activation.release", object_id=device.activation_id).count()
        == 1
    )
    # Idempotent, and the freed seat can be taken.
    assert release_stale_activations.delay().get() == 0
    assert Device().activate(http, acme_licence.key).status_code == 201
    # Released is not revoked: an offline device keeps its grace, it is not listed.
    rl = licensing.verify_revocation_list(
        http.get("/api/v1/sdk/revocations").json()["token"], keyring_of(http)
    )
    assert not rl.is_revoked(activation_id=device.activation_id)
    beat = device.heartbeat(http)
    assert beat.status_code == 409
    assert beat.json()["error"]["details"] == {"activation_state": "released"}
    schedule = settings.CELERY_BEAT_SCHEDULE["release-stale-activations"]
    assert schedule["task"] == release_stale_activations.name
