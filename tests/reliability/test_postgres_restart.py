"""PostgreSQL restarted during activation load: no activation lost or duplicated, and clients
see only retryable answers (503 with Retry-After, or a dropped connection), never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.reliability import harness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_activations_survive_postgres_restarts(reliability_env: dict[str, Any]) -> None:
    pg: harness.Postgres = reliability_env["pg"]
    long = reliability_env["long"]
    url = pg.clone(reliability_env["template"], "rel_activation")
    seed = harness.seed(url, licences=4)
    server = harness.Server(harness.app_env(url, None), reliability_env["root"] / "act-web.log")
    server.start()
    try:
        result = harness.activation_under_postgres_restarts(
            pg,
            "rel_activation",
            server,
            seed.keys,
            seconds=40 if long else 8,
            restarts=6 if long else 2,
            crash=False,
        )
        if long:  # and once more with crashes (immediate shutdown) instead of clean stops
            crashed = harness.activation_under_postgres_restarts(
                pg, "rel_activation", server, seed.keys, seconds=20, restarts=3, crash=True
            )
            assert crashed.ok, (crashed, server.tail())
        # the connection pool recovered: a request after the last restart succeeds
        assert harness.requests.get(server.url + "/health/ready/", timeout=10).status_code == 200
    finally:
        server.stop()
    assert result.faults == (6 if long else 2)
    assert result.confirmed > 0
    assert (result.lost, result.duplicates) == (0, 0), result
    assert (result.server_errors, result.unexpected) == (0, 0), (result, server.tail())
