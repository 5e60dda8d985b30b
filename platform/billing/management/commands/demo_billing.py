"""`manage.py demo_billing`: usage → savings invoice, on the embedded SQLite default with no
external service (chained after `manage.py demo` by `make demo`).

Encode jobs of the latest closable month record their usage (simulated history: each at its
completion time); the month is closed for the demo customer and its savings invoice printed,
with HTML and PDF written to var/invoices/. Then a device activates with the real SDK client,
queues this month's usage on disk and uploads it as signed batches over HTTP (billed on next
month's invoice). Re-runnable: an existing invoice is shown again, unchanged.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import shutil
import tempfile
import uuid
import zoneinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

from customers.models import ContractTerms, Customer
from customers.services import contract_terms_create, customer_create
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from licences.models import LicencePolicy, Product
from licences.services import licence_issue, policy_create, product_create, signing_key_ensure
from metering.selectors import usage_totals
from metering.services import usage_record_for_job

import licensing
from billing import documents, services
from billing.models import Invoice
from billing.money import format_minor
from codec_engine.sdk import SdkClient
from codec_engine.sdk.usage import UsageQueue, UsageRecord
from core.audit import Actor
from core.devserver import background_server

DEMO_SLUG = "demo-streaming"
_NAMESPACE = uuid.UUID("5b0c7f0e-6a53-4a43-9a55-1f5e3c1c0b11")
GB = 10**9
JOBS = 60


class Command(BaseCommand):
    help = "Record usage for the demo customer and close a month: prints the savings invoice."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--records", type=int, default=240, help="SDK usage records")

    def handle(self, *args: Any, **options: Any) -> None:
        self._migrate_if_needed()
        actor = Actor.cli("demo_billing")
        now = timezone.now()
        customer = Customer.objects.filter(slug=DEMO_SLUG).first() or customer_create(
            actor=actor, name="Demo Streaming Co", slug=DEMO_SLUG, contact_email="ops@demo.example"
        )
        month, terms = self._closable_month(actor, customer, now)
        self.step(f"Savings invoice for {month:%B %Y} ({terms.billing_time_zone})")
        self.say(
            f"terms: {terms.revenue_share_percent}% of {terms.value_per_gb} {terms.currency}/GB "
            f"saved, minimum {format_minor(terms.minimum_monthly_fee, terms.currency)}/month"
        )
        invoice = Invoice.objects.filter(customer=customer, period_month=month).first()
        if invoice is None:
            start, end = services.month_bounds(month, terms.billing_time_zone)
            self._job_usage(actor, customer, month, start, end)
            self.step("Monthly close")
            report = services.billing_period_close(
                actor=actor, month=month, customer_ids=[customer.pk], now=now
            )
            invoice = report.created[0]
            self.say(f"closed {month:%Y-%m}: invoice {invoice.number} finalized")
        else:
            self.say(f"{month:%Y-%m} was closed before: showing invoice {invoice.number} again")
        self._device_usage(actor, customer, terms, now, options["records"])
        self._print(invoice)

    # --- usage ---------------------------------------------------------------------------------

    def _device_usage(
        self, actor: Actor, customer: Customer, terms: ContractTerms, now: dt.datetime, count: int
    ) -> None:
        self.step("Device usage this month: SDK queue on disk → signed batches over HTTP")
        licence = licence_issue(actor=actor, customer_id=customer.pk, policy_id=_policy(actor).pk)
        this_month = (
            now.astimezone(zoneinfo.ZoneInfo(terms.billing_time_zone)).date().replace(day=1)
        )
        start, _ = services.month_bounds(this_month, terms.billing_time_zone)
        earliest = max(start, now - dt.timedelta(days=34))
        span_ms = max(1, int((now - earliest).total_seconds() * 1000) - 1000)
        rng = random.Random(7)
        fingerprint = licensing.fingerprint_from_identifiers(
            b"demo", {"machine_id": "demo-edge-usage", "hostname": "demo-edge-usage"}
        ).to_string()
        state_dir = Path(tempfile.mkdtemp(prefix="codec-engine-usage-demo-"))
        try:
            with background_server() as base:
                logging.getLogger("django.request").setLevel(logging.ERROR)
                client = SdkClient(state_dir=state_dir, server_url=base, fingerprint=fingerprint)
                record = client.activate(licence.key, hostname="demo-edge-usage")
                self.say(f"activation {record.activation_id} (licence {licence.pk})")
                queue = UsageQueue(state_dir)
                for _ in range(count):
                    delivered = rng.randint(600, 1_800) * 1_000_000
                    queue.record(
                        UsageRecord(
                            bytes_delivered=delivered,
                            baseline_bytes=int(delivered * rng.uniform(1.25, 1.9)),
                            baseline_method="x264-medium-crf23",
                            frames=1_500,
                            pixels=1_500 * 1920 * 1080,
                            duration_ms=60_000,
                            event_time_ms=int(earliest.timestamp() * 1000) + rng.randrange(span_ms),
                            vmaf=round(rng.uniform(93, 97), 2),
                        )
                    )
                self.say(f"queued {queue.status().pending} records offline in {queue.path.name}")
                report = queue.flush()
                self.say(
                    f"uploaded {report.sent} records in {report.batches} signed batch(es): "
                    f"{report.new} new, {report.duplicates} duplicates"
                )
                client.deactivate()
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)
        totals = usage_totals(
            customer_id=customer.pk,
            start=this_month,
            end=services.add_months(this_month, 1),
        )
        self.say(
            f"{this_month:%B %Y} so far: {totals['record_count']:,} records, "
            f"{totals['bytes_saved'] / GB:,.1f} GB saved (billed on next month's invoice)"
        )

    def _job_usage(
        self, actor: Actor, customer: Customer, month: dt.date, start: dt.datetime, end: dt.datetime
    ) -> None:
        self.step(f"Encode jobs of {month:%B %Y} recorded their usage as they finished")
        rng = random.Random(month.toordinal())
        saved = created_count = 0
        for i in range(JOBS):
            job_id = uuid.uuid5(_NAMESPACE, f"{month:%Y-%m}-job-{i}")
            finished = start + (end - start) * (i + rng.random()) / JOBS
            delivered = rng.randint(2_000, 6_000) * GB
            record, created = usage_record_for_job(
                actor=actor,
                job_id=job_id,
                customer_id=customer.pk,
                event_time=finished,
                frames=216_000,
                pixels=216_000 * 1920 * 1080,
                duration_ms=9_000_000,
                bytes_delivered=delivered,
                baseline_bytes=int(delivered * rng.uniform(1.3, 1.8)),
                baseline_method="customer-ladder",
                vmaf=round(rng.uniform(94, 96), 2),
                # Simulated history: each job reported its usage minutes after it finished.
                now=finished + dt.timedelta(minutes=5),
            )
            saved += record.bytes_saved
            created_count += int(created)
        self.say(f"{JOBS} jobs ({created_count} new records): {saved / GB:,.0f} GB saved in total")

    # --- month and terms -------------------------------------------------------------------------

    def _closable_month(
        self, actor: Actor, customer: Customer, now: dt.datetime
    ) -> tuple[dt.date, ContractTerms]:
        """The latest month whose ingestion cutoff has passed, with terms in force on it (a
        demo contract version is added when the customer's terms start later)."""
        month = services.add_months(now.date().replace(day=1), -1)
        current = customer.contract_terms.order_by("-effective_from").first()
        time_zone = current.billing_time_zone if current else "Europe/Paris"
        while True:
            _, end = services.month_bounds(month, time_zone)
            if now >= end + services.INGESTION_GRACE + services.CUTOFF_SAFETY:
                break
            month = services.add_months(month, -1)
        terms = (
            customer.contract_terms.filter(effective_from__lte=month)
            .order_by("-effective_from")
            .first()
        )
        if terms is None:
            terms = contract_terms_create(
                actor=actor,
                customer_id=customer.pk,
                effective_from=month,
                revenue_share_percent=current.revenue_share_percent if current else Decimal("30"),
                value_per_gb=current.value_per_gb if current else Decimal("0.02"),
                currency=current.currency if current else "EUR",
                minimum_monthly_fee=current.minimum_monthly_fee if current else 50_000,
                billing_time_zone=time_zone,
                payment_terms_days=current.payment_terms_days if current else 30,
            )
            self.say(f"(demo) contract terms version added from {month}")
        return month, terms

    # --- output ----------------------------------------------------------------------------------

    def _print(self, invoice: Invoice) -> None:
        self.step(f"Savings invoice {invoice.number} ({invoice.state})")
        currency = invoice.currency
        for line in invoice.lines.order_by("position"):
            self.say(f"#{line.position} {line.description}")
            if line.kind != "minimum_top_up":
                self.say(
                    f"     {line.record_count:,} records; baseline {line.baseline_bytes:,} B, "
                    f"delivered {line.bytes_delivered:,} B, saved {line.bytes_saved:,} B"
                )
            self.say(f"     amount {format_minor(line.amount_minor, currency):>20}")
        self.say(f"TOTAL {format_minor(invoice.total_minor, currency):>20}")
        self.say(
            f"due {invoice.due_date}; counts usage ingested before "
            f"{invoice.ingestion_cutoff:%Y-%m-%d %H:%M} UTC"
        )
        out = Path(settings.VAR_DIR) / "invoices"
        out.mkdir(parents=True, exist_ok=True)
        pdf_path = out / f"{invoice.number}.pdf"
        html_path = out / f"{invoice.number}.html"
        pdf_path.write_bytes(documents.invoice_pdf(invoice))
        html_path.write_text(documents.invoice_html(invoice), encoding="utf-8")
        self.say(f"PDF:  {pdf_path}")
        self.say(f"HTML: {html_path}")
        self.stdout.write(self.style.SUCCESS(f"Savings invoice {invoice.number} ready."))

    def step(self, title: str) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(title))

    def say(self, text: str) -> None:
        self.stdout.write(f"    {text}")

    def _migrate_if_needed(self) -> None:
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            call_command("migrate", interactive=False, verbosity=0)


def _policy(actor: Actor) -> LicencePolicy:
    """The demo's licence policy (shared with `manage.py demo`), created when missing."""
    signing_key_ensure(actor=actor)
    product = Product.objects.filter(code="ncodec").first() or product_create(
        actor=actor, code="ncodec", name="Neural codec SDK"
    )
    policy = LicencePolicy.objects.filter(product=product, code="demo-edge").first()
    return policy or policy_create(
        actor=actor,
        product_id=product.pk,
        code="demo-edge",
        name="Edge servers (demo)",
        entitlements={"features": ["encode", "decode"], "max_width": 3840, "max_height": 2160},
        max_activations=2,
        licence_validity_days=365,
        certificate_lifetime_s=86400,
        heartbeat_window_s=3600,
        offline_grace_s=3 * 86400,
        activation_rate_limit=100,
        deactivation_rate_limit=100,
    )
