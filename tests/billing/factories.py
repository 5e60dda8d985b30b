"""Helpers for billing tests: customers with contract terms, usage at chosen times, closes."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from billing.models import Invoice
from billing.services import CloseReport, billing_period_close
from customers.models import Customer
from customers.services import contract_terms_create, customer_create
from metering.models import UsageRecord
from metering.services import usage_record_for_job

from tests.core.fixtures import TEST_ACTOR

GB = 10**9


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]


def customer_with_terms(
    slug: str,
    *,
    time_zone: str = "UTC",
    share: str = "100.00",
    value_per_gb: str = "1.000000",
    minimum_fee: int = 0,
    currency: str = "EUR",
    effective_from: dt.date = dt.date(2026, 1, 1),
    customer: Customer | None = None,
) -> Customer:
    customer = customer or customer_create(actor=TEST_ACTOR, name=slug.title(), slug=slug)
    contract_terms_create(
        actor=TEST_ACTOR,
        customer_id=customer.pk,
        effective_from=effective_from,
        revenue_share_percent=Decimal(share),
        value_per_gb=Decimal(value_per_gb),
        currency=currency,
        minimum_monthly_fee=minimum_fee,
        billing_time_zone=time_zone,
        payment_terms_days=30,
    )
    return customer


def usage(
    customer: Customer,
    at: dt.datetime,
    *,
    saved: int,
    delivered: int = GB,
    ingested: dt.datetime | None = None,
) -> UsageRecord:
    """One encode-job record with `saved` bytes saved, ingested at `ingested` (default: one
    hour after the event)."""
    record, _ = usage_record_for_job(
        actor=TEST_ACTOR,
        job_id=uuid.uuid4(),
        customer_id=customer.pk,
        event_time=at,
        frames=10,
        pixels=10 * 640 * 360,
        duration_ms=400,
        bytes_delivered=delivered,
        baseline_bytes=delivered + saved,
        baseline_method="x264-medium",
        now=ingested or at + dt.timedelta(hours=1),
    )
    return record


def close(month: str, *, now: dt.datetime, customers: list[Customer] | None = None) -> CloseReport:
    year, mon = (int(x) for x in month.split("-"))
    return billing_period_close(
        actor=TEST_ACTOR,
        month=dt.date(year, mon, 1),
        customer_ids=[c.pk for c in customers] if customers is not None else None,
        now=now,
    )


def invoice_of(customer: Customer, month: str) -> Invoice:
    year, mon = (int(x) for x in month.split("-"))
    return Invoice.objects.prefetch_related("lines").get(
        customer=customer, period_month=dt.date(year, mon, 1)
    )


def amounts(invoice: Invoice) -> list[tuple[str, int]]:
    return [(line.kind, line.amount_minor) for line in invoice.lines.order_by("position")]
