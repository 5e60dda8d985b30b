"""Celery tasks of the jobs app: the encode worker and the stuck-job sweeper.

This is the only module of the control plane that imports `codec_engine`, and only inside
the task body: the web process imports this module (to dispatch) but never loads torch.

Delivery is at least once (acks_late, reject_on_worker_lost, a broker visibility timeout);
the job row makes it effectively once: the claim is a conditional UPDATE, results are
accepted only from the attempt holding the job, and the usage record's key is unique.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, connection

from core.errors import DomainError
from jobs import services
from jobs.inputs import frame_members
from jobs.models import EncodeJob

if TYPE_CHECKING:
    from codec_engine.gate import Credentials

logger = logging.getLogger(__name__)

# Errors worth a retry: the database or a storage backend briefly unreachable. Everything
# else (bad input, licence refused, a bug) fails the job at once: retrying cannot fix it.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
)
# A redelivered message whose job is still held by a live attempt waits for that attempt's
# lease; after this many waits the sweeper is left to settle the job.
BUSY_RETRIES = 20
# The baseline codecs' quality parameter, for the metrics ("exactly how they were obtained").
BASELINE_PARAMETER = {
    "jpeg": "quality",
    "webp": "quality",
    "avif": "quality",
    "x264": "qp",
    "x264-ld": "qp",
    "x265": "qp",
    "x265-ld": "qp",
    "x265-444": "qp",
    "svtav1": "crf",
    "vvc": "qp",
}


class JobAbandoned(Exception):
    """This attempt no longer holds the job (cancelled, or taken over): stop, keep nothing."""


def _task(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`shared_task` with a typed signature (celery ships no type hints)."""
    return cast("Callable[[Callable[..., Any]], Any]", shared_task(**options))


def _can_retry(task: Task) -> bool:
    """Run eagerly (the embedded setup), a retry would run inline and propagate into the web
    request, so there a transient error fails the job at once."""
    return not task.request.is_eager and task.request.retries < (task.max_retries or 0)


def _backoff_s(retries: int) -> int:
    return int(min(300, 5 * 2**retries))


@_task(
    bind=True,
    name="jobs.run_encode_job",
    queue="encode",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=settings.JOBS_SOFT_TIME_LIMIT_S,
    time_limit=settings.JOBS_TIME_LIMIT_S,
    max_retries=settings.JOBS_MAX_RETRIES,
)
def run_encode_job(self: Task, job_id: str) -> str:
    """Encode one job: claim it, run the licence gate, encode, measure the baseline, store the
    output and preview, and complete it with one usage record. Returns the outcome.

    Side effects: job state changes and audit rows (jobs.services), two files in storage, one
    usage record (metering) on success. Idempotent per job: a repeated or redelivered message
    for a finished job does nothing; one for a job held by a live attempt waits for it; one
    for a job whose attempt died takes it over. Transient errors release the job and retry
    with exponential backoff; other errors fail the job with a code and a readable message
    and leave the worker healthy.
    """
    attempt_id = uuid.uuid4()
    claim = services.encode_job_claim(job_id=uuid.UUID(job_id), attempt_id=attempt_id)
    if claim.outcome == "busy":
        if self.request.is_eager or self.request.retries >= BUSY_RETRIES:
            return "busy"
        raise self.retry(countdown=claim.retry_in_s + 1, max_retries=BUSY_RETRIES)
    if claim.outcome != "claimed" or claim.job is None:
        return claim.outcome
    job = claim.job
    keeper = None if self.request.is_eager else LeaseKeeper(job.pk, attempt_id)
    try:
        return _encode(job, attempt_id, keeper)
    except JobAbandoned:
        logger.info("encode job %s: attempt %s stood down", job.pk, attempt_id)
        return "abandoned"
    except SoftTimeLimitExceeded:
        services.encode_job_fail(
            job_id=job.pk,
            attempt_id=attempt_id,
            code="JOB_TIMEOUT",
            message=(
                f"The job ran for more than its time limit of {settings.JOBS_SOFT_TIME_LIMIT_S} s "
                "and was stopped; split the input into shorter jobs."
            ),
        )
        return "timeout"
    except TRANSIENT_ERRORS as exc:
        if not _can_retry(self):
            _fail_quietly(job, attempt_id, "TRANSIENT_ERROR", f"A service was unavailable: {exc}")
            return "failed"
        logger.warning("encode job %s: transient error, retrying: %s", job.pk, exc)
        # If even the release fails, the lease lapses and the retry's claim takes the job over.
        with contextlib.suppress(*TRANSIENT_ERRORS):
            services.encode_job_release(job_id=job.pk, attempt_id=attempt_id, reason=str(exc))
        raise self.retry(exc=exc, countdown=_backoff_s(self.request.retries)) from None
    except Exception as exc:
        from codec_engine.errors import EngineError

        if isinstance(exc, EngineError):
            services.encode_job_fail(
                job_id=job.pk, attempt_id=attempt_id, code=exc.code, message=_readable(exc, job)
            )
            return "failed"
        logger.exception("encode job %s: unexpected error in attempt %s", job.pk, attempt_id)
        _fail_quietly(
            job,
            attempt_id,
            "INTERNAL_ERROR",
            f"An internal error stopped the job (reference {attempt_id}); we have been told.",
        )
        return "failed"
    finally:
        if keeper is not None:
            keeper.stop()


