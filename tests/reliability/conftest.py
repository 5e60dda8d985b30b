"""The reliability suite's private services: one PostgreSQL cluster (with a migrated template
database) and one Redis, started once per session on free loopback ports, stopped after.

Quick by default (CI); RELIABILITY_LONG=1 runs longer loads and more faults. Skips with a
message when initdb or redis-server is missing, except under REQUIRE_SERVICES=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import _missing
from tests.reliability import harness


@pytest.fixture(scope="session")
def reliability_env() -> Iterator[dict[str, Any]]:
    missing = harness.missing_tools()
    if missing:
        _missing(", ".join(missing), "the reliability suite starts its own PostgreSQL and Redis")
    with harness.environment() as env:
        yield env


@pytest.fixture(scope="session")
def long_mode() -> bool:
    return harness.LONG


@pytest.fixture(scope="session")
def api_server(reliability_env: dict[str, Any]) -> Iterator[tuple[harness.Server, harness.Seed]]:
    """The app on its own database (tasks eager), for the fuzzers and schemathesis."""
    pg: harness.Postgres = reliability_env["pg"]
    url = pg.clone(reliability_env["template"], "rel_api")
    seed = harness.seed(url, licences=2)
    server = harness.Server(
        harness.app_env(url, None, DJANGO_MEDIA_ROOT=str(reliability_env["root"] / "api-media")),
        reliability_env["root"] / "api-web.log",
    )
    server.start()
    try:
        yield server, seed
    finally:
        server.stop()
