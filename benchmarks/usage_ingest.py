"""Usage ingestion throughput: signed SDK batches of 1,000 records through the HTTP API into
PostgreSQL, next to a raw psycopg COPY of the same rows in the same run.

- API:   gunicorn (sync workers) serving the control plane on its own database
         (`<db>_usage_bench`, dropped and migrated here); devices activate through the real
         SDK endpoint, then C client threads POST pre-signed batches
         (POST /api/v1/sdk/usage-batches: signature check, validation, one INSERT ... ON
         CONFLICT DO NOTHING RETURNING with the rollup, stream and batch-log upserts).
- COPY:  psycopg `COPY ... FROM STDIN` of the same rows (same values) into a table created
         LIKE metering_usagerecord INCLUDING ALL (the same indexes and constraints), no
         dedupe, no rollups: the floor of what PostgreSQL can take in on this machine.

Loopback only; bounded by --batches. Targets: >= 20,000 records/s through the API and >= 30%
of the COPY rate. The last line printed is one JSON object.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/controlplane \\
        .venv/bin/python benchmarks/usage_ingest.py [--batches 200] [--workers 3] [--clients 4]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import os
import queue
import secrets
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from _harness import free_port, issue_licences, prepare_database, start_gunicorn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `licensing` for the clients, without installing the project

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

import licensing  # noqa: E402

BATCH = 1000
PATH = "/api/v1/sdk/usage-batches"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _post(
    conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, Any]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def activate(port: int, licence_key: str, count: int) -> list[tuple[str, Ed25519PrivateKey]]:
    """Real activations through the SDK endpoint: (activation id, device key) each."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    devices = []
    for i in range(count):
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        ids = {c: secrets.token_hex(8) for c in ("machine_id", "hostname", "mac", "disk", "cpu")}
        fingerprint = licensing.fingerprint_from_identifiers(b"bench", ids).to_string()
        now = int(time.time())
        message = licensing.activation_proof_message(
            licence_key=licence_key,
            fingerprint=fingerprint,
            device_public_key=public,
            timestamp=now,
        )
        signature = licensing.sign_with_device_key(key, licensing.ACTIVATION_PROOF_PURPOSE, message)
        body = {
            "licence_key": licence_key,
            "fingerprint": fingerprint,
            "device_public_key": _b64(public),
            "platform": "linux-x86_64",
            "hostname": f"bench-{i}",
            "timestamp": now,
            "signature": _b64(signature),
        }
        status, answer = _post(conn, "/api/v1/sdk/activate", json.dumps(body).encode(), {})
        if status not in (200, 201):
            raise SystemExit(f"activation failed: {status} {answer}")
        devices.append((str(answer["activation_id"]), key))
    return devices


def make_records(device: int, first_seq: int, now_ms: int) -> list[dict[str, Any]]:
    records = []
    for j in range(BATCH):
        seq = first_seq + j
        delivered = 500_000_000 + (seq * 7919) % 400_000_000
        records.append(
            {
                "id": f"d{device}-{seq}-{uuid.uuid4().hex[:8]}",
                "seq": seq,
                "event_time": now_ms - 3_600_000 + (seq * 37) % 3_000_000,
                "frames": 1500,
                "pixels": 1500 * 1920 * 1080,
                "duration_ms": 60_000,
                "bytes_delivered": delivered,
                "baseline_bytes": delivered * 3 // 2,
                "baseline_method": "x264-medium-crf23",
                "psnr_db": 38.5,
                "ms_ssim": 0.981,
                "vmaf": 95.2,
            }
        )
    return records


def make_batches(
    devices: list[tuple[str, Ed25519PrivateKey]], count: int, first_seq: int
) -> tuple[list[tuple[bytes, dict[str, str]]], list[list[dict[str, Any]]]]:
    now_ms = int(time.time() * 1000)
    batches, all_records = [], []
    for b in range(count):
        device = b % len(devices)
        activation_id, key = devices[device]
        seq = first_seq + (b // len(devices)) * BATCH
        records = make_records(device, seq, now_ms)
        body = json.dumps(
            {
                "v": 1,
                "activation_id": activation_id,
                "batch_id": f"seq-{seq}-{seq + BATCH - 1}",
                "sent_at": now_ms,
                "records": records,
            },
            separators=(",", ":"),
        ).encode()
        signature = licensing.sign_with_device_key(key, licensing.USAGE_BATCH_PURPOSE, body)
        headers = {"X-Activation-Id": activation_id, "X-Usage-Signature": _b64(signature)}
        batches.append((body, headers))
        all_records.append(records)
    return batches, all_records


def run_api(port: int, batches: list[tuple[bytes, dict[str, str]]], clients: int) -> float:
    work: queue.Queue[tuple[bytes, dict[str, str]]] = queue.Queue()
    for item in batches:
        work.put(item)
    errors: list[str] = []
    new_total = [0]
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            try:
                body, headers = work.get_nowait()
            except queue.Empty:
                return
            status, answer = _post(conn, PATH, body, headers)
            with lock:
                if status != 200:
                    errors.append(f"{status} {answer}")
                else:
                    new_total[0] += int(answer["new"])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} batches failed, first: {errors[0][:300]}")
    if new_total[0] != len(batches) * BATCH:
        raise SystemExit(f"expected {len(batches) * BATCH} new records, got {new_total[0]}")
    return elapsed


