"""Writes of the core app: API tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from core.audit import Actor, audit_record
from core.errors import Conflict, DomainError, NotFound
from core.models import ApiToken
from core.tokens import token_generate, token_hash


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # the full token: returned once, never stored


def api_token_create(
    *, actor: Actor, name: str, scope: str, customer_id: uuid.UUID | None = None
) -> IssuedToken:
    """Create an API token and return it with its secret (shown once). Writes an audit row."""
    if scope not in ApiToken.Scope.values:
        raise DomainError(f"Unknown token scope {scope!r}.", code="VALIDATION_ERROR")
    if (scope == ApiToken.Scope.CUSTOMER) != (customer_id is not None):
        raise DomainError(
            "Customer tokens need a customer; operator tokens must not have one.",
            code="VALIDATION_ERROR",
        )
    with transaction.atomic():
        if customer_id is not None:
            from customers.models import Customer

            if not Customer.objects.filter(pk=customer_id).exists():
                raise NotFound("No such customer.", code="CUSTOMER_NOT_FOUND")
        prefix, secret = token_generate()
        token = ApiToken.objects.create(
            name=name,
            scope=scope,
            customer_id=customer_id,
            prefix=prefix,
            token_hash=token_hash(secret),
            created_by=actor.label[:200],
        )
        audit_record(
            actor=actor,
            action="api_token.create",
            object_type="api_token",
            object_id=token.pk,
            customer_id=customer_id,
            changes={"name": name, "scope": scope, "prefix": prefix},
        )
    return IssuedToken(token=token, secret=secret)


def api_token_revoke(*, actor: Actor, token_id: uuid.UUID) -> ApiToken:
    """Revoke a token (idempotency refused: a second revoke is a 409). Writes an audit row."""
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().filter(pk=token_id).first()
        if token is None:
            raise NotFound("No such API token.", code="TOKEN_NOT_FOUND")
        if token.revoked_at is not None:
            raise Conflict("The token is already revoked.", code="TOKEN_ALREADY_REVOKED")
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="api_token.revoke",
            object_type="api_token",
            object_id=token.pk,
            customer_id=token.customer_id,
        )
    return token
