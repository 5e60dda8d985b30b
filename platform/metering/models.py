"""Usage records (append-only facts), per-activation sequence streams, batch log, daily rollups.

Bytes are 64-bit integers. `bytes_saved = baseline_bytes - bytes_delivered` per record, stored
(checked by the database) so sums never recompute it; it may be negative.
"""

from __future__ import annotations

from typing import Any

from django.db import models

# Baseline methods are short slugs ("x264-medium-crf23", "customer-ladder", "declared"): the
# contract names which ones count; the record keeps whatever the producer declared.
BASELINE_METHOD_RE = r"^[a-z0-9][a-z0-9._-]{0,31}$"


class UsageRecord(models.Model):
    """One usage fact from an encode job or an SDK activation. Never updated or deleted (the
    model refuses it, and on PostgreSQL/SQLite a trigger refuses UPDATE and DELETE)."""

    class SourceKind(models.TextChoices):
        SDK = "sdk", "SDK activation"
        JOB = "job", "Encode job"

    id = models.BigAutoField(primary_key=True)
    # No database FK constraints on this table: the hot path inserts 1,000 rows per statement
    # and per-row RI checks would cost two index probes each. The ingesting service reads the
    # activation (and so the customer) in the same transaction, and rows are never deleted.
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    source_kind = models.CharField(max_length=8, choices=SourceKind.choices)
    # "activation:<uuid>" or "job:<uuid>": with client_record_id, the permanent dedupe key.
    source = models.CharField(max_length=64)
    client_record_id = models.CharField(max_length=64)
    activation = models.ForeignKey(
        "activation.Activation",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    job_id = models.UUIDField(null=True, blank=True)
    sequence = models.BigIntegerField(null=True, blank=True, help_text="Per activation, from 1.")
    event_time = models.DateTimeField()
    ingested_at = models.DateTimeField()
    frames = models.BigIntegerField()
    pixels = models.BigIntegerField()
    duration_ms = models.BigIntegerField()
    bytes_delivered = models.BigIntegerField()
    baseline_bytes = models.BigIntegerField()
    bytes_saved = models.BigIntegerField()
    baseline_method = models.CharField(max_length=32)
    psnr_db = models.FloatField(null=True, blank=True)
    ms_ssim = models.FloatField(null=True, blank=True)
    vmaf = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "client_record_id"], name="usage_record_unique_source_id"
            ),
            models.CheckConstraint(
                name="usage_record_saved_is_difference",
                condition=models.Q(
                    bytes_saved=models.F("baseline_bytes") - models.F("bytes_delivered")
                ),
            ),
            models.CheckConstraint(
                name="usage_record_counts_non_negative",
                condition=models.Q(
                    frames__gte=0,
                    pixels__gte=0,
                    duration_ms__gte=0,
                    bytes_delivered__gte=0,
                    baseline_bytes__gte=0,
                ),
            ),
            models.CheckConstraint(
                name="usage_record_source_kind",
                condition=(
                    models.Q(source_kind="sdk", activation__isnull=False, sequence__isnull=False)
                    | models.Q(source_kind="job", job_id__isnull=False)
                ),
            ),
        ]
        indexes = [
            # The close and the summaries select one customer's records by event time.
            models.Index(fields=["customer", "event_time"], name="usage_customer_event_idx"),
        ]

    def __str__(self) -> str:
        return f"usage {self.source}/{self.client_record_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValueError("usage records are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ValueError("usage records are append-only")


class UsageStream(models.Model):
    """Per-activation sequence bookkeeping: the highest sequence number seen and how many
    distinct records arrived. `missing = max_sequence - received_count`; > 0 flags a gap
    (records still on the device, or lost), < 0 flags sequence reuse by a faulty client."""

    activation = models.OneToOneField(
        "activation.Activation",
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    max_sequence = models.BigIntegerField(default=0)
    received_count = models.BigIntegerField(default=0)
    first_ingested_at = models.DateTimeField()
    last_ingested_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["customer"], name="usage_stream_customer_idx")]

    def __str__(self) -> str:
        return f"stream {self.activation_id} max={self.max_sequence} got={self.received_count}"

    @property
    def missing(self) -> int:
        return self.max_sequence - self.received_count

    @property
    def has_gap(self) -> bool:
        return self.missing != 0


class UsageBatch(models.Model):
    """The ingestion log: one row per accepted upload of a signed batch (replays included),
    with how many records were new and how many were duplicates. Append-only."""

    id = models.BigAutoField(primary_key=True)
    activation = models.ForeignKey(
        "activation.Activation", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    batch_id = models.CharField(max_length=64)
    received_at = models.DateTimeField()
    record_count = models.IntegerField()
    new_count = models.IntegerField()
    duplicate_count = models.IntegerField()
    body_sha256 = models.CharField(max_length=64)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["activation", "batch_id"], name="usage_batch_activation_idx")
        ]

    def __str__(self) -> str:
        return f"batch {self.batch_id} (+{self.new_count}/={self.duplicate_count})"


class UsageDailyRollup(models.Model):
    """Sums of usage per customer, UTC day of event time and source kind. Maintained in the
    same transaction as ingestion; `manage.py reconcile_usage` proves it equals the raw sums."""

    id = models.BigAutoField(primary_key=True)
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    day = models.DateField()
    source_kind = models.CharField(max_length=8, choices=UsageRecord.SourceKind.choices)
    record_count = models.BigIntegerField(default=0)
    frames = models.BigIntegerField(default=0)
    pixels = models.BigIntegerField(default=0)
    duration_ms = models.BigIntegerField(default=0)
    bytes_delivered = models.BigIntegerField(default=0)
    baseline_bytes = models.BigIntegerField(default=0)
    bytes_saved = models.BigIntegerField(default=0)
    negative_records = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "day", "source_kind"], name="usage_rollup_one_per_day"
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.day} {self.source_kind}: {self.bytes_saved} B saved"
