"""Invoice documents (HTML and PDF) show the usage behind each line; invoice reads are scoped
to the caller's customer."""

from __future__ import annotations

import datetime as dt

from billing.documents import invoice_html, invoice_pdf
from customers.models import Customer

from tests.billing.factories import GB, close, customer_with_terms, invoice_of, usage, utc
from tests.core.fixtures import Persona, error_code


def test_html_and_pdf_show_each_line_with_its_usage(acme: Customer) -> None:
    customer_with_terms("acme", minimum_fee=20_000, customer=acme, time_zone="Europe/Paris")
    usage(acme, utc(2026, 3, 10), saved=7 * GB, delivered=3 * GB)
    close("2026-03", now=utc(2026, 4, 10))
    invoice = invoice_of(acme, "2026-03")

    html = invoice_html(invoice)
    assert invoice.number and invoice.number in html
    assert "Bandwidth savings March 2026" in html
    assert "10,000,000,000" in html and "3,000,000,000" in html and "7,000,000,000" in html
    assert "Top-up to the minimum monthly fee" in html
    assert "200.00 EUR" in html  # the total
    assert "Europe/Paris" in html and "ingestion cutoff" in html

    pdf = invoice_pdf(invoice)
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000


def test_invoice_api_is_scoped_and_serves_documents(
    alice: Persona, bob: Persona, operator: Persona
) -> None:
    acme = alice.customer
    assert acme is not None
    customer_with_terms("acme", customer=acme)
    usage(acme, utc(2026, 3, 10), saved=2 * GB)
    close("2026-03", now=utc(2026, 4, 10))
    invoice = invoice_of(acme, "2026-03")

    listed = alice.http.get("/api/v1/invoices/").json()
    assert [i["number"] for i in listed["results"]] == [invoice.number]
    assert bob.http.get("/api/v1/invoices/").json()["results"] == []
    detail = alice.http.get(f"/api/v1/invoices/{invoice.pk}/").json()
    assert detail["total_minor"] == 200 and detail["lines"][0]["bytes_saved"] == 2 * GB
    assert detail["ingestion_cutoff"].startswith("2026-04-03")
    assert error_code(bob.http.get(f"/api/v1/invoices/{invoice.pk}/")) == "INVOICE_NOT_FOUND"
    assert bob.http.get(f"/api/v1/invoices/{invoice.pk}/document.pdf").status_code == 404

    html = alice.http.get(f"/api/v1/invoices/{invoice.pk}/document.html")
    assert html.headers["Content-Type"].startswith("text/html") and invoice.number in html.text
    pdf = alice.http.get(f"/api/v1/invoices/{invoice.pk}/document.pdf")
    assert pdf.headers["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")

    # Operators close through the API too (idempotent).
    again = operator.http.post("/api/v1/billing/close/", {"month": "2026-03"})
    assert again.status_code == 200 and again.json()["created"] == []
    assert alice.http.post("/api/v1/billing/close/", {"month": "2026-03"}).status_code == 403
    assert dt.date.fromisoformat(detail["period_month"]) == dt.date(2026, 3, 1)
