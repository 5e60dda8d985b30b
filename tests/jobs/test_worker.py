"""Integration: a real Celery worker process (prefork, one child) on the local Redis broker
and the PostgreSQL test database. Jobs go in over the HTTP API; the worker is another
process, so every test commits (transactional_db) and polls the job row.

Covers: the happy path; a refused licence; a worker SIGKILLed mid-job and restarted (the
message is redelivered, the job finishes, exactly one usage record); corrupt input (a
readable failure, and the same worker then runs the next job); a submission during a broker
outage (accepted, then sent by the sweeper once the broker is back).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from jobs.models import EncodeJob
from licences.services import licence_suspend
from metering.models import UsageRecord

from core.models import AuditLog
from tests.core.fixtures import TEST_ACTOR
from tests.jobs.conftest import REPO, Caller, corrupt_png, frames_zip, png_bytes

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

BROKER_URL = os.environ.get("JOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
CELERY = str(REPO / ".venv" / "bin" / "celery")
# Short enough to see a dead worker's job redelivered within the test, see docs/jobs.md.
LEASE_S = 2
VISIBILITY_TIMEOUT_S = 5


class Worker:
    """`celery -A controlplane worker -Q encode --concurrency 1 -P prefork` in its own
    process group (so SIGKILL takes the pool child with it, as a machine failure would)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    CELERY,
                    "-A",
                    "controlplane",
                    "worker",
                    "-Q",
                    "encode",
                    "--concurrency",
                    "1",
                    "-P",
                    "prefork",
                    "-l",
                    "info",
                    "-n",
                    "jobs-test@%h",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{self.tail()}")
            if b" ready." in self.log.read_bytes()[offset:]:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the worker did not start in {timeout} s:\n{self.tail()}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if not self.alive:
            return
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGQUIT)  # cold shutdown: the worker is idle here
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_bytes()[-n:].decode(errors="replace")


def _forget_connections(app: Any) -> None:
    # Celery caches its connection pool on first use (even an eager run creates it, for the
    # default amqp://localhost); drop it so the next publish connects to the URL set now.
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    """The test process publishes to Redis instead of running tasks eagerly."""
    from controlplane.celery import app

    client = redis.Redis.from_url(BROKER_URL)
    client.flushdb()
    keys = ("broker_url", "task_always_eager")
    saved = {k: app.conf[k] for k in keys}
    app.conf.update(broker_url=BROKER_URL, task_always_eager=False)
    _forget_connections(app)
    yield BROKER_URL
    app.conf.update(saved)
    _forget_connections(app)
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def worker(
    django_db_setup: Any,
    broker: str,
    media_root: Path,
    codec_weights_dir: Path | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    from django.db import connection

    db = connection.settings_dict
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'platform'}{os.pathsep}{REPO}",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": broker,
        "DJANGO_MEDIA_ROOT": str(media_root),
        "JOBS_LEASE_S": str(LEASE_S),
        "CELERY_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
        "CELERY_UNACKED_RESTORE_INTERVAL_S": "1",
        "JOBS_SOFT_TIME_LIMIT_S": "120",
        "JOBS_TIME_LIMIT_S": "150",
        "CODEC_ENGINE_THREADS": "1",
    }
    if codec_weights_dir is not None:
        env["CODEC_ENGINE_WEIGHTS_DIR"] = str(codec_weights_dir)
    w = Worker(env, tmp_path_factory.mktemp("worker") / "worker.log")
    w.start()
    yield w
    w.stop()


def wait_for(
    job_id: Any, states: tuple[str, ...], worker: Worker, timeout: float = 90
) -> EncodeJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = EncodeJob.objects.get(pk=job_id)
        if job.state in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} is still {job.state}; worker log:\n{worker.tail()}")


def submit(caller: Caller, content: bytes, name: str, **fields: Any) -> uuid.UUID:
    response = caller.submit(content, name, baseline="jpeg", **fields)
    assert response.status_code == 202, response.content
    return uuid.UUID(response.json()["id"])


def starts(job_id: Any) -> int:
    return AuditLog.objects.filter(
        object_type="encode_job", object_id=str(job_id), action="encode_job.start"
    ).count()


