"""Shared set-up for the benchmarks that run the real stack (gunicorn + PostgreSQL, loopback).

activation_load, usage_ingest and billing_close each need the same steps before they time
anything: a free loopback port, a freshly created and migrated database of their own on the
PostgreSQL of DATABASE_URL, licences issued through the services, and a gunicorn serving the
control plane. They live here once; each benchmark keeps its own database name, licence
policy and server options through the parameters.

Not a package: the benchmarks run as `python benchmarks/x.py`, which puts this folder on
sys.path, so they import it as `from _harness import ...`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it; we bind to port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_database(base_url: str, suffix: str) -> str:
    """Drop, create and migrate `<db><suffix>` on the PostgreSQL of base_url; return its URL.

    Each benchmark passes its own suffix so that runs never share (or wipe) another's data.
    """
    parsed = urlparse(base_url)
    name = (parsed.path.lstrip("/") or "controlplane") + suffix
    # Imported here so that a benchmark's parent process (which may fork clients) stays light.
    import psycopg

    # DROP/CREATE DATABASE cannot run inside a transaction, hence autocommit on `postgres`.
    with psycopg.connect(parsed._replace(path="/postgres").geturl(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = parsed._replace(path=f"/{name}").geturl()
    subprocess.run(
        [PY, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
    )
    return url


def issue_licences(db_url: str, count: int, *, max_activations: int, rate_limit: int) -> list[str]:
    """`count` licence keys of one customer and policy, issued through the services.

    max_activations is the policy's seats per licence; rate_limit is used for both the
    activation and the deactivation limit (set it high: the benchmarks measure throughput,
    not the abuse limits). Runs in a child process so that the parent never sets up Django.
    """
    code = f"""
import os, sys, json
sys.path[:0] = [{str(REPO / "platform")!r}, {str(REPO)!r}]
os.environ["DJANGO_SETTINGS_MODULE"] = "controlplane.settings"
import django
django.setup()
from core.audit import Actor
from customers.services import customer_create
from licences.services import licence_issue, policy_create, product_create, signing_key_ensure
actor = Actor.cli("benchmark")
signing_key_ensure(actor=actor)
customer = customer_create(actor=actor, name="Bench", slug="bench")
product = product_create(actor=actor, code="ncodec", name="Codec")
policy = policy_create(actor=actor, product_id=product.pk, code="bench", name="bench",
    entitlements={{"features": ["encode"]}}, max_activations={max_activations},
    activation_rate_limit={rate_limit}, deactivation_rate_limit={rate_limit})
keys = [licence_issue(actor=actor, customer_id=customer.pk, policy_id=policy.pk).key
        for _ in range({count})]
print(json.dumps(keys))
"""
    out = subprocess.run(
        [PY, "-c", code],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": db_url},
        check=True,
        capture_output=True,
        text=True,
    )
    # The last line only: Django or the services may print something before it.
    keys: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return keys


def start_gunicorn(
    db_url: str, port: int, workers: int, *, backlog: int | None = None
) -> subprocess.Popen[bytes]:
    """gunicorn (sync workers) serving the control plane on 127.0.0.1:port, once it is ready.

    backlog: gunicorn's --backlog, or its default when None. Waits up to 30 s for
    /health/ready/ to answer 200 (the database is reachable), else kills it and exits.
    """
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        # Persistent connections: a new connection per request would dominate the timings.
        "DATABASE_CONN_MAX_AGE": "600",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), str(REPO)]),
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    }
    command = [
        str(Path(PY).parent / "gunicorn"),
        "controlplane.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--log-level",
        "warning",
    ]
    if backlog is not None:
        command += ["--backlog", str(backlog)]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health/ready/")
            if conn.getresponse().status == 200:
                return proc
        except OSError:  # not listening yet (or reset while starting): try again
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("gunicorn did not become ready in 30 s")
