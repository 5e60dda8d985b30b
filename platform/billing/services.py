"""Writes of billing: the monthly close, invoice state changes, the Stripe push, Stripe webhook
events and dunning (suspension after the payment grace period, reinstatement on payment).

Money: billing.money holds the one rounding rule. Time: a month is closed in the billing time
zone of the contract terms in force on its first day; only records ingested before the
invoice's ingestion cutoff (month end + grace) count, so a recomputation gives the same cents.
Late records of an already invoiced month become a delta line on the next invoice; finalized
invoices never change.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from customers.models import ContractTerms, Customer
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Sum
from django.utils import timezone

from billing import money, stripe_client
from billing.models import (
    DunningSuspension,
    Invoice,
    InvoiceLine,
    InvoiceNumberCounter,
    StripeCustomerLink,
    StripeEvent,
)
from billing.selectors import UsageSums, UsageWindow, usage_window_sums
from core import metrics
from core.audit import Actor, audit_record, audit_record_many
from core.errors import Conflict, DomainError, NotFound

log = logging.getLogger(__name__)

# Records may arrive this long after a month ends and still count in that month's invoice.
INGESTION_GRACE = dt.timedelta(hours=getattr(settings, "BILLING_INGESTION_GRACE_HOURS", 48))
# A close waits this much past the cutoff, so every ingest transaction that stamped a time
# before the cutoff has committed (ingest transactions are single statements: milliseconds).
CUTOFF_SAFETY = dt.timedelta(minutes=5)
# A payment still failed this long after its first failure suspends the customer's licences.
PAYMENT_GRACE = dt.timedelta(days=getattr(settings, "BILLING_PAYMENT_GRACE_DAYS", 14))
# Earlier months examined for late records (the lateness limit is 35 days: two months back).
DELTA_LOOKBACK_MONTHS = 3
NUMBER_COUNTER = "savings"
NUMBER_FORMAT = "SAV-{:06d}"
# Customers per close transaction (a few bulk statements each).
CLOSE_CHUNK = 250


class PeriodOpen(DomainError):
    code = "PERIOD_OPEN"
    http_status = 409


class InvoiceStateConflict(Conflict):
    code = "INVALID_STATE_TRANSITION"


# --- months --------------------------------------------------------------------------------


def add_months(month: dt.date, n: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + n
    return dt.date(index // 12, index % 12 + 1, 1)


def month_bounds(month: dt.date, time_zone: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a calendar month in `time_zone`, as UTC instants."""
    zone = zoneinfo.ZoneInfo(time_zone)
    nxt = add_months(month, 1)
    start = dt.datetime(month.year, month.month, 1, tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime(nxt.year, nxt.month, 1, tzinfo=zone).astimezone(dt.UTC)
    return start, end


def parse_month(text: str) -> dt.date:
    try:
        return dt.datetime.strptime(text, "%Y-%m").date()
    except ValueError as exc:
        raise DomainError("A month is written YYYY-MM.", code="VALIDATION_ERROR") from exc


# --- the close -----------------------------------------------------------------------------


@dataclass
class CloseReport:
    month: dt.date
    created: list[Invoice] = field(default_factory=list)
    already_closed: int = 0
    no_terms: int = 0
    still_open: int = 0


@dataclass(frozen=True)
class _Plan:
    customer: Customer
    terms: ContractTerms
    start: dt.datetime
    end: dt.datetime
    cutoff: dt.datetime


@dataclass(frozen=True)
class _BilledMonth:
    """An earlier month already invoiced for a customer, as delta lines need it."""

    customer_id: uuid.UUID
    month: dt.date
    start: dt.datetime
    end: dt.datetime
    value_per_gb: Decimal
    share_percent: Decimal
    minimum_fee_minor: int
    billed_minor: int
    accounted_through: dt.datetime


def _terms_by_customer(customer_ids: Sequence[uuid.UUID], month: dt.date) -> dict[Any, Any]:
    """The contract version in force on the month's first day, per customer (one query)."""
    chosen: dict[uuid.UUID, ContractTerms] = {}
    for terms in ContractTerms.objects.filter(
        customer_id__in=customer_ids, effective_from__lte=month
    ).order_by("customer_id", "-effective_from"):
        chosen.setdefault(terms.customer_id, terms)
    return chosen


def _billed_months(
    customer_ids: Sequence[uuid.UUID], month: dt.date
) -> dict[uuid.UUID, list[_BilledMonth]]:
    """Earlier invoiced months (non-void invoices) within the lookback, with what was billed
    for each so far and the latest ingestion cutoff already accounted for."""
    since = add_months(month, -DELTA_LOOKBACK_MONTHS)
    live = [Invoice.State.FINALIZED, Invoice.State.PAID]
    originals = {
        (inv.customer_id, inv.period_month): inv
        for inv in Invoice.objects.filter(
            customer_id__in=customer_ids,
            period_month__gte=since,
            period_month__lt=month,
            state__in=live,
        )
    }
    if not originals:
        return {}
    usage_lines = {
        (line.invoice.customer_id, line.period_month): line
        for line in InvoiceLine.objects.filter(
            invoice__in=list(originals.values()), kind=InvoiceLine.Kind.USAGE
        ).select_related("invoice")
    }
    billed = (
        InvoiceLine.objects.filter(
            invoice__customer_id__in=customer_ids,
            invoice__state__in=live,
            period_month__gte=since,
            period_month__lt=month,
        )
        .values("invoice__customer_id", "period_month")
        .annotate(billed=Sum("amount_minor"), through=Max("invoice__ingestion_cutoff"))
    )
    result: dict[uuid.UUID, list[_BilledMonth]] = {}
    for row in billed:
        key = (row["invoice__customer_id"], row["period_month"])
        original, usage = originals.get(key), usage_lines.get(key)
        if original is None or usage is None:
            continue
        result.setdefault(key[0], []).append(
            _BilledMonth(
                customer_id=key[0],
                month=key[1],
                start=original.period_start,
                end=original.period_end,
                value_per_gb=usage.value_per_gb,
                share_percent=usage.share_percent,
                minimum_fee_minor=usage.minimum_fee_minor,
                billed_minor=int(row["billed"]),
                accounted_through=row["through"],
            )
        )
    for months in result.values():
        months.sort(key=lambda b: b.month)
    return result


def billing_period_close(
    *,
    actor: Actor,
    month: dt.date,
    customer_ids: Sequence[uuid.UUID] | None = None,
    now: dt.datetime | None = None,
) -> CloseReport:
    """Close `month` for every customer with contract terms (or only `customer_ids`): one
    finalized savings invoice per customer, numbered without gaps.

    Per customer: the month in its billing time zone; net bytes saved by records with event
    time in the month and ingested before the cutoff (month end + INGESTION_GRACE) → a usage
    line (the one rounding); a top-up to the minimum monthly fee; and a delta line for every
    earlier invoiced month that received late records since it was last accounted for (the
    month is recomputed and the difference billed; finalized invoices are never edited).

    Idempotent: a customer that already has an invoice for the month is skipped, so re-running
    changes nothing. Customers whose cutoff has not passed yet are skipped (still_open).
    Side effects: per customer, one transaction creating the invoice and lines, finalizing it
    (number, audit rows); the Stripe push is queued on commit when Stripe is configured."""
    now = now or timezone.now()
    month = month.replace(day=1)
    report = CloseReport(month=month)
    customers = Customer.objects.all()
    if customer_ids is not None:
        customers = customers.filter(pk__in=list(customer_ids))
    by_id = {c.pk: c for c in customers}
    terms_of = _terms_by_customer(list(by_id), month)
    report.no_terms = len(by_id) - len(terms_of)
    closed = set(
        Invoice.objects.filter(period_month=month, customer_id__in=list(terms_of)).values_list(
            "customer_id", flat=True
        )
    )
    report.already_closed = len(closed)
    plans: list[_Plan] = []
    for customer_id, terms in terms_of.items():
        if customer_id in closed:
            continue
        start, end = month_bounds(month, terms.billing_time_zone)
        cutoff = end + INGESTION_GRACE
        if now < cutoff + CUTOFF_SAFETY:
            report.still_open += 1
            continue
        plans.append(_Plan(by_id[customer_id], terms, start, end, cutoff))
    if not plans:
        return report

    billed = _billed_months([p.customer.pk for p in plans], month)
    windows: list[UsageWindow] = []
    for i, plan in enumerate(plans):
        windows.append(UsageWindow(i * 10, plan.customer.pk, plan.start, plan.end, plan.cutoff))
        for j, earlier in enumerate(billed.get(plan.customer.pk, []), start=1):
            windows.append(
                UsageWindow(
                    i * 10 + j,
                    plan.customer.pk,
                    earlier.start,
                    earlier.end,
                    plan.cutoff,
                    late_from=earlier.accounted_through,
                )
            )
    sums = usage_window_sums(windows)

    items = [
        (
            plan,
            _lines_for(
                plan, sums.get(i * 10, UsageSums()), billed.get(plan.customer.pk, []), sums, i
            ),
        )
        for i, plan in enumerate(plans)
    ]
    for chunk_start in range(0, len(items), CLOSE_CHUNK):
        chunk = items[chunk_start : chunk_start + CLOSE_CHUNK]
        created = _invoices_create_finalized(actor=actor, month=month, items=chunk)
        if created is not None:
            report.created += created
            continue
        # A concurrent close won some customers of this chunk: redo it one by one.
        for item in chunk:
            one = _invoices_create_finalized(actor=actor, month=month, items=[item])
            if one is not None:
                report.created += one
            elif Invoice.objects.filter(customer=item[0].customer, period_month=month).exists():
                report.already_closed += 1
            else:
                raise DomainError("The invoice could not be created.", code="CLOSE_FAILED")
    return report


def _month_name(month: dt.date) -> str:
    return month.strftime("%B %Y")


def _lines_for(
    plan: _Plan,
    current: UsageSums,
    earlier: list[_BilledMonth],
    sums: dict[int, UsageSums],
    index: int,
) -> list[InvoiceLine]:
    terms = plan.terms
    month = plan.start.astimezone(zoneinfo.ZoneInfo(terms.billing_time_zone)).date()
    amount = money.usage_amount(
        bytes_saved=current.bytes_saved,
        value_per_gb=terms.value_per_gb,
        share_percent=terms.revenue_share_percent,
        currency=terms.currency,
    )
    lines = [
        InvoiceLine(
            kind=InvoiceLine.Kind.USAGE,
            description=(
                f"Bandwidth savings {_month_name(month)}: {amount.gb:f} GB saved × "
                f"{terms.value_per_gb:f} {terms.currency}/GB × {terms.revenue_share_percent}%"
            ),
            period_month=month,
            event_start=plan.start,
            event_end=plan.end,
            ingested_before=plan.cutoff,
            record_count=current.records,
            bytes_delivered=current.bytes_delivered,
            baseline_bytes=current.baseline_bytes,
            bytes_saved=current.bytes_saved,
            negative_bytes_saved=current.negative_bytes_saved,
            negative_records=current.negative_records,
            gb_saved=amount.gb,
            value_per_gb=terms.value_per_gb,
            share_percent=terms.revenue_share_percent,
            minimum_fee_minor=terms.minimum_monthly_fee,
            amount_precise=amount.precise,
            amount_minor=amount.minor,
        )
    ]
    if amount.minor < terms.minimum_monthly_fee:
        lines.append(
            InvoiceLine(
                kind=InvoiceLine.Kind.MINIMUM_TOP_UP,
                description=(
                    f"Top-up to the minimum monthly fee of "
                    f"{money.format_minor(terms.minimum_monthly_fee, terms.currency)}"
                ),
                period_month=month,
                event_start=plan.start,
                event_end=plan.end,
                ingested_before=plan.cutoff,
                minimum_fee_minor=terms.minimum_monthly_fee,
                amount_precise=Decimal(terms.minimum_monthly_fee - amount.minor),
                amount_minor=terms.minimum_monthly_fee - amount.minor,
            )
        )
    for j, billed in enumerate(earlier, start=1):
        recomputed = sums.get(index * 10 + j)
        if recomputed is None or recomputed.late_records == 0:
            continue
        again = money.usage_amount(
            bytes_saved=recomputed.bytes_saved,
            value_per_gb=billed.value_per_gb,
            share_percent=billed.share_percent,
            currency=terms.currency,
        )
        total = money.month_total_minor(
            usage_minor=again.minor, minimum_fee_minor=billed.minimum_fee_minor
        )
        late_gb = Decimal(recomputed.late_bytes_saved) / money.BYTES_PER_GB
        lines.append(
            InvoiceLine(
                kind=InvoiceLine.Kind.DELTA,
                description=(
                    f"Late usage for {_month_name(billed.month)}: {recomputed.late_records} "
                    f"records ({late_gb:f} GB net) arrived after that invoice; month "
                    f"recomputed {money.format_minor(billed.billed_minor, terms.currency)} → "
                    f"{money.format_minor(total, terms.currency)}"
                ),
                period_month=billed.month,
                event_start=billed.start,
                event_end=billed.end,
                ingested_from=billed.accounted_through,
                ingested_before=plan.cutoff,
                record_count=recomputed.late_records,
                bytes_delivered=recomputed.late_bytes_delivered,
                baseline_bytes=recomputed.late_baseline_bytes,
                bytes_saved=recomputed.late_bytes_saved,
                gb_saved=again.gb,
                value_per_gb=billed.value_per_gb,
                share_percent=billed.share_percent,
                minimum_fee_minor=billed.minimum_fee_minor,
                amount_precise=Decimal(total - billed.billed_minor),
                amount_minor=total - billed.billed_minor,
                billed_before_minor=billed.billed_minor,
                recomputed_total_minor=total,
            )
        )
    for position, line in enumerate(lines, start=1):
        line.position = position
    return lines


def _invoices_create_finalized(
    *, actor: Actor, month: dt.date, items: list[tuple[_Plan, list[InvoiceLine]]]
) -> list[Invoice] | None:
    """Create the drafts with their lines and finalize them, in one transaction with a few
    bulk statements (numbers taken in one step under the counter lock, in customer order).
    None when the unique (customer, month) index refused one: a concurrent close got there
    first, and the caller retries customer by customer."""
    invoices: list[Invoice] = []
    lines: list[InvoiceLine] = []
    for plan, plan_lines in items:
        terms = plan.terms
        invoice = Invoice(
            customer=plan.customer,
            terms=terms,
            period_month=month,
            time_zone=terms.billing_time_zone,
            period_start=plan.start,
            period_end=plan.end,
            ingestion_cutoff=plan.cutoff,
            currency=terms.currency,
            total_minor=sum(line.amount_minor for line in plan_lines),
        )
        for line in plan_lines:
            line.invoice = invoice
        invoices.append(invoice)
        lines += plan_lines
    try:
        with transaction.atomic():
            Invoice.objects.bulk_create(invoices, batch_size=500)
            InvoiceLine.objects.bulk_create(lines, batch_size=1000)
            audit_record_many(
                actor=actor,
                action="invoice.create",
                object_type="invoice",
                rows=[
                    (
                        invoice.pk,
                        invoice.customer_id,
                        {
                            "month": month.strftime("%Y-%m"),
                            "total_minor": invoice.total_minor,
                            "currency": invoice.currency,
                            "ingestion_cutoff": invoice.ingestion_cutoff.isoformat(),
                        },
                    )
                    for invoice in invoices
                ],
            )
            first = _take_numbers(len(invoices))
            now = timezone.now()
            for k, (invoice, (plan, _)) in enumerate(zip(invoices, items, strict=True)):
                _mark_finalized(invoice, first + k, now, plan.terms.payment_terms_days)
            Invoice.objects.bulk_update(invoices, _FINALIZE_FIELDS, batch_size=500)
            audit_record_many(
                actor=actor,
                action="invoice.finalize",
                object_type="invoice",
                rows=[
                    (i.pk, i.customer_id, {"number": i.number, "total_minor": i.total_minor})
                    for i in invoices
                ],
            )
            _queue_stripe_push([invoice.pk for invoice in invoices])
    except IntegrityError:
        return None
    metrics.invoices_finalized_observed(invoices)
    return invoices


_FINALIZE_FIELDS = ["state", "sequence_number", "number", "finalized_at", "due_date"]


def _mark_finalized(invoice: Invoice, seq: int, now: dt.datetime, payment_days: int) -> None:
    invoice.state = Invoice.State.FINALIZED
    invoice.sequence_number = seq
    invoice.number = NUMBER_FORMAT.format(seq)
    invoice.finalized_at = now
    invoice.due_date = now.date() + dt.timedelta(days=payment_days)


def _take_numbers(count: int) -> int:
    """Reserve `count` consecutive invoice numbers under the counter's row lock, inside the
    caller's transaction (a rollback returns them: no gaps). Returns the first."""
    InvoiceNumberCounter.objects.get_or_create(name=NUMBER_COUNTER)
    counter = InvoiceNumberCounter.objects.select_for_update().get(name=NUMBER_COUNTER)
    first = counter.last_number + 1
    counter.last_number += count
    counter.save(update_fields=["last_number"])
    return first


def _queue_stripe_push(invoice_ids: list[uuid.UUID]) -> None:
    if not stripe_client.is_configured():
        return
    from billing.tasks import push_invoice_to_stripe

    for invoice_id in invoice_ids:
        push_invoice_to_stripe.delay_on_commit(str(invoice_id))


def invoice_finalize(*, actor: Actor, invoice_id: uuid.UUID) -> Invoice:
    """draft → finalized: assign the next gapless number, the due date (payment terms from the
    finalization date), and freeze the invoice (the database refuses later edits of amounts
    and lines). Writes an audit row; queues the Stripe push on commit when configured."""
    with transaction.atomic():
        invoice = (
            Invoice.objects.select_for_update()
            .select_related("terms")
            .filter(pk=invoice_id)
            .first()
        )
        if invoice is None:
            raise NotFound("No such invoice.", code="INVOICE_NOT_FOUND")
        if invoice.state != Invoice.State.DRAFT:
            raise InvoiceStateConflict(f"Only a draft can be finalized; it is {invoice.state}.")
        total = InvoiceLine.objects.filter(invoice=invoice).aggregate(t=Sum("amount_minor"))["t"]
        if int(total or 0) != invoice.total_minor:
            raise DomainError("The invoice total does not match its lines.", code="TOTAL_MISMATCH")
        _mark_finalized(invoice, _take_numbers(1), timezone.now(), invoice.terms.payment_terms_days)
        invoice.save(update_fields=_FINALIZE_FIELDS)
        audit_record(
            actor=actor,
            action="invoice.finalize",
            object_type="invoice",
            object_id=invoice.pk,
            customer_id=invoice.customer_id,
            changes={"number": invoice.number, "total_minor": invoice.total_minor},
        )
        _queue_stripe_push([invoice.pk])
    metrics.invoices_finalized_observed([invoice])
    return invoice


# --- Stripe push -----------------------------------------------------------------------------


def invoice_push_to_stripe(*, invoice_id: uuid.UUID) -> Invoice:
    """Mirror a finalized invoice into Stripe: sync the customer, create the invoice
    (auto_advance false), add one item per line, finalize, send.

    Idempotent and resumable: each step's Stripe id is stored as soon as it is known and a
    known step is skipped; every create uses an idempotency key derived from our ids, so a
    crash between Stripe's answer and our write cannot create a second object. Without
    STRIPE_API_KEY this does nothing. Side effects: Stripe ids on the invoice, its lines and
    the customer link; an audit row when the invoice was sent."""
    if not stripe_client.is_configured():
        return Invoice.objects.get(pk=invoice_id)
    invoice = Invoice.objects.select_related("customer", "terms").get(pk=invoice_id)
    if invoice.state == Invoice.State.DRAFT:
        raise InvoiceStateConflict("A draft is not sent to Stripe; finalize it first.")
    if invoice.sent_at is not None or invoice.state == Invoice.State.VOID:
        return invoice
    customer = invoice.customer
    link = StripeCustomerLink.objects.filter(customer=customer).first()
    if link is None:
        stripe_id = stripe_client.customer_create(
            customer_id=str(customer.pk), name=customer.name, email=customer.contact_email
        )
        link, _ = StripeCustomerLink.objects.get_or_create(
            customer=customer,
            defaults={"stripe_customer_id": stripe_id, "synced_at": timezone.now()},
        )
    number = str(invoice.number)
    if not invoice.stripe_invoice_id:
        created = stripe_client.invoice_create(
            invoice_id=str(invoice.pk),
            number=number,
            stripe_customer_id=link.stripe_customer_id,
            currency=invoice.currency,
            days_until_due=invoice.terms.payment_terms_days,
            period=invoice.period_month.strftime("%Y-%m"),
        )
        invoice.stripe_invoice_id, invoice.stripe_status = created.id, created.status
        invoice.save(update_fields=["stripe_invoice_id", "stripe_status"])
    for line in invoice.lines.filter(stripe_invoice_item_id=""):
        line.stripe_invoice_item_id = stripe_client.invoice_item_add(
            invoice_id=str(invoice.pk),
            position=line.position,
            stripe_invoice_id=invoice.stripe_invoice_id,
            stripe_customer_id=link.stripe_customer_id,
            amount_minor=line.amount_minor,
            currency=invoice.currency,
            description=f"{number} #{line.position}: {line.description}",
        )
        line.save(update_fields=["stripe_invoice_item_id"])
    if invoice.stripe_status == "draft":
        finalized = stripe_client.invoice_finalize(
            invoice_id=str(invoice.pk), stripe_invoice_id=invoice.stripe_invoice_id
        )
        invoice.stripe_status = finalized.status
        invoice.save(update_fields=["stripe_status"])
    sent = stripe_client.invoice_send(
        invoice_id=str(invoice.pk), stripe_invoice_id=invoice.stripe_invoice_id
    )
    with transaction.atomic():
        invoice.stripe_status = sent.status
        invoice.sent_at = timezone.now()
        invoice.save(update_fields=["stripe_status", "sent_at"])
        audit_record(
            actor=Actor.system("stripe-push"),
            action="invoice.send",
            object_type="invoice",
            object_id=invoice.pk,
            customer_id=invoice.customer_id,
            changes={"stripe_invoice_id": invoice.stripe_invoice_id},
        )
    return invoice


# --- payment state ---------------------------------------------------------------------------


def _locked_invoice(invoice_id: uuid.UUID) -> Invoice:
    invoice = Invoice.objects.select_for_update().filter(pk=invoice_id).first()
    if invoice is None:
        raise NotFound("No such invoice.", code="INVOICE_NOT_FOUND")
    return invoice


def invoice_mark_paid(
    *, actor: Actor, invoice_id: uuid.UUID, paid_at: dt.datetime | None = None
) -> Invoice:
    """finalized → paid; then reinstates licences that dunning suspended, unless another
    invoice of the customer is still unpaid past its grace. Idempotent (paid stays paid).
    Writes an audit row."""
    with transaction.atomic():
        invoice = _locked_invoice(invoice_id)
        if invoice.state == Invoice.State.PAID:
            return invoice
        if invoice.state != Invoice.State.FINALIZED:
            raise InvoiceStateConflict(
                f"Only a finalized invoice can be paid; it is {invoice.state}."
            )
        invoice.state = Invoice.State.PAID
        invoice.paid_at = paid_at or timezone.now()
        invoice.payment_failed_at = None
        invoice.save(update_fields=["state", "paid_at", "payment_failed_at"])
        audit_record(
            actor=actor,
            action="invoice.paid",
            object_type="invoice",
            object_id=invoice.pk,
            customer_id=invoice.customer_id,
            changes={"number": invoice.number},
        )
        dunning_release(actor=actor, customer_id=invoice.customer_id)
    return invoice


def invoice_record_payment_failure(
    *, actor: Actor, invoice_id: uuid.UUID, failed_at: dt.datetime | None = None
) -> Invoice:
    """Note a failed payment of a finalized invoice: the first failure starts the grace
    period (dunning_enforce suspends after it). A failure reported for a paid or void invoice
    (events arrive out of order) changes nothing. Writes an audit row."""
    with transaction.atomic():
        invoice = _locked_invoice(invoice_id)
        if invoice.state != Invoice.State.FINALIZED:
            return invoice
        invoice.payment_failed_at = invoice.payment_failed_at or failed_at or timezone.now()
        invoice.payment_failure_count = F("payment_failure_count") + 1
        invoice.save(update_fields=["payment_failed_at", "payment_failure_count"])
        invoice.refresh_from_db(fields=["payment_failure_count"])
        audit_record(
            actor=actor,
            action="invoice.payment_failed",
            object_type="invoice",
            object_id=invoice.pk,
            customer_id=invoice.customer_id,
            changes={"failures": invoice.payment_failure_count},
        )
    return invoice


def invoice_void(*, actor: Actor, invoice_id: uuid.UUID, reason: str = "") -> Invoice:
    """finalized → void (final; the number stays used). Releases dunning held for it.
    Idempotent for an already void invoice. Writes an audit row."""
    with transaction.atomic():
        invoice = _locked_invoice(invoice_id)
        if invoice.state == Invoice.State.VOID:
            return invoice
        if invoice.state != Invoice.State.FINALIZED:
            raise InvoiceStateConflict(
                f"Only a finalized invoice can be voided; it is {invoice.state}."
            )
        invoice.state = Invoice.State.VOID
        invoice.voided_at = timezone.now()
        invoice.save(update_fields=["state", "voided_at"])
        audit_record(
            actor=actor,
            action="invoice.void",
            object_type="invoice",
            object_id=invoice.pk,
            customer_id=invoice.customer_id,
            changes={"number": invoice.number, "reason": reason},
        )
        dunning_release(actor=actor, customer_id=invoice.customer_id)
    return invoice


# --- dunning ---------------------------------------------------------------------------------


def _overdue_failed(now: dt.datetime) -> Any:
    return Invoice.objects.filter(
        state=Invoice.State.FINALIZED, payment_failed_at__lte=now - PAYMENT_GRACE
    )


def dunning_enforce(*, now: dt.datetime | None = None) -> int:
    """Suspend the active licences of customers with an invoice whose payment is still failed
    PAYMENT_GRACE after the first failure (licences.services.licence_suspend: devices are
    refused at their next heartbeat). Idempotent: a licence already suspended is skipped.
    Returns how many licences were suspended."""
    from licences.models import Licence
    from licences.services import licence_suspend

    now = now or timezone.now()
    actor = Actor.system("billing-dunning")
    suspended = 0
    for invoice in _overdue_failed(now).order_by("finalized_at"):
        for licence_id in Licence.objects.filter(
            customer_id=invoice.customer_id, state=Licence.State.ACTIVE
        ).values_list("id", flat=True):
            with transaction.atomic():
                licence_suspend(
                    actor=actor,
                    licence_id=licence_id,
                    reason=f"Unpaid savings invoice {invoice.number}",
                )
                DunningSuspension.objects.create(
                    customer_id=invoice.customer_id,
                    licence_id=licence_id,
                    invoice=invoice,
                    suspended_at=now,
                )
            suspended += 1
    return suspended


def dunning_release(*, actor: Actor, customer_id: uuid.UUID) -> int:
    """Reinstate the licences that dunning suspended for this customer, unless another of its
    invoices is still failed past the grace period. Call inside the paying transaction.
    Returns how many licences were reinstated."""
    from licences.models import Licence
    from licences.services import licence_reinstate

    now = timezone.now()
    if _overdue_failed(now).filter(customer_id=customer_id).exists():
        return 0
    reinstated = 0
    for hold in DunningSuspension.objects.filter(
        customer_id=customer_id, reinstated_at__isnull=True
    ).select_related("licence"):
        if hold.licence.state == Licence.State.SUSPENDED:
            licence_reinstate(actor=actor, licence_id=hold.licence_id, reason="Invoice settled")
            reinstated += 1
        hold.reinstated_at = now
        hold.save(update_fields=["reinstated_at"])
    return reinstated


# --- Stripe webhooks -------------------------------------------------------------------------


def stripe_event_receive(
    *, payload: bytes, signature_header: str, now: float | None = None
) -> tuple[StripeEvent, bool]:
    """Verify (signature first, then timestamp tolerance), store the raw event unique on its
    Stripe id, and queue its processing on commit. Returns (event, created); a repeat of a
    known event id stores nothing and is answered 200 by the view."""
    event = stripe_client.webhook_verify(
        payload=payload, signature_header=signature_header, now=now
    )
    event_id, event_type = event["id"][:255], str(event.get("type", ""))[:100]
    try:
        with transaction.atomic():
            row = StripeEvent.objects.create(
                event_id=event_id,
                type=event_type,
                payload=payload.decode("utf-8"),
                received_at=timezone.now(),
            )
            from billing.tasks import process_stripe_event

            process_stripe_event.delay_on_commit(row.pk)
    except IntegrityError:
        return StripeEvent.objects.get(event_id=event_id), False
    return row, True


def _invoice_of(obj: dict[str, Any]) -> Invoice | None:
    ours = (obj.get("metadata") or {}).get("ncp_invoice_id")
    if ours:
        try:
            found = Invoice.objects.filter(pk=uuid.UUID(str(ours))).first()
        except ValueError:
            found = None
        if found is not None:
            return found
    stripe_id = obj.get("id")
    if not stripe_id:
        return None
    return Invoice.objects.filter(stripe_invoice_id=stripe_id).first()


def _event_time(event: dict[str, Any]) -> dt.datetime:
    created = event.get("created")
    if isinstance(created, int):
        return dt.datetime.fromtimestamp(created, dt.UTC)
    return timezone.now()


def _on_invoice_paid(event: dict[str, Any], invoice: Invoice) -> str:
    invoice_mark_paid(
        actor=Actor.system("stripe-webhook"), invoice_id=invoice.pk, paid_at=_event_time(event)
    )
    return "paid"


def _on_invoice_payment_failed(event: dict[str, Any], invoice: Invoice) -> str:
    invoice_record_payment_failure(
        actor=Actor.system("stripe-webhook"), invoice_id=invoice.pk, failed_at=_event_time(event)
    )
    return "payment_failed"


def _on_invoice_voided(event: dict[str, Any], invoice: Invoice) -> str:
    invoice_void(actor=Actor.system("stripe-webhook"), invoice_id=invoice.pk, reason="Stripe")
    return "voided"


EVENT_HANDLERS: dict[str, Callable[[dict[str, Any], Invoice], str]] = {
    "invoice.paid": _on_invoice_paid,
    "invoice.payment_failed": _on_invoice_payment_failed,
    "invoice.voided": _on_invoice_voided,
}


def stripe_event_process(*, event_pk: int) -> str:
    """Apply one stored event through EVENT_HANDLERS (a type not in the table is kept and
    marked ignored). Idempotent: the row is locked and an already processed event is left
    alone; the handlers themselves tolerate repeats and out-of-order delivery."""
    with transaction.atomic():
        row = StripeEvent.objects.select_for_update().filter(pk=event_pk).first()
        if row is None or row.processed_at is not None:
            return row.outcome if row else "missing"
        event = json.loads(row.payload)
        handler = EVENT_HANDLERS.get(row.type)
        obj = ((event.get("data") or {}).get("object")) or {}
        if handler is None:
            outcome = "ignored: unhandled type"
        else:
            invoice = _invoice_of(obj)
            if invoice is None:
                outcome = "ignored: not one of our invoices"
            else:
                try:
                    with transaction.atomic():
                        outcome = handler(event, invoice)
                except InvoiceStateConflict as exc:
                    outcome = f"ignored: {exc.message}"[:200]
        row.processed_at = timezone.now()
        row.outcome = outcome[:200]
        row.save(update_fields=["processed_at", "outcome"])
    log.info("stripe event %s (%s): %s", row.event_id, row.type, row.outcome)
    return row.outcome
