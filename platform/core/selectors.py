"""Reads of the core app."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from core.models import ApiToken, AuditLog


def api_token_list(*, customer_id: uuid.UUID | None = None) -> QuerySet[ApiToken]:
    qs = ApiToken.objects.all()
    if customer_id is not None:
        qs = qs.filter(customer_id=customer_id)
    return qs


def audit_log_list(
    *,
    customer_id: uuid.UUID | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    action: str | None = None,
) -> QuerySet[AuditLog]:
    qs = AuditLog.objects.all()
    if customer_id is not None:
        qs = qs.filter(customer_id=customer_id)
    if object_type:
        qs = qs.filter(object_type=object_type)
    if object_id:
        qs = qs.filter(object_id=object_id)
    if action:
        qs = qs.filter(action=action)
    return qs
