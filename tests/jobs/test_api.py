"""The job API with an eager broker (jobs run in-process at commit): limits, tenant isolation,
cancel, downloads, licence refusals, and the claim / complete / sweep rules."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from customers.models import Customer
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone
from jobs import services, tasks
from jobs.models import BASELINE_CODECS, BASELINE_METRICS, MODEL_VERSIONS, EncodeJob
from licences.models import Licence, LicencePolicy
from licences.services import licence_revoke, licence_suspend
from metering.models import UsageRecord
from PIL import Image

from core.models import AuditLog
from tests.core.fixtures import TEST_ACTOR
from tests.jobs.conftest import REPO, Caller, corrupt_png, frames_zip, png_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def code_of(response: Any) -> str:
    return str(response.json()["error"]["code"])


def stored_files(owner: Any) -> list[str]:
    """Files in storage under a customer's or a job's id (the media root is shared)."""
    root = Path(settings.MEDIA_ROOT) / "jobs"
    if not root.exists():
        return []
    files = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
    return [f for f in files if str(owner) in f]


def audit_actions(job_id: Any) -> list[str]:
    return list(
        AuditLog.objects.filter(object_type="encode_job", object_id=str(job_id))
        .order_by("id")
        .values_list("action", flat=True)
    )


# --- the happy path, eagerly -----------------------------------------------------------------


def test_submit_encodes_stores_measures_and_bills_once(acme_caller: Caller, acme: Customer) -> None:
    response = acme_caller.submit(png_bytes(64, 48), "holiday.png", quality=3, baseline="jpeg")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["state"] == "succeeded"
    assert (body["kind"], body["width"], body["height"], body["frame_count"]) == (
        "image",
        64,
        48,
        1,
    )
    assert body["progress"] == 100 and body["failure"] is None and body["attempts"] == 1
    job = EncodeJob.objects.get(pk=body["id"])
    metrics = job.metrics
    assert metrics["input_bytes"] == job.input_bytes == len(png_bytes(64, 48))
    assert metrics["output_bytes"] == job.output_bytes
    assert job.output_bytes is not None and job.output_bytes > 0
    assert metrics["bytes_saved"] == metrics["baseline_bytes"] - metrics["output_bytes"]
    assert metrics["baseline"]["codec"] == "jpeg"
    assert metrics["baseline"]["parameter"]["name"] == "quality"
    assert metrics["baseline"]["matched_metric"] == "psnr"
    assert set(metrics["quality"]) == {"ours", "baseline"}
    assert {"licence_gate", "load_model", "encode", "baseline", "store"} <= set(
        metrics["timings_s"]
    )

    usage = UsageRecord.objects.get(job_id=job.pk)
    assert usage.customer_id == acme.pk
    assert usage.bytes_delivered == job.output_bytes
    assert usage.baseline_bytes == metrics["baseline_bytes"]
    assert usage.baseline_method == "jpeg.psnr.matched"
    assert (usage.frames, usage.pixels) == (1, 64 * 48)
    assert audit_actions(job.pk) == ["encode_job.submit", "encode_job.start", "encode_job.succeed"]

    status = acme_caller.get(f"/api/v1/jobs/{job.pk}/").json()
    assert status["links"]["output"] == f"/api/v1/jobs/{job.pk}/output/"
    output = acme_caller.get(status["links"]["output"])
    assert output.status_code == 200
    assert output["Content-Type"] == "application/octet-stream"
    data = b"".join(output.streaming_content)
    assert len(data) == job.output_bytes
    from codec_engine.container import peek_header

    header = peek_header(data)
    assert (header.width, header.height, header.quality) == (64, 48, 3)
    preview = acme_caller.get(status["links"]["preview"])
    assert preview["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(b"".join(preview.streaming_content))) as im:
        assert im.size == (64, 48)

    listing = acme_caller.get("/api/v1/jobs/").json()
    assert [j["id"] for j in listing["results"]] == [str(job.pk)]


def test_frame_sequence_zip_is_one_job(acme_caller: Caller) -> None:
    response = acme_caller.submit(frames_zip(3, 32, 32), "shot.zip", baseline="jpeg", fps=30)
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["state"], body["kind"], body["frame_count"], body["fps"]) == (
        "succeeded",
        "frames",
        3,
        30.0,
    )
    assert body["frames_done"] == 3
    assert UsageRecord.objects.get(job_id=body["id"]).duration_ms == 100


# --- limits: clear 4xx codes, nothing stored -------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "content", "name", "fields", "status", "code"),
    [
        ({"JOBS_MAX_INPUT_BYTES": 10}, png_bytes(), "a.png", {}, 413, "INPUT_TOO_LARGE"),
        ({"JOBS_MAX_INPUT_BYTES": 200_000}, png_bytes(), "a.png", {}, 202, None),
        ({"JOBS_MAX_INPUT_BYTES": 1000}, png_bytes(), "a.png", {}, 413, "INPUT_TOO_LARGE"),
        ({"JOBS_MAX_WIDTH": 32}, png_bytes(64, 48), "a.png", {}, 422, "RESOLUTION_TOO_LARGE"),
        ({"JOBS_MAX_HEIGHT": 32}, png_bytes(64, 48), "a.png", {}, 422, "RESOLUTION_TOO_LARGE"),
        ({}, png_bytes(8, 8), "a.png", {}, 422, "RESOLUTION_TOO_SMALL"),
        ({"JOBS_MAX_FRAMES": 2}, frames_zip(3, 16, 16), "s.zip", {}, 422, "TOO_MANY_FRAMES"),
        ({"JOBS_MAX_TOTAL_PIXELS": 1000}, png_bytes(64, 48), "a.png", {}, 422, "INPUT_TOO_LONG"),
        ({}, b"not an image at all", "a.png", {}, 422, "UNSUPPORTED_INPUT"),
        ({}, b"plain text", "notes.txt", {}, 422, "UNSUPPORTED_INPUT"),
        ({}, b"PK not a zip", "s.zip", {}, 422, "UNSUPPORTED_INPUT"),
        ({}, b"", "a.png", {}, 422, "EMPTY_INPUT"),
        ({}, png_bytes(), "a.png", {"quality": 0}, 400, "VALIDATION_ERROR"),
        ({}, png_bytes(), "a.png", {"baseline": "mpeg1"}, 400, "VALIDATION_ERROR"),
        ({}, png_bytes(), "a.png", {"model_version": "msh-v9"}, 400, "VALIDATION_ERROR"),
    ],
)
def test_limits_refuse_with_a_code_and_store_nothing(
    acme_caller: Caller,
    settings: Any,
    overrides: dict[str, int],
    content: bytes,
    name: str,
    fields: dict[str, Any],
    status: int,
    code: str | None,
) -> None:
    for key, value in overrides.items():
        setattr(settings, key, value)
    response = acme_caller.submit(content, name, baseline=fields.pop("baseline", "jpeg"), **fields)
    assert response.status_code == status, response.content
    if code is None:
        return
    assert code_of(response) == code
    assert EncodeJob.objects.count() == 0
    assert acme_caller.customer is not None
    assert stored_files(acme_caller.customer.pk) == []


def test_frames_of_different_sizes_are_refused(acme_caller: Caller) -> None:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.png", png_bytes(32, 32))
        zf.writestr("b.png", png_bytes(32, 16))
    response = acme_caller.submit(buf.getvalue(), "s.zip")
    assert (response.status_code, code_of(response)) == (422, "FRAME_SIZE_MISMATCH")


def test_operator_tokens_cannot_submit(make_caller: Callable[..., Caller]) -> None:
    response = make_caller(None).submit(png_bytes(), "a.png")
    assert (response.status_code, code_of(response)) == (403, "CUSTOMER_TOKEN_REQUIRED")


def test_a_customer_without_licence_cannot_submit(
    acme: Customer, make_caller: Callable[..., Caller]
) -> None:
    response = make_caller(acme).submit(png_bytes(), "a.png")
    assert (response.status_code, code_of(response)) == (409, "NO_ACTIVE_LICENCE")
    assert stored_files(acme.pk) == []


def test_no_token_is_401() -> None:
    from django.test import Client

    assert Client().get("/api/v1/jobs/").status_code == 401


# --- tenant isolation ------------------------------------------------------------------------


def test_another_customers_job_is_a_404_everywhere(
    acme_caller: Caller, globex_caller: Caller, acme_licence: Licence, make_caller: Any
) -> None:
    job_id = acme_caller.submit(png_bytes(), "a.png", baseline="jpeg").json()["id"]
    for method, path in [
        ("get", f"/api/v1/jobs/{job_id}/"),
        ("get", f"/api/v1/jobs/{job_id}/output/"),
        ("get", f"/api/v1/jobs/{job_id}/preview/"),
        ("post", f"/api/v1/jobs/{job_id}/cancel/"),
    ]:
        response = getattr(globex_caller, method)(path)
        assert (response.status_code, code_of(response)) == (404, "JOB_NOT_FOUND"), path
    assert globex_caller.get("/api/v1/jobs/").json()["results"] == []
    # Nor can Globex encode under Acme's licence.
    response = globex_caller.submit(png_bytes(), "a.png", licence_id=str(acme_licence.pk))
    assert (response.status_code, code_of(response)) == (404, "LICENCE_NOT_FOUND")
    # An operator sees every job.
    assert make_caller(None).get(f"/api/v1/jobs/{job_id}/").status_code == 200
    assert EncodeJob.objects.get(pk=job_id).state == "succeeded"


# --- cancel ----------------------------------------------------------------------------------


@pytest.fixture
def undispatched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Keeps submitted jobs queued: records the dispatches instead of running them."""
    sent: list[str] = []
    monkeypatch.setattr(services, "dispatch_on_commit", lambda job_id: sent.append(str(job_id)))
    return sent


