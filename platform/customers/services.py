"""Writes of the customers app."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from core.audit import Actor, audit_record
from core.errors import Conflict, DomainError, NotFound
from customers.models import ContractTerms, Customer, CustomerUser


def customer_create(*, actor: Actor, name: str, slug: str, contact_email: str = "") -> Customer:
    """Create a customer. Writes an audit row. A duplicate slug is a 409 CUSTOMER_EXISTS."""
    try:
        with transaction.atomic():
            customer = Customer.objects.create(name=name, slug=slug, contact_email=contact_email)
            audit_record(
                actor=actor,
                action="customer.create",
                object_type="customer",
                object_id=customer.pk,
                customer_id=customer.pk,
                changes={"name": name, "slug": slug},
            )
    except IntegrityError as exc:
        raise Conflict(f"A customer with slug {slug!r} exists.", code="CUSTOMER_EXISTS") from exc
    return customer


def customer_user_add(
    *, actor: Actor, customer_id: uuid.UUID, username: str, email: str = "", role: str
) -> CustomerUser:
    """Add a (new or existing) Django user to a customer with a role. Writes an audit row.

    A user belongs to at most one customer: the portal scopes every page to that customer."""
    if role not in CustomerUser.Role.values:
        raise DomainError(f"Unknown role {role!r}.", code="VALIDATION_ERROR")
    user_model = get_user_model()
    with transaction.atomic():
        customer = Customer.objects.filter(pk=customer_id).first()
        if customer is None:
            raise NotFound("No such customer.", code="CUSTOMER_NOT_FOUND")
        user: AbstractBaseUser
        user, _ = user_model.objects.get_or_create(
            username=username, defaults={"email": email, "is_active": True}
        )
        if CustomerUser.objects.filter(user=user).exclude(customer=customer).exists():
            raise Conflict("The user belongs to another customer.", code="USER_IN_OTHER_CUSTOMER")
        membership, created = CustomerUser.objects.update_or_create(
            customer=customer, user=user, defaults={"role": role}
        )
        audit_record(
            actor=actor,
            action="customer_user.add" if created else "customer_user.update",
            object_type="customer_user",
            object_id=membership.pk,
            customer_id=customer.pk,
            changes={"username": username, "role": role},
        )
    return membership


def contract_terms_create(
    *,
    actor: Actor,
    customer_id: uuid.UUID,
    effective_from: dt.date,
    revenue_share_percent: Decimal,
    value_per_gb: Decimal,
    currency: str,
    minimum_monthly_fee: int,
    billing_time_zone: str = "UTC",
    payment_terms_days: int = 30,
) -> ContractTerms:
    """Add a new version of a customer's contract terms. Versions are immutable: a second
    version on the same date is a 409. Writes an audit row."""
    currency = currency.upper()
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
        raise DomainError("Currency must be an ISO 4217 code.", code="VALIDATION_ERROR")
    try:
        zoneinfo.ZoneInfo(billing_time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise DomainError(
            f"Unknown time zone {billing_time_zone!r}.", code="VALIDATION_ERROR"
        ) from exc
    if not Decimal(0) <= revenue_share_percent <= Decimal(100):
        raise DomainError("Revenue share must be 0..100 percent.", code="VALIDATION_ERROR")
    if value_per_gb < 0 or minimum_monthly_fee < 0:
        raise DomainError("Amounts must not be negative.", code="VALIDATION_ERROR")
    try:
        with transaction.atomic():
            if not Customer.objects.filter(pk=customer_id).exists():
                raise NotFound("No such customer.", code="CUSTOMER_NOT_FOUND")
            terms = ContractTerms.objects.create(
                customer_id=customer_id,
                effective_from=effective_from,
                revenue_share_percent=revenue_share_percent,
                value_per_gb=value_per_gb,
                currency=currency,
                minimum_monthly_fee=minimum_monthly_fee,
                billing_time_zone=billing_time_zone,
                payment_terms_days=payment_terms_days,
            )
            audit_record(
                actor=actor,
                action="contract_terms.create",
                object_type="contract_terms",
                object_id=terms.pk,
                customer_id=customer_id,
                changes={
                    "effective_from": effective_from.isoformat(),
                    "revenue_share_percent": str(revenue_share_percent),
                    "value_per_gb": str(value_per_gb),
                    "currency": currency,
                    "minimum_monthly_fee": minimum_monthly_fee,
                    "billing_time_zone": billing_time_zone,
                    "payment_terms_days": payment_terms_days,
                },
            )
    except IntegrityError as exc:
        raise Conflict(
            "Terms with this effective date exist; add a version with a later date.",
            code="CONTRACT_TERMS_EXIST",
        ) from exc
    return terms
