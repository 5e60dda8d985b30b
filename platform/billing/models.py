"""Savings invoices, their lines, gapless numbering, Stripe links, raw Stripe events, dunning.

Invariants kept by the database as well as the services: one invoice per customer and month;
a number exactly when finalized; a finalized invoice's amounts and lines never change (a
trigger refuses it); amounts are integers in minor units.
"""

from __future__ import annotations

import uuid

from django.db import models


class InvoiceNumberCounter(models.Model):
    """The last number handed out. Finalization locks this row (SELECT ... FOR UPDATE) and
    increments it in the same transaction, so a rolled-back finalization leaves no gap."""

    name = models.CharField(max_length=32, primary_key=True)
    last_number = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}: {self.last_number}"


class StripeCustomerLink(models.Model):
    """Our customer ↔ the Stripe customer created for it (idempotency key from our id)."""

    customer = models.OneToOneField(
        "customers.Customer", primary_key=True, on_delete=models.PROTECT, related_name="+"
    )
    stripe_customer_id = models.CharField(max_length=255, unique=True)
    synced_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.customer_id} → {self.stripe_customer_id}"


class Invoice(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        FINALIZED = "finalized", "Finalized"
        PAID = "paid", "Paid"
        VOID = "void", "Void"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.PROTECT, related_name="savings_invoices"
    )
    terms = models.ForeignKey("customers.ContractTerms", on_delete=models.PROTECT, related_name="+")
    period_month = models.DateField(help_text="First day of the billed month.")
    time_zone = models.CharField(max_length=64)
    # The month in the customer's billing time zone, as UTC instants: [start, end).
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    # Only records ingested before this instant count, so recomputing gives the same cents.
    ingestion_cutoff = models.DateTimeField()
    currency = models.CharField(max_length=3)
    total_minor = models.BigIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    number = models.CharField(max_length=32, null=True, blank=True, unique=True)
    sequence_number = models.BigIntegerField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    payment_failed_at = models.DateTimeField(
        null=True, blank=True, help_text="First failed payment since the last success."
    )
    payment_failure_count = models.PositiveIntegerField(default=0)
    stripe_invoice_id = models.CharField(max_length=255, blank=True, db_index=True)
    stripe_status = models.CharField(max_length=32, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period_month", "customer"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "period_month"], name="invoice_one_per_customer_month"
            ),
            models.CheckConstraint(
                name="invoice_state_known",
                condition=models.Q(state__in=["draft", "finalized", "paid", "void"]),
            ),
            models.CheckConstraint(
                name="invoice_number_iff_finalized",
                condition=(
                    models.Q(
                        state="draft",
                        number__isnull=True,
                        sequence_number__isnull=True,
                        finalized_at__isnull=True,
                    )
                    | models.Q(
                        state__in=["finalized", "paid", "void"],
                        number__isnull=False,
                        sequence_number__isnull=False,
                        finalized_at__isnull=False,
                    )
                ),
            ),
            models.CheckConstraint(
                name="invoice_paid_has_time",
                condition=~models.Q(state="paid") | models.Q(paid_at__isnull=False),
            ),
            models.CheckConstraint(
                name="invoice_void_has_time",
                condition=~models.Q(state="void") | models.Q(voided_at__isnull=False),
            ),
            models.CheckConstraint(
                name="invoice_period_ordered",
                condition=models.Q(period_end__gt=models.F("period_start"))
                & models.Q(ingestion_cutoff__gte=models.F("period_end")),
            ),
        ]
        indexes = [
            models.Index(fields=["state", "payment_failed_at"], name="invoice_dunning_idx"),
        ]

    def __str__(self) -> str:
        return self.number or f"draft {self.pk}"

    @property
    def is_final(self) -> bool:
        return self.state != self.State.DRAFT


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        USAGE = "usage", "Bandwidth savings"
        MINIMUM_TOP_UP = "minimum_top_up", "Minimum monthly fee top-up"
        DELTA = "delta", "Late usage of an earlier month"

    id = models.BigAutoField(primary_key=True)
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    description = models.CharField(max_length=300)
    # The month whose usage this line bills (earlier than the invoice's month for deltas).
    period_month = models.DateField()
    event_start = models.DateTimeField()
    event_end = models.DateTimeField()
    # Usage counted: ingested_at in [ingested_from, ingested_before) (from is null: no bound).
    ingested_from = models.DateTimeField(null=True, blank=True)
    ingested_before = models.DateTimeField()
    record_count = models.BigIntegerField(default=0)
    bytes_delivered = models.BigIntegerField(default=0)
    baseline_bytes = models.BigIntegerField(default=0)
    bytes_saved = models.BigIntegerField(default=0, help_text="Net; may be negative.")
    negative_bytes_saved = models.BigIntegerField(
        default=0, help_text="Sum of the negative records (reported, never billed)."
    )
    negative_records = models.BigIntegerField(default=0)
    gb_saved = models.DecimalField(max_digits=30, decimal_places=9, default=0)
    value_per_gb = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    share_percent = models.DecimalField(max_digits=5, decimal_places=2, default=0)
    minimum_fee_minor = models.BigIntegerField(default=0)
    # Exact (unrounded) amount in major units; amount_minor is its one rounding.
    amount_precise = models.DecimalField(max_digits=50, decimal_places=20, default=0)
    amount_minor = models.BigIntegerField()
    # Delta lines: what the month was billed so far and its recomputed total.
    billed_before_minor = models.BigIntegerField(null=True, blank=True)
    recomputed_total_minor = models.BigIntegerField(null=True, blank=True)
    stripe_invoice_item_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_position"),
            models.CheckConstraint(
                name="invoice_line_kind_known",
                condition=models.Q(kind__in=["usage", "minimum_top_up", "delta"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id}#{self.position} {self.kind} {self.amount_minor}"


class StripeEvent(models.Model):
    """Every verified Stripe webhook, raw, unique on Stripe's event id (the dedupe key)."""

    id = models.BigAutoField(primary_key=True)
    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    payload = models.TextField()
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


class DunningSuspension(models.Model):
    """A licence we suspended because an invoice stayed unpaid after the grace period. Only
    these are reinstated on payment (an operator's own suspension is left alone)."""

    id = models.BigAutoField(primary_key=True)
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="+")
    licence = models.ForeignKey("licences.Licence", on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="suspensions")
    suspended_at = models.DateTimeField()
    reinstated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["licence"],
                condition=models.Q(reinstated_at__isnull=True),
                name="dunning_one_open_per_licence",
            )
        ]

    def __str__(self) -> str:
        return f"licence {self.licence_id} suspended for {self.invoice_id}"
