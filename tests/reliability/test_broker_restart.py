"""The broker (Redis) restarted while encode jobs are submitted and run by a real Celery worker:
every job finishes exactly once (succeeded, one usage record) and no submission is a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.reliability import harness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_every_job_finishes_exactly_once_across_broker_restarts(
    reliability_env: dict[str, Any],
) -> None:
    pg: harness.Postgres = reliability_env["pg"]
    broker: harness.Redis = reliability_env["redis"]
    long = reliability_env["long"]
    root = reliability_env["root"]
    url = pg.clone(reliability_env["template"], "rel_jobs")
    seed = harness.seed(url, licences=1)
    env = harness.app_env(
        url,
        broker.url(0),
        DJANGO_MEDIA_ROOT=str(root / "media"),
        JOBS_LEASE_S="5",
        # Short, so a delivery orphaned by the restart comes back within the test.
        CELERY_VISIBILITY_TIMEOUT_S="20",
        CELERY_UNACKED_RESTORE_INTERVAL_S="1",
        JOBS_SOFT_TIME_LIMIT_S="60",
        JOBS_TIME_LIMIT_S="90",
    )
    server = harness.Server(env, root / "jobs-web.log")
    worker = harness.Worker(env, root / "worker.log")
    server.start()
    worker.start()
    try:
        result = harness.encode_jobs_under_broker_restarts(
            pg,
            "rel_jobs",
            broker,
            server,
            seed.customer,
            jobs=30 if long else 8,
            restarts=4 if long else 2,
            seconds=40 if long else 8,
        )
    finally:
        worker.stop()
        server.stop()
    assert result.faults == (4 if long else 2)
    assert result.confirmed == (30 if long else 8), result
    assert (result.lost, result.duplicates) == (0, 0), (result, worker.tail())
    assert (result.server_errors, result.unexpected) == (0, 0), (result, server.tail())
