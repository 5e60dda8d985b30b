"""Reads of the jobs app, shared by the API and the portal. Every read is scoped: a customer
sees only its own jobs (another customer's job is simply not found)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from jobs.models import EncodeJob


def encode_job_list(
    *, scope_customer_id: uuid.UUID | None, state: str | None = None
) -> QuerySet[EncodeJob]:
    qs = EncodeJob.objects.all()
    if scope_customer_id is not None:
        qs = qs.filter(customer_id=scope_customer_id)
    if state:
        qs = qs.filter(state=state)
    return qs.order_by("-queued_at", "-id")


def encode_job_get(*, job_id: uuid.UUID, scope_customer_id: uuid.UUID | None) -> EncodeJob | None:
    """The job, or None when absent or outside the caller's scope (the API answers 404)."""
    return encode_job_list(scope_customer_id=scope_customer_id).filter(pk=job_id).first()
