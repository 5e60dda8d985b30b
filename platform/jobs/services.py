"""Writes of the jobs app: submit, cancel, and the worker's claim / progress / complete / fail.

Every state change is one conditional UPDATE (the WHERE clause names the state, and for a
running job the attempt that holds it), so two workers, a cancel and the stuck-job sweeper can
race freely: exactly one of them changes the row, the others see 0 rows and stand down. The
usage record is written in the transaction that marks the job succeeded, and the metering
table's unique key (derived from the job id) makes a second record impossible.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from licences.errors import LicenceNotFound
from licences.models import Licence

from core.audit import Actor, audit_record
from core.errors import DomainError
from jobs.errors import JobNotCancellable, JobNotFound, NoUsableLicence
from jobs.inputs import Limits, probe_upload
from jobs.models import (
    BASELINE_CODECS,
    BASELINE_METRICS,
    DEFAULT_BASELINE,
    DEFAULT_MODEL_VERSION,
    MODEL_VERSIONS,
    QUALITY_MAX,
    QUALITY_MIN,
    EncodeJob,
    job_file_path,
)

logger = logging.getLogger(__name__)

WORKER_ACTOR = Actor.system("jobs-worker")
SWEEPER_ACTOR = Actor.system("jobs-sweeper")
State = EncodeJob.State


def _audit(
    actor: Actor, job: EncodeJob | uuid.UUID, customer_id: Any, action: str, **changes: Any
) -> None:
    audit_record(
        actor=actor,
        action=action,
        object_type="encode_job",
        object_id=job.pk if isinstance(job, EncodeJob) else job,
        customer_id=customer_id,
        changes=changes,
    )


# --- submit and cancel (the API) -------------------------------------------------------------


def _licence_for(customer_id: uuid.UUID, licence_id: uuid.UUID | None) -> Licence:
    if licence_id is not None:
        licence = Licence.objects.filter(pk=licence_id, customer_id=customer_id).first()
        if licence is None:
            raise LicenceNotFound("No such licence.")
        # Its state is not judged here: the worker's licence gate is the one authority, and a
        # refused licence fails the job with the licensing code.
        return licence
    now = timezone.now()
    licence = (
        Licence.objects.filter(
            customer_id=customer_id,
            state=Licence.State.ACTIVE,
            not_before__lte=now,
            expires_at__gt=now,
        )
        .order_by("-issued_at")
        .first()
    )
    if licence is None:
        raise NoUsableLicence("The customer has no active licence to encode with.")
    return licence


def encode_job_submit(
    *,
    actor: Actor,
    customer_id: uuid.UUID,
    upload: UploadedFile[Any],
    kind: str | None = None,
    quality: int = 4,
    model_version: str = DEFAULT_MODEL_VERSION,
    baseline: str = DEFAULT_BASELINE,
    baseline_metric: str = "psnr",
    licence_id: uuid.UUID | None = None,
    fps: float | None = None,
) -> EncodeJob:
    """Check the upload against the limits, store it, create a queued job and dispatch it.

    Side effects: one file in storage, the job row and an audit row (one transaction), and
    after commit one message on the "encode" queue (`dispatch_on_commit`: a worker never sees
    an uncommitted job; a broker outage leaves the job queued for the sweeper to send).
    Refusals (4xx codes) leave nothing behind. Not idempotent: every call is a new job.
    """
    if not QUALITY_MIN <= quality <= QUALITY_MAX:
        raise DomainError(f"quality must be {QUALITY_MIN}..{QUALITY_MAX}.", code="VALIDATION_ERROR")
    if model_version not in MODEL_VERSIONS:
        raise DomainError(f"Unknown model version {model_version!r}.", code="VALIDATION_ERROR")
    if baseline not in BASELINE_CODECS or baseline_metric not in BASELINE_METRICS:
        raise DomainError("Unknown baseline codec or metric.", code="VALIDATION_ERROR")
    name = upload.name or "upload"
    probed = probe_upload(
        upload, name=name, size=upload.size or 0, kind=kind, fps=fps, limits=Limits.from_settings()
    )
    licence = _licence_for(customer_id, licence_id)
    job = EncodeJob(
        customer_id=customer_id,
        licence=licence,
        created_by=actor.label[:200],
        kind=probed.kind,
        model_version=model_version,
        quality=quality,
        baseline=baseline,
        baseline_metric=baseline_metric,
        input_name=name[-255:],
        input_bytes=upload.size or 0,
        width=probed.width,
        height=probed.height,
        frame_count=probed.frame_count,
        fps=probed.fps,
    )
    stored = default_storage.save(job_file_path(job, f"input{probed.suffix}"), upload)
    try:
        with transaction.atomic():
            job.input_file.name = stored
            job.queued_at = job.dispatched_at = timezone.now()
            job.save(force_insert=True)
            _audit(
                actor,
                job,
                customer_id,
                "encode_job.submit",
                kind=job.kind,
                input_bytes=job.input_bytes,
                width=job.width,
                height=job.height,
                frames=job.frame_count,
                quality=quality,
                baseline=f"{baseline}/{baseline_metric}",
                licence=str(licence.pk),
            )
            dispatch_on_commit(job.pk)
    except BaseException:
        default_storage.delete(stored)
        raise
    return job


def encode_job_cancel(
    *, actor: Actor, job_id: uuid.UUID, scope_customer_id: uuid.UUID | None
) -> EncodeJob:
    """queued/running → cancelled. A running attempt notices at its next progress report and
    stops; its results are then refused (no output, no usage). Writes an audit row. A job that
    has already finished is a 409 JOB_NOT_CANCELLABLE; another customer's job is a 404."""
    with transaction.atomic():
        qs = EncodeJob.objects.select_for_update().filter(pk=job_id)
        if scope_customer_id is not None:
            qs = qs.filter(customer_id=scope_customer_id)
        job = qs.first()
        if job is None:
            raise JobNotFound("No such job.")
        if job.is_terminal:
            raise JobNotCancellable(f"The job has already {job.state}.")
        previous = job.state
        job.state = State.CANCELLED
        job.finished_at = timezone.now()
        job.lease_expires_at = None
        job.save(update_fields=["state", "finished_at", "lease_expires_at"])
        _audit(actor, job, job.customer_id, "encode_job.cancel", previous_state=previous)
    return job


