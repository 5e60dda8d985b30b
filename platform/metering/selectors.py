"""Reads of metering, shared by the API, the close and `reconcile_usage`."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from metering.models import UsageDailyRollup, UsageRecord, UsageStream

_SUM_FIELDS = (
    "frames",
    "pixels",
    "duration_ms",
    "bytes_delivered",
    "baseline_bytes",
    "bytes_saved",
)


def usage_daily(
    *, customer_id: uuid.UUID, start: dt.date, end: dt.date
) -> QuerySet[UsageDailyRollup]:
    """Daily rollups (UTC days) of one customer, start <= day < end, both source kinds."""
    return UsageDailyRollup.objects.filter(
        customer_id=customer_id, day__gte=start, day__lt=end
    ).order_by("day", "source_kind")


def usage_totals(*, customer_id: uuid.UUID, start: dt.date, end: dt.date) -> dict[str, int]:
    """Sums over the daily rollups of one customer for start <= day < end."""
    agg = usage_daily(customer_id=customer_id, start=start, end=end).aggregate(
        record_count=Sum("record_count"),
        negative_records=Sum("negative_records"),
        **{name: Sum(name) for name in _SUM_FIELDS},
    )
    return {name: int(value or 0) for name, value in agg.items()}


def usage_streams(*, customer_id: uuid.UUID) -> QuerySet[UsageStream]:
    return UsageStream.objects.filter(customer_id=customer_id).order_by("-last_ingested_at")


def usage_sequence_gaps(*, activation_id: uuid.UUID, limit: int = 100) -> list[tuple[int, int]]:
    """Missing sequence ranges [first, last] of one activation (window function over the
    stored sequence numbers)."""
    table = connection.ops.quote_name(UsageRecord._meta.db_table)
    sql = f"""
        SELECT seq + 1, next_seq - 1 FROM (
            SELECT sequence AS seq, lead(sequence) OVER (ORDER BY sequence) AS next_seq
            FROM {table} WHERE activation_id = %s
        ) s WHERE next_seq > seq + 1 ORDER BY seq LIMIT %s
    """  # noqa: S608 (identifiers from model metadata; values bound)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT min(sequence) FROM {table} WHERE activation_id = %s",  # noqa: S608
            [activation_id.hex if connection.vendor == "sqlite" else activation_id],
        )
        first = cursor.fetchone()[0]
        cursor.execute(
            sql, [activation_id.hex if connection.vendor == "sqlite" else activation_id, limit]
        )
        gaps = [(int(a), int(b)) for a, b in cursor.fetchall()]
    if first is not None and first > 1:
        gaps.insert(0, (1, int(first) - 1))
    return gaps[:limit]


@dataclass(frozen=True)
class RollupMismatch:
    customer_id: uuid.UUID
    day: dt.date
    source_kind: str
    field: str
    rollup: int
    raw: int


def usage_reconcile(*, customer_id: uuid.UUID | None = None) -> list[RollupMismatch]:
    """Compare every daily rollup with the sums of the raw records it summarises (and raw days
    with no rollup). An empty list proves rollups == raw sums."""
    raw_qs = UsageRecord.objects.all()
    roll_qs = UsageDailyRollup.objects.all()
    if customer_id is not None:
        raw_qs = raw_qs.filter(customer_id=customer_id)
        roll_qs = roll_qs.filter(customer_id=customer_id)
    raw_rows: list[dict[str, Any]] = [
        dict(row)
        for row in raw_qs.annotate(day=TruncDate("event_time", tzinfo=dt.UTC))
        .values("customer_id", "day", "source_kind")
        .annotate(
            record_count=Count("id"),
            negative_records=Count("id", filter=Q(bytes_saved__lt=0)),
            **{name: Sum(name) for name in _SUM_FIELDS},
        )
    ]
    fields = ("record_count", "negative_records", *_SUM_FIELDS)
    raw = {
        (r["customer_id"], r["day"], r["source_kind"]): {f: int(r[f] or 0) for f in fields}
        for r in raw_rows
    }
    rolled_rows: list[dict[str, Any]] = list(
        roll_qs.values("customer_id", "day", "source_kind", *fields)
    )
    rolled = {
        (r["customer_id"], r["day"], r["source_kind"]): {f: int(r[f]) for f in fields}
        for r in rolled_rows
    }
    zero = dict.fromkeys(fields, 0)
    mismatches: list[RollupMismatch] = []
    for key in sorted(set(raw) | set(rolled), key=lambda k: (str(k[0]), k[1], k[2])):
        a, b = rolled.get(key, zero), raw.get(key, zero)
        for f in fields:
            if a[f] != b[f]:
                mismatches.append(RollupMismatch(key[0], key[1], key[2], f, a[f], b[f]))
    return mismatches
