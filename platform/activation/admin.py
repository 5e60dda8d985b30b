"""Admin for operators: activations (deactivate through the service) and seat events."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from activation.models import Activation, ActivationEvent
from activation.services import activation_deactivate
from core.admin import ReadOnlyAdmin, run_service


@admin.register(Activation)
class ActivationAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "licence",
        "hostname",
        "platform",
        "state",
        "activated_at",
        "last_seen_at",
        "certificate_expires_at",
    ]
    list_filter = ["state", "platform"]
    search_fields = ["id", "hostname", "licence__id", "licence__customer__name", "fingerprint"]
    date_hierarchy = "activated_at"
    exclude = ["device_public_key"]
    actions = ["deactivate"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Activation]:
        return super().get_queryset(request).select_related("licence__customer")

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Needed for actions to be offered; every field stays read-only.
        return bool(request.user.is_staff)

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [f.name for f in Activation._meta.fields if f.name != "device_public_key"]

    @admin.action(description="Deactivate selected activations (frees the seats)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Activation]) -> None:
        done = sum(
            run_service(
                request, self, activation_deactivate, activation_id=a.pk, enforce_rate_limit=False
            )
            for a in queryset.filter(state=Activation.State.ACTIVE)
        )
        self.message_user(request, f"Deactivated {done} activation(s).")


@admin.register(ActivationEvent)
class ActivationEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "licence", "activation"]
    list_filter = ["kind"]
    search_fields = ["licence__id", "activation__id"]