# --- the worker's side -----------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What a task may do with its job: run it, wait for a live attempt, or nothing."""

    outcome: str  # "claimed", "busy", "finished" or "missing"
    job: EncodeJob | None = None
    retry_in_s: float = 0.0


def encode_job_claim(*, job_id: uuid.UUID, attempt_id: uuid.UUID) -> Claim:
    """Take the job for `attempt_id`: queued → running, or running → running when the attempt
    holding it stopped renewing its lease (its worker died; the broker redelivered).

    One conditional UPDATE decides, so of two deliveries of the same message at most one runs
    the job at a time. A running job whose dead attempts reach JOBS_MAX_ATTEMPTS is failed
    (WORKER_LOST) rather than retried forever. Writes an audit row when claimed.
    """
    now = timezone.now()
    lease = dt.timedelta(seconds=settings.JOBS_LEASE_S)
    max_attempts = settings.JOBS_MAX_ATTEMPTS
    claimable = Q(state=State.QUEUED) | Q(
        state=State.RUNNING, lease_expires_at__lt=now, attempts__lt=max_attempts
    )
    with transaction.atomic():
        updated = EncodeJob.objects.filter(claimable, pk=job_id).update(
            state=State.RUNNING,
            attempt_id=attempt_id,
            attempts=F("attempts") + 1,
            started_at=now,
            lease_expires_at=now + lease,
            progress=0,
            frames_done=0,
        )
        if updated:
            job = EncodeJob.objects.select_related("licence").get(pk=job_id)
            _audit(
                WORKER_ACTOR,
                job,
                job.customer_id,
                "encode_job.start",
                attempt=job.attempts,
                attempt_id=str(attempt_id),
            )
            return Claim("claimed", job)
    seen = EncodeJob.objects.filter(pk=job_id).first()
    if seen is None:
        return Claim("missing")
    if seen.is_terminal:
        return Claim("finished", seen)
    if seen.state == State.RUNNING and seen.lease_expires_at is not None:
        if seen.lease_expires_at < now and seen.attempts >= max_attempts:
            _fail_worker_lost(seen, now)
            return Claim("finished", seen)
        return Claim("busy", seen, max(0.0, (seen.lease_expires_at - now).total_seconds()))
    return Claim("busy", seen, float(settings.JOBS_LEASE_S))


