"""The SDK's usage queue (codec_engine.sdk.usage) against a live control plane: offline
queueing, signed upload, re-upload after a crash counted once, rejected records not blocking
the queue, the CLI commands, and no record lost when the process is killed mid-write."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from licences.models import Licence
from metering.models import UsageRecord as StoredRecord
from metering.models import UsageStream

from codec_engine.errors import SdkNetworkError
from codec_engine.sdk import SdkClient
from codec_engine.sdk.usage import UsageQueue, UsageRecord, register_usage_commands
from tests.core.fixtures import Http, random_fingerprint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def activated(
    http: Http, acme_licence: Licence, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("CODEC_ENGINE_FINGERPRINT", random_fingerprint().to_string())
    monkeypatch.delenv("CODEC_ENGINE_SERVER", raising=False)
    state = tmp_path / "sdk"
    SdkClient(state_dir=state, server_url=http.base).activate(acme_licence.key)
    return state


def usage(delivered: int = 600, baseline: int = 1000, **kw: object) -> UsageRecord:
    return UsageRecord(
        bytes_delivered=delivered, baseline_bytes=baseline, baseline_method="x264-medium", **kw
    )  # type: ignore[arg-type]


def test_offline_records_are_kept_then_uploaded_in_signed_batches(
    activated: Path, http: Http
) -> None:
    queue = UsageQueue(activated)
    for i in range(5):
        assert queue.record(usage(delivered=100 * i, frames=24)).seq == i + 1
    assert queue.status().pending == 5

    # Offline: nothing is marked sent, nothing lost.
    with pytest.raises(SdkNetworkError):
        queue.flush(server_url="http://127.0.0.1:9", timeout_s=2)
    assert queue.status().pending == 5
    assert StoredRecord.objects.count() == 0

    report = queue.flush()
    assert (report.sent, report.new, report.duplicates, report.pending) == (5, 5, 0, 0)
    assert StoredRecord.objects.count() == 5
    assert sorted(StoredRecord.objects.values_list("sequence", flat=True)) == [1, 2, 3, 4, 5]
    assert UsageStream.objects.get().missing == 0
    assert queue.flush().batches == 0  # nothing left


def test_reupload_after_a_crash_before_marking_is_counted_once(activated: Path) -> None:
    queue = UsageQueue(activated)
    for _ in range(3):
        queue.record(usage())
    assert queue.flush().new == 3
    # Simulate a crash between the server's 200 and marking the records sent.
    with sqlite3.connect(queue.path) as db:
        db.execute("UPDATE usage_record SET state = 0")
    report = queue.flush()
    assert (report.sent, report.new, report.duplicates) == (3, 0, 3)
    assert StoredRecord.objects.count() == 3


def test_records_older_than_the_lateness_limit_are_rejected_without_blocking(
    activated: Path,
) -> None:
    queue = UsageQueue(activated)
    old_ms = int((time.time() - 40 * 86400) * 1000)
    queue.record(usage(event_time_ms=old_ms))
    queue.record(usage())
    report = queue.flush()
    assert (report.rejected, report.new, report.pending) == (1, 1, 0)
    assert queue.status().rejected == 1
    assert StoredRecord.objects.count() == 1


def test_usage_cli_commands(activated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="codec-engine")
    register_usage_commands(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> tuple[int, str]:
        args = parser.parse_args(list(argv))
        code = args.handler(args)
        return code, capsys.readouterr().out

    state = ["--state-dir", str(activated)]
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, out = run(
        "usage", "record", "--bytes-delivered", "700", "--baseline-bytes", "1000",
        "--baseline-method", "x265-slow", "--event-time", when, "--json", *state,
    )  # fmt: skip
    assert code == 0 and json.loads(out)["seq"] == 1
    code, out = run("usage", "status", "--json", *state)
    assert json.loads(out)["pending"] == 1
    code, out = run("usage", "flush", *state)
    assert code == 0 and "1 new" in out
    code, out = run("usage", "status", *state)
    assert "0 pending, 1 sent" in out


_WRITER = """
import sys
from pathlib import Path
from codec_engine.sdk.usage import UsageQueue, UsageRecord
queue = UsageQueue(Path(sys.argv[1]))
while True:
    queued = queue.record(
        UsageRecord(bytes_delivered=1, baseline_bytes=2, baseline_method="x264"),
        activation_id="act-1",
    )
    print(queued.seq, flush=True)
"""


def test_killing_the_process_mid_write_loses_no_acknowledged_record(tmp_path: Path) -> None:
    state = tmp_path / "sdk"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(state)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    acknowledged: list[int] = []
    assert child.stdout is not None
    deadline = time.monotonic() + 60
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if line:
            acknowledged.append(int(line))
    child.send_signal(signal.SIGKILL)  # no cleanup, possibly inside a transaction
    child.wait(timeout=10)
    assert len(acknowledged) >= 40

    with sqlite3.connect(state / "usage.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = [row[0] for row in db.execute("SELECT seq FROM usage_record ORDER BY seq")]
        last = db.execute("SELECT last_seq FROM usage_sequence").fetchone()[0]
    assert set(acknowledged) <= set(seqs)  # every acknowledged record survived
    assert seqs == list(range(1, len(seqs) + 1))  # no hole, no half record
    assert last == seqs[-1]
    # A restarted writer continues the sequence.
    queue = UsageQueue(state)
    nxt = queue.record(usage(), activation_id="act-1")
    assert nxt.seq == last + 1
