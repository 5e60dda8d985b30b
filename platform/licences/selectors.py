"""Reads of the licences app, shared by the API and (later) the portal."""

from __future__ import annotations

import uuid

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from licences.models import Licence, LicencePolicy, Product, RevocationList, SigningKey


def product_list() -> QuerySet[Product]:
    return Product.objects.all()


def policy_list(*, product_id: uuid.UUID | None = None) -> QuerySet[LicencePolicy]:
    qs = LicencePolicy.objects.select_related("product")
    if product_id is not None:
        qs = qs.filter(product_id=product_id)
    return qs


def licence_list(
    *,
    scope_customer_id: uuid.UUID | None,
    customer_id: uuid.UUID | None = None,
    state: str | None = None,
) -> QuerySet[Licence]:
    """Licences visible to the caller (a customer sees only its own), with the active-seat
    count annotated once (no per-row query)."""
    qs = Licence.objects.select_related("policy__product").annotate(
        active_activations=Count("activations", filter=Q(activations__state="active"))
    )
    if scope_customer_id is not None:
        qs = qs.filter(customer_id=scope_customer_id)
    if customer_id is not None:
        qs = qs.filter(customer_id=customer_id)
    if state == Licence.State.EXPIRED:
        qs = qs.filter(state=Licence.State.ACTIVE, expires_at__lte=timezone.now())
    elif state == Licence.State.ACTIVE:
        qs = qs.filter(state=Licence.State.ACTIVE, expires_at__gt=timezone.now())
    elif state:
        qs = qs.filter(state=state)
    return qs.order_by("-issued_at")


def licence_get(*, licence_id: uuid.UUID, scope_customer_id: uuid.UUID | None) -> Licence | None:
    """A licence, or None when absent or outside the caller's scope (the API answers 404)."""
    return licence_list(scope_customer_id=scope_customer_id).filter(pk=licence_id).first()


def signing_key_list() -> QuerySet[SigningKey]:
    # defer(): the envelope is never needed to list keys, so it is never loaded.
    return SigningKey.objects.defer("encrypted_private_key").order_by("-created_at")


def revocation_list_latest() -> RevocationList | None:
    return RevocationList.objects.order_by("-serial").first()