def _fail_quietly(job: EncodeJob, attempt_id: uuid.UUID, code: str, message: str) -> None:
    try:
        services.encode_job_fail(job_id=job.pk, attempt_id=attempt_id, code=code, message=message)
    except TRANSIENT_ERRORS:
        logger.warning("encode job %s: could not record failure %s", job.pk, code)


_TEMP_PATH = re.compile(r"\S*/encode-job-[^/\s]+/(?:frames/)?")


def _readable(exc: Exception, job: EncodeJob) -> str:
    """The engine's message without our temporary paths, naming the customer's file."""
    message = _TEMP_PATH.sub("", str(exc))
    suffix = Path(job.input_file.name or "").suffix.lower()
    return message.replace(f"input{suffix}", job.input_name)


class LeaseKeeper:
    """Renews the attempt's lease from a thread while the task runs (a single frame or the
    baseline search can take longer than a lease). A killed worker stops renewing: that is
    how a redelivered message knows the attempt is dead."""

    def __init__(self, job_id: uuid.UUID, attempt_id: uuid.UUID) -> None:
        self.job_id = job_id
        self.attempt_id = attempt_id
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = max(0.5, settings.JOBS_LEASE_S / 4)
        try:
            while not self._stop.wait(interval):
                try:
                    if not services.encode_job_progress(
                        job_id=self.job_id, attempt_id=self.attempt_id
                    ):
                        self.lost.set()
                        return
                except TRANSIENT_ERRORS as exc:
                    logger.warning("encode job %s: lease renewal failed: %s", self.job_id, exc)
        finally:
            connection.close()  # this thread's own connection

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class _Reporter:
    """Writes progress at most a few times a second; raises JobAbandoned once the attempt has
    lost the job. Encoding is 0-80%, the baseline search 80-95%, storing 95-100%."""

    def __init__(self, job: EncodeJob, attempt_id: uuid.UUID, keeper: LeaseKeeper | None) -> None:
        self.job = job
        self.attempt_id = attempt_id
        self.keeper = keeper
        self.frames_done = 0
        self._last = 0.0

    def report(self, progress: int, *, force: bool = False) -> None:
        if self.keeper is not None and self.keeper.lost.is_set():
            raise JobAbandoned
        now = time.monotonic()
        if not force and now - self._last < 0.25:
            return
        self._last = now
        if not services.encode_job_progress(
            job_id=self.job.pk,
            attempt_id=self.attempt_id,
            progress=progress,
            frames_done=self.frames_done,
        ):
            raise JobAbandoned

    def frame(self, n: int) -> None:
        self.frames_done += n
        total = max(self.job.frame_count, self.frames_done)
        self.report(int(80 * self.frames_done / total))


def _write_secret(path: Path, text: str) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return str(path)


def _credentials(job: EncodeJob, workdir: Path) -> Credentials:
    """The customer's licence key, our keyring and the newest revocation list, handed to the
    gate as files (private to this attempt) so no token ever appears in a message or log."""
    from licences.keys import keyring_snapshot
    from licences.selectors import revocation_list_latest

    from codec_engine.gate import Credentials

    secrets_dir = workdir / "licence"
    secrets_dir.mkdir(mode=0o700)
    revocations = revocation_list_latest()
    return Credentials(
        licence_key=_write_secret(secrets_dir / "licence.key", job.licence.key),
        # A fresh read (one query per job), not the per-process cache: a licence signed by a
        # key rotated in seconds ago must not fail with UNKNOWN_KEY.
        keyring=_write_secret(
            secrets_dir / "keyring.json", keyring_snapshot(max_age_s=0).keyring.to_json()
        ),
        revocation_list=(
            _write_secret(secrets_dir / "revocations", revocations.token) if revocations else None
        ),
    )


