"""Operator admin for the models whose apps ship no admin classes (billing, metering, jobs,
customer memberships). Each class is registered only when its model is not registered yet,
so an app that later adds its own admin.py takes precedence without a clash (Django's
autodiscovery imports the other apps' admin modules before this one: "portal" is listed
last in INSTALLED_APPS)."""

from __future__ import annotations

from typing import Any

from billing.models import DunningSuspension, Invoice, InvoiceLine, StripeEvent
from billing.money import format_minor
from billing.services import invoice_void
from customers.models import CustomerUser
from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from jobs.models import EncodeJob
from jobs.services import encode_job_cancel
from metering.models import UsageBatch, UsageDailyRollup, UsageRecord, UsageStream

from core.admin import BaseAdmin, BaseInline, ReadOnlyAdmin, run_service


def _register(model: type[Model], admin_class: type[BaseAdmin]) -> None:
    if not admin.site.is_registered(model):
        admin.site.register(model, admin_class)


class InvoiceLineInline(BaseInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    fields = ["position", "kind", "description", "bytes_saved", "gb_saved", "amount_minor"]
    readonly_fields = ["position", "kind", "description", "bytes_saved", "gb_saved", "amount_minor"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class InvoiceAdmin(BaseAdmin):
    list_display = [
        "number",
        "customer",
        "period_month",
        "state",
        "total",
        "due_date",
        "paid_at",
        "payment_failure_count",
    ]
    list_filter = [
        "state",
        "currency",
        "period_month",
        ("payment_failed_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["number", "customer__name", "customer__slug", "stripe_invoice_id", "id"]
    date_hierarchy = "period_month"
    inlines = [InvoiceLineInline]
    actions = ["void_invoices"]
    list_select_related = ["customer"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Amounts and state change only through the billing services (a trigger guards them).
        return [f.name for f in Invoice._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # invoices come from the monthly close

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="total", ordering="total_minor")
    def total(self, obj: Invoice) -> str:
        return format_minor(obj.total_minor, obj.currency)

    @admin.action(description="Void selected invoices")
    def void_invoices(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        done = sum(
            run_service(request, self, invoice_void, invoice_id=inv.pk, reason="admin")
            for inv in queryset.exclude(state=Invoice.State.VOID)
        )
        self.message_user(request, f"Voided {done} invoice(s).")


class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "received_at", "processed_at", "outcome"]
    list_filter = ["type", ("processed_at", admin.EmptyFieldListFilter)]
    search_fields = ["event_id", "type", "outcome"]
    date_hierarchy = "received_at"


class DunningSuspensionAdmin(ReadOnlyAdmin):
    list_display = ["licence", "customer", "invoice", "suspended_at", "reinstated_at"]
    list_filter = [("reinstated_at", admin.EmptyFieldListFilter)]
    search_fields = ["customer__name", "licence__id", "invoice__number"]
    list_select_related = ["customer", "invoice", "licence"]


class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "customer",
        "source_kind",
        "event_time",
        "bytes_delivered",
        "baseline_bytes",
        "bytes_saved",
        "baseline_method",
    ]
    list_filter = ["source_kind", "baseline_method"]
    search_fields = ["source", "client_record_id", "job_id", "customer__name"]
    date_hierarchy = "event_time"
    list_select_related = ["customer"]
    show_full_result_count = False  # the table is large: no COUNT(*) per page


class UsageDailyRollupAdmin(ReadOnlyAdmin):
    list_display = [
        "day",
        "customer",
        "source_kind",
        "record_count",
        "baseline_bytes",
        "bytes_delivered",
        "bytes_saved",
    ]
    list_filter = ["source_kind"]
    search_fields = ["customer__name", "customer__slug"]
    date_hierarchy = "day"
    list_select_related = ["customer"]


class UsageBatchAdmin(ReadOnlyAdmin):
    list_display = [
        "batch_id",
        "customer",
        "received_at",
        "record_count",
        "new_count",
        "duplicate_count",
    ]
    search_fields = ["batch_id", "request_id", "customer__name"]
    date_hierarchy = "received_at"
    list_select_related = ["customer"]


class UsageStreamAdmin(ReadOnlyAdmin):
    list_display = [
        "activation",
        "customer",
        "max_sequence",
        "received_count",
        "missing",
        "last_ingested_at",
    ]
    search_fields = ["customer__name"]
    list_select_related = ["customer"]


class EncodeJobAdmin(BaseAdmin):
    list_display = [
        "id",
        "customer",
        "input_name",
        "kind",
        "state",
        "progress",
        "output_bytes",
        "failure_code",
        "queued_at",
        "finished_at",
    ]
    list_filter = ["state", "kind", "baseline", "failure_code"]
    search_fields = ["id", "input_name", "customer__name", "customer__slug", "created_by"]
    date_hierarchy = "queued_at"
    list_select_related = ["customer"]
    actions = ["cancel_jobs"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in EncodeJob._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[EncodeJob]) -> None:
        done = sum(
            run_service(request, self, encode_job_cancel, job_id=job.pk, scope_customer_id=None)
            for job in queryset.exclude(state__in=EncodeJob.TERMINAL_STATES)
        )
        self.message_user(request, f"Cancelled {done} job(s).")


class CustomerUserAdmin(BaseAdmin):
    """Memberships across customers (edited on the customer page; listed here to search)."""

    list_display = ["user", "customer", "role", "created_at"]
    list_filter = ["role", "customer"]
    search_fields = ["user__username", "user__email", "customer__name", "customer__slug"]
    list_select_related = ["user", "customer"]
    autocomplete_fields = ["user", "customer"]


def register_missing() -> None:
    _register(Invoice, InvoiceAdmin)
    _register(StripeEvent, StripeEventAdmin)
    _register(DunningSuspension, DunningSuspensionAdmin)
    _register(UsageRecord, UsageRecordAdmin)
    _register(UsageDailyRollup, UsageDailyRollupAdmin)
    _register(UsageBatch, UsageBatchAdmin)
    _register(UsageStream, UsageStreamAdmin)
    _register(EncodeJob, EncodeJobAdmin)
    _register(CustomerUser, CustomerUserAdmin)
