"""Usage ingestion: signed SDK batches over HTTP (dedupe, replay, tampering, foreign keys,
lateness, sequence gaps), encode-job records, rollups and `reconcile_usage`, the append-only
guard, and customer-scoped usage reads."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from activation.models import Activation
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from customers.models import Customer
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from licences.models import Licence
from metering import services
from metering.errors import UsageRecordConflict
from metering.models import UsageBatch, UsageDailyRollup, UsageRecord, UsageStream
from metering.selectors import usage_reconcile, usage_sequence_gaps

from core.models import AuditLog
from tests.core.fixtures import TEST_ACTOR, Http, Persona, error_code
from tests.metering.factories import batch_body, headers, make_activation, rec, sign

URL = "/api/v1/sdk/usage-batches"


class _VendorProxy:
    """Delegates to Django's connection but reports another vendor (forces the portable path)."""

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor

    def __getattr__(self, name: str) -> Any:
        return getattr(connection, name)


@pytest.fixture(params=["native", "portable"])
def ingest_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test through the database's own path and through the portable ORM path."""
    if request.param == "portable":
        monkeypatch.setattr(services, "connection", _VendorProxy("sqlite"))
    yield str(request.param)


@pytest.fixture
def device(acme_licence: Licence) -> tuple[Activation, Ed25519PrivateKey]:
    return make_activation(acme_licence)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def post(http: Http, activation: Activation, key: Ed25519PrivateKey, body: bytes) -> Any:
    return http.post(URL, data=body, headers=headers(activation.pk, sign(key, body)))


def test_duplicate_and_replayed_batches_are_counted_once(
    http: Http, device: tuple[Activation, Ed25519PrivateKey], ingest_path: str
) -> None:
    activation, key = device
    t = now() - dt.timedelta(hours=1)
    records = [rec(i, at=t, delivered=100 * i, baseline=1000 * i) for i in range(1, 6)]
    body = batch_body(activation.pk, records, "batch-1")

    first = post(http, activation, key, body)
    assert first.status_code == 200, first.text
    assert first.json()["new"] == 5 and first.json()["duplicates"] == 0

    replay = post(http, activation, key, body)  # the identical signed batch again
    assert replay.status_code == 200
    assert (replay.json()["new"], replay.json()["duplicates"]) == (0, 5)

    # A retry that overlaps: 3 known records, 2 new, and one id twice inside the batch.
    overlap = [*records[2:], rec(6, at=t), rec(7, at=t, record_id="dup")]
    overlap.append(dict(overlap[-1]))
    answer = post(http, activation, key, batch_body(activation.pk, overlap)).json()
    assert (answer["new"], answer["duplicates"]) == (2, 4)
    assert answer["max_sequence"] == 7 and answer["missing"] == 0

    assert UsageRecord.objects.filter(activation=activation).count() == 7
    assert UsageBatch.objects.filter(activation=activation).count() == 3
    roll = UsageDailyRollup.objects.get(customer_id=activation.licence.customer_id)
    assert roll.record_count == 7
    assert roll.bytes_saved == sum(900 * i for i in range(1, 6)) + 2 * 600_000_000
    assert usage_reconcile() == []


def test_tampered_batch_is_refused_and_nothing_is_stored(
    http: Http, device: tuple[Activation, Ed25519PrivateKey]
) -> None:
    activation, key = device
    body = batch_body(activation.pk, [rec(1, at=now(), delivered=900, baseline=1000)])
    signature = sign(key, body)
    tampered = body.replace(b'"bytes_delivered":900', b'"bytes_delivered":100')
    assert tampered != body

    response = http.post(URL, data=tampered, headers=headers(activation.pk, signature))
    assert response.status_code == 401
    assert error_code(response) == "BATCH_SIGNATURE_INVALID"
    # A valid signature with one flipped bit is refused too.
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    response = http.post(URL, data=body, headers=headers(activation.pk, flipped))
    assert error_code(response) == "BATCH_SIGNATURE_INVALID"

    assert UsageRecord.objects.count() == 0
    assert UsageBatch.objects.count() == 0
    assert UsageDailyRollup.objects.count() == 0
    assert UsageStream.objects.count() == 0


def test_foreign_batch_is_refused(
    http: Http, acme_licence: Licence, globex_licence: Licence
) -> None:
    mine, my_key = make_activation(acme_licence)
    other, other_key = make_activation(globex_licence)
    body = batch_body(mine.pk, [rec(1, at=now())])

    # Signed by another device's key, sent as mine: the signature check fails.
    response = http.post(URL, data=body, headers=headers(mine.pk, sign(other_key, body)))
    assert (response.status_code, error_code(response)) == (401, "BATCH_SIGNATURE_INVALID")
    # Signed correctly by the other device but naming my activation inside.
    response = http.post(URL, data=body, headers=headers(other.pk, sign(other_key, body)))
    assert (response.status_code, error_code(response)) == (400, "BATCH_ACTIVATION_MISMATCH")
    # Unknown activation.
    response = http.post(
        URL,
        data=body,
        headers=headers("00000000-0000-0000-0000-000000000000", sign(my_key, body)),
    )
    assert response.status_code == 404
    assert UsageRecord.objects.count() == 0