def _materialize(job: EncodeJob, workdir: Path, max_frame_bytes: int) -> Path:
    """Copy the input out of storage; unpack a frame sequence into numbered files."""
    from codec_engine.errors import InputError

    suffix = Path(job.input_file.name or "").suffix.lower()
    local = workdir / f"input{suffix}"
    with default_storage.open(job.input_file.name or "", "rb") as src, local.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    if job.kind != EncodeJob.Kind.FRAMES:
        return local
    frames_dir = workdir / "frames"
    frames_dir.mkdir()
    try:
        with zipfile.ZipFile(local) as zf:
            for i, member in enumerate(frame_members(zf)):
                if member.file_size > max_frame_bytes:
                    raise InputError(f"{member.filename}: frame file too large")
                # Our own names, never the archive's (no path traversal, fixed order).
                target = frames_dir / f"{i:06d}{Path(member.filename).suffix.lower()}"
                target.write_bytes(zf.read(member))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"the frame archive is damaged ({exc})") from None
    except DomainError as exc:
        raise InputError(exc.message) from None
    return frames_dir


def _encode(job: EncodeJob, attempt_id: uuid.UUID, keeper: LeaseKeeper | None) -> str:
    import numpy as np
    from PIL import Image

    from codec_engine import gate
    from codec_engine.errors import DecodeMismatchError, InputError, LicenceError

    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    reporter = _Reporter(job, attempt_id, keeper)
    with tempfile.TemporaryDirectory(prefix="encode-job-") as tmp:
        workdir = Path(tmp)
        # 1. The licence gate, before anything is read or any model loaded.
        try:
            grant = gate.check(
                gate.Job("encode", job.width, job.height, job.fps, job.model_version),
                _credentials(job, workdir),
            )
        except LicenceError as exc:
            services.encode_job_fail(
                job_id=job.pk, attempt_id=attempt_id, code=exc.code, message=_refusal(job, exc)
            )
            return "refused"
        if grant.licence_id != str(job.licence_id) or grant.customer_id != str(job.customer_id):
            services.encode_job_fail(
                job_id=job.pk,
                attempt_id=attempt_id,
                code="LICENCE_MISMATCH",
                message="The licence key does not belong to this job's licence and customer.",
            )
            return "refused"
        lap("licence_gate")

        # 2. Read and encode.
        from codec_engine import api
        from codec_engine.media import MediaSource

        limits_frames = settings.JOBS_MAX_FRAMES
        source = MediaSource(
            _materialize(job, workdir, max_frame_bytes=settings.JOBS_MAX_INPUT_BYTES)
        )
        info = source.info
        if (info.width, info.height) != (job.width, job.height):
            raise InputError(
                f"{job.input_name}: frames are {info.width}x{info.height}, "
                f"the upload said {job.width}x{job.height}"
            )
        fps = (
            info.fps
            if job.kind == EncodeJob.Kind.VIDEO
            else Fraction(job.fps).limit_denominator(1001)
        )
        lap("read_input")
        model = api.load_model(job.model_version, job.quality)
        lap("load_model")
        frames: list[Any] = []

        def frame_iter() -> Any:
            for frame in source.frames():
                if len(frames) >= limits_frames:
                    raise InputError(f"more than {limits_frames} frames; split the input")
                frames.append(frame)
                yield frame

        reporter.report(1, force=True)
        result = model.encode(frame_iter(), fps=fps, progress=reporter.frame)
        lap("encode")

        # 3. The matched-quality baseline.
        reporter.report(80, force=True)
        comparison = api.compare(
            frames, result, baseline=job.baseline, metric=job.baseline_metric, fps=fps
        )
        lap("baseline")

        # 4. Decode the first frame from the bitstream itself: the preview, and proof that
        # what we bill for decodes to what we measured.
        reporter.report(95, force=True)
        _, first = next(api.decode_stream(io.BytesIO(result.data), len(result.data)))
        if not np.array_equal(first, result.reconstruction[0]):
            raise DecodeMismatchError("the bitstream does not decode to the encoder's frame")
        preview = io.BytesIO()
        Image.fromarray(first).save(preview, format="PNG")
        lap("decode_preview")
        del frames[:]

    # 5. Store, then complete (the results count only if this attempt still holds the job).
    reporter.report(97, force=True)
    folder = f"jobs/{job.customer_id}/{job.pk}/{attempt_id}"
    output_name = default_storage.save(f"{folder}/output.nce", ContentFile(result.data))
    preview_name = default_storage.save(f"{folder}/preview.png", ContentFile(preview.getvalue()))
    lap("store")
    ours, theirs = comparison.ours_quality, comparison.baseline_quality
    pixels = result.header.width * result.header.height * result.header.frame_count
    duration_ms = round(1000 * result.header.frame_count / fps) if fps else 0
    metrics = {
        "input_bytes": job.input_bytes,
        "output_bytes": result.num_bytes,
        "baseline_bytes": comparison.baseline_bytes,
        "bytes_saved": comparison.saved_bytes,
        "saving": round(comparison.saving, 6),
        "frames": result.header.frame_count,
        "width": result.header.width,
        "height": result.header.height,
        "pixels": pixels,
        "duration_ms": duration_ms,
        "bpp": round(result.bpp, 6),
        "model": {
            "version": job.model_version,
            "quality": job.quality,
            "weights_sha256": result.header.weights_sha256.hex(),
        },
        "quality": {
            "ours": {"psnr": ours.psnr, "psnr_y": ours.psnr_y, "ms_ssim": ours.ms_ssim},
            "baseline": {"psnr": theirs.psnr, "psnr_y": theirs.psnr_y, "ms_ssim": theirs.ms_ssim},
        },
        "baseline": {
            "codec": comparison.baseline,
            "description": _baseline_description(comparison.baseline),
            "parameter": {
                "name": BASELINE_PARAMETER.get(comparison.baseline, "param"),
                "value": comparison.baseline_param,
            },
            "matched_metric": job.baseline_metric,
            "matched": comparison.matched,
            "rule": (
                f"the cheapest {comparison.baseline} setting whose {job.baseline_metric} is at "
                "least ours (binary search over its parameter); bytes are the whole elementary "
                "stream, no container"
            ),
        },
        "timings_s": {
            "queue_to_start": round((job.started_at - job.queued_at).total_seconds(), 4)
            if job.started_at
            else None,
            **timings,
        },
        "attempt": job.attempts,
    }
    from jobs.services import JobResult, JobUsage

    completed = services.encode_job_complete(
        job_id=job.pk,
        attempt_id=attempt_id,
        result=JobResult(
            output_name=output_name,
            preview_name=preview_name,
            output_bytes=result.num_bytes,
            metrics=metrics,
            usage=JobUsage(
                frames=result.header.frame_count,
                pixels=pixels,
                duration_ms=duration_ms,
                baseline_bytes=comparison.baseline_bytes,
                baseline_method=f"{comparison.baseline}.{job.baseline_metric}.matched",
                psnr_db=ours.psnr,
                ms_ssim=ours.ms_ssim,
            ),
        ),
    )
    if not completed:
        default_storage.delete(output_name)
        default_storage.delete(preview_name)
        raise JobAbandoned
    return "succeeded"


def _baseline_description(name: str) -> str:
    from codec_engine.baselines import CODECS

    codec = CODECS.get(name)
    return codec.description if codec is not None else name


def _refusal(job: EncodeJob, exc: Exception) -> str:
    """The gate's reason, plus the licence's state on our side when that explains it."""
    message = str(exc)
    state = job.licence.effective_state
    if state != "active":
        reason = f": {job.licence.state_reason}" if job.licence.state_reason else ""
        message += f" (licence {job.licence_id} is {state}{reason})"
    return message


@_task(
    name="jobs.sweep_stuck_jobs",
    ignore_result=True,
    soft_time_limit=50,
    time_limit=60,
)
def sweep_stuck_jobs() -> dict[str, int]:
    """Fail jobs stuck past their time limit, requeue those whose worker died, expire jobs no
    worker took. Idempotent; scheduled by CELERY_BEAT_SCHEDULE (see services.encode_jobs_sweep).
    """
    report = services.encode_jobs_sweep()
    return {
        "timed_out": report.timed_out,
        "requeued": report.requeued,
        "redispatched": report.redispatched,
        "worker_lost": report.worker_lost,
        "queue_expired": report.queue_expired,
    }
