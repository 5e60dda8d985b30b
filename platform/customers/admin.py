"""Admin for operators: customers, their users and contract terms (created via services)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from core.admin import BaseAdmin, BaseInline, admin_actor
from customers.models import ContractTerms, Customer, CustomerUser
from customers.services import contract_terms_create, customer_create


class CustomerUserInline(BaseInline):
    model = CustomerUser
    extra = 0
    autocomplete_fields = ["user"]


_TERMS_FIELDS: list[str] = [
    "effective_from",
    "revenue_share_percent",
    "value_per_gb",
    "currency",
    "minimum_monthly_fee",
    "billing_time_zone",
    "payment_terms_days",
]


class ContractTermsInline(BaseInline):
    """Versions are immutable: shown here, added on the Contract terms page."""

    model = ContractTerms
    extra = 0
    can_delete = False
    fields = list(_TERMS_FIELDS)
    readonly_fields = _TERMS_FIELDS

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Customer)
class CustomerAdmin(BaseAdmin):
    list_display = ["name", "slug", "contact_email", "created_at"]
    search_fields = ["name", "slug", "contact_email", "id"]
    inlines = [CustomerUserInline, ContractTermsInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Customer | None = None) -> Any:
        return ["slug"] if obj else []

    def save_model(self, request: HttpRequest, obj: Customer, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = customer_create(
            actor=admin_actor(request),
            name=obj.name,
            slug=obj.slug,
            contact_email=obj.contact_email,
        )
        obj.pk, obj.created_at = created.pk, created.created_at
        obj._state.adding = False


@admin.register(ContractTerms)
class ContractTermsAdmin(BaseAdmin):
    list_display = [
        "customer",
        "effective_from",
        "revenue_share_percent",
        "value_per_gb",
        "currency",
        "minimum_monthly_fee",
        "billing_time_zone",
    ]
    list_filter = ["currency", "billing_time_zone"]
    search_fields = ["customer__name", "customer__slug"]
    autocomplete_fields = ["customer"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None  # versions are immutable: add a new one instead

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ContractTerms, form: Any, change: bool) -> None:
        created = contract_terms_create(
            actor=admin_actor(request),
            customer_id=obj.customer_id,
            effective_from=obj.effective_from,
            revenue_share_percent=obj.revenue_share_percent,
            value_per_gb=obj.value_per_gb,
            currency=obj.currency,
            minimum_monthly_fee=obj.minimum_monthly_fee,
            billing_time_zone=obj.billing_time_zone,
            payment_terms_days=obj.payment_terms_days,
        )
        obj.pk, obj.created_at = created.pk, created.created_at
        obj._state.adding = False