def _fail_worker_lost(job: EncodeJob, now: dt.datetime) -> bool:
    message = (
        f"The worker running this job stopped {job.attempts} times (killed or lost); "
        "the job is not retried again."
    )
    with transaction.atomic():
        done = EncodeJob.objects.filter(
            pk=job.pk, state=State.RUNNING, attempt_id=job.attempt_id
        ).update(
            state=State.FAILED,
            failure_code="WORKER_LOST",
            failure_message=message,
            finished_at=now,
            lease_expires_at=None,
        )
        if done:
            _audit(SWEEPER_ACTOR, job, job.customer_id, "encode_job.fail", code="WORKER_LOST")
    return bool(done)


def encode_job_progress(
    *,
    job_id: uuid.UUID,
    attempt_id: uuid.UUID,
    progress: int | None = None,
    frames_done: int | None = None,
) -> bool:
    """Record progress and renew the attempt's lease. Returns False when the attempt no longer
    holds the job (cancelled, or taken over after its lease lapsed): the caller must stop.
    Idempotent; no audit row (progress is not a state change)."""
    values: dict[str, Any] = {
        "lease_expires_at": timezone.now() + dt.timedelta(seconds=settings.JOBS_LEASE_S)
    }
    if progress is not None:
        values["progress"] = max(0, min(100, progress))
    if frames_done is not None:
        values["frames_done"] = frames_done
    return bool(
        EncodeJob.objects.filter(pk=job_id, state=State.RUNNING, attempt_id=attempt_id).update(
            **values
        )
    )


def encode_job_release(*, job_id: uuid.UUID, attempt_id: uuid.UUID, reason: str) -> bool:
    """running → queued, so that a retry (after a transient error) can claim it at once.
    Conditional on the attempt still holding the job. Writes an audit row."""
    with transaction.atomic():
        done = EncodeJob.objects.filter(
            pk=job_id, state=State.RUNNING, attempt_id=attempt_id
        ).update(state=State.QUEUED, attempt_id=None, lease_expires_at=None)
        if done:
            customer_id = EncodeJob.objects.values_list("customer_id", flat=True).get(pk=job_id)
            _audit(WORKER_ACTOR, job_id, customer_id, "encode_job.release", reason=reason[:200])
    return bool(done)


@dataclass(frozen=True)
class JobUsage:
    """The figures billed for one job (see metering.services.usage_record_for_job)."""

    frames: int
    pixels: int
    duration_ms: int
    baseline_bytes: int
    baseline_method: str
    psnr_db: float | None = None
    ms_ssim: float | None = None


@dataclass(frozen=True)
class JobResult:
    output_name: str
    preview_name: str
    output_bytes: int
    usage: JobUsage
    metrics: dict[str, Any] = field(default_factory=dict)


