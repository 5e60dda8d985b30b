"""Prometheus metrics at /metrics: the bearer token, request latency by route, activation
outcomes, usage records new/duplicate, jobs by state (read at scrape) and invoice totals."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import requests
from django.test import Client
from licences.models import Licence
from prometheus_client import REGISTRY

from core import metrics
from tests.core.fixtures import Device, Http


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.django_db
def test_metrics_are_served_with_route_latency_and_job_states(client: Client) -> None:
    client.get("/health/live/")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert (
        'controlplane_http_request_duration_seconds_count{method="GET",route="/health/live/",'
        'status="200"}' in text
    )
    assert 'controlplane_encode_jobs{state="queued"} 0.0' in text
    # unknown paths share one label value (no unbounded cardinality)
    client.get("/no/such/path/123")
    assert 'route="unmatched"' in client.get("/metrics").content.decode()


@pytest.mark.django_db
def test_metrics_token_is_required_when_configured(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = "scrape-secret-123"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-123")
    assert ok.status_code == 200


def test_usage_and_invoice_helpers_count_exactly() -> None:
    new, dup = (
        sample("controlplane_usage_records_ingested_total", result="new"),
        sample("controlplane_usage_records_ingested_total", result="duplicate"),
    )
    metrics.usage_records_observed(new=3, duplicate=2)
    assert sample("controlplane_usage_records_ingested_total", result="new") == new + 3
    assert sample("controlplane_usage_records_ingested_total", result="duplicate") == dup + 2

    before = sample("controlplane_invoice_finalized_minor_units_total", currency="EUR")
    metrics.invoices_finalized_observed(
        [
            SimpleNamespace(currency="EUR", total_minor=1234),
            SimpleNamespace(currency="EUR", total_minor=0),
        ]
    )
    assert (
        sample("controlplane_invoice_finalized_minor_units_total", currency="EUR") == before + 1234
    )


def test_activation_outcomes_are_counted(http: Http, acme_licence: Licence) -> None:
    created = sample("controlplane_activations_total", outcome="created")
    reactivated = sample("controlplane_activations_total", outcome="reactivated")
    device = Device()
    assert device.activate(http, acme_licence.key).status_code == 201
    assert device.activate(http, acme_licence.key).status_code == 200
    refused = requests.post(
        http.base + "/api/v1/sdk/activate",
        json={**device.activation_body(acme_licence.key), "licence_key": "NCL1.bogus"},
        timeout=30,
    )
    assert refused.status_code >= 400
    code = refused.json()["error"]["code"].lower()
    assert sample("controlplane_activations_total", outcome="created") == created + 1
    assert sample("controlplane_activations_total", outcome="reactivated") == reactivated + 1
    assert sample("controlplane_activations_total", outcome=code) >= 1