def run_copy(
    db_url: str, activation_customer: list[tuple[str, str]], records: list[list[dict[str, Any]]]
) -> float:
    """COPY the same rows into a same-shaped table; returns seconds (rows prepared beforehand)."""
    import psycopg

    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    now = dt.datetime.now(dt.UTC)
    rows = []
    for b, batch in enumerate(records):
        activation_id, customer_id = activation_customer[b % len(activation_customer)]
        for r in batch:
            rows.append(
                (
                    customer_id, "sdk", f"activation:{activation_id}", r["id"], activation_id,
                    None, r["seq"], epoch + dt.timedelta(milliseconds=r["event_time"]), now,
                    r["frames"], r["pixels"], r["duration_ms"], r["bytes_delivered"],
                    r["baseline_bytes"], r["baseline_bytes"] - r["bytes_delivered"],
                    r["baseline_method"], r["psnr_db"], r["ms_ssim"], r["vmaf"],
                )
            )  # fmt: skip
    columns = (
        "customer_id, source_kind, source, client_record_id, activation_id, job_id, sequence, "
        "event_time, ingested_at, frames, pixels, duration_ms, bytes_delivered, "
        "baseline_bytes, bytes_saved, baseline_method, psnr_db, ms_ssim, vmaf"
    )
    with psycopg.connect(db_url) as conn:
        conn.execute("DROP TABLE IF EXISTS usage_copy")
        conn.execute("CREATE TABLE usage_copy (LIKE metering_usagerecord INCLUDING ALL)")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY usage_copy ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
        count = conn.execute("SELECT count(*) FROM usage_copy").fetchone()
    assert count is not None and count[0] == len(rows)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=200, help="measured batches of 1,000")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client connections")
    parser.add_argument("--devices", type=int, default=8, help="activations sending batches")
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/controlplane")
    if not base_url.startswith("postgres"):
        raise SystemExit("DATABASE_URL must point at PostgreSQL")

    print(f"preparing database and {args.devices} activations ...", file=sys.stderr)
    db_url = prepare_database(base_url, "_usage_bench")
    [licence_key] = issue_licences(db_url, 1, max_activations=args.devices + 1, rate_limit=100_000)
    port = free_port()
    server = start_gunicorn(db_url, port, args.workers)
    try:
        devices = activate(port, licence_key, args.devices)
        warmup, _ = make_batches(devices, args.devices * 2, first_seq=1)
        run_api(port, warmup, args.clients)  # connections, imports, caches
        print(f"signing {args.batches} batches ...", file=sys.stderr)
        batches, records = make_batches(devices, args.batches, first_seq=2 * BATCH + 1)
        api_s = run_api(port, batches, args.clients)
        replay_s = run_api_replay(port, batches[: max(1, args.batches // 10)], args.clients)
    finally:
        server.terminate()
        server.wait(timeout=30)

    import psycopg

    with psycopg.connect(db_url) as conn:
        mapping = dict(
            (str(a), str(c))
            for a, c in conn.execute(
                "SELECT a.id, l.customer_id FROM activation_activation a "
                "JOIN licences_licence l ON l.id = a.licence_id"
            ).fetchall()
        )
        stored = conn.execute("SELECT count(*) FROM metering_usagerecord").fetchone()
        rolled = conn.execute("SELECT sum(record_count) FROM metering_usagedailyrollup").fetchone()
    assert stored is not None and rolled is not None and stored[0] == rolled[0]
    copy_s = run_copy(db_url, [(a, mapping[a]) for a, _ in devices], records)

    n = args.batches * BATCH
    api_rate, copy_rate = n / api_s, n / copy_s
    replay_n = max(1, args.batches // 10) * BATCH
    print()
    print(f"{'path':<44}{'records':>10}{'seconds':>10}{'records/s':>12}")
    print(f"{'HTTP API, signed batches of 1,000':<44}{n:>10,}{api_s:>10.2f}{api_rate:>12,.0f}")
    print(
        f"{'HTTP API, replayed batches (all duplicates)':<44}{replay_n:>10,}{replay_s:>10.2f}"
        f"{replay_n / replay_s:>12,.0f}"
    )
    print(f"{'raw psycopg COPY, same rows':<44}{n:>10,}{copy_s:>10.2f}{copy_rate:>12,.0f}")
    print()
    print(
        f"API = {100 * api_rate / copy_rate:.0f}% of COPY (target >= 30%); "
        f"target >= 20,000 records/s: {'met' if api_rate >= 20_000 else 'NOT met'}; "
        f"gunicorn {args.workers} workers, {args.clients} clients, {os.cpu_count()} CPUs; "
        f"rows stored = rollup sum = {stored[0]:,}"
    )
    print(json.dumps({"records_per_s": round(api_rate), "copy_records_per_s": round(copy_rate)}))


def run_api_replay(port: int, batches: list[tuple[bytes, dict[str, str]]], clients: int) -> float:
    """Replays: every record a duplicate (counted, nothing stored)."""
    work: queue.Queue[tuple[bytes, dict[str, str]]] = queue.Queue()
    for item in batches:
        work.put(item)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            try:
                body, headers = work.get_nowait()
            except queue.Empty:
                return
            status, answer = _post(conn, PATH, body, headers)
            if status != 200 or answer["new"] != 0 or answer["duplicates"] != BATCH:
                raise SystemExit(f"replay not counted as duplicates: {status} {answer}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
