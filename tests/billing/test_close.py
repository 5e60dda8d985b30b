"""The monthly close: time-zone month boundaries, rounding ties, minimum fee, negative savings,
late records as delta lines, idempotent re-runs, gapless numbering, immutability (services
and database), contract versions, and the management command."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from billing import services
from billing.models import Invoice, InvoiceLine, InvoiceNumberCounter
from billing.selectors import UsageWindow, usage_window_sums
from customers.models import Customer
from django.core.management import CommandError, call_command
from django.db import DatabaseError, transaction

from core.models import AuditLog
from tests.billing.factories import (
    GB,
    amounts,
    close,
    customer_with_terms,
    invoice_of,
    usage,
    utc,
)

pytestmark = pytest.mark.django_db(transaction=True)

APRIL_10 = utc(2026, 4, 10)


def test_month_boundaries_follow_the_customer_time_zone() -> None:
    paris = customer_with_terms("paris", time_zone="Europe/Paris")
    london = customer_with_terms("london", time_zone="UTC")
    for customer in (paris, london):
        usage(customer, utc(2026, 2, 28, 22, 59, 59), saved=1 * GB)  # Paris: 23:59:59 Feb 28
        usage(customer, utc(2026, 2, 28, 23, 0, 0), saved=2 * GB)  # Paris: 00:00 March 1
        usage(customer, dt.datetime(2026, 3, 31, 21, 59, 59, 999000, tzinfo=dt.UTC), saved=4 * GB)
        usage(customer, utc(2026, 3, 31, 22, 0, 0), saved=8 * GB)  # Paris (CEST): 00:00 April 1

    report = close("2026-03", now=APRIL_10)
    assert len(report.created) == 2

    march_paris = invoice_of(paris, "2026-03")
    assert march_paris.period_start == utc(2026, 2, 28, 23)  # CET, UTC+1
    assert march_paris.period_end == utc(2026, 3, 31, 22)  # CEST since March 29, UTC+2
    assert march_paris.ingestion_cutoff == utc(2026, 4, 2, 22)
    usage_line = march_paris.lines.get(kind="usage")
    assert usage_line.bytes_saved == 6 * GB and usage_line.record_count == 2
    assert march_paris.total_minor == 600  # 6 GB × 1 EUR × 100 %

    march_london = invoice_of(london, "2026-03")
    assert march_london.lines.get(kind="usage").bytes_saved == 12 * GB
    assert march_london.total_minor == 1200


@pytest.mark.parametrize(
    ("gigabytes", "cents"),
    [(1, 1), (3, 2), (5, 3), (7, 4)],  # 0.005 → 0.01, 0.015 → 0.02, 0.025 → 0.03, 0.035 → 0.04
)
def test_rounding_ties_go_half_up_once_per_line(gigabytes: int, cents: int) -> None:
    customer = customer_with_terms("ties", share="50.00", value_per_gb="0.010000")
    usage(customer, utc(2026, 3, 5), saved=gigabytes * GB)
    close("2026-03", now=APRIL_10)
    line = invoice_of(customer, "2026-03").lines.get(kind="usage")
    assert line.amount_precise == Decimal(gigabytes) * Decimal("0.005")  # exact, unrounded
    assert line.amount_minor == cents


def test_minimum_fee_top_up_and_negative_savings() -> None:
    topped = customer_with_terms("topped", minimum_fee=50_000)
    usage(topped, utc(2026, 3, 5), saved=10 * GB)
    worse = customer_with_terms("worse", minimum_fee=700)
    usage(worse, utc(2026, 3, 5), saved=-3 * GB, delivered=5 * GB)
    usage(worse, utc(2026, 3, 6), saved=1 * GB)
    close("2026-03", now=APRIL_10)

    assert amounts(invoice_of(topped, "2026-03")) == [("usage", 1000), ("minimum_top_up", 49_000)]
    assert invoice_of(topped, "2026-03").total_minor == 50_000

    bad = invoice_of(worse, "2026-03")
    line = bad.lines.get(kind="usage")
    # Net savings are negative: reported on the line, billed as zero, never as positive.
    assert (line.bytes_saved, line.negative_bytes_saved, line.negative_records) == (
        -2 * GB,
        -3 * GB,
        1,
    )
    assert line.amount_minor == 0 and line.gb_saved == 0
    assert amounts(bad) == [("usage", 0), ("minimum_top_up", 700)]


def test_a_late_record_becomes_a_delta_line_on_the_next_invoice() -> None:
    customer = customer_with_terms("late")
    usage(customer, utc(2026, 3, 10), saved=10 * GB)
    # Ingested after March's cutoff (April 3 00:00 UTC) but before the March close runs.
    usage(customer, utc(2026, 3, 20), saved=3 * GB, ingested=utc(2026, 4, 4))
    close("2026-03", now=utc(2026, 4, 5))
    march = invoice_of(customer, "2026-03")
    assert amounts(march) == [("usage", 1000)]

    usage(customer, utc(2026, 3, 25), saved=1 * GB, ingested=utc(2026, 4, 20))  # later still
    usage(customer, utc(2026, 4, 15), saved=5 * GB)
    close("2026-04", now=utc(2026, 5, 10))
    april = invoice_of(customer, "2026-04")
    assert amounts(april) == [("usage", 500), ("delta", 400)]
    delta = april.lines.get(kind="delta")
    assert delta.period_month == dt.date(2026, 3, 1)
    assert (delta.record_count, delta.bytes_saved) == (2, 4 * GB)
    assert (delta.billed_before_minor, delta.recomputed_total_minor) == (1000, 1400)
    assert delta.ingested_from == march.ingestion_cutoff
    assert april.total_minor == 900

    # March is untouched, and recomputing it with its own cutoff gives the same cents.
    march.refresh_from_db()
    assert march.total_minor == 1000 and amounts(march) == [("usage", 1000)]
    again = usage_window_sums(
        [UsageWindow(0, customer.pk, march.period_start, march.period_end, march.ingestion_cutoff)]
    )[0]
    assert again.bytes_saved == 10 * GB

    # Accounted for: May gets no second delta for the same late records.
    close("2026-05", now=utc(2026, 6, 10))
    assert amounts(invoice_of(customer, "2026-05")) == [("usage", 0)]


def test_late_records_absorbed_by_the_minimum_fee_give_a_zero_delta() -> None:
    customer = customer_with_terms("minlate", minimum_fee=5_000)
    usage(customer, utc(2026, 3, 10), saved=10 * GB)
    close("2026-03", now=APRIL_10)
    usage(customer, utc(2026, 3, 11), saved=20 * GB, ingested=utc(2026, 4, 15))
    close("2026-04", now=utc(2026, 5, 10))
    # March was billed 50.00 (10.00 + 40.00 top-up); with the late 20 GB it is 30.00 < 50.00.
    assert amounts(invoice_of(customer, "2026-04")) == [
        ("usage", 0),
        ("minimum_top_up", 5_000),
        ("delta", 0),
    ]


def test_rerunning_a_close_changes_nothing() -> None:
    customers = [customer_with_terms(f"c{i}") for i in range(3)]
    for i, customer in enumerate(customers):
        usage(customer, utc(2026, 3, 3), saved=(i + 1) * GB)
    first = close("2026-03", now=APRIL_10)
    assert len(first.created) == 3
    snapshot = _snapshot()

    second = close("2026-03", now=APRIL_10 + dt.timedelta(days=30))
    assert second.created == [] and second.already_closed == 3
    assert _snapshot() == snapshot


def _snapshot() -> dict[str, Any]:
    return {
        "invoices": sorted(
            Invoice.objects.values_list("number", "total_minor", "state", "ingestion_cutoff")
        ),
        "lines": sorted(
            InvoiceLine.objects.values_list("invoice__number", "position", "amount_minor")
        ),
        "audit": AuditLog.objects.count(),
        "counter": list(InvoiceNumberCounter.objects.values_list("name", "last_number")),
    }


def test_numbers_are_gapless_even_when_a_finalization_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    customers = [customer_with_terms(f"n{i}") for i in range(3)]
    close("2026-03", now=APRIL_10)
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == ["SAV-000001", "SAV-000002", "SAV-000003"]

    draft = _draft(customers[0], dt.date(2026, 4, 1))
    real_audit = services.audit_record

    def failing(**kwargs: Any) -> Any:
        if kwargs["action"] == "invoice.finalize":
            raise RuntimeError("crash while finalizing")
        return real_audit(**kwargs)

    monkeypatch.setattr(services, "audit_record", failing)
    with pytest.raises(RuntimeError):
        services.invoice_finalize(actor=services.Actor.system("t"), invoice_id=draft.pk)
    draft.refresh_from_db()
    assert draft.state == "draft" and draft.number is None
    assert InvoiceNumberCounter.objects.get().last_number == 3  # the number went back

    monkeypatch.setattr(services, "audit_record", real_audit)
    done = services.invoice_finalize(actor=services.Actor.system("t"), invoice_id=draft.pk)
    assert done.number == "SAV-000004"


def _draft(customer: Customer, month: dt.date) -> Invoice:
    terms = customer.contract_terms.get()
    start, end = services.month_bounds(month, "UTC")
    invoice = Invoice.objects.create(
        customer=customer,
        terms=terms,
        period_month=month,
        time_zone="UTC",
        period_start=start,
        period_end=end,
        ingestion_cutoff=end + services.INGESTION_GRACE,
        currency="EUR",
        total_minor=123,
    )
    InvoiceLine.objects.create(
        invoice=invoice,
        position=1,
        kind="usage",
        description="manual",
        period_month=month,
        event_start=start,
        event_end=end,
        ingested_before=end,
        amount_minor=123,
    )
    return invoice


def test_a_finalized_invoice_is_immutable_in_services_and_database() -> None:
    customer = customer_with_terms("frozen")
    usage(customer, utc(2026, 3, 3), saved=2 * GB)
    close("2026-03", now=APRIL_10)
    invoice = invoice_of(customer, "2026-03")
    line = invoice.lines.get()

    with pytest.raises(services.InvoiceStateConflict):
        services.invoice_finalize(actor=services.Actor.system("t"), invoice_id=invoice.pk)
    for change in (
        lambda: Invoice.objects.filter(pk=invoice.pk).update(total_minor=1),
        lambda: Invoice.objects.filter(pk=invoice.pk).update(number="SAV-999999"),
        lambda: InvoiceLine.objects.filter(pk=line.pk).update(amount_minor=1),
        lambda: InvoiceLine.objects.create(
            invoice=invoice,
            position=9,
            kind="usage",
            description="sneaked in",
            period_month=invoice.period_month,
            event_start=invoice.period_start,
            event_end=invoice.period_end,
            ingested_before=invoice.ingestion_cutoff,
            amount_minor=99,
        ),
    ):
        with pytest.raises(DatabaseError), transaction.atomic():
            change()
    # What may change after finalization: Stripe ids, payment facts, the allowed transitions.
    InvoiceLine.objects.filter(pk=line.pk).update(stripe_invoice_item_id="ii_1")
    services.invoice_mark_paid(actor=services.Actor.system("t"), invoice_id=invoice.pk)
    with pytest.raises(DatabaseError), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(state="void", voided_at=APRIL_10)
    with pytest.raises(services.InvoiceStateConflict):
        services.invoice_void(actor=services.Actor.system("t"), invoice_id=invoice.pk)
    invoice.refresh_from_db()
    assert (invoice.state, invoice.total_minor) == ("paid", 200)


def test_an_open_period_is_not_closed() -> None:
    customer = customer_with_terms("open")
    usage(customer, utc(2026, 3, 31), saved=GB)
    report = close("2026-03", now=utc(2026, 4, 2, 12))  # cutoff is April 3 00:00 UTC
    assert (report.created, report.still_open) == ([], 1)
    assert not Invoice.objects.filter(customer=customer).exists()


def test_each_month_uses_the_contract_version_in_force() -> None:
    customer = customer_with_terms("versions", value_per_gb="1.000000")
    customer_with_terms(
        "versions", value_per_gb="2.000000", effective_from=dt.date(2026, 4, 1), customer=customer
    )
    customer_with_terms("no-terms-yet", effective_from=dt.date(2026, 6, 1))
    usage(customer, utc(2026, 3, 10), saved=GB)
    usage(customer, utc(2026, 4, 10), saved=GB)
    report = close("2026-03", now=utc(2026, 5, 10))
    assert report.no_terms == 1
    close("2026-04", now=utc(2026, 5, 10))
    assert invoice_of(customer, "2026-03").total_minor == 100
    assert invoice_of(customer, "2026-04").total_minor == 200


def test_close_billing_period_command(capsys: pytest.CaptureFixture[str]) -> None:
    customer = customer_with_terms("cmd")
    usage(customer, utc(2026, 3, 10), saved=3 * GB)
    call_command("close_billing_period", "--month", "2026-03", "--customer", "cmd")
    out = capsys.readouterr().out
    assert "SAV-000001" in out and "3.00 EUR" in out and "1 invoices created" in out
    call_command("close_billing_period", "--month", "2026-03")
    assert "0 invoices created, 1 already closed" in capsys.readouterr().out
    with pytest.raises(CommandError):
        call_command("close_billing_period", "--month", "March")
    with pytest.raises(CommandError):
        call_command("close_billing_period", "--month", "2026-03", "--customer", "nobody")
