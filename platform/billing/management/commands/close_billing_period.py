"""`manage.py close_billing_period --month YYYY-MM [--customer SLUG_OR_ID ...]`."""

from __future__ import annotations

import uuid
from typing import Any

from customers.models import Customer
from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing import services
from billing.money import format_minor
from core.audit import Actor
from core.errors import DomainError


class Command(BaseCommand):
    help = "Close a billing month: one finalized savings invoice per customer (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--month", required=True, help="YYYY-MM")
        parser.add_argument(
            "--customer", action="append", default=[], help="Customer slug or id (repeatable)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            month = services.parse_month(options["month"])
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        customer_ids: list[uuid.UUID] | None = None
        if options["customer"]:
            customer_ids = []
            for ref in options["customer"]:
                try:
                    found = Customer.objects.filter(pk=uuid.UUID(ref)).first()
                except ValueError:
                    found = Customer.objects.filter(slug=ref).first()
                if found is None:
                    raise CommandError(f"No customer {ref!r}.")
                customer_ids.append(found.pk)
        report = services.billing_period_close(
            actor=Actor.cli("close_billing_period"), month=month, customer_ids=customer_ids
        )
        for invoice in report.created:
            self.stdout.write(
                f"{invoice.number}  {invoice.customer_id}  "
                f"{format_minor(invoice.total_minor, invoice.currency)}"
            )
        self.stdout.write(
            f"close {month:%Y-%m}: {len(report.created)} invoices created, "
            f"{report.already_closed} already closed, {report.still_open} still open "
            f"(cutoff not passed), {report.no_terms} without contract terms."
        )
