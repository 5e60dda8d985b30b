"""Monthly close at scale: 1,000 customers holding 10 million usage records in total.

On its own PostgreSQL database (`<db>_close_bench`, dropped and migrated here): customers and
contract terms in four billing time zones (UTC, Europe/Paris, America/New_York, Asia/Tokyo)
and three currencies are inserted in bulk, then the usage records are generated inside
PostgreSQL with INSERT ... SELECT generate_series (indexes built after the load), spread over
March 2026 and its neighbouring days, some with negative savings. The timed part is one call
of `billing_period_close` for March 2026: per customer its own time-zone month, the usage sum
under the ingestion cutoff (one aggregate query for all customers), the lines, the minimum
fee, and a finalized, gaplessly numbered invoice with audit rows.

Target: under 30 s. Loopback only; bounded by --records. The last line printed is one JSON
object.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/controlplane \\
        .venv/bin/python benchmarks/billing_close.py [--customers 1000] [--records 10000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _harness import prepare_database

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"]
CURRENCIES = ["EUR", "USD", "JPY"]


def load(db_url: str, customers: int, records: int) -> float:
    """Customers, terms and usage records, generated in PostgreSQL; returns seconds."""
    import psycopg

    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(db_url) as conn:
        with conn.cursor() as cur:
            cur.execute("SET maintenance_work_mem = '256MB'")
            ids = [uuid.uuid4() for _ in range(customers)]
            with cur.copy(
                "COPY customers_customer (id, name, slug, contact_email, created_at) FROM STDIN"
            ) as copy:
                for i, cid in enumerate(ids):
                    copy.write_row((cid, f"Customer {i}", f"customer-{i}", "", now))
            with cur.copy(
                "COPY customers_contractterms (id, customer_id, effective_from, "
                "revenue_share_percent, value_per_gb, currency, minimum_monthly_fee, "
                "billing_time_zone, payment_terms_days, created_at) FROM STDIN"
            ) as copy:
                for i, cid in enumerate(ids):
                    copy.write_row(
                        (uuid.uuid4(), cid, dt.date(2026, 1, 1), "25.00", "0.015000",
                         CURRENCIES[i % 3], 0 if i % 5 else 20_000, ZONES[i % 4], 30, now)
                    )  # fmt: skip
            # Usage: built without indexes, which are created afterwards (much faster).
            cur.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
                "'metering_usagerecord' AND indexname NOT LIKE '%%pkey'"
            )
            indexes = cur.fetchall()
            cur.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'metering_usagerecord'::regclass AND contype = 'u'"
            )
            uniques = cur.fetchall()
            for name, _ in uniques:
                cur.execute(f"ALTER TABLE metering_usagerecord DROP CONSTRAINT {name}")
            for name, _ in indexes:
                if name not in {u[0] for u in uniques}:
                    cur.execute(f"DROP INDEX IF EXISTS {name}")
            cur.execute(
                """
                CREATE TEMP TABLE bench_customers AS
                SELECT (row_number() OVER (ORDER BY id)) - 1 AS n, id FROM customers_customer
                """
            )
            cur.execute(
                """
                INSERT INTO metering_usagerecord (
                    customer_id, source_kind, source, client_record_id, activation_id, job_id,
                    sequence, event_time, ingested_at, frames, pixels, duration_ms,
                    bytes_delivered, baseline_bytes, bytes_saved, baseline_method,
                    psnr_db, ms_ssim, vmaf)
                SELECT c.id, 'job', 'bench', g::text, NULL,
                       ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, NULL,
                       t, t + interval '10 minutes', 1500, 1500::bigint * 2073600, 60000,
                       d, b, b - d, 'x264-medium', NULL, NULL, 95.0
                FROM generate_series(0, %(n)s - 1) AS g
                JOIN bench_customers c ON c.n = g %% %(customers)s
                CROSS JOIN LATERAL (SELECT
                    timestamptz '2026-02-27 00:00:00+00'
                        + ((g::bigint * 7919) %% (33 * 86400)) * interval '1 second' AS t,
                    (400000000 + (g::bigint * 104729) %% 800000000) AS d,
                    -- one record in 50 is worse than the baseline (negative savings)
                    CASE WHEN g %% 50 = 0 THEN 300000000
                         ELSE 900000000 + (g::bigint * 15485863) %% 700000000 END AS b) v
                """,
                {"n": records, "customers": customers},
            )
            for name, definition in uniques:
                cur.execute(f"ALTER TABLE metering_usagerecord ADD CONSTRAINT {name} {definition}")
            for name, definition in indexes:
                if name not in {u[0] for u in uniques}:
                    cur.execute(definition)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE metering_usagerecord")
    return time.perf_counter() - started


def close(db_url: str) -> dict[str, Any]:
    """The timed close, in a child process with Django set up (as the Celery task would)."""
    code = f"""