def test_event_times_outside_the_skew_and_lateness_limits_are_refused(
    http: Http, device: tuple[Activation, Ed25519PrivateKey]
) -> None:
    activation, key = device
    future = rec(1, at=now() + dt.timedelta(minutes=10), record_id="future")
    old = rec(2, at=now() - dt.timedelta(days=36), record_id="old")
    fine = rec(3, at=now() + dt.timedelta(seconds=60))  # within the 300 s skew

    response = post(http, activation, key, batch_body(activation.pk, [fine, future]))
    assert (response.status_code, error_code(response)) == (422, "EVENT_TIME_IN_FUTURE")
    assert response.json()["error"]["details"]["records"] == ["future"]
    response = post(http, activation, key, batch_body(activation.pk, [old, fine]))
    assert (response.status_code, error_code(response)) == (422, "EVENT_TIME_TOO_OLD")
    assert response.json()["error"]["details"]["records"] == ["old"]
    assert UsageRecord.objects.count() == 0

    response = post(http, activation, key, batch_body(activation.pk, [fine]))
    assert response.status_code == 200 and response.json()["new"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bytes_delivered": True}, "integer"),
        ({"bytes_delivered": -1}, "from 0"),
        ({"baseline_bytes": 1.5}, "integer"),
        ({"baseline_method": "Not A Slug"}, "baseline_method"),
        ({"psnr_db": "high"}, "psnr_db"),
        ({"colour": "blue"}, "limited"),
        ({"seq": 0}, "seq"),
    ],
)
def test_malformed_records_refuse_the_whole_batch(
    http: Http,
    device: tuple[Activation, Ed25519PrivateKey],
    change: dict[str, Any],
    message: str,
) -> None:
    activation, key = device
    body = batch_body(activation.pk, [rec(1, at=now()), {**rec(2, at=now()), **change}])
    response = post(http, activation, key, body)
    assert (response.status_code, error_code(response)) == (400, "BATCH_MALFORMED")
    assert message in response.json()["error"]["message"]
    assert UsageRecord.objects.count() == 0


def test_missing_record_field_and_bad_envelope(
    http: Http, device: tuple[Activation, Ed25519PrivateKey]
) -> None:
    activation, key = device
    record = rec(1, at=now())
    del record["frames"]
    assert error_code(post(http, activation, key, batch_body(activation.pk, [record]))) == (
        "BATCH_MALFORMED"
    )
    assert error_code(post(http, activation, key, b"not json")) == "BATCH_MALFORMED"
    assert error_code(post(http, activation, key, batch_body(activation.pk, []))) == (
        "BATCH_MALFORMED"
    )
    too_many = [rec(i, at=now()) for i in range(1, 1002)]
    assert error_code(post(http, activation, key, batch_body(activation.pk, too_many))) == (
        "BATCH_MALFORMED"
    )


def test_sequence_gaps_are_flagged_and_cleared(
    device: tuple[Activation, Ed25519PrivateKey], ingest_path: str
) -> None:
    activation, key = device
    t = now()
    body = batch_body(activation.pk, [rec(1, at=t), rec(2, at=t), rec(5, at=t), rec(9, at=t)])
    result = services.usage_batch_record(
        activation_id=activation.pk, body=body, signature=sign(key, body)
    )
    assert (result.max_sequence, result.received_count, result.missing) == (9, 4, 5)
    assert usage_sequence_gaps(activation_id=activation.pk) == [(3, 4), (6, 8)]
    stream = UsageStream.objects.get(activation=activation)
    assert stream.has_gap

    body = batch_body(activation.pk, [rec(s, at=t) for s in (3, 4, 6, 7, 8)])
    result = services.usage_batch_record(
        activation_id=activation.pk, body=body, signature=sign(key, body)
    )
    assert result.missing == 0
    assert usage_sequence_gaps(activation_id=activation.pk) == []


def test_negative_savings_are_stored_and_reported(
    device: tuple[Activation, Ed25519PrivateKey],
) -> None:
    activation, key = device
    body = batch_body(
        activation.pk,
        [rec(1, at=now(), delivered=1500, baseline=1000), rec(2, at=now(), delivered=0)],
    )
    services.usage_batch_record(activation_id=activation.pk, body=body, signature=sign(key, body))
    worse = UsageRecord.objects.get(sequence=1)
    assert worse.bytes_saved == -500
    roll = UsageDailyRollup.objects.get()
    assert roll.negative_records == 1
    assert roll.bytes_saved == -500 + 1_000_000_000