def encode_job_complete(
    *, job_id: uuid.UUID, attempt_id: uuid.UUID, result: JobResult, actor: Actor = WORKER_ACTOR
) -> bool:
    """running → succeeded with its output, metrics and ONE usage record, in one transaction.

    Returns False (and changes nothing) when the attempt no longer holds the job: it was
    cancelled, or a newer attempt took it over; the caller then deletes its files. The usage
    record's key derives from the job id and is unique in the database, so even a bug that
    got here twice could not bill twice. Writes an audit row.
    """
    from metering.services import usage_record_for_job

    now = timezone.now()
    with transaction.atomic():
        done = EncodeJob.objects.filter(
            pk=job_id, state=State.RUNNING, attempt_id=attempt_id
        ).update(
            state=State.SUCCEEDED,
            progress=100,
            output_file=result.output_name,
            preview_file=result.preview_name,
            output_bytes=result.output_bytes,
            metrics=result.metrics,
            finished_at=now,
            lease_expires_at=None,
        )
        if not done:
            return False
        customer_id = EncodeJob.objects.values_list("customer_id", flat=True).get(pk=job_id)
        usage = result.usage
        usage_record_for_job(
            actor=actor,
            job_id=job_id,
            customer_id=customer_id,
            event_time=now,
            frames=usage.frames,
            pixels=usage.pixels,
            duration_ms=usage.duration_ms,
            bytes_delivered=result.output_bytes,
            baseline_bytes=usage.baseline_bytes,
            baseline_method=usage.baseline_method,
            psnr_db=usage.psnr_db,
            ms_ssim=usage.ms_ssim,
        )
        _audit(
            actor,
            job_id,
            customer_id,
            "encode_job.succeed",
            output_bytes=result.output_bytes,
            baseline_bytes=usage.baseline_bytes,
            bytes_saved=usage.baseline_bytes - result.output_bytes,
        )
    return True


def encode_job_fail(
    *,
    job_id: uuid.UUID,
    attempt_id: uuid.UUID,
    code: str,
    message: str,
    actor: Actor = WORKER_ACTOR,
) -> bool:
    """running → failed with a code and a readable message; no output, no usage. Returns
    False when the attempt no longer holds the job (then nothing changes). Audit row."""
    with transaction.atomic():
        done = EncodeJob.objects.filter(
            pk=job_id, state=State.RUNNING, attempt_id=attempt_id
        ).update(
            state=State.FAILED,
            failure_code=code[:64],
            failure_message=message[:1000],
            finished_at=timezone.now(),
            lease_expires_at=None,
        )
        if done:
            customer_id = EncodeJob.objects.values_list("customer_id", flat=True).get(pk=job_id)
            _audit(actor, job_id, customer_id, "encode_job.fail", code=code[:64])
    return bool(done)


@dataclass
class SweepReport:
    timed_out: int = 0
    requeued: int = 0
    worker_lost: int = 0
    queue_expired: int = 0
    redispatched: int = 0


def dispatch_on_commit(job_id: uuid.UUID) -> None:
    """Hand the job to the broker once the current transaction commits (a worker never sees
    an uncommitted job)."""
    transaction.on_commit(lambda: encode_job_dispatch(job_id))


def encode_job_dispatch(job_id: uuid.UUID) -> bool:
    """Publish one message for the job; False when the broker stayed unreachable through the
    publish retries. The job row is the source of truth (an outbox): the submission stays
    accepted and queued, with `dispatched_at` cleared, and the sweeper sends it again."""
    from kombu.exceptions import OperationalError as BrokerUnreachable

    from jobs.tasks import run_encode_job

    try:
        run_encode_job.delay(str(job_id))
    except (BrokerUnreachable, OSError) as exc:
        EncodeJob.objects.filter(pk=job_id, state=State.QUEUED).update(dispatched_at=None)
        logger.warning(
            "encode job %s stays queued: the broker is unreachable (%s); the sweeper will "
            "dispatch it",
            job_id,
            type(exc).__name__,
        )
        return False
    return True


