"""Activation and heartbeat load on the real stack: gunicorn + PostgreSQL, loopback only.

What it does (bounded, well under 90 s):
1. creates and migrates its own database (`<name>_bench`, dropped first) on the PostgreSQL of
   DATABASE_URL (default postgres://postgres@127.0.0.1:5432/controlplane);
2. issues licences through the services (a policy with plenty of seats and no effective rate
   limit: this measures throughput, not the abuse limits);
3. starts gunicorn (sync workers, persistent database connections) on a free loopback port;
4. drives, from concurrent client *processes*, for the same bounded time each:
   the trivial endpoint (/health/live/; half its time before, half after the others),
   activations, then heartbeats of those activations. Device keys, fingerprints and
   signatures are made before each timed loop;
5. prints a table and, as its LAST line, one JSON object:
   {"activations_per_s", "activation_p50_ms", "activation_p99_ms", "trivial_per_s", ...}.

Targets (issue 3): activations >= 40% of the trivial endpoint's throughput, p99 < 50 ms.
Run: .venv/bin/python benchmarks/activation_load.py [--seconds 8] [--clients 4] [--workers 3]

Why 3 sync workers and 4 clients on a 2-core machine (measured, issue 3): an activation ends
with a durable commit, and a sync worker is idle during the WAL flush, so more than one worker
per core is needed; with the activation's locked transaction down to two round trips, 3, 4
and 5 workers (4 to 8 clients) gave the same activation rate within the noise of the shared
machine, while the trivial endpoint got slower with more workers and clients (more processes
woken per connection on 2 cores). The configuration that serves the trivial endpoint best is
kept, so the ratio is not flattered by a slower baseline. More clients than workers only adds
queueing latency (p99) in a closed loop. Fairness: the trivial endpoint is measured with the
same gunicorn workers, the same client processes and code, in the same run.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _harness import free_port, issue_licences, prepare_database, start_gunicorn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `licensing` for the clients, without installing the project


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- load generator (child processes) ------------------------------------------------------------


def make_activation_bodies(keys: list[str], n: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """n activation request bodies (and the device private keys, raw) for distinct machines."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    import licensing

    now = int(time.time())
    bodies, private = [], []
    for i in range(n):
        key = keys[(seed * 7919 + i) % len(keys)]
        device = Ed25519PrivateKey.generate()
        public = device.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        ids = {c: secrets.token_hex(8) for c in ("machine_id", "hostname", "mac", "disk", "cpu")}
        fingerprint = licensing.fingerprint_from_identifiers(b"bench", ids).to_string()
        message = licensing.activation_proof_message(
            licence_key=key, fingerprint=fingerprint, device_public_key=public, timestamp=now
        )
        signature = licensing.sign_with_device_key(
            device, licensing.ACTIVATION_PROOF_PURPOSE, message
        )
        body = {
            "licence_key": key,
            "fingerprint": fingerprint,
            "device_public_key": _b64(public),
            "platform": "linux-x86_64",
            "hostname": f"bench-{seed}-{i}",
            "timestamp": now,
            "signature": _b64(signature),
        }
        bodies.append(json.dumps(body).encode())
        private.append(
            device.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        )
    return bodies, private