def test_cancel_a_queued_job(acme_caller: Caller, undispatched: list[str]) -> None:
    body = acme_caller.submit(png_bytes(), "a.png").json()
    assert body["state"] == "queued" and undispatched == [body["id"]]
    response = acme_caller.post(f"/api/v1/jobs/{body['id']}/cancel/")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    again = acme_caller.post(f"/api/v1/jobs/{body['id']}/cancel/")
    assert (again.status_code, code_of(again)) == (409, "JOB_NOT_CANCELLABLE")
    output = acme_caller.get(f"/api/v1/jobs/{body['id']}/output/")
    assert (output.status_code, code_of(output)) == (409, "JOB_OUTPUT_UNAVAILABLE")
    # The message arrives after all: the task sees a finished job and does nothing.
    assert tasks.run_encode_job.apply(args=[body["id"]]).get() == "finished"
    job = EncodeJob.objects.get(pk=body["id"])
    assert (job.state, job.attempts, job.output_file.name) == ("cancelled", 0, "")
    assert not UsageRecord.objects.filter(job_id=job.pk).exists()


def test_output_of_a_queued_job_is_409(acme_caller: Caller, undispatched: list[str]) -> None:
    job_id = acme_caller.submit(png_bytes(), "a.png").json()["id"]
    response = acme_caller.get(f"/api/v1/jobs/{job_id}/preview/")
    assert (response.status_code, code_of(response)) == (409, "JOB_OUTPUT_UNAVAILABLE")


