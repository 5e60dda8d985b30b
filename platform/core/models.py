"""Cross-cutting records: the append-only audit log and API tokens."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models


class AuditLog(models.Model):
    """One row per state change: who, what, when, which request. Never updated or deleted."""

    class ActorKind(models.TextChoices):
        OPERATOR = "operator", "Operator token"
        CUSTOMER = "customer", "Customer token"
        ADMIN = "admin", "Django admin user"
        SDK = "sdk", "SDK (device)"
        CLI = "cli", "Management command"
        SYSTEM = "system", "System task"

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_label = models.CharField(max_length=200, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    # Plain id, not a foreign key: audit rows outlive what they describe and must never cascade.
    customer_id = models.UUIDField(null=True, blank=True, db_index=True)
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        # Plain btree indexes for equality lookups; `db_index=True` on a CharField would add a
        # second, LIKE-prefix index on PostgreSQL that no query uses (the admin searches with
        # icontains) and that every audited write (the SDK activation path) would maintain.
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
            models.Index(fields=["request_id"], name="audit_request_idx"),
            models.Index(fields=["action"], name="audit_action_idx"),
        ]

    def __str__(self) -> str:
        when = f"{self.created_at:%Y-%m-%d %H:%M:%S}"
        return f"{when} {self.actor_kind}:{self.actor_label} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Append-only: an existing row is never rewritten.
        if not self._state.adding:
            raise ValueError("audit log rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ValueError("audit log rows are append-only")


class ApiToken(models.Model):
    """A bearer token. Only a SHA-256 of the full token is stored; the token is shown once."""

    class Scope(models.TextChoices):
        OPERATOR = "operator", "Operator"
        CUSTOMER = "customer", "Customer"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    customer = models.ForeignKey(
        "customers.Customer",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="api_tokens",
    )
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=200, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                name="api_token_customer_iff_customer_scope",
                condition=(
                    models.Q(scope="customer", customer__isnull=False)
                    | models.Q(scope="operator", customer__isnull=True)
                ),
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} (ncp_{self.prefix}_…)"

    def __repr__(self) -> str:
        return f"<ApiToken {self.prefix} scope={self.scope}>"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
