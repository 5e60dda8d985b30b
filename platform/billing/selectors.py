"""Reads of billing: invoices for the API and documents, and the usage sums the close bills."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum
from metering.models import UsageRecord

from billing.models import Invoice


def invoice_list(
    *, scope_customer_id: uuid.UUID | None, customer_id: uuid.UUID | None = None
) -> QuerySet[Invoice]:
    """Invoices visible to the caller (a customer sees only its own), newest month first."""
    qs = Invoice.objects.select_related("customer")
    if scope_customer_id is not None:
        qs = qs.filter(customer_id=scope_customer_id)
    if customer_id is not None:
        qs = qs.filter(customer_id=customer_id)
    return qs.order_by("-period_month", "number")


def invoice_get(*, invoice_id: uuid.UUID, scope_customer_id: uuid.UUID | None) -> Invoice | None:
    """One invoice with its lines and terms, or None when absent or out of scope."""
    return (
        invoice_list(scope_customer_id=scope_customer_id)
        .select_related("terms")
        .prefetch_related("lines")
        .filter(pk=invoice_id)
        .first()
    )


@dataclass(frozen=True)
class UsageWindow:
    """Records of one customer with event_time in [start, end) and ingested_at < before;
    `late_from` additionally counts those ingested at or after it."""

    key: int
    customer_id: uuid.UUID
    start: dt.datetime
    end: dt.datetime
    before: dt.datetime
    late_from: dt.datetime | None = None


@dataclass(frozen=True)
class UsageSums:
    records: int = 0
    bytes_delivered: int = 0
    baseline_bytes: int = 0
    bytes_saved: int = 0
    negative_bytes_saved: int = 0
    negative_records: int = 0
    late_records: int = 0
    late_bytes_delivered: int = 0
    late_baseline_bytes: int = 0
    late_bytes_saved: int = 0


_SUM_COLUMNS = (
    "count(u.id)",
    "sum(u.bytes_delivered)",
    "sum(u.baseline_bytes)",
    "sum(u.bytes_saved)",
    "sum(u.bytes_saved) FILTER (WHERE u.bytes_saved < 0)",
    "count(u.id) FILTER (WHERE u.bytes_saved < 0)",
    "count(u.id) FILTER (WHERE u.ingested_at >= w.late_from)",
    "sum(u.bytes_delivered) FILTER (WHERE u.ingested_at >= w.late_from)",
    "sum(u.baseline_bytes) FILTER (WHERE u.ingested_at >= w.late_from)",
    "sum(u.bytes_saved) FILTER (WHERE u.ingested_at >= w.late_from)",
)


def usage_window_sums(windows: Sequence[UsageWindow]) -> dict[int, UsageSums]:
    """Sums of raw usage records per window. On PostgreSQL all windows are answered by ONE
    query (the windows joined as a VALUES list, so every customer's own time-zone month is one
    index range scan); elsewhere one aggregate per window. Windows with no records are absent.
    """
    if not windows:
        return {}
    if connection.vendor == "postgresql":
        return _sums_postgres(windows)
    return _sums_portable(windows)


def _sums_postgres(windows: Sequence[UsageWindow]) -> dict[int, UsageSums]:
    table = connection.ops.quote_name(UsageRecord._meta.db_table)
    result: dict[int, UsageSums] = {}
    for chunk_start in range(0, len(windows), 2000):
        chunk = windows[chunk_start : chunk_start + 2000]
        values = ", ".join(
            ["(%s::int, %s::uuid, %s::timestamptz, %s::timestamptz, %s::timestamptz, "
             "%s::timestamptz)"] * len(chunk)
        )  # fmt: skip
        params: list[Any] = []
        for w in chunk:
            params += [w.key, w.customer_id, w.start, w.end, w.before, w.late_from]
        # Identifiers come from model metadata; every value is a bound parameter.
        sql = f"""
            SELECT w.key, {", ".join(_SUM_COLUMNS)}
            FROM (VALUES {values}) AS w(key, customer_id, start_at, end_at, before_at, late_from)
            JOIN {table} u ON u.customer_id = w.customer_id
                AND u.event_time >= w.start_at AND u.event_time < w.end_at
                AND u.ingested_at < w.before_at
            GROUP BY w.key
        """  # noqa: S608 (identifiers from model metadata; values bound)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for key, *sums in cursor.fetchall():
                result[int(key)] = UsageSums(*(int(v or 0) for v in sums))
    return result


def _sums_portable(windows: Sequence[UsageWindow]) -> dict[int, UsageSums]:
    result: dict[int, UsageSums] = {}
    for w in windows:
        late = Q(ingested_at__gte=w.late_from) if w.late_from else Q(pk__in=[])
        agg = UsageRecord.objects.filter(
            customer_id=w.customer_id,
            event_time__gte=w.start,
            event_time__lt=w.end,
            ingested_at__lt=w.before,
        ).aggregate(
            # Aliases differ from field names: Django would read "bytes_saved" in a later
            # filtered Sum as the aggregate of the same name.
            a_records=Count("id"),
            a_bytes_delivered=Sum("bytes_delivered"),
            a_baseline_bytes=Sum("baseline_bytes"),
            a_bytes_saved=Sum("bytes_saved"),
            a_negative_bytes_saved=Sum("bytes_saved", filter=Q(bytes_saved__lt=0)),
            a_negative_records=Count("id", filter=Q(bytes_saved__lt=0)),
            a_late_records=Count("id", filter=late),
            a_late_bytes_delivered=Sum("bytes_delivered", filter=late),
            a_late_baseline_bytes=Sum("baseline_bytes", filter=late),
            a_late_bytes_saved=Sum("bytes_saved", filter=late),
        )
        if agg["a_records"]:
            result[w.key] = UsageSums(**{k[2:]: int(v or 0) for k, v in agg.items()})
    return result
