"""API tokens over HTTP: shown once, stored hashed, prefix lookup, revocable, last-used time,
scopes; the error shape; request ids; the append-only audit log."""

from __future__ import annotations

import hashlib

import pytest
from customers.models import Customer

from core.models import ApiToken, AuditLog
from tests.core.fixtures import Http, Persona, error_code


def test_operator_creates_customer_token_shown_once_and_stored_hashed(
    operator: Persona, acme: Customer
) -> None:
    response = operator.http.post(
        "/api/v1/tokens/", {"name": "acme-ci", "scope": "customer", "customer_id": str(acme.pk)}
    )
    assert response.status_code == 201
    body = response.json()
    secret = body["token"]
    assert secret.startswith(f"ncp_{body['prefix']}_")
    row = ApiToken.objects.get(pk=body["id"])
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {row.name, row.prefix, row.token_hash, row.created_by}
    # Never again: the list shows the prefix only.
    listed = operator.http.get("/api/v1/tokens/", params={"customer_id": str(acme.pk)}).json()
    assert listed["count"] == 1
    assert "token" not in listed["results"][0]
    assert listed["results"][0]["prefix"] == body["prefix"]
    # The new token works and is scoped to Acme.
    customers = operator.http.as_token(secret).get("/api/v1/customers/").json()
    assert [c["slug"] for c in customers["results"]] == ["acme"]


def test_token_scope_rules_are_validated(operator: Persona, acme: Customer) -> None:
    before = ApiToken.objects.count()
    no_customer = operator.http.post("/api/v1/tokens/", {"name": "x", "scope": "customer"})
    assert no_customer.status_code == 400
    assert error_code(no_customer) == "VALIDATION_ERROR"
    op_with_customer = operator.http.post(
        "/api/v1/tokens/", {"name": "x", "scope": "operator", "customer_id": str(acme.pk)}
    )
    assert op_with_customer.status_code == 400
    unknown = operator.http.post(
        "/api/v1/tokens/",
        {"name": "x", "scope": "customer", "customer_id": "00000000-0000-0000-0000-000000000000"},
    )
    assert unknown.status_code == 404
    assert ApiToken.objects.count() == before


@pytest.mark.parametrize(
    "header",
    [
        "Bearer ncp_000000000000_" + "A" * 43,  # well-formed, unknown prefix
        "Bearer nonsense",
        "Bearer a b",
        "Token abc",
    ],
)
def test_bad_tokens_are_refused_with_401(http: Http, operator: Persona, header: str) -> None:
    response = http.get("/api/v1/customers/", headers={"Authorization": header})
    assert response.status_code == 401
    assert error_code(response) in {"AUTHENTICATION_FAILED", "NOT_AUTHENTICATED"}


def test_wrong_secret_with_a_real_prefix_is_refused(http: Http, operator: Persona) -> None:
    prefix = operator.token.split("_")[1]
    forged = f"ncp_{prefix}_" + "B" * 43
    response = http.as_token(forged).get("/api/v1/customers/")
    assert response.status_code == 401
    assert error_code(response) == "AUTHENTICATION_FAILED"


def test_missing_token_is_401_with_www_authenticate(http: Http) -> None:
    response = http.get("/api/v1/customers/")
    assert response.status_code == 401
    assert error_code(response) == "NOT_AUTHENTICATED"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_stops_working_and_double_revoke_is_409(
    operator: Persona, alice: Persona
) -> None:
    token_id = ApiToken.objects.get(name="alice").pk
    assert alice.http.get("/api/v1/licences/").status_code == 200
    revoked = operator.http.post(f"/api/v1/tokens/{token_id}/revoke/")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    refused = alice.http.get("/api/v1/licences/")
    assert refused.status_code == 401
    assert error_code(refused) == "AUTHENTICATION_FAILED"
    again = operator.http.post(f"/api/v1/tokens/{token_id}/revoke/")
    assert again.status_code == 409
    assert error_code(again) == "TOKEN_ALREADY_REVOKED"


def test_last_used_at_is_recorded_but_written_at_most_once_a_minute(operator: Persona) -> None:
    token = ApiToken.objects.get(name="ops")
    assert token.last_used_at is None
    operator.http.get("/api/v1/customers/")
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    operator.http.get("/api/v1/customers/")
    token.refresh_from_db()
    assert token.last_used_at == first


