"""Celery tasks of billing. Arguments are ids; each loads, calls one service, returns.
Periodic ones are scheduled in settings.CELERY_BEAT_SCHEDULE."""

from __future__ import annotations

import uuid

from celery import shared_task
from django.utils import timezone

from billing import services
from core.audit import Actor
from core.errors import ServiceUnavailable


@shared_task(  # type: ignore[untyped-decorator]
    name="billing.close_previous_months",
    ignore_result=True,
    soft_time_limit=1500,
    time_limit=1800,
)
def close_previous_months() -> int:
    """Close the two previous months for every customer whose ingestion cutoff has passed.
    Idempotent (existing invoices are skipped), so hourly runs only fill what is due.
    Returns how many invoices were created."""
    now = timezone.now()
    this_month = now.date().replace(day=1)
    created = 0
    for back in (2, 1):
        report = services.billing_period_close(
            actor=Actor.system("billing-close"),
            month=services.add_months(this_month, -back),
            now=now,
        )
        created += len(report.created)
    return created


@shared_task(  # type: ignore[untyped-decorator]
    name="billing.push_invoice_to_stripe",
    ignore_result=True,
    autoretry_for=(ServiceUnavailable,),
    retry_backoff=30,
    max_retries=8,
    soft_time_limit=120,
    time_limit=150,
)
def push_invoice_to_stripe(invoice_id: str) -> None:
    """Mirror one finalized invoice into Stripe (resumable; idempotency keys from our ids).
    Retries only when Stripe is unreachable or rate limiting."""
    services.invoice_push_to_stripe(invoice_id=uuid.UUID(invoice_id))


@shared_task(name="billing.process_stripe_event", ignore_result=True, time_limit=60)  # type: ignore[untyped-decorator]
def process_stripe_event(event_pk: int) -> str:
    """Apply one stored Stripe webhook event (idempotent)."""
    return services.stripe_event_process(event_pk=event_pk)


@shared_task(name="billing.enforce_dunning", ignore_result=True, time_limit=600)  # type: ignore[untyped-decorator]
def enforce_dunning() -> int:
    """Suspend licences of customers whose invoice payment is still failed after the grace
    period. Idempotent. Returns how many licences were suspended."""
    return services.dunning_enforce()
