"""Writes of metering: signed SDK usage batches and encode-job usage records.

Ingestion is append-only and idempotent: the unique (source, client_record_id) index decides
what is new, in the same statement that inserts, so a retried or replayed batch is counted
once. Rollups and per-activation sequence streams are maintained in the same transaction.

Two code paths do the same thing: on PostgreSQL one multi-CTE statement (INSERT ... SELECT
FROM jsonb_to_recordset ... ON CONFLICT DO NOTHING RETURNING, then the rollup, stream and
batch-log upserts from the returned rows), so per-record Python work is only validation; on
SQLite (the embedded default) a portable ORM path.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from activation.errors import ActivationNotFound
from activation.models import Activation
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

import licensing
from core import metrics
from core.audit import Actor, audit_record
from metering import conf
from metering.errors import (
    BatchActivationMismatch,
    BatchMalformed,
    BatchSignatureInvalid,
    BatchTooLarge,
    EventTimeInFuture,
    EventTimeTooOld,
    UsageRecordConflict,
)
from metering.models import (
    BASELINE_METHOD_RE,
    UsageBatch,
    UsageDailyRollup,
    UsageRecord,
    UsageStream,
)

USAGE_BATCH_PURPOSE = licensing.USAGE_BATCH_PURPOSE  # "usage-batch"
BATCH_FORMAT_VERSION = 1

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_BASELINE_RE = re.compile(BASELINE_METHOD_RE)
_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Plausibility bounds per record (a record is one session or segment, not a month).
_MAX_BYTES = 10**15  # 1 PB
_MAX_FRAMES = 10**10
_MAX_PIXELS = 10**16
_MAX_DURATION_MS = 10**11
_RECORD_KEYS = frozenset(
    {
        "id",
        "seq",
        "event_time",
        "frames",
        "pixels",
        "duration_ms",
        "bytes_delivered",
        "baseline_bytes",
        "baseline_method",
        "psnr_db",
        "ms_ssim",
        "vmaf",
    }
)
_QUALITY_RANGES = {"psnr_db": (0.0, 1000.0), "ms_ssim": (-1.0, 1.0), "vmaf": (0.0, 100.0)}


def ms_to_datetime(ms: int) -> dt.datetime:
    """Unix milliseconds → aware UTC datetime, exactly (no float on the way)."""
    return _EPOCH + dt.timedelta(milliseconds=ms)


def datetime_to_ms(value: dt.datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@dataclass(frozen=True)
class BatchResult:
    """What the batch endpoint answers."""

    batch_id: str
    record_count: int
    new_count: int
    duplicate_count: int
    max_sequence: int
    received_count: int

    @property
    def missing(self) -> int:
        return self.max_sequence - self.received_count


@dataclass(frozen=True)
class _Columns:
    ids: list[str]
    seqs: list[int]
    event_times: list[int]
    frames: list[int]
    pixels: list[int]
    duration_ms: list[int]
    delivered: list[int]
    baseline: list[int]
    methods: list[str]
    psnr: list[float | None]
    ms_ssim: list[float | None]
    vmaf: list[float | None]


def _reject_constant(name: str) -> Any:
    raise BatchMalformed(f"{name} is not a number")


def _check_ints(name: str, values: list[Any], low: int, high: int) -> None:
    # type() rather than isinstance(): JSON true/false are bools, which are ints in Python.
    if not all(type(v) is int for v in values):
        raise BatchMalformed(f"every record's {name} must be an integer")
    if min(values) < low or max(values) > high:
        raise BatchMalformed(f"every record's {name} must be from {low} to {high}")


def _check_quality(name: str, values: list[Any]) -> None:
    low, high = _QUALITY_RANGES[name]
    for v in values:
        if v is None:
            continue
        if type(v) not in (int, float) or not math.isfinite(v) or not low <= v <= high:
            raise BatchMalformed(f"{name} must be null or a number from {low} to {high}")


def _columns(records: list[Any]) -> _Columns:
    """Validate the records column by column (builtins over lists: C speed, no per-record
    Python objects) and return the columns."""
    if not all(type(r) is dict for r in records):
        raise BatchMalformed("every record must be an object")
    if not all(_RECORD_KEYS.issuperset(r) for r in records):
        raise BatchMalformed(f"record fields are limited to {sorted(_RECORD_KEYS)}")
    try:
        cols = _Columns(
            ids=[r["id"] for r in records],
            seqs=[r["seq"] for r in records],
            event_times=[r["event_time"] for r in records],
            frames=[r["frames"] for r in records],
            pixels=[r["pixels"] for r in records],
            duration_ms=[r["duration_ms"] for r in records],
            delivered=[r["bytes_delivered"] for r in records],
            baseline=[r["baseline_bytes"] for r in records],
            methods=[r["baseline_method"] for r in records],
            psnr=[r.get("psnr_db") for r in records],
            ms_ssim=[r.get("ms_ssim") for r in records],
            vmaf=[r.get("vmaf") for r in records],
        )
    except KeyError as exc:
        raise BatchMalformed(f"every record needs {exc.args[0]!r}") from exc
    if not all(type(v) is str and _ID_RE.match(v) for v in cols.ids):
        raise BatchMalformed("record ids are 1-64 characters of [A-Za-z0-9._:-]")
    _check_ints("seq", cols.seqs, 1, 2**62)
    _check_ints("event_time", cols.event_times, 0, 2**53)
    _check_ints("frames", cols.frames, 0, _MAX_FRAMES)
    _check_ints("pixels", cols.pixels, 0, _MAX_PIXELS)
    _check_ints("duration_ms", cols.duration_ms, 0, _MAX_DURATION_MS)
    _check_ints("bytes_delivered", cols.delivered, 0, _MAX_BYTES)
    _check_ints("baseline_bytes", cols.baseline, 0, _MAX_BYTES)
    for method in set(cols.methods) if all(type(m) is str for m in cols.methods) else [None]:
        if method is None or not _BASELINE_RE.match(method):
            raise BatchMalformed("baseline_method is a slug of 1-32 of [a-z0-9._-]")
    _check_quality("psnr_db", cols.psnr)
    _check_quality("ms_ssim", cols.ms_ssim)
    _check_quality("vmaf", cols.vmaf)
    return cols


def _check_event_times(cols: _Columns, now: dt.datetime) -> None:
    now_ms = datetime_to_ms(now)
    latest_ok = now_ms + int(conf.FUTURE_SKEW.total_seconds() * 1000)
    earliest_ok = now_ms - int(conf.LATENESS_LIMIT.total_seconds() * 1000)
    if max(cols.event_times) > latest_ok:
        bad = [i for i, t in zip(cols.ids, cols.event_times, strict=True) if t > latest_ok]
        raise EventTimeInFuture(
            "Some records are dated in the future beyond the allowed clock skew; nothing was "
            "stored. Correct the device clock.",
            details={"records": bad[:50], "count": len(bad), "server_time": now_ms},
        )
    if min(cols.event_times) < earliest_ok:
        bad = [i for i, t in zip(cols.ids, cols.event_times, strict=True) if t < earliest_ok]
        raise EventTimeTooOld(
            "Some records are older than the lateness limit; nothing was stored. Drop them "
            "and send the rest.",
            details={
                "records": bad[:50],
                "count": len(bad),
                "lateness_limit_days": conf.LATENESS_LIMIT.days,
            },
        )


def usage_batch_record(
    *,
    activation_id: uuid.UUID,
    body: bytes,
    signature: bytes,
    request_id: str = "",
    now: dt.datetime | None = None,
) -> BatchResult:
    """Store a signed usage batch from an SDK activation.

    Order: the signature over the exact body bytes is verified against the activation's
    registered device key (purpose "usage-batch") before anything is parsed; a tampered or
    foreign batch is refused with BATCH_SIGNATURE_INVALID and nothing is stored. Then the
    whole batch is validated (format, event times within the skew and lateness limits);
    any refusal stores nothing. Usage from an activation that has since ended is still
    accepted: it is a fact of the past, signed by the key that was bound then.

    Side effects (one transaction): new records inserted (duplicates by (source, record id)
    ignored and counted), the daily rollups and the activation's sequence stream updated, one
    UsageBatch log row. Idempotent: a replay inserts nothing and answers new=0.
    """
    now = now or timezone.now()
    if len(body) > conf.MAX_BATCH_BYTES:
        raise BatchTooLarge(f"A batch body is at most {conf.MAX_BATCH_BYTES} bytes.")
    row = (
        Activation.objects.filter(pk=activation_id)
        .values_list("device_public_key", "licence__customer_id")
        .first()
    )
    if row is None:
        raise ActivationNotFound("No such activation.")
    device_key, customer_id = bytes(row[0]), row[1]
    try:
        licensing.verify_device_signature(device_key, USAGE_BATCH_PURPOSE, body, signature)
    except licensing.LicensingError as exc:
        raise BatchSignatureInvalid(
            "The batch signature does not verify with this activation's device key."
        ) from exc

    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BatchMalformed("The batch body is not JSON.") from exc
    if type(doc) is not dict or doc.get("v") != BATCH_FORMAT_VERSION:
        raise BatchMalformed(f"The batch must be an object with v={BATCH_FORMAT_VERSION}.")
    if doc.get("activation_id") != str(activation_id):
        raise BatchActivationMismatch("The batch names another activation.")
    batch_id = doc.get("batch_id")
    if type(batch_id) is not str or not _ID_RE.match(batch_id):
        raise BatchMalformed("batch_id is 1-64 characters of [A-Za-z0-9._:-].")
    records = doc.get("records")
    if type(records) is not list or not 1 <= len(records) <= conf.MAX_BATCH_RECORDS:
        raise BatchMalformed(f"records is a list of 1 to {conf.MAX_BATCH_RECORDS} records.")
    cols = _columns(records)
    _check_event_times(cols, now)

    source = f"activation:{activation_id}"
    digest = hashlib.sha256(body).hexdigest()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            new, max_seq, received = _insert_batch_postgres(
                body=body,
                customer_id=customer_id,
                activation_id=activation_id,
                source=source,
                batch_id=batch_id,
                count=len(records),
                digest=digest,
                request_id=request_id[:64],
                now=now,
            )
        else:
            new, max_seq, received = _insert_batch_portable(
                cols=cols,
                customer_id=customer_id,
                activation_id=activation_id,
                source=source,
                batch_id=batch_id,
                digest=digest,
                request_id=request_id[:64],
                now=now,
            )
    metrics.usage_records_observed(new=new, duplicate=len(records) - new)
    return BatchResult(
        batch_id=batch_id,
        record_count=len(records),
        new_count=new,
        duplicate_count=len(records) - new,
        max_sequence=max_seq,
        received_count=received,
    )


def _table(model: Any) -> str:
    return connection.ops.quote_name(model._meta.db_table)


_ROLLUP_SUMS = (
    "record_count",
    "frames",
    "pixels",
    "duration_ms",
    "bytes_delivered",
    "baseline_bytes",
    "bytes_saved",
    "negative_records",
)


def _rollup_upsert_sql(kind_param: str) -> str:
    updates = ", ".join(f"{c} = r.{c} + EXCLUDED.{c}" for c in _ROLLUP_SUMS)
    return f"""
    INSERT INTO {_table(UsageDailyRollup)} AS r
        (customer_id, day, source_kind, {", ".join(_ROLLUP_SUMS)})
    SELECT %(customer)s, (ins.event_time AT TIME ZONE 'UTC')::date AS day, {kind_param},
           count(*), sum(ins.frames), sum(ins.pixels), sum(ins.duration_ms),
           sum(ins.bytes_delivered), sum(ins.baseline_bytes), sum(ins.bytes_saved),
           count(*) FILTER (WHERE ins.bytes_saved < 0)
    FROM ins GROUP BY day ORDER BY day
    ON CONFLICT (customer_id, day, source_kind) DO UPDATE SET {updates}
    RETURNING 1
    """  # noqa: S608 (identifiers from model metadata; values bound)


@functools.cache
def _batch_sql() -> str:
    # Rows are ordered by day in the rollup upsert so concurrent batches lock rollup rows in
    # the same order (no deadlock). json_to_recordset parses the records in C (plain json:
    # no jsonb tree to build); the Python side already validated every value, so the casts
    # cannot fail.
    return f"""
    WITH d AS (
        SELECT * FROM json_to_recordset((%(body)s::json) -> 'records') AS d(
            id text, seq bigint, event_time bigint, frames bigint, pixels bigint,
            duration_ms bigint, bytes_delivered bigint, baseline_bytes bigint,
            baseline_method text, psnr_db double precision, ms_ssim double precision,
            vmaf double precision)
    ), ins AS (
        INSERT INTO {_table(UsageRecord)} (
            customer_id, source_kind, source, client_record_id, activation_id, job_id,
            sequence, event_time, ingested_at, frames, pixels, duration_ms, bytes_delivered,
            baseline_bytes, bytes_saved, baseline_method, psnr_db, ms_ssim, vmaf)
        SELECT %(customer)s, 'sdk', %(source)s, d.id, %(activation)s, NULL, d.seq,
               timestamptz 'epoch' + d.event_time * interval '1 millisecond', %(now)s,
               d.frames, d.pixels, d.duration_ms, d.bytes_delivered, d.baseline_bytes,
               d.baseline_bytes - d.bytes_delivered, d.baseline_method, d.psnr_db,
               d.ms_ssim, d.vmaf
        FROM d
        ON CONFLICT (source, client_record_id) DO NOTHING
        RETURNING event_time, sequence, frames, pixels, duration_ms, bytes_delivered,
                  baseline_bytes, bytes_saved
    ), roll AS ({_rollup_upsert_sql("'sdk'")}
    ), stream AS (
        INSERT INTO {_table(UsageStream)} AS s (activation_id, customer_id, max_sequence,
            received_count, first_ingested_at, last_ingested_at)
        SELECT %(activation)s, %(customer)s, coalesce(max(ins.sequence), 0), count(*),
               %(now)s, %(now)s
        FROM ins
        ON CONFLICT (activation_id) DO UPDATE SET
            max_sequence = greatest(s.max_sequence, EXCLUDED.max_sequence),
            received_count = s.received_count + EXCLUDED.received_count,
            last_ingested_at = EXCLUDED.last_ingested_at
        RETURNING max_sequence, received_count
    ), log AS (
        INSERT INTO {_table(UsageBatch)} (activation_id, customer_id, batch_id, received_at,
            record_count, new_count, duplicate_count, body_sha256, request_id)
        SELECT %(activation)s, %(customer)s, %(batch_id)s, %(now)s, %(count)s, count(*),
               %(count)s - count(*), %(digest)s, %(request_id)s
        FROM ins
        RETURNING new_count
    )
    SELECT (SELECT new_count FROM log), (SELECT max_sequence FROM stream),
           (SELECT received_count FROM stream)
    """  # noqa: S608 (identifiers from model metadata; values bound)


def _insert_batch_postgres(
    *,
    body: bytes,
    customer_id: uuid.UUID,
    activation_id: uuid.UUID,
    source: str,
    batch_id: str,
    count: int,
    digest: str,
    request_id: str,
    now: dt.datetime,
) -> tuple[int, int, int]:
    import psycopg

    connection.ensure_connection()
    # A plain psycopg cursor (server-side binding) instead of Django's client-side one: the
    # ~300 KB body travels as one bound parameter instead of being escaped into the SQL text.
    # Same connection, so it runs inside the service's transaction.
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            _batch_sql(),
            {
                "body": body.decode("utf-8"),
                "customer": customer_id,
                "activation": activation_id,
                "source": source,
                "batch_id": batch_id,
                "count": count,
                "digest": digest,
                "request_id": request_id,
                "now": now,
            },
        )
        row = cursor.fetchone()
    if row is None:  # the statement always returns one row
        raise RuntimeError("usage batch insert returned no row")
    new, max_seq, received = row
    return int(new), int(max_seq), int(received)


def _insert_batch_portable(
    *,
    cols: _Columns,
    customer_id: uuid.UUID,
    activation_id: uuid.UUID,
    source: str,
    batch_id: str,
    digest: str,
    request_id: str,
    now: dt.datetime,
) -> tuple[int, int, int]:
    """The same effects as the PostgreSQL statement, with the ORM (SQLite: one writer at a
    time, so reading the existing ids then inserting cannot race)."""
    existing: set[str] = set()
    unique_ids = list(dict.fromkeys(cols.ids))
    for start in range(0, len(unique_ids), 500):
        existing.update(
            UsageRecord.objects.filter(
                source=source, client_record_id__in=unique_ids[start : start + 500]
            ).values_list("client_record_id", flat=True)
        )
    seen = set(existing)
    new_rows: list[UsageRecord] = []
    for i, record_id in enumerate(cols.ids):
        if record_id in seen:
            continue
        seen.add(record_id)
        new_rows.append(
            UsageRecord(
                customer_id=customer_id,
                source_kind=UsageRecord.SourceKind.SDK,
                source=source,
                client_record_id=record_id,
                activation_id=activation_id,
                sequence=cols.seqs[i],
                event_time=ms_to_datetime(cols.event_times[i]),
                ingested_at=now,
                frames=cols.frames[i],
                pixels=cols.pixels[i],
                duration_ms=cols.duration_ms[i],
                bytes_delivered=cols.delivered[i],
                baseline_bytes=cols.baseline[i],
                bytes_saved=cols.baseline[i] - cols.delivered[i],
                baseline_method=cols.methods[i],
                psnr_db=cols.psnr[i],
                ms_ssim=cols.ms_ssim[i],
                vmaf=cols.vmaf[i],
            )
        )
    UsageRecord.objects.bulk_create(new_rows, batch_size=500)
    _rollup_add(customer_id=customer_id, source_kind=UsageRecord.SourceKind.SDK, rows=new_rows)
    max_new = max((r.sequence or 0 for r in new_rows), default=0)
    stream, _ = UsageStream.objects.select_for_update().get_or_create(
        activation_id=activation_id,
        defaults={
            "customer_id": customer_id,
            "first_ingested_at": now,
            "last_ingested_at": now,
        },
    )
    stream.max_sequence = max(stream.max_sequence, max_new)
    stream.received_count += len(new_rows)
    stream.last_ingested_at = now
    stream.save(update_fields=["max_sequence", "received_count", "last_ingested_at"])
    UsageBatch.objects.create(
        activation_id=activation_id,
        customer_id=customer_id,
        batch_id=batch_id,
        received_at=now,
        record_count=len(cols.ids),
        new_count=len(new_rows),
        duplicate_count=len(cols.ids) - len(new_rows),
        body_sha256=digest,
        request_id=request_id,
    )
    return len(new_rows), stream.max_sequence, stream.received_count


def _rollup_add(*, customer_id: uuid.UUID, source_kind: str, rows: list[UsageRecord]) -> None:
    """Add freshly inserted rows to the daily rollups (portable path; call in the inserting
    transaction). Days are sorted so concurrent writers lock rollup rows in one order."""
    sums: dict[dt.date, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_ROLLUP_SUMS, 0))
    for r in rows:
        s = sums[r.event_time.astimezone(dt.UTC).date()]
        s["record_count"] += 1
        s["frames"] += r.frames
        s["pixels"] += r.pixels
        s["duration_ms"] += r.duration_ms
        s["bytes_delivered"] += r.bytes_delivered
        s["baseline_bytes"] += r.baseline_bytes
        s["bytes_saved"] += r.bytes_saved
        s["negative_records"] += 1 if r.bytes_saved < 0 else 0
    for day in sorted(sums):
        add = sums[day]
        key = {"customer_id": customer_id, "day": day, "source_kind": source_kind}
        updated = UsageDailyRollup.objects.filter(**key).update(
            **{name: F(name) + value for name, value in add.items()}
        )
        if updated:
            continue
        try:
            with transaction.atomic():
                UsageDailyRollup.objects.create(**key, **add)
        except IntegrityError:
            # Another writer created the row between our UPDATE and INSERT: add to it.
            UsageDailyRollup.objects.filter(**key).update(
                **{name: F(name) + value for name, value in add.items()}
            )


_JOB_FIELDS = (
    "event_time",
    "frames",
    "pixels",
    "duration_ms",
    "bytes_delivered",
    "baseline_bytes",
    "baseline_method",
)


def usage_record_for_job(
    *,
    actor: Actor,
    job_id: uuid.UUID,
    customer_id: uuid.UUID,
    event_time: dt.datetime,
    frames: int,
    pixels: int,
    duration_ms: int,
    bytes_delivered: int,
    baseline_bytes: int,
    baseline_method: str,
    psnr_db: float | None = None,
    ms_ssim: float | None = None,
    vmaf: float | None = None,
    now: dt.datetime | None = None,
) -> tuple[UsageRecord, bool]:
    """Record the usage of one finished encode job; returns (record, created).

    Idempotent: the key is derived from the job id (source "job:<id>", record id
    "encode-job:<id>"), so a retried task records nothing new and returns the stored row; the
    same key with other figures is a 409 USAGE_RECORD_CONFLICT. Side effects when created
    (one transaction): the record, the daily rollup, an audit row."""
    if timezone.is_naive(event_time):
        raise BatchMalformed("event_time must be timezone-aware.")
    for name, value, high in (
        ("frames", frames, _MAX_FRAMES),
        ("pixels", pixels, _MAX_PIXELS),
        ("duration_ms", duration_ms, _MAX_DURATION_MS),
        ("bytes_delivered", bytes_delivered, _MAX_BYTES),
        ("baseline_bytes", baseline_bytes, _MAX_BYTES),
    ):
        if type(value) is not int or not 0 <= value <= high:
            raise BatchMalformed(f"{name} must be an integer from 0 to {high}.")
    if not _BASELINE_RE.match(baseline_method):
        raise BatchMalformed("baseline_method is a slug of 1-32 of [a-z0-9._-].")
    _check_quality("psnr_db", [psnr_db])
    _check_quality("ms_ssim", [ms_ssim])
    _check_quality("vmaf", [vmaf])
    now = now or timezone.now()
    source, record_id = f"job:{job_id}", f"encode-job:{job_id}"
    # Millisecond precision, as for SDK records, so a retry compares equal.
    event_time = ms_to_datetime(datetime_to_ms(event_time))
    wanted = {
        "event_time": event_time,
        "frames": frames,
        "pixels": pixels,
        "duration_ms": duration_ms,
        "bytes_delivered": bytes_delivered,
        "baseline_bytes": baseline_bytes,
        "baseline_method": baseline_method,
    }
    existing = UsageRecord.objects.filter(source=source, client_record_id=record_id).first()
    if existing is None:
        try:
            with transaction.atomic():
                record = UsageRecord.objects.create(
                    customer_id=customer_id,
                    source_kind=UsageRecord.SourceKind.JOB,
                    source=source,
                    client_record_id=record_id,
                    job_id=job_id,
                    ingested_at=now,
                    bytes_saved=baseline_bytes - bytes_delivered,
                    psnr_db=psnr_db,
                    ms_ssim=ms_ssim,
                    vmaf=vmaf,
                    **wanted,
                )
                _rollup_add(
                    customer_id=customer_id,
                    source_kind=UsageRecord.SourceKind.JOB,
                    rows=[record],
                )
                audit_record(
                    actor=actor,
                    action="usage_record.create",
                    object_type="usage_record",
                    object_id=record.pk,
                    customer_id=customer_id,
                    changes={
                        "job_id": str(job_id),
                        "bytes_saved": record.bytes_saved,
                        "event_time": event_time.isoformat(),
                    },
                )
            return record, True
        except IntegrityError:
            # A concurrent retry of the same job won the unique index; compare with its row.
            existing = UsageRecord.objects.get(source=source, client_record_id=record_id)
    if existing.customer_id != customer_id or any(
        getattr(existing, name) != wanted[name] for name in _JOB_FIELDS
    ):
        raise UsageRecordConflict(
            "Usage for this job was recorded earlier with other figures.",
            details={"job_id": str(job_id)},
        )
    return existing, False
