"""Structured logs: JSON lines with request ids, and no secret in any line of a full run.

The flow goes over real HTTP (live_server) with the root logger at DEBUG through the same
handler settings.LOGGING installs (context + redaction filters, JSON formatter): token
creation, activation, heartbeat, a usage batch, an encode job (run in-process), the monthly
close, and a failed authentication with a made-up token. Then every secret of the run is
looked for in the captured output.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from billing.services import billing_period_close
from django.conf import settings
from licences.models import Licence

from core.logging import ContextFilter, JsonFormatter, RedactFilter, redact
from tests.core.fixtures import TEST_ACTOR, Device, Http, Persona
from tests.jobs.conftest import codec_weights_dir, png_bytes  # noqa: F401 - fixture
from tests.metering.factories import batch_body, headers, rec, sign

pytestmark = pytest.mark.slow


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


def test_redact_masks_every_token_kind() -> None:
    line = (
        "key NCL1.eyJhIjoxfQ.c2ln cert NCC1.abc.def crl NCR1.x-y_z token ncp_AbC123_x "
        "stripe sk_live_51Habc whsec_abcDEF123 header Bearer ncp_zz"
    )
    out = redact(line)
    for secret in ("eyJhIjoxfQ", "abc.def", "x-y_z", "AbC123_x", "51Habc", "abcDEF123", "ncp_zz"):
        assert secret not in out
    assert out.count("[REDACTED]") >= 7
    assert "NCL1.[REDACTED]" in out and "ncp_[REDACTED]" in out


def test_json_lines_carry_the_request_id_and_the_settings_secrets_are_masked(
    captured: io.StringIO,
) -> None:
    from core.logging import request_id_var

    token = request_id_var.set("req-123")
    try:
        logging.getLogger("tests.logging").warning(
            "kek=%s secret=%s", settings.SIGNING_KEY_KEK, settings.SECRET_KEY
        )
    finally:
        request_id_var.reset(token)
    entry = json.loads(captured.getvalue().strip().splitlines()[-1])
    assert entry["request_id"] == "req-123"
    assert entry["level"] == "WARNING" and entry["logger"] == "tests.logging"
    assert entry["message"] == "kek=[REDACTED] secret=[REDACTED]"


def test_a_full_run_logs_no_secret(
    captured: io.StringIO,
    http: Http,
    operator: Persona,
    alice: Persona,
    acme_licence: Licence,
    acme_terms: Any,
    settings: Any,
    tmp_path: Path,
    codec_weights_dir: Path | None,  # noqa: F811
) -> None:
    settings.MEDIA_ROOT = tmp_path
    secrets: dict[str, str] = {
        "operator token": operator.token,
        "customer token": alice.token,
        "licence key": acme_licence.key,
        "django secret key": settings.SECRET_KEY,
        "signing key kek": settings.SIGNING_KEY_KEK,
    }

    # token creation (the new secret is in the response only)
    created = operator.http.post(
        "/api/v1/tokens/",
        {"name": "ci", "scope": "customer", "customer_id": str(alice.customer.pk)},  # type: ignore[union-attr]
    )
    assert created.status_code == 201, created.text
    secrets["created token"] = created.json()["token"]

    # activation and heartbeat
    device = Device()
    activated = device.activate(http, acme_licence.key)
    assert activated.status_code == 201, activated.text
    secrets["certificate"] = activated.json()["certificate"]
    secrets["revocation list"] = activated.json()["revocation_list"]["token"]
    beat = device.heartbeat(http)
    assert beat.status_code == 200, beat.text
    secrets["heartbeat certificate"] = beat.json()["certificate"]

    # a usage batch signed by the device key
    assert device.activation_id
    body = batch_body(device.activation_id, [rec(1, at=dt.datetime.now(dt.UTC))])
    batch = http.post(
        "/api/v1/sdk/usage-batches",
        data=body,
        headers=headers(device.activation_id, sign(device.key, body)),
    )
    assert batch.status_code in (200, 201), batch.text

    # an encode job (eager: runs inside the request)
    job = alice.http.session.post(
        http.base + "/api/v1/jobs/",
        files={"input": ("poster.png", png_bytes(32, 32))},
        data={"baseline": "jpeg", "quality": "1"},
        headers={"Authorization": f"Bearer {alice.token}", "X-Request-ID": "job-req-1"},
        timeout=120,
    )
    assert job.status_code == 202, job.text

    # the monthly close, as the periodic task would run it after the cutoff
    today = dt.datetime.now(dt.UTC)
    month = dt.date(today.year, today.month, 1)
    after = dt.datetime(today.year + today.month // 12, today.month % 12 + 1, 10, tzinfo=dt.UTC)
    report = billing_period_close(actor=TEST_ACTOR, month=month, now=after)
    assert len(report.created) == 1

    # a failed authentication with a made-up token
    bogus = "ncp_" + "Zq9" * 14
    secrets["bogus token"] = bogus
    refused = http.as_token(bogus).get("/api/v1/jobs/", headers={"X-Request-ID": "bad-auth-1"})
    assert refused.status_code == 401

    # defence in depth: even a careless log call does not leak
    logging.getLogger("tests.careless").error(
        "leaking %s and %s", acme_licence.key, secrets["created token"]
    )

    output = captured.getvalue()
    lines = output.strip().splitlines()
    assert len(lines) > 5
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    leaked = sorted(name for name, value in secrets.items() if value and value in output)
    assert leaked == [], f"secrets in the logs: {leaked}"
    assert any(e.get("request_id") == "bad-auth-1" for e in entries), "4xx warning has an id"
    assert any(e.get("logger") == "tests.careless" for e in entries)
