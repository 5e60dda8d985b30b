"""`manage.py reconcile_usage`: prove the daily rollups equal the sums of the raw records."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from metering.selectors import usage_reconcile


class Command(BaseCommand):
    help = "Compare every daily usage rollup with the raw records; exit 1 on any mismatch."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customer", type=uuid.UUID, help="Only this customer id.")

    def handle(self, *args: Any, **options: Any) -> None:
        mismatches = usage_reconcile(customer_id=options["customer"])
        if not mismatches:
            self.stdout.write("reconcile_usage: OK, rollups equal the raw sums.")
            return
        for m in mismatches[:100]:
            self.stderr.write(
                f"MISMATCH customer={m.customer_id} day={m.day} kind={m.source_kind} "
                f"{m.field}: rollup={m.rollup} raw={m.raw}"
            )
        raise CommandError(f"reconcile_usage: {len(mismatches)} mismatching rollup figures.")
