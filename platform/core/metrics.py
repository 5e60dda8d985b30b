"""Prometheus metrics, served at /metrics (optionally behind a bearer token, METRICS_TOKEN).

Services call the small `*_observed` helpers where the event happens (after the transaction
commits, so a rolled-back write is never counted). Jobs by state are not counted but read at
scrape time with one grouped query, so they are right whichever process moved a job.

Under gunicorn, PROMETHEUS_MULTIPROC_DIR (set in the environment before the workers start, an
empty folder) makes every worker write its samples to files that the scrape aggregates; the
gunicorn config marks a dead worker's files (docker/gunicorn.conf.py).
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

REQUEST_LATENCY = Histogram(
    "controlplane_http_request_duration_seconds",
    "Time to answer an HTTP request, by route pattern, method and status.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ACTIVATIONS = Counter(
    "controlplane_activations_total",
    "SDK activation attempts by outcome (created, reactivated, or the refusal's error code).",
    ["outcome"],
)
USAGE_RECORDS = Counter(
    "controlplane_usage_records_ingested_total",
    "Usage records received, new or duplicate (already stored under the same record id).",
    ["result"],
)
INVOICE_TOTALS = Counter(
    "controlplane_invoice_finalized_minor_units_total",
    "Sum of the totals of finalized invoices, in minor units of the currency.",
    ["currency"],
)
INVOICES = Counter("controlplane_invoices_finalized_total", "Invoices finalized.", ["currency"])

_ACTIVATE_ROUTE = "sdk-activate"


def activation_observed(outcome: str) -> None:
    ACTIVATIONS.labels(outcome=outcome).inc()


def usage_records_observed(*, new: int, duplicate: int) -> None:
    if new:
        USAGE_RECORDS.labels(result="new").inc(new)
    if duplicate:
        USAGE_RECORDS.labels(result="duplicate").inc(duplicate)


def invoices_finalized_observed(invoices: Iterable[Any]) -> None:
    for invoice in invoices:
        INVOICES.labels(currency=invoice.currency).inc()
        if invoice.total_minor > 0:  # a counter only goes up; credit notes are not invoices
            INVOICE_TOTALS.labels(currency=invoice.currency).inc(invoice.total_minor)


class JobStateCollector(Collector):
    """`controlplane_encode_jobs{state}`: one grouped query per scrape."""

    def collect(self) -> Iterator[Metric]:
        from django.db.models import Count
        from jobs.models import EncodeJob

        family = GaugeMetricFamily(
            "controlplane_encode_jobs", "Encode jobs by state (read at scrape).", labels=["state"]
        )
        counts = dict.fromkeys(EncodeJob.State.values, 0)
        try:
            rows = list(EncodeJob.objects.order_by().values_list("state").annotate(n=Count("id")))
        except DatabaseError:
            return  # the database is away: the other metrics are still worth serving
        for state, n in rows:
            counts[state] = n
        for state, n in sorted(counts.items()):
            family.add_metric([state], n)
        yield family


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def render() -> bytes:
    """The exposition text: this process's (or all gunicorn workers') samples plus job states."""
    registry = CollectorRegistry()
    if _multiprocess():
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_DefaultRegistry())
    registry.register(JobStateCollector())
    return generate_latest(registry)


class _DefaultRegistry(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = getattr(settings, "METRICS_TOKEN", "")
    if token:
        presented = request.headers.get("Authorization", "")
        if not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
            return HttpResponse(
                "metrics need the bearer token\n",
                status=401,
                content_type="text/plain",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)


def _route_of(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"  # 404s: never the raw path (unbounded label values)
    return "/" + str(match.route).lstrip("^").rstrip("$")


class MetricsMiddleware:
    """Request latency by route pattern; refused activations by error code."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - start
        route = _route_of(request)
        REQUEST_LATENCY.labels(
            route=route, method=request.method or "", status=str(response.status_code)
        ).observe(elapsed)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == _ACTIVATE_ROUTE and response.status_code >= 400:
            # Successes are counted by the service; refusals never reach its end.
            data = getattr(response, "data", None)
            code = "error"
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                code = str(data["error"].get("code", "error"))
            activation_observed(code.lower())
        return response
