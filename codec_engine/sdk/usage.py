"""SDK usage reporting: a crash-safe on-disk queue of usage records, uploaded in signed batches.

Pure Python (sqlite3 + requests + licensing): no torch, no Django.

The queue is an SQLite database in the SDK state directory (`usage.sqlite3`, mode 0600) in WAL
mode with `synchronous=FULL`: a record is durable (fsynced) when `record()` returns, and a
process killed mid-write leaves either the whole record or nothing. Each record gets the next
sequence number of its activation in the same transaction, so sequences have no holes on the
device; the control plane flags holes it sees as gaps.

Upload: pending records in sequence order, at most 1,000 per batch. The body is JSON
(docs/metering-billing.md, "Batch signing"); the signature is the device key's Ed25519
signature (licensing purpose "usage-batch") over the exact body bytes, sent with the
activation id in headers. A batch's id is derived from its sequence range, so a re-upload
after a crash is the same batch and the server counts its records as duplicates. Records are
marked sent only after the server's 200, so nothing is lost; the server's refusal of records
older than the lateness limit (or dated in the future) moves exactly those records to
`rejected`, so one bad record never blocks the queue.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

import licensing
from codec_engine.errors import CommandError, SdkError, SdkNetworkError, SdkServerError
from codec_engine.sdk.client import ENV_SERVER
from codec_engine.sdk.state import ENV_HOME, SdkState, default_state_dir

USAGE_BATCH_PATH = "/api/v1/sdk/usage-batches"
BATCH_FORMAT_VERSION = 1
MAX_BATCH_RECORDS = 1000
QUEUE_FILE = "usage.sqlite3"
_REJECT_CODES = {"EVENT_TIME_TOO_OLD", "EVENT_TIME_IN_FUTURE"}

PENDING, SENT, REJECTED = 0, 1, 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage_record (
    activation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL UNIQUE,
    event_time INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    pixels INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    bytes_delivered INTEGER NOT NULL,
    baseline_bytes INTEGER NOT NULL,
    baseline_method TEXT NOT NULL,
    psnr_db REAL,
    ms_ssim REAL,
    vmaf REAL,
    state INTEGER NOT NULL DEFAULT 0,
    reject_code TEXT,
    PRIMARY KEY (activation_id, seq)
);
CREATE INDEX IF NOT EXISTS usage_record_pending ON usage_record (state, activation_id, seq);
CREATE TABLE IF NOT EXISTS usage_sequence (
    activation_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class UsageRecord:
    """One usage fact as the device reports it (bytes are integers)."""

    bytes_delivered: int
    baseline_bytes: int
    baseline_method: str
    frames: int = 0
    pixels: int = 0
    duration_ms: int = 0
    event_time_ms: int | None = None
    psnr_db: float | None = None
    ms_ssim: float | None = None
    vmaf: float | None = None

    def check(self) -> None:
        for name in ("bytes_delivered", "baseline_bytes", "frames", "pixels", "duration_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CommandError(f"{name} must be a non-negative integer")
        if not self.baseline_method or len(self.baseline_method) > 32:
            raise CommandError("baseline_method must be 1-32 characters")


@dataclass(frozen=True)
class QueuedRecord:
    activation_id: str
    seq: int
    id: str


@dataclass(frozen=True)
class FlushReport:
    batches: int
    sent: int
    new: int
    duplicates: int
    rejected: int
    pending: int
    missing_on_server: int


@dataclass(frozen=True)
class QueueStatus:
    activation_id: str | None
    pending: int
    sent: int
    rejected: int
    last_seq: int
    path: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class UsageQueue:
    """The on-disk queue. Safe to use from several processes (SQLite locking)."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state = SdkState(state_dir or default_state_dir())
        self.path = self.state.dir / QUEUE_FILE

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.state.ensure()
        fresh = not self.path.exists()
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            if fresh:
                os.chmod(self.path, 0o600)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit, so a returned record survives power loss.
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            yield db
        except sqlite3.DatabaseError as exc:
            raise SdkError(f"the usage queue {self.path} is unusable: {exc}") from None
        finally:
            db.close()

    def _activation_id(self) -> str:
        return self.state.load_activation().activation_id

    def record(self, usage: UsageRecord, *, activation_id: str | None = None) -> QueuedRecord:
        """Append one record durably with the activation's next sequence number."""
        usage.check()
        activation = activation_id or self._activation_id()
        record_id = uuid.uuid4().hex
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT last_seq FROM usage_sequence WHERE activation_id = ?", (activation,)
                ).fetchone()
                seq = (row[0] if row else 0) + 1
                db.execute(
                    "INSERT INTO usage_sequence (activation_id, last_seq) VALUES (?, ?) "
                    "ON CONFLICT (activation_id) DO UPDATE SET last_seq = excluded.last_seq",
                    (activation, seq),
                )
                db.execute(
                    "INSERT INTO usage_record (activation_id, seq, id, event_time, frames, "
                    "pixels, duration_ms, bytes_delivered, baseline_bytes, baseline_method, "
                    "psnr_db, ms_ssim, vmaf) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        activation,
                        seq,
                        record_id,
                        usage.event_time_ms if usage.event_time_ms is not None else _now_ms(),
                        usage.frames,
                        usage.pixels,
                        usage.duration_ms,
                        usage.bytes_delivered,
                        usage.baseline_bytes,
                        usage.baseline_method,
                        usage.psnr_db,
                        usage.ms_ssim,
                        usage.vmaf,
                    ),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return QueuedRecord(activation_id=activation, seq=seq, id=record_id)

    def status(self) -> QueueStatus:
        activation = self._activation_id() if self.state.has_activation() else None
        with self._db() as db:
            counts = dict(
                db.execute(
                    "SELECT state, count(*) FROM usage_record WHERE activation_id = ? "
                    "GROUP BY state",
                    (activation or "",),
                ).fetchall()
            )
            row = db.execute(
                "SELECT last_seq FROM usage_sequence WHERE activation_id = ?", (activation or "",)
            ).fetchone()
        return QueueStatus(
            activation_id=activation,
            pending=int(counts.get(PENDING, 0)),
            sent=int(counts.get(SENT, 0)),
            rejected=int(counts.get(REJECTED, 0)),
            last_seq=int(row[0]) if row else 0,
            path=str(self.path),
        )

    def _pending(self, activation: str, limit: int) -> list[dict[str, Any]]:
        with self._db() as db:
            rows = db.execute(
                "SELECT seq, id, event_time, frames, pixels, duration_ms, bytes_delivered, "
                "baseline_bytes, baseline_method, psnr_db, ms_ssim, vmaf FROM usage_record "
                "WHERE state = 0 AND activation_id = ? ORDER BY seq LIMIT ?",
                (activation, limit),
            ).fetchall()
        names = (
            "seq", "id", "event_time", "frames", "pixels", "duration_ms", "bytes_delivered",
            "baseline_bytes", "baseline_method", "psnr_db", "ms_ssim", "vmaf",
        )  # fmt: skip
        return [dict(zip(names, row, strict=True)) for row in rows]

    def _mark(self, activation: str, ids: list[str], state: int, code: str | None = None) -> None:
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "UPDATE usage_record SET state = ?, reject_code = ? "
                "WHERE activation_id = ? AND id = ?",
                [(state, code, activation, i) for i in ids],
            )
            db.execute("COMMIT")

    def flush(
        self,
        *,
        server_url: str | None = None,
        timeout_s: float = 30.0,
        max_batches: int | None = None,
        session: requests.Session | None = None,
    ) -> FlushReport:
        """Upload pending records in signed batches until the queue is empty (or
        `max_batches`). A network failure raises SdkNetworkError after marking nothing of the
        failed batch: the next flush resends it."""
        record = self.state.load_activation()
        key = self.state.load_device_key()
        if key is None:
            raise SdkError(f"the device key {self.state.device_key_path} is missing")
        base = (server_url or os.environ.get(ENV_SERVER) or record.server_url).rstrip("/")
        http = session or requests.Session()
        batches = sent = new = duplicates = rejected = missing = 0
        while max_batches is None or batches < max_batches:
            pending = self._pending(record.activation_id, MAX_BATCH_RECORDS)
            if not pending:
                break
            body = encode_batch(record.activation_id, pending)
            signature = licensing.sign_with_device_key(key, licensing.USAGE_BATCH_PURPOSE, body)
            try:
                answer = _post_batch(http, base, record.activation_id, body, signature, timeout_s)
            except SdkServerError as exc:
                bad = _refused_ids(exc)
                if not bad:
                    raise
                self._mark(record.activation_id, bad, REJECTED, exc.code)
                rejected += len(bad)
                continue
            self._mark(record.activation_id, [r["id"] for r in pending], SENT)
            batches += 1
            sent += len(pending)
            new += int(answer.get("new", 0))
            duplicates += int(answer.get("duplicates", 0))
            missing = int(answer.get("missing", 0))
        return FlushReport(
            batches=batches,
            sent=sent,
            new=new,
            duplicates=duplicates,
            rejected=rejected,
            pending=self.status().pending,
            missing_on_server=missing,
        )


