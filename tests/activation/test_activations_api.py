"""Activations for customers and operators over HTTP, with tenant isolation on every
endpoint: alice (Acme) never reads or deactivates bob's (Globex) activations."""

from __future__ import annotations

import pytest
from activation.models import Activation
from licences.models import Licence

from tests.core.fixtures import Device, Http, Persona, error_code, unused_uuid


@pytest.fixture
def acme_device(http: Http, acme_licence: Licence) -> Device:
    device = Device(hostname="acme-edge")
    assert device.activate(http, acme_licence.key).status_code == 201
    return device


@pytest.fixture
def globex_device(http: Http, globex_licence: Licence) -> Device:
    device = Device(hostname="globex-edge")
    assert device.activate(http, globex_licence.key).status_code == 201
    return device


def test_lists_are_scoped(
    operator: Persona, alice: Persona, bob: Persona, acme_device: Device, globex_device: Device
) -> None:
    def ids(persona: Persona, **params: str) -> list[str]:
        return [
            a["id"]
            for a in persona.http.get("/api/v1/activations/", params=params).json()["results"]
        ]

    assert ids(alice) == [acme_device.activation_id]
    assert ids(bob) == [globex_device.activation_id]
    assert sorted(ids(operator)) == sorted([acme_device.activation_id, globex_device.activation_id])
    globex_licence_id = str(Activation.objects.get(pk=globex_device.activation_id).licence_id)
    assert ids(alice, licence_id=globex_licence_id) == []
    assert ids(operator, state="deactivated") == []
    assert alice.http.get("/api/v1/activations/", params={"state": "nope"}).status_code == 400
    assert alice.http.get("/api/v1/activations/", params={"licence_id": "x"}).status_code == 400


def test_detail_is_404_across_tenants(
    alice: Persona, acme_device: Device, globex_device: Device
) -> None:
    own = alice.http.get(f"/api/v1/activations/{acme_device.activation_id}/")
    assert own.status_code == 200
    body = own.json()
    assert (body["hostname"], body["state"]) == ("acme-edge", "active")
    for missing in (globex_device.activation_id, unused_uuid()):
        response = alice.http.get(f"/api/v1/activations/{missing}/")
        assert response.status_code == 404
        assert error_code(response) == "ACTIVATION_NOT_FOUND"


def test_customer_deactivates_own_activation_but_not_others(
    alice: Persona, acme_device: Device, globex_device: Device
) -> None:
    other = alice.http.post(f"/api/v1/activations/{globex_device.activation_id}/deactivate/")
    assert other.status_code == 404
    assert error_code(other) == "ACTIVATION_NOT_FOUND"
    assert Activation.objects.get(pk=globex_device.activation_id).state == "active"
    own = alice.http.post(f"/api/v1/activations/{acme_device.activation_id}/deactivate/")
    assert own.status_code == 200
    assert own.json()["state"] == "deactivated"
    assert own.json()["ended_at"] is not None
    again = alice.http.post(f"/api/v1/activations/{acme_device.activation_id}/deactivate/")
    assert again.status_code == 409


def test_operator_deactivates_any_activation(operator: Persona, globex_device: Device) -> None:
    response = operator.http.post(f"/api/v1/activations/{globex_device.activation_id}/deactivate/")
    assert response.status_code == 200
    assert Activation.objects.get(pk=globex_device.activation_id).state == "deactivated"


def test_anonymous_callers_get_401(http: Http, acme_device: Device) -> None:
    assert http.get("/api/v1/activations/").status_code == 401
    response = http.post(f"/api/v1/activations/{acme_device.activation_id}/deactivate/")
    assert response.status_code == 401
    assert Activation.objects.get().state == "active"
