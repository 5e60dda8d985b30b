from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_liveness_and_readiness_answer_ok(client: Client) -> None:
    assert client.get("/health/live/").json() == {"status": "ok", "checks": {}}
    ready = client.get("/health/ready/")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True}


@pytest.mark.django_db
def test_openapi_schema_and_docs_are_served(client: Client) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "Neural codec control plane API"
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


def test_unknown_api_route_is_a_json_404(client: Client) -> None:
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404


@pytest.mark.postgres
@pytest.mark.django_db
def test_suite_runs_on_postgresql_when_configured() -> None:
    from django.db import connection

    assert connection.vendor == "postgresql"