import os, sys, time, json, datetime as dt
sys.path[:0] = [{str(REPO / "platform")!r}, {str(REPO)!r}]
os.environ["DJANGO_SETTINGS_MODULE"] = "controlplane.settings"
import django
django.setup()
from django.db import connection
from django.db.models import Sum
from billing.models import Invoice, InvoiceLine
from billing.services import billing_period_close
from core.audit import Actor
connection.ensure_connection()
started = time.perf_counter()
report = billing_period_close(actor=Actor.cli("benchmark"), month=dt.date(2026, 3, 1),
                              now=dt.datetime(2026, 4, 10, tzinfo=dt.UTC))
seconds = time.perf_counter() - started
lines = InvoiceLine.objects.filter(kind="usage")
again = time.perf_counter()
rerun = billing_period_close(actor=Actor.cli("benchmark"), month=dt.date(2026, 3, 1),
                             now=dt.datetime(2026, 4, 10, tzinfo=dt.UTC))
rerun_s = time.perf_counter() - again
numbers = sorted(Invoice.objects.values_list("sequence_number", flat=True))
print(json.dumps({{
    "seconds": seconds,
    "invoices": len(report.created),
    "gapless": numbers == list(range(1, len(numbers) + 1)),
    "records_billed": lines.aggregate(n=Sum("record_count"))["n"],
    "top_ups": InvoiceLine.objects.filter(kind="minimum_top_up").count(),
    "negative_records": lines.aggregate(n=Sum("negative_records"))["n"],
    "rerun_created": len(rerun.created),
    "rerun_seconds": rerun_s,
}}))
"""
    out = subprocess.run(
        [PY, "-c", code],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": db_url, "LOG_LEVEL": "WARNING"},
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--records", type=int, default=10_000_000)
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/controlplane")
    if not base_url.startswith("postgres"):
        raise SystemExit("DATABASE_URL must point at PostgreSQL")
    print("preparing database ...", file=sys.stderr)
    db_url = prepare_database(base_url, "_close_bench")
    print(
        f"generating {args.records:,} records for {args.customers:,} customers ...", file=sys.stderr
    )
    load_s = load(db_url, args.customers, args.records)
    print("closing March 2026 ...", file=sys.stderr)
    result = close(db_url)
    seconds = float(result["seconds"])

    def row(label: str, value: object) -> None:
        print(f"{label:<52}{value!s:>16}")

    print()
    row("step", "value")
    row("customers (4 time zones, 3 currencies)", f"{args.customers:,}")
    row("usage records generated (INSERT ... SELECT)", f"{args.records:,}")
    row("data generation, seconds", f"{load_s:.1f}")
    row("invoices finalized", f"{result['invoices']:,}")
    row("records billed in March (each customer's own zone)", f"{result['records_billed']:,}")
    row("  of which negative savings (reported, not billed)", f"{result['negative_records']:,}")
    row("minimum-fee top-ups", f"{result['top_ups']:,}")
    row("numbers gapless", result["gapless"])
    row("CLOSE, seconds (target < 30)", f"{seconds:.2f}")
    row("re-run of the close (creates nothing), seconds", f"{result['rerun_seconds']:.2f}")
    row("re-run invoices created", result["rerun_created"])
    print()
    print(
        json.dumps(
            {
                "customers": args.customers,
                "records": args.records,
                "close_seconds": round(seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
