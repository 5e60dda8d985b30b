"""Admin for operators: the audit log (read-only) and API tokens (revoke through the service)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.audit import Actor
from core.errors import DomainError
from core.models import ApiToken, AuditLog
from core.services import api_token_revoke

if TYPE_CHECKING:
    # django-stubs makes admin classes generic; at run time they are not subscriptable.
    BaseAdmin = admin.ModelAdmin[Any]
    BaseInline = admin.TabularInline[Any, Any]
else:
    BaseAdmin = admin.ModelAdmin
    BaseInline = admin.TabularInline


def admin_actor(request: HttpRequest) -> Actor:
    """The audit actor for a change made in the Django admin."""
    return Actor(
        kind=AuditLog.ActorKind.ADMIN,
        label=f"admin:{request.user.get_username()}",
        request_id=getattr(request, "request_id", ""),
    )


def run_service(request: HttpRequest, modeladmin: BaseAdmin, fn: Any, **kwargs: Any) -> bool:
    """Call a service for an admin action; a refusal becomes an error message, not a 500."""
    try:
        fn(actor=admin_actor(request), **kwargs)
    except DomainError as exc:
        modeladmin.message_user(request, f"{exc.code}: {exc.message}", level=messages.ERROR)
        return False
    return True


class ReadOnlyAdmin(BaseAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_kind", "actor_label", "action", "object_type", "object_id"]
    list_filter = ["actor_kind", "action", "object_type"]
    search_fields = ["object_id", "actor_label", "request_id", "action", "customer_id"]
    date_hierarchy = "created_at"


@admin.register(ApiToken)
class ApiTokenAdmin(BaseAdmin):
    list_display = [
        "name",
        "scope",
        "customer",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "customer__name", "customer__slug"]
    exclude = ["token_hash"]  # a hash, but nothing an operator needs to see
    readonly_fields = [
        "name",
        "scope",
        "customer",
        "prefix",
        "created_at",
        "created_by",
        "last_used_at",
        "revoked_at",
    ]
    actions = ["revoke_tokens"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A token's secret must be shown exactly once: use `manage.py createoperator` or the API.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        done = sum(
            run_service(request, self, api_token_revoke, token_id=token.pk)
            for token in queryset.filter(revoked_at__isnull=True)
        )
        self.message_user(request, f"Revoked {done} token(s).")
