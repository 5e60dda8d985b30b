"""schemathesis against the served OpenAPI schema (/api/schema/), as the operator and as a
customer: no operation may answer a 5xx. Bounded examples per operation (more in long mode)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.reliability import harness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

ST = Path(harness.PY).parent / "st"


@pytest.mark.parametrize("persona", ["operator", "customer"])
def test_no_server_errors(
    persona: str, api_server: tuple[harness.Server, harness.Seed], tmp_path: Path
) -> None:
    if not ST.exists() and shutil.which("st") is None:
        pytest.skip("schemathesis is not installed (.venv/bin/pip install schemathesis)")
    server, seed = api_server
    token = seed.operator if persona == "operator" else seed.customer
    command = [
        str(ST if ST.exists() else "st"),
        "run",
        server.url + "/api/schema/?format=json",
        "--url",
        server.url,
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "25" if harness.LONG else "3",
        "--phases",
        "examples,coverage,fuzzing" if harness.LONG else "examples,fuzzing",
        "--max-time",
        "300" if harness.LONG else "45",
        "--request-timeout",
        "20",
        "--seed",
        "1",
        "--no-shrink",
        "--generation-deterministic",
        "--workers",
        "2",
        "--warnings",
        "off",
        # Revoking our own token would end the run's authentication half-way.
        "--exclude-path-regex",
        "/revoke/",
        "-H",
        f"Authorization: Bearer {token}",
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=360, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:] + server.tail(3000)
