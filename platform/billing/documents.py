"""The invoice document, in HTML (Django template) and PDF (fpdf2, pure Python).

Both render the same `invoice_document()` data, so they always agree. Built on demand from the
stored invoice: a finalized invoice never changes, so neither does its document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.template.loader import render_to_string
from fpdf import FPDF

from billing.models import Invoice, InvoiceLine
from billing.money import format_minor

ROUNDING_RULE = (
    "GB = 10^9 bytes. Each usage line is GB saved × value per GB × revenue share, computed "
    "exactly and rounded once to the currency's minor unit, half up. Negative savings are "
    "reported and never billed."
)


@dataclass(frozen=True)
class DocLine:
    position: int
    description: str
    usage: list[tuple[str, str]]
    amount: str


def _usage_of(line: InvoiceLine) -> list[tuple[str, str]]:
    if line.kind == InvoiceLine.Kind.MINIMUM_TOP_UP:
        return []
    usage = [
        ("records", f"{line.record_count:,}"),
        ("baseline bytes", f"{line.baseline_bytes:,}"),
        ("delivered bytes", f"{line.bytes_delivered:,}"),
        ("bytes saved (net)", f"{line.bytes_saved:,}"),
    ]
    if line.negative_records:
        usage.append(
            (
                "negative savings (not billed)",
                f"{line.negative_records:,} records, {line.negative_bytes_saved:,} bytes",
            )
        )
    usage += [
        ("GB billed", f"{line.gb_saved:f}"),
        ("value per GB", f"{line.value_per_gb:f}"),
        ("share", f"{line.share_percent}%"),
        ("exact amount", f"{line.amount_precise.normalize():f}"),
        ("event time", f"{line.event_start:%Y-%m-%d %H:%M} to {line.event_end:%Y-%m-%d %H:%M}"),
    ]
    if line.kind == InvoiceLine.Kind.DELTA:
        usage.append(("ingested from", f"{line.ingested_from:%Y-%m-%d %H:%M}"))
    return usage


def invoice_document(invoice: Invoice) -> dict[str, Any]:
    lines = sorted(invoice.lines.all(), key=lambda line: line.position)
    return {
        "number": invoice.number or "(draft)",
        "customer": invoice.customer.name,
        "period": invoice.period_month.strftime("%B %Y"),
        "time_zone": invoice.time_zone,
        "period_start": f"{invoice.period_start:%Y-%m-%d %H:%M}",
        "period_end": f"{invoice.period_end:%Y-%m-%d %H:%M}",
        "ingestion_cutoff": f"{invoice.ingestion_cutoff:%Y-%m-%d %H:%M}",
        "state": invoice.state,
        "finalized_at": f"{invoice.finalized_at:%Y-%m-%d}" if invoice.finalized_at else "-",
        "due_date": f"{invoice.due_date}" if invoice.due_date else "-",
        "lines": [
            DocLine(
                position=line.position,
                description=line.description,
                usage=_usage_of(line),
                amount=format_minor(line.amount_minor, invoice.currency),
            )
            for line in lines
        ],
        "total": format_minor(invoice.total_minor, invoice.currency),
        "rounding_rule": ROUNDING_RULE,
    }


def invoice_html(invoice: Invoice) -> str:
    return render_to_string("billing/invoice.html", {"doc": invoice_document(invoice)})


def _latin1(text: str) -> str:
    # The PDF core fonts are Latin-1; replace what they cannot draw rather than fail.
    return text.replace("×", "x").replace("→", "->").encode("latin-1", "replace").decode("latin-1")


def invoice_pdf(invoice: Invoice) -> bytes:
    doc = invoice_document(invoice)
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _latin1(f"Savings invoice {doc['number']}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    for text in (
        doc["customer"],
        f"Period: {doc['period']} ({doc['time_zone']}; {doc['period_start']} to "
        f"{doc['period_end']} UTC)",
        f"State: {doc['state']}   Finalized: {doc['finalized_at']}   Due: {doc['due_date']}",
        f"Ingestion cutoff: {doc['ingestion_cutoff']} UTC",
    ):
        pdf.multi_cell(0, 5, _latin1(text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for line in doc["lines"]:
        pdf.set_font("Helvetica", "B", 10)
        pdf.multi_cell(
            0, 5, _latin1(f"{line.position}. {line.description}"), new_x="LMARGIN", new_y="NEXT"
        )
        pdf.cell(0, 5, _latin1(line.amount), align="R", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 8)
        pdf.ln(1)
        for label, value in line.usage:
            pdf.multi_cell(0, 4, _latin1(f"    {label}: {value}"), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(150, 7, "Total")
    pdf.cell(0, 7, _latin1(doc["total"]), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 8)
    pdf.multi_cell(0, 4, _latin1(doc["rounding_rule"]), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
