"""Bearer API-token authentication and the principal it yields."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from core.audit import Actor
from core.models import ApiToken, AuditLog
from core.tokens import token_hash, token_prefix

# last_used_at is informational; writing it on every request would double the write load.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is calling: an operator, or a customer (always scoped to `customer_id`)."""

    is_authenticated: ClassVar[bool] = True
    is_anonymous: ClassVar[bool] = False

    scope: str
    token_id: uuid.UUID
    label: str
    customer_id: uuid.UUID | None

    @property
    def is_operator(self) -> bool:
        return self.scope == ApiToken.Scope.OPERATOR

    @property
    def is_customer(self) -> bool:
        return self.scope == ApiToken.Scope.CUSTOMER

    def actor(self, request_id: str = "") -> Actor:
        kind = AuditLog.ActorKind.OPERATOR if self.is_operator else AuditLog.ActorKind.CUSTOMER
        return Actor(kind=kind, label=self.label, request_id=request_id)


class ApiTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[Principal, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise AuthenticationFailed("Invalid token.") from exc
        prefix = token_prefix(raw)
        if prefix is None:
            raise AuthenticationFailed("Invalid token.")
        token = ApiToken.objects.filter(prefix=prefix).first()
        if token is None or not hmac.compare_digest(token.token_hash, token_hash(raw)):
            raise AuthenticationFailed("Invalid token.")
        if token.revoked_at is not None:
            raise AuthenticationFailed("Token has been revoked.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        principal = Principal(
            scope=token.scope,
            token_id=token.pk,
            label=f"{token.scope}-token:{token.prefix}:{token.name}",
            customer_id=token.customer_id,
        )
        return principal, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
