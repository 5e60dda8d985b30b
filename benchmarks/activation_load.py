"""Activation and heartbeat load on the real stack: gunicorn + PostgreSQL, loopback only.

What it does (bounded, well under 90 s):
1. creates and migrates its own database (`<name>_bench`, dropped first) on the PostgreSQL of
   DATABASE_URL (default postgres://postgres@127.0.0.1:5432/controlplane);
2. issues licences through the services (a policy with plenty of seats and no effective rate
   limit: this measures throughput, not the abuse limits);
3. starts gunicorn (sync workers, persistent database connections) on a free loopback port;
4. drives, from concurrent client *processes*, `--rounds` interleaved rounds of: the trivial
   endpoint (/health/live/), activations, the trivial endpoint again (each endpoint gets
   `--seconds` in all); then heartbeats of those activations. Device keys, fingerprints and
   signatures are made before the timed phases;
5. prints a table and, as its LAST line, one JSON object:
   {"activations_per_s", "activation_p50_ms", "activation_p99_ms", "trivial_per_s", ...}.
   The ratio is the median over the rounds of activations/s against the trivial rate
   measured just before and after them: the machine's speed drifts by tens of percent within
   a run (other tenants of the host), and one long phase per endpoint let that drift decide
   the ratio (31 % to 44 % in three consecutive runs of the same code). Rates and
   latencies in the table are over all rounds. The database grows during the run (each
   round's activations are new seats), so later rounds are a little slower.

Targets (issue 3): activations >= 40% of the trivial endpoint's throughput, p99 < 50 ms.
Run: .venv/bin/python benchmarks/activation_load.py [--seconds 8] [--rounds 4] [--clients 4]
[--workers 3]

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
) -> tuple[list[float], int, list[tuple[int, bytes]], int]:
    """Closed loop: one request at a time until the deadline. Returns latencies (s), errors,
    (index in `bodies`, response body) of each successful POST (activation ids for the
    heartbeat phase), and how many requests were sent."""
    headers = {"Content-Type": "application/json", "Connection": "close"}
    latencies: list[float] = []
    answers: list[tuple[int, bytes]] = []
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
            answers.append((i - 1, data))
    return latencies, errors, answers, i


def _worker(conn: Any, port: int, keys: list[str], seed: int, budget: int) -> None:
    """One client process, driven by the parent: each command is (endpoint, start time,
    seconds) and is answered with (latencies, errors). Activation bodies (distinct machines,
    signed proofs) are made before the first phase and used up across the activation phases;
    "sign heartbeats" signs heartbeats for every activation made so far."""
    bodies, private = make_activation_bodies(keys, budget, seed)
    used = 0
    devices: list[tuple[str, bytes]] = []
    beats: list[bytes] = []
    conn.send("ready")
    while (command := conn.recv()) is not None:
        if command == "sign heartbeats":
            repeat = max(1, budget // max(1, len(devices)) + 1)
            beats = make_heartbeat_bodies((devices * repeat)[:budget])
            conn.send("ready")
            continue
        endpoint, start_at, seconds = command
        if endpoint == "trivial":
            latencies, errors, _, _ = client_loop(
                port, "GET", "/health/live/", None, start_at, seconds
            )
        elif endpoint == "activate":
            latencies, errors, answers, sent = client_loop(
                port, "POST", "/api/v1/sdk/activate", bodies[used:], start_at, seconds
            )
            devices += [
                (json.loads(data)["activation_id"], private[used + i]) for i, data in answers
            ]
            used += sent
        else:
            latencies, errors, _, _ = client_loop(
                port, "POST", "/api/v1/sdk/heartbeat", beats, start_at, seconds
            )
        conn.send((latencies, errors))


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
    parser.add_argument("--seconds", type=float, default=8.0, help="per endpoint, over all rounds")
    parser.add_argument(
        "--rounds", type=int, default=4, help="trivial / activate / trivial, interleaved"
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
    budget = 6000  # most activations one client can send in all rounds (pre-signed)
    ctx = mp.get_context("fork")
    pipes: list[Any] = []
    procs: list[Any] = []
    Phase = list[tuple[list[float], int]]  # one (latencies, errors) per client

    def run_phase(endpoint: str, seconds: float) -> Phase:
        start_at = time.time() + 0.2
        for pipe in pipes:
            pipe.send((endpoint, start_at, seconds))
        return [pipe.recv() for pipe in pipes]

    rounds: list[tuple[Phase, Phase]] = []  # (trivial around it, activate), per round
    try:
        for seed in range(args.clients):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, port, keys, seed, budget), daemon=True)
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        for pipe in pipes:
            assert pipe.recv() == "ready"
        slot = args.seconds / args.rounds
        for _ in range(args.rounds):
            before = run_phase("trivial", slot / 2)
            activate_phase = run_phase("activate", slot)
            after = run_phase("trivial", slot / 2)
            rounds.append((before + after, activate_phase))
        for pipe in pipes:
            pipe.send("sign heartbeats")
        for pipe in pipes:
            assert pipe.recv() == "ready"
        heartbeat_phase = run_phase("heartbeat", args.seconds)
        for pipe in pipes:
            pipe.send(None)
        for proc in procs:
            proc.join(timeout=10)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()

    trivial = summarise([part for t, _ in rounds for part in t], args.seconds)
    activate = summarise([part for _, a in rounds for part in a], args.seconds)
    heartbeat = summarise(heartbeat_phase, args.seconds)
    # Per round, activations against the trivial endpoint measured just before and after:
    # the median of those ratios holds when the shared machine speeds up or slows down.
    per_round = []
    for t, a in rounds:
        trivial_rate = summarise(t, slot)["per_s"]
        per_round.append(summarise(a, slot)["per_s"] / trivial_rate if trivial_rate else 0.0)
    ratio = statistics.median(per_round)
    print(
        f"gunicorn {args.workers} sync workers, {args.clients} client processes, "
        f"{args.seconds:.0f} s per endpoint in {args.rounds} interleaved rounds, "
        f"{os.cpu_count()} CPUs shared with PostgreSQL and clients"
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
    print("activations / trivial per round: " + ", ".join(f"{r:.0%}" for r in per_round))
    print(
        f"activation throughput = {ratio:.0%} of the trivial endpoint (median of the rounds; "
        f"target >= 40%); "
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
                "ratio_per_round": [round(r, 3) for r in per_round],
                "errors": int(activate["errors"] + heartbeat["errors"] + trivial["errors"]),
            }
        )
    )


if __name__ == "__main__":
    main()