def test_job_usage_is_idempotent_on_the_job_id(acme: Customer) -> None:
    job_id = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    fields: dict[str, Any] = {
        "customer_id": acme.pk,
        "event_time": job_id,
        "frames": 100,
        "pixels": 100 * 1280 * 720,
        "duration_ms": 4000,
        "bytes_delivered": 2_000,
        "baseline_bytes": 5_000,
        "baseline_method": "x265-medium",
        "vmaf": 95.5,
    }
    import uuid

    job = uuid.uuid4()
    record, created = services.usage_record_for_job(actor=TEST_ACTOR, job_id=job, **fields)
    assert created and record.bytes_saved == 3_000 and record.source == f"job:{job}"
    again, created = services.usage_record_for_job(actor=TEST_ACTOR, job_id=job, **fields)
    assert not created and again.pk == record.pk
    with pytest.raises(UsageRecordConflict):
        services.usage_record_for_job(
            actor=TEST_ACTOR, job_id=job, **{**fields, "bytes_delivered": 1_000}
        )
    assert UsageRecord.objects.count() == 1
    assert AuditLog.objects.filter(action="usage_record.create").count() == 1
    roll = UsageDailyRollup.objects.get(source_kind="job")
    assert (roll.record_count, roll.bytes_saved) == (1, 3_000)


def test_reconcile_usage_proves_rollups_and_fails_on_drift(
    device: tuple[Activation, Ed25519PrivateKey], capsys: pytest.CaptureFixture[str]
) -> None:
    activation, key = device
    t = now() - dt.timedelta(days=2)
    body = batch_body(activation.pk, [rec(i, at=t + dt.timedelta(hours=i)) for i in range(1, 40)])
    services.usage_batch_record(activation_id=activation.pk, body=body, signature=sign(key, body))
    call_command("reconcile_usage")
    assert "OK" in capsys.readouterr().out

    UsageDailyRollup.objects.filter(pk=UsageDailyRollup.objects.first().pk).update(  # type: ignore[union-attr]
        bytes_saved=1
    )
    with pytest.raises(CommandError, match="mismatching"):
        call_command("reconcile_usage")
    assert "MISMATCH" in capsys.readouterr().err


def test_usage_records_are_append_only_in_the_database(
    device: tuple[Activation, Ed25519PrivateKey],
) -> None:
    activation, key = device
    body = batch_body(activation.pk, [rec(1, at=now())])
    services.usage_batch_record(activation_id=activation.pk, body=body, signature=sign(key, body))
    record = UsageRecord.objects.get()
    with pytest.raises(ValueError, match="append-only"):
        record.save()
    with pytest.raises(DatabaseError), transaction.atomic():
        UsageRecord.objects.filter(pk=record.pk).update(bytes_delivered=0)
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic():
            UsageRecord.objects.filter(pk=record.pk)._raw_delete(UsageRecord.objects.db)
    assert UsageRecord.objects.get().bytes_delivered == record.bytes_delivered


def test_usage_reads_are_scoped_to_the_customer(
    alice: Persona, bob: Persona, operator: Persona, acme_licence: Licence
) -> None:
    activation, key = make_activation(acme_licence)
    t = now()
    body = batch_body(activation.pk, [rec(1, at=t), rec(2, at=t, delivered=1_000_000_000)])
    services.usage_batch_record(activation_id=activation.pk, body=body, signature=sign(key, body))
    params = {"start": (t - dt.timedelta(days=1)).date(), "end": (t + dt.timedelta(days=1)).date()}

    mine = alice.http.get("/api/v1/usage/daily/", params=params)
    assert mine.status_code == 200, mine.text
    assert mine.json()["totals"]["record_count"] == 2
    assert mine.json()["totals"]["bytes_saved"] == 600_000_000
    assert bob.http.get("/api/v1/usage/daily/", params=params).json()["totals"]["record_count"] == 0
    # Bob cannot look at Acme by passing its id: customer tokens are pinned to their customer.
    peek = bob.http.get("/api/v1/usage/daily/", params={**params, "customer_id": alice.customer.pk})  # type: ignore[union-attr]
    assert peek.json()["totals"]["record_count"] == 0
    assert error_code(operator.http.get("/api/v1/usage/daily/", params=params)) == (
        "VALIDATION_ERROR"
    )
    ops = operator.http.get(
        "/api/v1/usage/daily/",
        params={**params, "customer_id": alice.customer.pk},  # type: ignore[union-attr]
    )
    assert ops.json()["totals"]["record_count"] == 2
    streams = alice.http.get("/api/v1/usage/streams/").json()
    assert streams[0]["max_sequence"] == 2 and streams[0]["has_gap"] is False
    assert json.loads(json.dumps(streams))  # plain JSON
    assert http_status_of(alice.http.get("/api/v1/usage/daily/")) == 400


def http_status_of(response: Any) -> int:
    return int(response.status_code)