def test_customer_tokens_cannot_use_operator_endpoints(alice: Persona) -> None:
    for path in (
        "/api/v1/tokens/",
        "/api/v1/audit-log/",
        "/api/v1/signing-keys/",
        "/api/v1/products/",
    ):
        response = alice.http.get(path)
        assert response.status_code == 403, path
        assert error_code(response) == "FORBIDDEN"


def test_state_changes_write_audit_rows_with_the_request_id(operator: Persona) -> None:
    response = operator.http.post(
        "/api/v1/customers/",
        {"name": "Initech", "slug": "initech"},
        headers={"X-Request-ID": "req-12345"},
    )
    assert response.status_code == 201
    assert response.headers["X-Request-ID"] == "req-12345"
    row = AuditLog.objects.get(action="customer.create", object_id=response.json()["id"])
    assert row.request_id == "req-12345"
    assert row.actor_kind == "operator"
    assert row.changes == {"name": "Initech", "slug": "initech"}
    listed = operator.http.get("/api/v1/audit-log/", params={"action": "customer.create"}).json()
    assert listed["results"][0]["request_id"] == "req-12345"


def test_audit_log_filters_refuse_a_null_character(operator: Persona) -> None:
    response = operator.http.get("/api/v1/audit-log/", params={"action": "customer\x00create"})
    assert response.status_code == 400
    assert error_code(response) == "VALIDATION_ERROR"
    assert "action" in response.json()["error"]["details"]


def test_an_invalid_request_id_is_replaced(http: Http) -> None:
    response = http.get("/health/live/", headers={"X-Request-ID": "bad id with spaces"})
    assert response.headers["X-Request-ID"] != "bad id with spaces"
    assert len(response.headers["X-Request-ID"]) == 32


def test_audit_rows_are_append_only(operator: Persona) -> None:
    operator.http.post("/api/v1/customers/", {"name": "Initech", "slug": "initech"})
    row = AuditLog.objects.get(action="customer.create")
    row.action = "tampered"
    with pytest.raises(ValueError, match="append-only"):
        row.save()
    with pytest.raises(ValueError, match="append-only"):
        row.delete()
    assert AuditLog.objects.get(pk=row.pk).action == "customer.create"


@pytest.mark.parametrize(
    ("data", "content_type", "code"),
    [
        ("{not json", "application/json", "MALFORMED_REQUEST"),
        ("[1, 2]", "application/json", "VALIDATION_ERROR"),
        ('"a string"', "application/json", "VALIDATION_ERROR"),
        ("name=x", "application/x-www-form-urlencoded", "UNSUPPORTED_MEDIA_TYPE"),
    ],
)
def test_bad_bodies_are_4xx_in_the_error_shape(
    operator: Persona, data: str, content_type: str, code: str
) -> None:
    response = operator.http.post(
        "/api/v1/customers/", data=data.encode(), headers={"Content-Type": content_type}
    )
    assert 400 <= response.status_code < 500
    assert error_code(response) == code
    assert Customer.objects.count() == 0


def test_openapi_schema_lists_every_api_route(http: Http) -> None:
    schema = http.get("/api/schema/", headers={"Accept": "application/vnd.oai.openapi+json"}).json()
    paths = set(schema["paths"])
    expected = {
        "/api/v1/tokens/",
        "/api/v1/tokens/{token_id}/revoke/",
        "/api/v1/audit-log/",
        "/api/v1/customers/",
        "/api/v1/customers/{customer_id}/",
        "/api/v1/customers/{customer_id}/contract-terms/",
        "/api/v1/customers/{customer_id}/contract-terms/in-force/",
        "/api/v1/customers/{customer_id}/users/",
        "/api/v1/products/",
        "/api/v1/policies/",
        "/api/v1/policies/{policy_id}/",
        "/api/v1/licences/",
        "/api/v1/licences/{licence_id}/",
        "/api/v1/licences/{licence_id}/suspend/",
        "/api/v1/licences/{licence_id}/reinstate/",
        "/api/v1/licences/{licence_id}/revoke/",
        "/api/v1/signing-keys/",
        "/api/v1/signing-keys/rotate/",
        "/api/v1/activations/",
        "/api/v1/activations/{activation_id}/",
        "/api/v1/activations/{activation_id}/deactivate/",
    }
    assert expected <= paths, expected - paths
    sdk = {p for p in paths if "/sdk/" in p}
    for name in ("activate", "heartbeat", "deactivate", "validate", "keyring", "revocations"):
        assert any(name in p for p in sdk), name
    assert schema["components"]["securitySchemes"]["ApiToken"]["scheme"] == "bearer"
