"""Test-suite wide fixtures and the service policy.

Tests that need PostgreSQL or Redis are marked `postgres` / `redis`. When the service is absent
they skip with a message naming it, except under REQUIRE_SERVICES=1 (set by .ci/run), where a
missing service fails the test instead.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def tcp_reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _missing(service: str, how: str) -> None:
    message = f"{service} is not available ({how})"
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {message}", pytrace=False)
    pytest.skip(message)


def _database_vendor() -> str:
    from django.db import connection

    return connection.vendor


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") and _database_vendor() != "postgresql":
        _missing("PostgreSQL", "set DATABASE_URL=postgres://postgres@127.0.0.1:5432/controlplane")
    if item.get_closest_marker("redis"):
        url = urlparse(REDIS_URL)
        if not tcp_reachable(url.hostname or "127.0.0.1", url.port or 6379):
            _missing("Redis", f"nothing answers at {url.hostname}:{url.port}")


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL
