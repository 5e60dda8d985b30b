"""SDK activation over HTTP: proof of possession, certificates, seat limits (also under real
parallel requests on PostgreSQL), re-activation, rate limits, state refusals, bad input."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from activation.models import Activation, ActivationEvent
from customers.models import Customer
from licences.models import Licence, LicencePolicy

import licensing
from core.models import AuditLog
from tests.core.fixtures import Device, Http, Persona, b64, error_code, keyring_of


def test_activation_returns_a_certificate_bound_to_the_device(
    http: Http, acme_licence: Licence
) -> None:
    device = Device(hostname="encoder-7")
    response = device.activate(http, acme_licence.key)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["reactivated"] is False
    assert body["licence"]["state"] == "active"
    assert body["licence"]["id"] == str(acme_licence.pk)
    assert abs(body["server_time"] - int(time.time())) <= 5
    assert body["heartbeat_window_s"] == 3600
    assert body["heartbeat_interval_s"] == 900
    assert body["offline_grace_s"] == 3 * 86400
    keyring = keyring_of(http)
    claims = licensing.verify_certificate(
        body["certificate"], keyring, fingerprint=device.fingerprint
    )
    assert claims.activation_id == body["activation_id"]
    assert claims.licence_id == str(acme_licence.pk)
    assert claims.customer_id == str(acme_licence.customer_id)
    assert claims.device_public_key == device.public_key
    assert claims.expires_at == body["certificate_expires_at"] == claims.issued_at + 86400
    assert claims.entitlements.max_activations == 2
    rl = licensing.verify_revocation_list(body["revocation_list"]["token"], keyring)
    assert rl.serial == body["revocation_serial"] == body["revocation_list"]["serial"]

    row = Activation.objects.get(pk=body["activation_id"])
    assert (row.state, row.hostname, row.platform) == ("active", "encoder-7", "linux-x86_64")
    assert bytes(row.device_public_key) == device.public_key
    assert row.fingerprint == device.fingerprint.to_string()
    assert row.first_heartbeat_at is None
    audit = AuditLog.objects.get(action="activation.create")
    assert (audit.object_id, audit.actor_kind) == (body["activation_id"], "sdk")


def test_reactivating_the_same_machine_reuses_the_activation_and_seat(
    http: Http, acme_licence: Licence
) -> None:
    device = Device()
    first = device.activate(http, acme_licence.key).json()
    # A new disk: one fingerprint component changed, still the same machine. The SDK lost its
    # state too, so it comes back with a new device key.
    components = dict(device.fingerprint.components)
    components["disk"] = "0" * 16
    again = Device(fingerprint=licensing.Fingerprint(components))
    response = again.activate(http, acme_licence.key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reactivated"] is True
    assert body["activation_id"] == first["activation_id"]
    assert Activation.objects.filter(licence=acme_licence).count() == 1
    row = Activation.objects.get()
    assert bytes(row.device_public_key) == again.public_key
    claims = licensing.verify_certificate(body["certificate"], keyring_of(http))
    assert claims.device_public_key == again.public_key
    assert AuditLog.objects.filter(action="activation.reactivate").count() == 1


def test_seat_limit_refuses_the_extra_machine_and_changes_nothing(
    http: Http, acme_licence: Licence
) -> None:
    for _ in range(2):
        assert Device().activate(http, acme_licence.key).status_code == 201
    events = ActivationEvent.objects.count()
    response = Device().activate(http, acme_licence.key)
    assert response.status_code == 409
    assert error_code(response) == "SEAT_LIMIT_REACHED"
    assert response.json()["error"]["details"] == {"max_activations": 2, "active": 2}
    assert Activation.objects.count() == 2
    assert ActivationEvent.objects.count() == events


@pytest.mark.postgres
def test_parallel_activations_take_exactly_the_seats_available(
    http: Http,
    make_licence: Callable[..., Licence],
    acme: Customer,
    make_policy: Callable[..., LicencePolicy],
) -> None:
    seats, machines = 3, 12
    licence = make_licence(acme, make_policy(max_activations=seats, activation_rate_limit=100))
    bodies = [Device().activation_body(licence.key) for _ in range(machines)]

    def activate(body: dict[str, Any]) -> int:
        # One session per request: real concurrent connections to the server.
        return requests.post(http.base + "/api/v1/sdk/activate", json=body, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=machines) as pool:
        statuses = Counter(pool.map(activate, bodies))
    assert statuses == {201: seats, 409: machines - seats}
    assert Activation.objects.filter(licence=licence, state="active").count() == seats


@pytest.mark.postgres
def test_parallel_reactivations_of_one_machine_use_one_seat(
    http: Http,
    make_licence: Callable[..., Licence],
    acme: Customer,
    make_policy: Callable[..., LicencePolicy],
) -> None:
    licence = make_licence(acme, make_policy(max_activations=1, activation_rate_limit=100))
    device = Device()
    bodies = [device.activation_body(licence.key) for _ in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(
                lambda b: requests.post(http.base + "/api/v1/sdk/activate", json=b, timeout=30),
                bodies,
            )
        )
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["activation_id"] for r in responses}) == 1
    assert Activation.objects.filter(licence=licence).count() == 1


def test_activation_rate_limit_answers_429_with_retry_after(
    http: Http,
    make_licence: Callable[..., Licence],
    acme: Customer,
    make_policy: Callable[..., LicencePolicy],
) -> None:
    licence = make_licence(
        acme, make_policy(max_activations=10, activation_rate_limit=2, activation_rate_window_s=600)
    )
    assert Device().activate(http, licence.key).status_code == 201
    assert Device().activate(http, licence.key).status_code == 201
    response = Device().activate(http, licence.key)
    assert response.status_code == 429
    assert error_code(response) == "RATE_LIMITED"
    retry_after = int(response.headers["Retry-After"])
    assert 590 <= retry_after <= 600
    assert response.json()["error"]["details"]["retry_after_s"] == retry_after
    assert Activation.objects.filter(licence=licence).count() == 2


@pytest.mark.postgres
def test_activation_rate_limit_holds_under_parallel_requests(
    http: Http,
    make_licence: Callable[..., Licence],
    acme: Customer,
    make_policy: Callable[..., LicencePolicy],
) -> None:
    licence = make_licence(acme, make_policy(max_activations=50, activation_rate_limit=3))
    bodies = [Device().activation_body(licence.key) for _ in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = Counter(
            pool.map(
                lambda b: (
                    requests.post(
                        http.base + "/api/v1/sdk/activate", json=b, timeout=30
                    ).status_code
                ),
                bodies,
            )
        )
    assert statuses == {201: 3, 429: 7}


def test_proof_signed_by_another_key_is_refused(http: Http, acme_licence: Licence) -> None:
    device, impostor = Device(), Device()
    body = device.activation_body(acme_licence.key)
    body["signature"] = impostor.activation_body(acme_licence.key)["signature"]
    response = http.post("/api/v1/sdk/activate", body)
    assert response.status_code == 401
    assert error_code(response) == "PROOF_INVALID"
    # The proof covers the licence key, fingerprint, device key and time: none can be swapped.
    body = device.activation_body(acme_licence.key)
    body["fingerprint"] = Device().fingerprint.to_string()
    assert error_code(http.post("/api/v1/sdk/activate", body)) == "PROOF_INVALID"
    assert Activation.objects.count() == 0


def test_stale_or_future_timestamps_are_refused(http: Http, acme_licence: Licence) -> None:
    for offset in (-301, 400):
        body = Device().activation_body(acme_licence.key, timestamp=int(time.time()) + offset)
        response = http.post("/api/v1/sdk/activate", body)
        assert response.status_code == 400
        assert error_code(response) == "CLOCK_SKEW"
        assert "server_time" in response.json()["error"]["details"]
    assert Activation.objects.count() == 0


def test_a_tampered_or_foreign_licence_key_is_refused(http: Http, acme_licence: Licence) -> None:
    key = acme_licence.key
    tampered = key[:-6] + ("A" if key[-6] != "A" else "B") + key[-5:]
    response = http.post("/api/v1/sdk/activate", Device().activation_body(tampered))
    assert response.status_code == 401
    assert error_code(response) == "INVALID_LICENCE_KEY"
    foreign_key = licensing.SigningKey.generate("attacker")
    claims = licensing.verify_licence_key(key, keyring_of(http))
    forged = licensing.issue_licence_key(claims, foreign_key)
    response = http.post("/api/v1/sdk/activate", Device().activation_body(forged))
    assert error_code(response) == "INVALID_LICENCE_KEY"
    assert response.json()["error"]["details"]["reason"] == "UNKNOWN_KEY"
    assert Activation.objects.count() == 0


@pytest.mark.parametrize(
    ("action", "code"), [("suspend", "LICENCE_SUSPENDED"), ("revoke", "LICENCE_REVOKED")]
)
def test_suspended_or_revoked_licences_cannot_activate(
    http: Http, operator: Persona, acme_licence: Licence, action: str, code: str
) -> None:
    operator.http.post(f"/api/v1/licences/{acme_licence.pk}/{action}/")
    response = Device().activate(http, acme_licence.key)
    assert response.status_code == 403
    assert error_code(response) == code
    assert Activation.objects.count() == 0


def test_platform_outside_the_entitlement_is_refused(
    http: Http,
    make_licence: Callable[..., Licence],
    acme: Customer,
    make_policy: Callable[..., LicencePolicy],
) -> None:
    licence = make_licence(acme, make_policy(entitlements={"platforms": ["android-arm64"]}))
    response = Device(platform="linux-x86_64").activate(http, licence.key)
    assert response.status_code == 403
    assert error_code(response) == "ENTITLEMENT_MISSING"
    assert Device(platform="android-arm64").activate(http, licence.key).status_code == 201


def _bad_activation_bodies(key: str) -> list[Any]:
    good = Device().activation_body(key)
    return [
        [],
        "just a string",
        None,
        {},
        {**good, "licence_key": 12},
        {**good, "licence_key": "x" * 9000},
        {**good, "licence_key": "NCL1.%%%%"},
        {**good, "fingerprint": "not-a-fingerprint"},
        {**good, "fingerprint": "fp1:" + "a" * 5000},
        {**good, "fingerprint": ["fp1:"]},
        {**good, "device_public_key": "***"},
        {**good, "device_public_key": b64(b"short")},
        {**good, "device_public_key": {"k": 1}},
        {**good, "signature": b64(b"\x00" * 63)},
        {**good, "signature": "🙂" * 10},
        {**good, "timestamp": "yesterday"},
        {**good, "timestamp": -5},
        {**good, "timestamp": 10**30},
        {**good, "timestamp": 1.5},
        {**good, "platform": "linux x86"},
        {**good, "platform": ""},
        {**good, "hostname": "h" * 300},
        {k: v for k, v in good.items() if k != "signature"},
    ]


def test_bad_activation_input_is_always_4xx(http: Http, acme_licence: Licence) -> None:
    for body in _bad_activation_bodies(acme_licence.key):
        response = http.post("/api/v1/sdk/activate", body)
        assert 400 <= response.status_code < 500, (body, response.status_code, response.text)
        assert "error" in response.json()
    raw = http.post(
        "/api/v1/sdk/activate", data=b"\xff\xfe{", headers={"Content-Type": "application/json"}
    )
    assert raw.status_code == 400
    assert Activation.objects.count() == 0
