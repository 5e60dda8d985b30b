"""Admin for operators: products, policies, licences (issue, suspend, reinstate, revoke through
the services), signing keys (rotate, retire; never the private half) and revocation lists."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from core.admin import BaseAdmin, ReadOnlyAdmin, admin_actor, run_service
from core.errors import DomainError
from licences import services
from licences.models import Licence, LicencePolicy, Product, RevocationList, SigningKey


@admin.register(Product)
class ProductAdmin(BaseAdmin):
    list_display = ["code", "name", "created_at"]
    search_fields = ["code", "name"]


@admin.register(LicencePolicy)
class LicencePolicyAdmin(BaseAdmin):
    list_display = [
        "__str__",
        "name",
        "max_activations",
        "licence_validity_days",
        "certificate_lifetime_s",
        "heartbeat_window_s",
        "offline_grace_s",
    ]
    list_filter = ["product"]
    search_fields = ["code", "name", "product__code"]


class LicenceIssueForm(forms.ModelForm):  # type: ignore[type-arg]
    """What an operator chooses when issuing; everything else is derived and signed."""

    max_activations = forms.IntegerField(
        min_value=1, required=False, help_text="Leave empty for the policy's seat count."
    )
    expires_at = forms.DateTimeField(
        required=False, help_text="Leave empty for the policy's validity period."
    )

    class Meta:
        model = Licence
        fields = ["customer", "policy"]


@admin.register(Licence)
class LicenceAdmin(BaseAdmin):
    list_display = [
        "id",
        "customer",
        "policy",
        "state",
        "active_seats",
        "max_activations",
        "expires_at",
        "issued_at",
    ]
    list_filter = ["state", "policy__product", "policy", "customer"]
    search_fields = ["id", "customer__name", "customer__slug", "state_reason"]
    date_hierarchy = "issued_at"
    actions = ["suspend", "reinstate", "revoke"]
    readonly_fields = [
        "id",
        "customer",
        "policy",
        "state",
        "state_reason",
        "key",
        "signing_key",
        "max_activations",
        "entitlements",
        "not_before",
        "expires_at",
        "issued_at",
        "suspended_at",
        "revoked_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Licence]:
        qs: QuerySet[Licence] = super().get_queryset(request)
        return qs.select_related("customer", "policy__product").annotate(
            seats=Count("activations", filter=Q(activations__state="active"))
        )

    @admin.display(description="active seats")
    def active_seats(self, obj: Licence) -> int:
        return int(getattr(obj, "seats", 0))

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = LicenceIssueForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Licence | None = None) -> Any:
        return self.readonly_fields if obj else []

    def get_fields(self, request: HttpRequest, obj: Licence | None = None) -> Any:
        if obj is None:
            return ["customer", "policy", "max_activations", "expires_at"]
        return self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        try:
            return super().add_view(request, form_url, extra_context)
        except DomainError as exc:
            # The service refused (no signing key, dates out of range...): nothing was written.
            self.message_user(request, f"{exc.code}: {exc.message}", level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request: HttpRequest, obj: Licence, form: Any, change: bool) -> None:
        if change:
            return  # every field is read-only: state changes go through the actions
        try:
            issued = services.licence_issue(
                actor=admin_actor(request),
                customer_id=obj.customer_id,
                policy_id=obj.policy_id,
                max_activations=form.cleaned_data.get("max_activations"),
                expires_at=form.cleaned_data.get("expires_at"),
            )
        except DomainError:
            raise  # add_view turns it into a message; the admin's transaction rolls back
        obj.__dict__.update({k: v for k, v in issued.__dict__.items() if k != "_state"})
        obj._state.adding = False

    def _transition(
        self, request: HttpRequest, queryset: QuerySet[Licence], fn: Any, verb: str
    ) -> None:
        done = sum(
            run_service(request, self, fn, licence_id=lic.pk, reason="admin") for lic in queryset
        )
        self.message_user(request, f"{verb} {done} licence(s).")

    @admin.action(description="Suspend selected licences")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Licence]) -> None:
        self._transition(request, queryset, services.licence_suspend, "Suspended")

    @admin.action(description="Reinstate selected licences")
    def reinstate(self, request: HttpRequest, queryset: QuerySet[Licence]) -> None:
        self._transition(request, queryset, services.licence_reinstate, "Reinstated")

    @admin.action(description="Revoke selected licences (final)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Licence]) -> None:
        self._transition(request, queryset, services.licence_revoke, "Revoked")


@admin.register(SigningKey)
class SigningKeyAdmin(BaseAdmin):
    list_display = ["key_id", "state", "public_key_hex", "created_at", "retired_at"]
    list_filter = ["state"]
    search_fields = ["key_id"]
    exclude = ["encrypted_private_key", "public_key"]  # the envelope never reaches a page
    readonly_fields = ["key_id", "public_key_hex", "state", "created_at", "retired_at"]
    actions = ["rotate", "retire"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[SigningKey]:
        return super().get_queryset(request).defer("encrypted_private_key")

    @admin.display(description="public key")
    def public_key_hex(self, obj: SigningKey) -> str:
        return bytes(obj.public_key).hex()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are generated by the rotate action / `manage.py rotate_signing_key`

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Rotate: generate a new signing key")
    def rotate(self, request: HttpRequest, queryset: QuerySet[SigningKey]) -> None:
        row = services.signing_key_rotate(actor=admin_actor(request))
        self.message_user(request, f"New signing key {row.key_id} signs from now on.")

    @admin.action(description="Retire selected keys")
    def retire(self, request: HttpRequest, queryset: QuerySet[SigningKey]) -> None:
        done = sum(
            run_service(request, self, services.signing_key_retire, key_id=key.key_id)
            for key in queryset
        )
        self.message_user(request, f"Retired {done} key(s).")


@admin.register(RevocationList)
class RevocationListAdmin(ReadOnlyAdmin):
    list_display = [
        "serial",
        "issued_at",
        "licence_count",
        "activation_count",
        "signing_key_id",
        "reason",
    ]
    search_fields = ["reason"]
