"""Reads of the customers app, shared by the API and (later) the portal."""

from __future__ import annotations

import datetime as dt
import uuid

from django.db.models import QuerySet

from customers.models import ContractTerms, Customer


def customer_list(*, customer_id: uuid.UUID | None = None) -> QuerySet[Customer]:
    """All customers, or only `customer_id` (how customer-scoped callers see the list)."""
    qs = Customer.objects.all()
    if customer_id is not None:
        qs = qs.filter(pk=customer_id)
    return qs


def customer_get(*, customer_id: uuid.UUID, scope_customer_id: uuid.UUID | None) -> Customer | None:
    """A customer, or None when absent or outside the caller's scope (the API answers 404)."""
    return customer_list(customer_id=scope_customer_id).filter(pk=customer_id).first()


def contract_terms_list(*, customer_id: uuid.UUID) -> QuerySet[ContractTerms]:
    return ContractTerms.objects.filter(customer_id=customer_id).order_by("-effective_from")


def contract_terms_in_force(*, customer_id: uuid.UUID, on: dt.date) -> ContractTerms | None:
    """The version in force on a date (billing-time-zone date), or None before the first one."""
    return (
        ContractTerms.objects.filter(customer_id=customer_id, effective_from__lte=on)
        .order_by("-effective_from")
        .first()
    )