def test_happy_path(worker: Worker, acme_caller: Caller) -> None:
    job_id = submit(acme_caller, png_bytes(64, 48), "poster.png", quality=2)
    job = wait_for(job_id, ("succeeded", "failed"), worker)
    assert job.state == "succeeded", (job.failure_code, job.failure_message, worker.tail())
    assert job.attempts == 1 and job.progress == 100
    assert job.metrics["output_bytes"] == job.output_bytes
    assert job.metrics["timings_s"]["queue_to_start"] < 5
    usage = UsageRecord.objects.get(job_id=job_id)
    assert (usage.bytes_delivered, usage.baseline_bytes) == (
        job.output_bytes,
        job.metrics["baseline_bytes"],
    )
    output = acme_caller.get(f"/api/v1/jobs/{job_id}/output/")
    assert output.status_code == 200
    assert len(b"".join(output.streaming_content)) == job.output_bytes


def test_refused_licence(worker: Worker, acme_caller: Caller, acme_licence: Any) -> None:
    licence_suspend(actor=TEST_ACTOR, licence_id=acme_licence.pk, reason="invoice unpaid")
    job_id = submit(acme_caller, png_bytes(), "a.png", licence_id=str(acme_licence.pk))
    job = wait_for(job_id, ("succeeded", "failed"), worker)
    assert (job.state, job.failure_code) == ("failed", "REVOKED")
    assert "suspended" in job.failure_message
    assert (job.output_file.name, job.output_bytes) == ("", None)
    assert not UsageRecord.objects.filter(job_id=job_id).exists()


def test_worker_killed_mid_job_is_redelivered_and_billed_once(
    worker: Worker, acme_caller: Caller
) -> None:
    frames = 48
    job_id = submit(acme_caller, frames_zip(frames, 64, 64), "shot.zip")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        job = EncodeJob.objects.get(pk=job_id)
        if (job.state == "running" and job.frames_done >= 2) or job.is_terminal:
            break
        time.sleep(0.01)
    assert job.state == "running", f"{job.state}: the job must be caught mid-way"
    worker.kill()
    job.refresh_from_db()
    assert (job.state, job.attempts) == ("running", 1)
    assert job.frames_done < frames

    worker.start()
    job = wait_for(job_id, ("succeeded", "failed"), worker, timeout=120)
    assert job.state == "succeeded", (job.failure_code, job.failure_message, worker.tail())
    assert job.attempts == 2 and starts(job_id) == 2
    assert job.metrics["frames"] == frames
    assert UsageRecord.objects.filter(job_id=job_id).count() == 1
    assert UsageRecord.objects.get(job_id=job_id).frames == frames


def test_corrupt_input_fails_readably_and_the_worker_runs_the_next_job(
    worker: Worker, acme_caller: Caller
) -> None:
    assert worker.proc is not None
    pid = worker.proc.pid
    bad = submit(acme_caller, corrupt_png(), "scan.png")
    job = wait_for(bad, ("succeeded", "failed"), worker)
    assert (job.state, job.failure_code) == ("failed", "BAD_INPUT")
    assert job.failure_message.startswith("scan.png: not a readable image"), job.failure_message
    assert not UsageRecord.objects.filter(job_id=bad).exists()

    good = submit(acme_caller, png_bytes(48, 48, seed=3), "next.png")
    job = wait_for(good, ("succeeded", "failed"), worker)
    assert job.state == "succeeded", (job.failure_code, job.failure_message)
    assert worker.alive and worker.proc.pid == pid


def test_a_job_submitted_during_a_broker_outage_is_kept_and_sent_by_the_sweeper(
    worker: Worker, acme_caller: Caller
) -> None:
    from jobs.services import encode_jobs_sweep

    from controlplane.celery import app

    saved = {k: app.conf[k] for k in ("broker_url", "task_publish_retry")}
    # Nothing listens on port 9: the publish fails at once, as it does in production once
    # the ~15 s of publish retries are spent.
    app.conf.update(broker_url="redis://127.0.0.1:9/0", task_publish_retry=False)
    _forget_connections(app)
    try:
        job_id = submit(acme_caller, png_bytes(48, 40, seed=5), "outage.png")  # still a 202
    finally:
        app.conf.update(saved)
        _forget_connections(app)
    job = EncodeJob.objects.get(pk=job_id)
    assert (job.state, job.dispatched_at) == ("queued", None)
    time.sleep(1.0)  # no message reached the worker: nothing runs
    assert EncodeJob.objects.get(pk=job_id).state == "queued"

    assert encode_jobs_sweep().redispatched == 1  # the broker is back
    job = wait_for(job_id, ("succeeded", "failed"), worker)
    assert job.state == "succeeded", (job.failure_code, job.failure_message, worker.tail())
    assert starts(job_id) == 1 and UsageRecord.objects.filter(job_id=job_id).count() == 1
    assert encode_jobs_sweep().redispatched == 0  # sent once, not on every sweep
    assert AuditLog.objects.filter(object_id=str(job_id), action="encode_job.dispatch").count() == 1