def encode_batch(activation_id: str, records: list[dict[str, Any]]) -> bytes:
    """The exact bytes that are signed and sent (compact JSON, ASCII)."""
    first, last = records[0]["seq"], records[-1]["seq"]
    doc = {
        "v": BATCH_FORMAT_VERSION,
        "activation_id": activation_id,
        "batch_id": f"seq-{first}-{last}",
        "sent_at": _now_ms(),
        "records": [
            {
                "id": r["id"],
                "seq": r["seq"],
                "event_time": r["event_time"],
                "frames": r["frames"],
                "pixels": r["pixels"],
                "duration_ms": r["duration_ms"],
                "bytes_delivered": r["bytes_delivered"],
                "baseline_bytes": r["baseline_bytes"],
                "baseline_method": r["baseline_method"],
                "psnr_db": r["psnr_db"],
                "ms_ssim": r["ms_ssim"],
                "vmaf": r["vmaf"],
            }
            for r in records
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode("ascii")


def _post_batch(
    http: requests.Session,
    base: str,
    activation_id: str,
    body: bytes,
    signature: bytes,
    timeout_s: float,
) -> dict[str, Any]:
    url = base + USAGE_BATCH_PATH
    headers = {
        "Content-Type": "application/json",
        "X-Activation-Id": activation_id,
        "X-Usage-Signature": base64.urlsafe_b64encode(signature).rstrip(b"=").decode("ascii"),
    }
    try:
        response = http.post(url, data=body, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        raise SdkNetworkError(
            f"cannot reach the control plane at {base} ({type(exc).__name__}); usage stays queued"
        ) from None
    try:
        data = response.json()
    except ValueError:
        raise SdkNetworkError(
            f"the control plane answered HTTP {response.status_code} without JSON"
        ) from None
    if response.status_code >= 500:
        raise SdkNetworkError(f"the control plane answered HTTP {response.status_code}")
    if response.status_code >= 400:
        error = data.get("error") if isinstance(data, dict) else None
        error = error if isinstance(error, dict) else {}
        raise SdkServerError(
            str(error.get("message", "refused")),
            code=str(error.get("code", "ERROR")),
            status=response.status_code,
            details=error.get("details"),
        )
    if not isinstance(data, dict):
        raise SdkNetworkError("malformed answer from the control plane")
    return data


def _refused_ids(exc: SdkServerError) -> list[str]:
    """Record ids the server refused individually (too old / in the future), if that is all."""
    if exc.code not in _REJECT_CODES or not isinstance(exc.details, dict):
        return []
    ids = exc.details.get("records")
    return [str(i) for i in ids] if isinstance(ids, list) else []


# --- command line ------------------------------------------------------------------------------


def _parse_event_time(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError("--event-time is Unix milliseconds or ISO 8601") from None
    if when.tzinfo is None:
        raise CommandError("--event-time needs a time zone (e.g. Z)")
    return int(when.timestamp() * 1000)


def _queue(args: argparse.Namespace) -> UsageQueue:
    return UsageQueue(args.state_dir)


def cmd_usage_record(args: argparse.Namespace) -> int:
    queued = _queue(args).record(
        UsageRecord(
            bytes_delivered=args.bytes_delivered,
            baseline_bytes=args.baseline_bytes,
            baseline_method=args.baseline_method,
            frames=args.frames,
            pixels=args.pixels,
            duration_ms=args.duration_ms,
            event_time_ms=_parse_event_time(args.event_time) if args.event_time else None,
            psnr_db=args.psnr_db,
            ms_ssim=args.ms_ssim,
            vmaf=args.vmaf,
        )
    )
    if args.json:
        print(json.dumps({"id": queued.id, "seq": queued.seq}))
    else:
        print(f"queued usage record {queued.id} (sequence {queued.seq})")
    return 0


def cmd_usage_flush(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise CommandError("--timeout must be positive")
    report = _queue(args).flush(server_url=args.server, timeout_s=args.timeout)
    if args.json:
        print(json.dumps(report.__dict__))
    else:
        print(
            f"uploaded {report.sent} records in {report.batches} batches "
            f"({report.new} new, {report.duplicates} already known); "
            f"{report.rejected} rejected; {report.pending} pending"
        )
        if report.missing_on_server:
            print(f"note: the server sees a gap of {report.missing_on_server} sequence numbers")
    return 0


def cmd_usage_status(args: argparse.Namespace) -> int:
    status = _queue(args).status()
    if args.json:
        print(json.dumps(status.as_dict()))
    else:
        print(f"activation  {status.activation_id or '(not activated)'}")
        print(f"queue       {status.path}")
        print(
            f"records     {status.pending} pending, {status.sent} sent, {status.rejected} rejected"
        )
        print(f"sequence    last {status.last_seq}")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        help=f"SDK state directory (default ${ENV_HOME} or ~/.config/codec-engine)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def register_usage_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `usage record | flush | status` to the codec-engine CLI."""
    usage = subparsers.add_parser("usage", help="queue and upload usage reports")
    commands = usage.add_subparsers(dest="usage_command", required=True, metavar="ACTION")

    record = commands.add_parser("record", help="queue one usage record (durable on return)")
    record.add_argument("--bytes-delivered", type=int, required=True)
    record.add_argument("--baseline-bytes", type=int, required=True)
    record.add_argument("--baseline-method", required=True, help="e.g. x264-medium-crf23")
    record.add_argument("--frames", type=int, default=0)
    record.add_argument("--pixels", type=int, default=0)
    record.add_argument("--duration-ms", type=int, default=0)
    record.add_argument("--event-time", help="Unix ms or ISO 8601 (default: now)")
    record.add_argument("--psnr-db", type=float)
    record.add_argument("--ms-ssim", type=float)
    record.add_argument("--vmaf", type=float)
    _common(record)
    record.set_defaults(handler=cmd_usage_record)

    flush = commands.add_parser("flush", help="upload queued records in signed batches")
    flush.add_argument(
        "--server", help=f"control-plane URL (default ${ENV_SERVER}, then the activation's)"
    )
    flush.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    _common(flush)
    flush.set_defaults(handler=cmd_usage_flush)

    status = commands.add_parser("status", help="show queued, sent and rejected records")
    _common(status)
    status.set_defaults(handler=cmd_usage_status)