def test_a_cancel_wins_over_a_running_attempt(acme_caller: Caller, undispatched: list[str]) -> None:
    job_id = uuid.UUID(acme_caller.submit(png_bytes(), "a.png").json()["id"])
    attempt = uuid.uuid4()
    assert services.encode_job_claim(job_id=job_id, attempt_id=attempt).outcome == "claimed"
    assert acme_caller.post(f"/api/v1/jobs/{job_id}/cancel/").json()["state"] == "cancelled"
    assert not services.encode_job_progress(job_id=job_id, attempt_id=attempt, progress=50)
    assert not services.encode_job_complete(job_id=job_id, attempt_id=attempt, result=_result())
    assert not UsageRecord.objects.filter(job_id=job_id).exists()


# --- the licence gate ------------------------------------------------------------------------


def _now() -> dt.datetime:
    return timezone.now().replace(microsecond=0)


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("expired", "EXPIRED"),
        ("suspended", "REVOKED"),
        ("revoked", "REVOKED"),
        ("resolution-above-licence", "ENTITLEMENT_MISSING"),
        ("model-version-not-licensed", "ENTITLEMENT_MISSING"),
        ("encode-not-licensed", "ENTITLEMENT_MISSING"),
    ],
)
def test_gate_refusals_fail_the_job_before_any_model_loads(
    case: str,
    code: str,
    acme: Customer,
    make_policy: Callable[..., LicencePolicy],
    make_licence: Callable[..., Licence],
    make_caller: Callable[..., Caller],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from codec_engine import api

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the licence gate")

    monkeypatch.setattr(api, "load_model", no_model)
    entitlements: dict[str, Any] = {"features": ["encode", "decode"]}
    if case == "resolution-above-licence":
        entitlements["max_width"] = 32
    if case == "model-version-not-licensed":
        entitlements["model_versions"] = ["msh-v0"]
    if case == "encode-not-licensed":
        entitlements["features"] = ["decode"]
    licence_kw: dict[str, Any] = {}
    if case == "expired":
        licence_kw = {
            "not_before": _now() - dt.timedelta(days=30),
            "expires_at": _now() - dt.timedelta(days=1),
        }
    licence = make_licence(acme, make_policy(entitlements=entitlements), **licence_kw)
    if case == "suspended":
        licence_suspend(actor=TEST_ACTOR, licence_id=licence.pk, reason="invoice unpaid")
    if case == "revoked":
        licence_revoke(actor=TEST_ACTOR, licence_id=licence.pk, reason="contract ended")

    response = make_caller(acme).submit(png_bytes(64, 48), "a.png", licence_id=str(licence.pk))
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["state"] == "failed"
    assert body["failure"]["code"] == code
    assert licence.key not in body["failure"]["message"]
    if case == "suspended":
        assert "suspended: invoice unpaid" in body["failure"]["message"]
    job = EncodeJob.objects.get(pk=body["id"])
    assert (job.output_file.name, job.preview_file.name, job.output_bytes) == ("", "", None)
    assert job.metrics == {}
    assert not UsageRecord.objects.filter(job_id=job.pk).exists()
    assert [f.rsplit("/", 1)[-1] for f in stored_files(job.pk)] == ["input.png"]
    assert audit_actions(job.pk)[-1] == "encode_job.fail"


# --- failures --------------------------------------------------------------------------------


def test_corrupt_input_fails_with_a_readable_message(acme_caller: Caller) -> None:
    body = acme_caller.submit(corrupt_png(), "holiday.png", baseline="jpeg").json()
    assert body["state"] == "failed"
    assert body["failure"]["code"] == "BAD_INPUT"
    message = body["failure"]["message"]
    assert message.startswith("holiday.png: not a readable image"), message
    assert "/tmp" not in message and "encode-job-" not in message
    assert not UsageRecord.objects.filter(job_id=body["id"]).exists()


def test_transient_errors_are_retried_and_the_job_completes(
    acme_caller: Caller, undispatched: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tasks._encode
    calls: list[int] = []

    def flaky(*args: Any) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(*args)

    monkeypatch.setattr(tasks, "_encode", flaky)
    # As on a worker (retries are off when eager): the retry runs inline through apply().
    monkeypatch.setattr(tasks, "_can_retry", lambda task: task.request.retries < 4)
    job_id = acme_caller.submit(png_bytes(), "a.png", baseline="jpeg").json()["id"]
    tasks.run_encode_job.apply(args=[job_id], throw=False)
    job = EncodeJob.objects.get(pk=job_id)
    assert (job.state, job.attempts, len(calls)) == ("succeeded", 2, 2)
    assert audit_actions(job_id) == [
        "encode_job.submit",
        "encode_job.start",
        "encode_job.release",
        "encode_job.start",
        "encode_job.succeed",
    ]
    assert UsageRecord.objects.filter(job_id=job_id).count() == 1


def test_transient_errors_fail_at_once_when_eager(
    acme_caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any) -> str:
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(tasks, "_encode", down)
    body = acme_caller.submit(png_bytes(), "a.png").json()
    assert (body["state"], body["failure"]["code"]) == ("failed", "TRANSIENT_ERROR")


def test_unexpected_errors_fail_without_retry(
    acme_caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> str:
        raise ValueError("a bug")

    monkeypatch.setattr(tasks, "_encode", broken)
    body = acme_caller.submit(png_bytes(), "a.png").json()
    assert (body["state"], body["failure"]["code"], body["attempts"]) == (
        "failed",
        "INTERNAL_ERROR",
        1,
    )
    assert "a bug" not in body["failure"]["message"]


# --- claim, complete, sweep ------------------------------------------------------------------


def _result(output_bytes: int = 10) -> services.JobResult:
    return services.JobResult(
        output_name="x/output.nce",
        preview_name="x/preview.png",
        output_bytes=output_bytes,
        metrics={"output_bytes": output_bytes},
        usage=services.JobUsage(
            frames=1,
            pixels=64 * 48,
            duration_ms=0,
            baseline_bytes=20,
            baseline_method="jpeg.psnr.matched",
        ),
    )


def test_claim_takes_over_only_a_dead_attempt_and_bills_once(
    acme_caller: Caller, undispatched: list[str], settings: Any
) -> None:
    job_id = uuid.UUID(acme_caller.submit(png_bytes(), "a.png").json()["id"])
    first, second = uuid.uuid4(), uuid.uuid4()
    assert services.encode_job_claim(job_id=job_id, attempt_id=first).outcome == "claimed"
    busy = services.encode_job_claim(job_id=job_id, attempt_id=second)
    assert busy.outcome == "busy" and 0 < busy.retry_in_s <= settings.JOBS_LEASE_S
    # The first attempt's worker dies: its lease lapses and a redelivery takes over.
    EncodeJob.objects.filter(pk=job_id).update(
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert services.encode_job_claim(job_id=job_id, attempt_id=second).outcome == "claimed"
    assert not services.encode_job_progress(job_id=job_id, attempt_id=first, progress=10)
    assert not services.encode_job_complete(job_id=job_id, attempt_id=first, result=_result())
    assert services.encode_job_complete(job_id=job_id, attempt_id=second, result=_result())
    assert not services.encode_job_complete(job_id=job_id, attempt_id=second, result=_result())
    job = EncodeJob.objects.get(pk=job_id)
    assert (job.state, job.attempts) == ("succeeded", 2)
    assert UsageRecord.objects.filter(job_id=job_id).count() == 1
    assert services.encode_job_claim(job_id=job_id, attempt_id=uuid.uuid4()).outcome == "finished"


def test_usage_key_is_unique_per_job(acme: Customer) -> None:
    from metering.services import usage_record_for_job

    job_id = uuid.uuid4()
    kwargs: dict[str, Any] = {
        "actor": TEST_ACTOR,
        "job_id": job_id,
        "customer_id": acme.pk,
        "event_time": _now(),
        "frames": 1,
        "pixels": 100,
        "duration_ms": 0,
        "bytes_delivered": 10,
        "baseline_bytes": 20,
        "baseline_method": "jpeg.psnr.matched",
    }
    assert usage_record_for_job(**kwargs)[1] is True
    assert usage_record_for_job(**kwargs)[1] is False
    assert UsageRecord.objects.filter(job_id=job_id).count() == 1


def test_a_worker_that_keeps_dying_fails_the_job(
    acme_caller: Caller, undispatched: list[str], settings: Any
) -> None:
    job_id = uuid.UUID(acme_caller.submit(png_bytes(), "a.png").json()["id"])
    services.encode_job_claim(job_id=job_id, attempt_id=uuid.uuid4())
    EncodeJob.objects.filter(pk=job_id).update(
        attempts=settings.JOBS_MAX_ATTEMPTS,
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1),
    )
    assert services.encode_job_claim(job_id=job_id, attempt_id=uuid.uuid4()).outcome == "finished"
    job = EncodeJob.objects.get(pk=job_id)
    assert (job.state, job.failure_code) == ("failed", "WORKER_LOST")


def test_sweeper_settles_stuck_jobs(
    acme_caller: Caller, undispatched: list[str], settings: Any
) -> None:
    ids = [uuid.UUID(acme_caller.submit(png_bytes(), "a.png").json()["id"]) for _ in range(4)]
    timed_out, dead, stale_queue, healthy = ids
    now = timezone.now()
    for job_id in (timed_out, dead, healthy):
        services.encode_job_claim(job_id=job_id, attempt_id=uuid.uuid4())
    long_ago = now - dt.timedelta(seconds=settings.JOBS_TIME_LIMIT_S + settings.JOBS_LEASE_S + 5)
    EncodeJob.objects.filter(pk=timed_out).update(started_at=long_ago)
    EncodeJob.objects.filter(pk=dead).update(lease_expires_at=now - dt.timedelta(seconds=1))
    EncodeJob.objects.filter(pk=stale_queue).update(
        queued_at=now - dt.timedelta(seconds=settings.JOBS_QUEUE_TIMEOUT_S + 1)
    )
    undispatched.clear()
    report = services.encode_jobs_sweep()
    assert (report.timed_out, report.requeued, report.queue_expired) == (1, 1, 1)
    states = {j.pk: (j.state, j.failure_code) for j in EncodeJob.objects.all()}
    assert states[timed_out] == ("failed", "JOB_TIMEOUT")
    assert states[dead] == ("queued", "")
    assert states[stale_queue] == ("failed", "QUEUE_TIMEOUT")
    assert states[healthy] == ("running", "")
    assert undispatched == [str(dead)]
    assert tasks.sweep_stuck_jobs.apply().get() == {
        "timed_out": 0,
        "requeued": 0,
        "redispatched": 0,
        "worker_lost": 0,
        "queue_expired": 0,
    }


def test_sweeper_sends_again_a_job_whose_message_may_be_lost(
    acme_caller: Caller, undispatched: list[str], settings: Any
) -> None:
    job_id = uuid.UUID(acme_caller.submit(png_bytes(), "a.png").json()["id"])
    assert services.encode_jobs_sweep().redispatched == 0  # just sent: left alone
    # Sent longer ago than JOBS_REDISPATCH_AFTER_S and still queued: the message may be lost
    # (a broker crash without persistence, or a web process that died after the commit).
    old = timezone.now() - dt.timedelta(seconds=settings.JOBS_REDISPATCH_AFTER_S + 1)
    EncodeJob.objects.filter(pk=job_id).update(dispatched_at=old)
    assert services.encode_jobs_sweep().redispatched == 1  # eager: it runs now
    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == "succeeded"
    assert job.dispatched_at is not None and job.dispatched_at > old
    assert services.encode_jobs_sweep().redispatched == 0


def test_sweeper_backs_off_between_sends_of_a_long_waiting_job(
    acme_caller: Caller, undispatched: list[str], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = uuid.UUID(acme_caller.submit(png_bytes(), "a.png").json()["id"])
    undispatched.clear()
    monkeypatch.setattr(
        services, "encode_job_dispatch", lambda job_id: undispatched.append(str(job_id)) or True
    )
    after = settings.JOBS_REDISPATCH_AFTER_S
    now = timezone.now()
    queued = now - dt.timedelta(seconds=3 * after)
    # Last sent after waiting 2 x JOBS_REDISPATCH_AFTER_S, 1.5 x ago: too soon to send again.
    sent = now - dt.timedelta(seconds=1.5 * after)
    EncodeJob.objects.filter(pk=job_id).update(queued_at=queued, dispatched_at=sent)
    assert services.encode_jobs_sweep(now=now).redispatched == 0
    assert undispatched == []
    # Once the wait since that send exceeds the wait before it, it goes out again.
    later = now + dt.timedelta(seconds=0.6 * after)
    assert services.encode_jobs_sweep(now=later).redispatched == 1
    assert undispatched == [str(job_id)]
    assert EncodeJob.objects.get(pk=job_id).dispatched_at == later


# --- boundaries ------------------------------------------------------------------------------


def test_web_modules_never_import_torch_or_the_engine() -> None:
    code = (
        "import os, sys; sys.path.insert(0, 'platform');"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'controlplane.settings';"
        "import django; django.setup();"
        "import controlplane.urls, controlplane.celery, jobs.api, jobs.tasks, jobs.services;"
        "from django.test import Client; Client().get('/api/v1/jobs/');"
        "print(sorted(m for m in ('torch', 'codec_engine') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_choices_match_the_engine() -> None:
    from codec_engine.baselines import CODECS
    from codec_engine.zoo.registry import MODELS

    assert set(BASELINE_CODECS) == set(CODECS)
    assert set(MODEL_VERSIONS) <= set(MODELS)
    assert set(BASELINE_METRICS) == {"psnr", "psnr-y", "ms-ssim"}
    assert set(tasks.BASELINE_PARAMETER) == set(CODECS)