def make_heartbeat_bodies(devices: list[tuple[str, bytes]]) -> list[bytes]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    import licensing

    now = int(time.time())
    bodies = []
    for activation_id, raw in devices:
        message = json.dumps(
            {"action": "heartbeat", "activation_id": activation_id, "timestamp": now},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        signature = licensing.sign_with_device_key(
            Ed25519PrivateKey.from_private_bytes(raw), "codec-sdk/heartbeat/v1", message
        )
        bodies.append(
            json.dumps(
                {"activation_id": activation_id, "timestamp": now, "signature": _b64(signature)}
            ).encode()
        )
    return bodies


def client_loop(
    port: int,
    method: str,
    path: str,
    bodies: list[bytes] | None,
    start_at: float,
    seconds: float,
) -> tuple[list[float], int, list[bytes]]:
    """Closed loop: one request at a time until the deadline. Returns latencies (s), errors,
    and the response bodies of successful POSTs (activation ids for the heartbeat phase)."""
    headers = {"Content-Type": "application/json", "Connection": "close"}
    latencies: list[float] = []
    answers: list[bytes] = []
    errors = 0
    i = 0
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = start_at + seconds
    while True:
        now = time.perf_counter()
        if time.time() >= deadline or (bodies is not None and i >= len(bodies)):
            break
        body = bodies[i] if bodies is not None else None
        i += 1
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
        except OSError:
            errors += 1
            continue
        latencies.append(time.perf_counter() - now)
        if response.status >= 400:
            errors += 1
        elif body is not None:
            answers.append(data)
    return latencies, errors, answers


def _worker(conn: Any, port: int, keys: list[str], seed: int, seconds: float, budget: int) -> None:
    """One client process, on the parent's signal each: the trivial endpoint (first half of
    its time), activations, heartbeats, the trivial endpoint again (second half). Splitting
    the trivial phase around the others makes the ratio less sensitive to background load
    that drifts during the run."""
    results: dict[str, Any] = {}
    start_at = conn.recv()
    first = client_loop(port, "GET", "/health/live/", None, start_at, seconds / 2)[:2]
    bodies, private = make_activation_bodies(keys, budget, seed)
    conn.send("ready")
    start_at = conn.recv()
    latencies, errors, answers = client_loop(
        port, "POST", "/api/v1/sdk/activate", bodies, start_at, seconds
    )
    results["activate"] = (latencies, errors)
    devices = [
        (json.loads(answer)["activation_id"], private[i]) for i, answer in enumerate(answers)
    ]
    beats = make_heartbeat_bodies(devices * max(1, (budget // max(1, len(devices))) + 1))
    conn.send("ready")
    start_at = conn.recv()
    results["heartbeat"] = client_loop(
        port, "POST", "/api/v1/sdk/heartbeat", beats[:budget], start_at, seconds
    )[:2]
    conn.send("ready")
    start_at = conn.recv()
    second = client_loop(port, "GET", "/health/live/", None, start_at, seconds / 2)[:2]
    results["trivial"] = (first[0] + second[0], first[1] + second[1])
    conn.send(results)


# --- report --------------------------------------------------------------------------------------


def summarise(parts: list[tuple[list[float], int]], seconds: float) -> dict[str, float]:
    latencies = sorted(x for lat, _ in parts for x in lat)
    errors = sum(e for _, e in parts)
    if not latencies:
        return {"per_s": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "errors": float(errors), "n": 0.0}
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return {
        "per_s": (len(latencies) - errors) / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": p99 * 1000,
        "errors": float(errors),
        "n": float(len(latencies)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="per endpoint (trivial split in two halves)"
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent client processes")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument("--licences", type=int, default=200)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/controlplane"),
    )
    args = parser.parse_args()
    if args.seconds * 3 > 60:
        raise SystemExit("keep --seconds at 20 or below: the whole run must stay under 90 s")

    started = time.monotonic()
    db_url = prepare_database(args.database_url, "_bench")
    keys = issue_licences(db_url, args.licences, max_activations=100_000, rate_limit=1_000_000)
    port = free_port()
    server = start_gunicorn(db_url, port, args.workers, backlog=256)
    budget = 4000  # most requests one client can send in a phase (pre-signed)
    ctx = mp.get_context("fork")
    pipes, procs = [], []
    try:
        for seed in range(args.clients):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker, args=(child, port, keys, seed, args.seconds, budget), daemon=True
            )
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        phases: dict[str, list[tuple[list[float], int]]] = {}
        for _phase in ("trivial (first half)", "activate", "heartbeat", "trivial (second half)"):
            start_at = time.time() + 0.3
            for pipe in pipes:
                pipe.send(start_at)
            if not _phase.startswith("trivial (second"):
                for pipe in pipes:
                    assert pipe.recv() == "ready"
        for pipe in pipes:
            result = pipe.recv()
            for name, value in result.items():
                phases.setdefault(name, []).append(value)
        for proc in procs:
            proc.join(timeout=10)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()

    trivial = summarise(phases["trivial"], args.seconds)
    activate = summarise(phases["activate"], args.seconds)
    heartbeat = summarise(phases["heartbeat"], args.seconds)
    ratio = activate["per_s"] / trivial["per_s"] if trivial["per_s"] else 0.0
    print(
        f"gunicorn {args.workers} sync workers, {args.clients} client processes, "
        f"{args.seconds:.0f} s per phase, {os.cpu_count()} CPUs shared with PostgreSQL and clients"
    )
    print(f"{'endpoint':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'n':>8}")
    for name, row in (
        ("GET /health/live/", trivial),
        ("POST /api/v1/sdk/activate", activate),
        ("POST /api/v1/sdk/heartbeat", heartbeat),
    ):
        print(
            f"{name:<28}{row['per_s']:>10.1f}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}"
            f"{int(row['errors']):>8}{int(row['n']):>8}"
        )
    print(
        f"activation throughput = {ratio:.0%} of the trivial endpoint (target >= 40%); "
        f"activation p99 = {activate['p99_ms']:.1f} ms (target < 50 ms); "
        f"absolute {activate['per_s']:.0f} activations/s (aim 500). "
        f"Total run {time.monotonic() - started:.0f} s."
    )
    print(
        json.dumps(
            {
                "activations_per_s": round(activate["per_s"], 1),
                "activation_p50_ms": round(activate["p50_ms"], 2),
                "activation_p99_ms": round(activate["p99_ms"], 2),
                "trivial_per_s": round(trivial["per_s"], 1),
                "heartbeats_per_s": round(heartbeat["per_s"], 1),
                "heartbeat_p99_ms": round(heartbeat["p99_ms"], 2),
                "activation_to_trivial_ratio": round(ratio, 3),
                "errors": int(activate["errors"] + heartbeat["errors"] + trivial["errors"]),
            }
        )
    )


if __name__ == "__main__":
    main()
