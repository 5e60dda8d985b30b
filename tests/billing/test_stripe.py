"""Stripe through the real `stripe` library against the local Stripe-compatible server:
the full invoice flow with idempotency keys, webhooks (signature, tolerance, dedupe,
dispatch), and dunning: failed payment → suspension after grace → payment → reinstatement."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from billing import services, stripe_client
from billing.models import DunningSuspension, Invoice, InvoiceLine, StripeCustomerLink, StripeEvent
from licences.models import Licence

from core.errors import DomainError
from tests.billing.factories import GB, close, customer_with_terms, invoice_of, usage, utc
from tests.billing.stripe_server import FakeStripe, stripe_signature
from tests.core.fixtures import Http, error_code

API_KEY = "sk_test_fake_key"
SECRET = "whsec_test_secret"
WEBHOOK = "/api/v1/billing/stripe/webhook/"


@pytest.fixture
def fake(http: Http, settings: Any) -> Iterator[FakeStripe]:
    server = FakeStripe(api_key=API_KEY, webhook_secret=SECRET).start()
    server.webhook_url = http.base + WEBHOOK
    settings.STRIPE_API_KEY = API_KEY
    settings.STRIPE_API_BASE = server.url
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    yield server
    server.stop()


def _closed_invoice(licence: Licence, minimum_fee: int = 0) -> Invoice:
    customer = licence.customer
    customer_with_terms(customer.slug, customer=customer, minimum_fee=minimum_fee)
    usage(customer, utc(2026, 3, 10), saved=12 * GB)
    usage(customer, utc(2026, 3, 11), saved=-2 * GB, delivered=4 * GB)
    close("2026-03", now=utc(2026, 4, 10), customers=[customer])
    return invoice_of(customer, "2026-03")


def test_full_stripe_flow_with_idempotent_retries(fake: FakeStripe, acme_licence: Licence) -> None:
    invoice = _closed_invoice(acme_licence, minimum_fee=1_500)  # pushed on commit

    assert invoice.state == "finalized" and invoice.sent_at is not None
    (stripe_customer,) = fake.customers.values()
    assert stripe_customer["metadata"] == {"ncp_customer_id": str(acme_licence.customer_id)}
    assert StripeCustomerLink.objects.get().stripe_customer_id == stripe_customer["id"]
    (remote,) = fake.invoices.values()
    assert remote["id"] == invoice.stripe_invoice_id
    assert remote["auto_advance"] is False and remote["collection_method"] == "send_invoice"
    assert remote["metadata"]["ncp_invoice_id"] == str(invoice.pk)
    assert remote["status"] == "open" and remote["sent"] is True
    ours = [line.amount_minor for line in invoice.lines.order_by("position")]
    assert ours == [1000, 500]  # 10 GB net, topped up to 15.00
    assert [item["amount"] for item in remote["lines"]["data"]] == ours
    assert remote["total"] == invoice.total_minor == 1500
    posts = [entry for entry in fake.log if entry.method == "POST"]
    assert [entry.idempotency_key for entry in posts] == [
        f"ncp-customer-{acme_licence.customer_id}-create",
        f"ncp-invoice-{invoice.pk}-create",
        f"ncp-invoice-{invoice.pk}-line-1",
        f"ncp-invoice-{invoice.pk}-line-2",
        f"ncp-invoice-{invoice.pk}-finalize",
        f"ncp-invoice-{invoice.pk}-send",
    ]

    # A crash after Stripe answered but before we stored anything: the push runs again from
    # scratch and the idempotency keys make Stripe answer with the same objects.
    StripeCustomerLink.objects.all().delete()
    Invoice.objects.filter(pk=invoice.pk).update(
        stripe_invoice_id="", stripe_status="", sent_at=None
    )
    InvoiceLine.objects.filter(invoice=invoice).update(stripe_invoice_item_id="")
    services.invoice_push_to_stripe(invoice_id=invoice.pk)
    assert len(fake.customers) == 1 and len(fake.invoices) == 1 and len(fake.items) == 2
    assert all(entry.replayed for entry in fake.log[len(posts) :] if entry.method == "POST")
    invoice.refresh_from_db()
    assert invoice.stripe_invoice_id == remote["id"] and invoice.sent_at is not None


def test_reusing_an_idempotency_key_with_other_parameters_is_refused(fake: FakeStripe) -> None:
    stripe_client.customer_create(customer_id="c-1", name="Acme", email="")
    with pytest.raises(DomainError) as refused:
        stripe_client.customer_create(customer_id="c-1", name="Acme Renamed", email="")
    assert refused.value.code == "STRIPE_ERROR"
    assert len(fake.customers) == 1


def test_failed_payment_suspends_after_grace_and_payment_reinstates(
    fake: FakeStripe, acme_licence: Licence
) -> None:
    invoice = _closed_invoice(acme_licence)
    stripe_id = invoice.stripe_invoice_id

    assert fake.fail_payment(stripe_id).status_code == 200
    invoice.refresh_from_db()
    failed_at = invoice.payment_failed_at
    assert failed_at is not None and invoice.payment_failure_count == 1

    assert services.dunning_enforce(now=failed_at + dt.timedelta(days=13)) == 0  # within grace
    acme_licence.refresh_from_db()
    assert acme_licence.state == "active"

    assert services.dunning_enforce(now=failed_at + dt.timedelta(days=15)) == 1
    assert services.dunning_enforce(now=failed_at + dt.timedelta(days=16)) == 0  # idempotent
    acme_licence.refresh_from_db()
    assert acme_licence.state == "suspended"
    assert "Unpaid savings invoice" in acme_licence.state_reason
    hold = DunningSuspension.objects.get()
    assert hold.invoice_id == invoice.pk and hold.reinstated_at is None

    paid = fake.pay(stripe_id)
    assert paid.status_code == 200 and paid.json()["duplicate"] is False
    invoice.refresh_from_db()
    acme_licence.refresh_from_db()
    assert invoice.state == "paid" and invoice.paid_at is not None
    assert invoice.payment_failed_at is None
    assert acme_licence.state == "active"
    assert DunningSuspension.objects.get().reinstated_at is not None

    # Stripe redelivers the same event: stored once, answered 200, nothing happens again.
    repeat = fake.deliver(json.dumps(fake.events[-1]).encode())
    assert repeat.status_code == 200 and repeat.json()["duplicate"] is True
    assert StripeEvent.objects.filter(type="invoice.paid").count() == 1
    # A late failure event for a paid invoice changes nothing.
    fake.emit("invoice.payment_failed", {**fake.invoices[stripe_id], "status": "open"})
    invoice.refresh_from_db()
    assert invoice.state == "paid" and invoice.payment_failed_at is None


def test_voided_in_stripe_voids_ours_and_keeps_the_number(
    fake: FakeStripe, acme_licence: Licence
) -> None:
    invoice = _closed_invoice(acme_licence)
    assert fake.void(invoice.stripe_invoice_id).status_code == 200
    invoice.refresh_from_db()
    assert invoice.state == "void" and invoice.number == "SAV-000001"
    assert invoice.voided_at is not None


def _event_body(kind: str = "invoice.paid", obj: dict[str, Any] | None = None) -> bytes:
    return json.dumps(
        {"id": f"evt_{time.time_ns()}", "object": "event", "type": kind, "created": 0,
         "data": {"object": obj or {"id": "in_unknown", "object": "invoice"}}}
    ).encode()  # fmt: skip


def test_webhooks_with_a_bad_signature_or_a_stale_timestamp_are_refused(
    fake: FakeStripe, http: Http
) -> None:
    body = _event_body()
    now = int(time.time())
    cases = [
        (stripe_signature(body, "whsec_wrong"), "WEBHOOK_SIGNATURE_INVALID"),
        (stripe_signature(body + b" ", SECRET), "WEBHOOK_SIGNATURE_INVALID"),
        ("", "WEBHOOK_SIGNATURE_INVALID"),
        ("t=abc,v1=00", "WEBHOOK_SIGNATURE_INVALID"),
        (stripe_signature(body, SECRET, now - 301), "WEBHOOK_TIMESTAMP_STALE"),
        (stripe_signature(body, SECRET, now + 3600), "WEBHOOK_TIMESTAMP_STALE"),
    ]
    for header, code in cases:
        response = http.post(
            WEBHOOK,
            data=body,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        )
        assert (response.status_code, error_code(response)) == (400, code), header
    assert StripeEvent.objects.count() == 0

    accepted = fake.deliver(body)
    assert accepted.status_code == 200
    event = StripeEvent.objects.get()
    assert event.outcome == "ignored: not one of our invoices" and event.processed_at
    other = fake.deliver(_event_body("customer.created", {"id": "cus_x", "object": "customer"}))
    assert other.status_code == 200
    assert StripeEvent.objects.get(type="customer.created").outcome == "ignored: unhandled type"


def test_without_a_stripe_key_invoices_stay_local(http: Http, acme_licence: Licence) -> None:
    invoice = _closed_invoice(acme_licence)
    assert invoice.state == "finalized" and invoice.number == "SAV-000001"
    assert invoice.stripe_invoice_id == "" and invoice.sent_at is None
    assert services.invoice_push_to_stripe(invoice_id=invoice.pk).stripe_invoice_id == ""