def encode_jobs_sweep(*, now: dt.datetime | None = None) -> SweepReport:
    """Settle jobs nobody is looking after (the periodic `jobs.sweep_stuck_jobs`).

    - running past its hard time limit (plus one lease) → failed JOB_TIMEOUT;
    - running whose lease lapsed (its worker died) → queued again and re-dispatched, or failed
      WORKER_LOST after JOBS_MAX_ATTEMPTS attempts;
    - queued without a message that got through to the broker, or last sent more than
      JOBS_REDISPATCH_AFTER_S ago (and longer ago than it had waited when sent: a doubling
      back-off) → sent again (the job row is the outbox);
    - queued for longer than JOBS_QUEUE_TIMEOUT_S (no worker consumes "encode") → failed
      QUEUE_TIMEOUT.
    Each change is conditional on the state seen, so it is safe next to live workers and
    other sweepers; a re-dispatched job that is also redelivered by the broker runs once
    (the claim). Writes one audit row per job changed.
    """
    now = now or timezone.now()
    report = SweepReport()
    hard_limit = dt.timedelta(seconds=settings.JOBS_TIME_LIMIT_S + settings.JOBS_LEASE_S)
    for job in EncodeJob.objects.filter(state=State.RUNNING, started_at__lt=now - hard_limit):
        message = (
            f"The job ran for more than its time limit of {settings.JOBS_TIME_LIMIT_S} s and "
            "was stopped; split the input into shorter jobs."
        )
        with transaction.atomic():
            if EncodeJob.objects.filter(
                pk=job.pk, state=State.RUNNING, attempt_id=job.attempt_id
            ).update(
                state=State.FAILED,
                failure_code="JOB_TIMEOUT",
                failure_message=message,
                finished_at=now,
                lease_expires_at=None,
            ):
                _audit(SWEEPER_ACTOR, job, job.customer_id, "encode_job.fail", code="JOB_TIMEOUT")
                report.timed_out += 1
    for job in EncodeJob.objects.filter(state=State.RUNNING, lease_expires_at__lt=now):
        if job.attempts >= settings.JOBS_MAX_ATTEMPTS:
            report.worker_lost += _fail_worker_lost(job, now)
            continue
        with transaction.atomic():
            if EncodeJob.objects.filter(
                pk=job.pk, state=State.RUNNING, attempt_id=job.attempt_id
            ).update(state=State.QUEUED, attempt_id=None, lease_expires_at=None, dispatched_at=now):
                _audit(
                    SWEEPER_ACTOR,
                    job,
                    job.customer_id,
                    "encode_job.requeue",
                    reason="lease expired",
                )
                dispatch_on_commit(job.pk)
                report.requeued += 1
    queue_limit = dt.timedelta(seconds=settings.JOBS_QUEUE_TIMEOUT_S)
    for job in EncodeJob.objects.filter(state=State.QUEUED, queued_at__lt=now - queue_limit):
        with transaction.atomic():
            if EncodeJob.objects.filter(pk=job.pk, state=State.QUEUED).update(
                state=State.FAILED,
                failure_code="QUEUE_TIMEOUT",
                failure_message=(
                    f"No worker started the job within {settings.JOBS_QUEUE_TIMEOUT_S} s."
                ),
                finished_at=now,
            ):
                _audit(SWEEPER_ACTOR, job, job.customer_id, "encode_job.fail", code="QUEUE_TIMEOUT")
                report.queue_expired += 1
    resend_after = dt.timedelta(seconds=settings.JOBS_REDISPATCH_AFTER_S)
    for job in EncodeJob.objects.filter(state=State.QUEUED).filter(
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now - resend_after)
    ):
        # Back off: wait at least as long as the job had waited when last sent (re-sends at
        # 10, 20, 40, 80 ... min of queueing), so a queue that is merely long behind busy
        # workers does not fill the broker with copies.
        last, queued = job.dispatched_at, job.queued_at
        if (
            last is not None
            and queued is not None
            and now - last <= max(resend_after, last - queued)
        ):
            continue
        # Claim the re-send (another sweeper may be here too), then publish outside any
        # transaction; a failed publish clears dispatched_at again for the next sweep.
        if EncodeJob.objects.filter(
            pk=job.pk, state=State.QUEUED, dispatched_at=job.dispatched_at
        ).update(dispatched_at=now) and encode_job_dispatch(job.pk):
            _audit(
                SWEEPER_ACTOR,
                job,
                job.customer_id,
                "encode_job.dispatch",
                reason="never dispatched" if job.dispatched_at is None else "message may be lost",
            )
            report.redispatched += 1
    if (
        report.timed_out
        or report.requeued
        or report.worker_lost
        or report.queue_expired
        or report.redispatched
    ):
        logger.warning("encode job sweep: %s", report)
    return report
