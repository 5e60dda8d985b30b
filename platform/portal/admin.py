"""Admin for the portal's own records, plus the operator admin other apps lack
(portal.admin_extras)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from core.admin import BaseAdmin, ReadOnlyAdmin
from portal.admin_extras import register_missing
from portal.models import LoginFailure, TotpDevice


@admin.register(LoginFailure)
class LoginFailureAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "username", "ip"]
    search_fields = ["username", "ip"]
    date_hierarchy = "created_at"
    actions = ["unlock"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    @admin.action(description="Unlock: forget the selected failures")
    def unlock(self, request: HttpRequest, queryset: QuerySet[LoginFailure]) -> None:
        count, _ = queryset.delete()
        self.message_user(request, f"Forgot {count} failed sign-in(s).")


@admin.register(TotpDevice)
class TotpDeviceAdmin(BaseAdmin):
    """Operators can only reset a lost authenticator (delete); the secret is never shown."""

    list_display = ["user", "confirmed_at", "created_at"]
    list_filter = [("confirmed_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__username", "user__email"]
    exclude = ["sealed_secret", "last_step"]
    readonly_fields = ["user", "confirmed_at", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


register_missing()
