"""Fault-injection harness: private PostgreSQL and Redis instances, the app as a real server,
and the fault scenarios. Used by tests/reliability (quick) and benchmarks/reliability_report.py
(longer). Everything binds to 127.0.0.1 on free ports; nothing else on the machine is touched.

PostgreSQL: `initdb` in a temporary folder (as the `postgres` OS user when we are root, since
initdb refuses root), trust auth, fsync off (a restart here is a process restart; the page
cache survives it). Redis: `redis-server` with an append-only file, fsync on every write, so
queued broker messages survive a restart as they would on a production broker.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]
PY = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable
BIN = Path(PY).parent
LONG = os.environ.get("RELIABILITY_LONG") == "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


def missing_tools() -> list[str]:
    """Names of the binaries the harness needs and cannot find."""
    wanted = {"initdb": _pg_bin("initdb"), "pg_ctl": _pg_bin("pg_ctl")}
    wanted["redis-server"] = shutil.which("redis-server")
    missing = [name for name, path in wanted.items() if path is None]
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing.append("runuser (initdb refuses root)")
    return missing


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready within {timeout} s")


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


# --- PostgreSQL ------------------------------------------------------------------------------


class Postgres:
    """A private cluster. `restart()` is the fault: every connection is cut."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.restarts = 0

    def _run(self, args: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        return subprocess.run(prefix + args, check=True, capture_output=True, timeout=120, **kw)

    def init(self) -> None:
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        initdb = _pg_bin("initdb")
        assert initdb
        self._run([initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"])
        self.start()

    def start(self) -> None:
        pg_ctl = _pg_bin("pg_ctl")
        assert pg_ctl
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
            " -c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        self._run([pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"])

    def stop(self, mode: str = "fast") -> None:
        pg_ctl = _pg_bin("pg_ctl")
        assert pg_ctl
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run([pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"])

    def restart(self, down_s: float = 1.0, mode: str = "fast") -> None:
        self.stop(mode)
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    def url(self, db: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def execute(
        self, sql: str, db: str = "postgres", params: tuple[Any, ...] | None = None
    ) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url(db), autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    def clone(self, template: str, name: str) -> str:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)


# --- Redis -----------------------------------------------------------------------------------


class Redis:
    def __init__(self, root: Path, *, persistent: bool = True) -> None:
        self.root = root
        self.port = free_port()
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.root), "--save", "", "--protected-mode", "no"]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        log = (self.root / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: _tcp_open(self.port), 20, "redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # writes and fsyncs the AOF, then exits
            self.proc.wait(timeout=30)

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


# --- the application ------------------------------------------------------------------------


def app_env(db_url: str, broker_url: str | None, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "CELERY_", "PROMETHEUS_", "JOBS_", "METRICS_"))
    }
    env.update(
        DATABASE_URL=db_url,
        DATABASE_CONN_MAX_AGE="60",
        PYTHONPATH=os.pathsep.join([str(REPO / "platform"), str(REPO)]),
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        LOG_LEVEL="WARNING",
        CODEC_ENGINE_THREADS="1",
    )
    env.pop("PRODUCTION", None)
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    env.update(extra)
    return env


def migrate_template(pg: Postgres, name: str = "cp_template") -> str:
    pg.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [PY, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO,
        env=app_env(pg.url(name), None),
        check=True,
        timeout=300,
    )
    return name


_SEED = """
import json, sys, datetime as dt
from decimal import Decimal
import django
django.setup()
from core.audit import Actor
from core.models import ApiToken
from core.services import api_token_create
from customers.services import customer_create, customer_user_add, contract_terms_create
from licences.services import licence_issue, policy_create, product_create, signing_key_ensure
count = int(sys.argv[1])
actor = Actor.cli("reliability")
signing_key_ensure(actor=actor)
customer = customer_create(actor=actor, name="Reliability", slug="reliability")
customer_user_add(actor=actor, customer_id=customer.pk, username="rel", role="admin")
contract_terms_create(actor=actor, customer_id=customer.pk, effective_from=dt.date(2020, 1, 1),
    revenue_share_percent=Decimal("30.00"), value_per_gb=Decimal("0.020000"), currency="EUR",
    minimum_monthly_fee=0, billing_time_zone="UTC", payment_terms_days=30)
product = product_create(actor=actor, code="ncodec", name="Codec")
policy = policy_create(actor=actor, product_id=product.pk, code="rel", name="rel",
    entitlements={"features": ["encode", "decode"]}, max_activations=100000,
    activation_rate_limit=1000000, deactivation_rate_limit=1000000)
keys = [licence_issue(actor=actor, customer_id=customer.pk, policy_id=policy.pk).key
        for _ in range(count)]
operator = api_token_create(actor=actor, name="ops", scope=ApiToken.Scope.OPERATOR).secret
customer_token = api_token_create(actor=actor, name="rel", scope=ApiToken.Scope.CUSTOMER,
    customer_id=customer.pk).secret
print(json.dumps({"keys": keys, "operator": operator, "customer": customer_token,
                  "customer_id": str(customer.pk)}))
"""


@dataclass
class Seed:
    keys: list[str]
    operator: str
    customer: str
    customer_id: str


def seed(db_url: str, licences: int = 4) -> Seed:
    out = subprocess.run(
        [PY, "-c", _SEED, str(licences)],
        cwd=REPO,
        env=app_env(db_url, None),
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return Seed(data["keys"], data["operator"], data["customer"], data["customer_id"])


class Server:
    """gunicorn (gthread) serving controlplane.wsgi on a free loopback port."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 2, threads: int = 4) -> None:
        self.env = env
        self.log = log
        self.port = free_port()
        self.workers = workers
        self.threads = threads
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "gunicorn"),
                    "controlplane.wsgi:application",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    str(self.workers),
                    "--threads",
                    str(self.threads),
                    "--timeout",
                    "60",
                ],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.tail()}")
            try:
                return requests.get(self.url + "/health/live/", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, 60, "gunicorn")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_bytes()[-n:].decode(errors="replace") if self.log.exists() else ""


WORKER_ARGS = [
    "-A",
    "controlplane",
    "worker",
    "-Q",
    "encode,celery",
    "--concurrency",
    "1",
    "-P",
    "prefork",
    "-l",
    "info",
    "-n",
    "rel@%h",
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
]


class Worker:
    """`celery -A controlplane worker -Q encode,celery` (prefork, one child)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "celery"), *WORKER_ARGS],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{self.tail()}")
            return b" ready." in self.log.read_bytes()[offset:]

        wait_until(ready, timeout, "celery worker")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_bytes()[-n:].decode(errors="replace") if self.log.exists() else ""


# --- results ---------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    requests: int = 0
    faults: int = 0
    confirmed: int = 0
    lost: int = 0
    duplicates: int = 0
    server_errors: int = 0  # 5xx other than 503 (must be 0)
    unexpected: int = 0  # refusals that are neither success nor retryable (must be 0)
    retryable: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicates or self.server_errors or self.unexpected)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _activation_body(licence_key: str, fingerprint: str, key: Any) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization

    import licensing

    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    ts = int(time.time())
    message = licensing.activation_proof_message(
        licence_key=licence_key, fingerprint=fingerprint, device_public_key=public, timestamp=ts
    )
    signature = licensing.sign_with_device_key(key, licensing.ACTIVATION_PROOF_PURPOSE, message)
    return {
        "licence_key": licence_key,
        "fingerprint": fingerprint,
        "device_public_key": _b64(public),
        "platform": "linux-x86_64",
        "hostname": "rel",
        "timestamp": ts,
        "signature": _b64(signature),
    }


def new_device() -> tuple[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    import licensing

    ids = {name: secrets.token_hex(8) for name in ("machine_id", "hostname", "mac", "disk", "cpu")}
    fingerprint = licensing.fingerprint_from_identifiers(b"reliability", ids).to_string()
    return fingerprint, Ed25519PrivateKey.generate()


def activation_under_postgres_restarts(
    pg: Postgres,
    db: str,
    server: Server,
    keys: list[str],
    *,
    seconds: float,
    restarts: int,
    clients: int = 4,
    crash: bool = False,
) -> Result:
    """Clients activate new devices (retrying the same device on 503 or a connection error)
    while PostgreSQL is restarted `restarts` times. Then the client-confirmed activations are
    compared with the rows: none may be missing and no device may hold two activations."""
    result = Result("postgres restart during activations")
    before = {
        str(row[0]) for row in pg.execute("SELECT id::text FROM activation_activation", db=db)
    }
    confirmed: dict[str, str] = {}  # fingerprint -> activation id
    lock = threading.Lock()
    stop = threading.Event()
    began = time.monotonic()

    def client(n: int) -> None:
        session = requests.Session()
        url = server.url + "/api/v1/sdk/activate"
        i = 0
        while not stop.is_set():
            fingerprint, key = new_device()
            licence_key = keys[(n + i) % len(keys)]
            i += 1
            give_up = time.monotonic() + 60  # a started device is always finished
            while time.monotonic() < give_up:
                with lock:
                    result.requests += 1
                try:
                    response = session.post(
                        url, json=_activation_body(licence_key, fingerprint, key), timeout=15
                    )
                except requests.RequestException as exc:
                    with lock:
                        result.retryable[type(exc).__name__] += 1
                    session = requests.Session()
                    time.sleep(0.2)
                    continue
                if response.status_code in (200, 201):
                    with lock:
                        activation_id = response.json()["activation_id"]
                        previous = confirmed.setdefault(fingerprint, activation_id)
                        if previous != activation_id:
                            result.duplicates += 1
                    break
                if response.status_code == 503:
                    with lock:
                        result.retryable["503"] += 1
                        if "Retry-After" not in response.headers:
                            result.unexpected += 1
                            result.notes.append("a 503 without Retry-After")
                    time.sleep(0.2)
                    continue
                with lock:
                    if response.status_code >= 500:
                        result.server_errors += 1
                    else:
                        result.unexpected += 1
                    if len(result.notes) < 5:
                        result.notes.append(f"{response.status_code}: {response.text[:200]}")
                break
            else:
                with lock:
                    result.notes.append(f"device {fingerprint[:12]} never confirmed")

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    interval = seconds / (restarts + 1)
    for _ in range(restarts):
        time.sleep(interval)
        pg.restart(down_s=1.0, mode="immediate" if crash else "fast")
        result.faults += 1
    time.sleep(interval)
    stop.set()
    for thread in threads:
        thread.join(timeout=90)
    result.seconds = time.monotonic() - began

    rows = pg.execute("SELECT id::text, fingerprint FROM activation_activation", db=db)
    rows = [row for row in rows if str(row[0]) not in before]  # this run's rows only
    stored = {str(row[0]) for row in rows}
    by_fingerprint = Counter(str(row[1]) for row in rows)
    result.confirmed = len(confirmed)
    result.lost = sum(1 for activation_id in confirmed.values() if activation_id not in stored)
    result.duplicates += sum(n - 1 for n in by_fingerprint.values() if n > 1)
    unconfirmed = len(stored) - len(set(confirmed.values()) & stored)
    if unconfirmed:
        result.notes.append(f"{unconfirmed} rows no client confirmed")
    return result


def encode_jobs_under_broker_restarts(
    pg: Postgres,
    db: str,
    broker: Redis,
    server: Server,
    customer_token: str,
    *,
    jobs: int,
    restarts: int,
    seconds: float,
    size: int = 96,
    timeout: float = 150,
) -> Result:
    """Jobs submitted over HTTP to a real worker; the broker is restarted while they run (and
    once more before the second half is submitted). Every job must succeed exactly once: one
    terminal success, one usage record."""
    import io

    import numpy as np
    from PIL import Image

    result = Result("broker restart during encode jobs")
    began = time.monotonic()
    headers = {"Authorization": f"Bearer {customer_token}"}

    def png(seed: int) -> bytes:
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:size, 0:size].astype(np.float64)
        base = np.stack(
            [128 + 90 * np.sin(x / 5 + seed), 128 + 90 * np.cos(y / 4), x * 255 / size], -1
        )
        pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        return buf.getvalue()

    submitted: list[str] = []

    def submit(n: int) -> None:
        for _ in range(30):
            result.requests += 1
            try:
                response = requests.post(
                    server.url + "/api/v1/jobs/",
                    files={"input": (f"in{n}.png", png(n))},
                    data={"baseline": "jpeg", "quality": "1"},
                    headers=headers,
                    timeout=30,
                )
            except requests.RequestException as exc:
                result.retryable[type(exc).__name__] += 1
                time.sleep(0.5)
                continue
            if response.status_code == 202:
                submitted.append(response.json()["id"])
                return
            if response.status_code == 503:
                result.retryable["503"] += 1
                time.sleep(0.5)
                continue
            if response.status_code >= 500:
                result.server_errors += 1
            else:
                result.unexpected += 1
            result.notes.append(f"submit {response.status_code}: {response.text[:200]}")
            return

    # Submissions are spread over the run, so jobs are queued, running and being submitted
    # when the broker goes away.
    spacing = seconds / jobs

    def submitter() -> None:
        for n in range(jobs):
            submit(n)
            time.sleep(spacing)

    thread = threading.Thread(target=submitter, daemon=True)
    thread.start()
    for _ in range(restarts):
        time.sleep(seconds / (restarts + 1))
        broker.restart(down_s=1.0)
        result.faults += 1
    thread.join(timeout=seconds + 120)

    ids = (submitted,)
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline and submitted:
        rows = pg.execute(
            "SELECT id::text, state FROM jobs_encodejob WHERE id::text = ANY(%s)", db=db, params=ids
        )
        states = {str(r[0]): str(r[1]) for r in rows}
        if len(states) == len(submitted) and all(
            s in ("succeeded", "failed", "cancelled") for s in states.values()
        ):
            break
        time.sleep(0.5)
    result.seconds = time.monotonic() - began
    usage = Counter(
        str(r[0])
        for r in pg.execute(
            "SELECT job_id::text FROM metering_usagerecord WHERE job_id::text = ANY(%s)",
            db=db,
            params=ids,
        )
    )
    result.confirmed = len(submitted)
    result.lost = sum(1 for job_id in submitted if states.get(job_id) != "succeeded")
    result.duplicates = sum(n - 1 for n in usage.values() if n > 1)
    result.lost += sum(1 for job_id in submitted if usage[job_id] == 0)
    not_done = {
        job_id: states.get(job_id) for job_id in submitted if states.get(job_id) != "succeeded"
    }
    orphans = pg.execute(
        "SELECT count(*) FROM jobs_encodejob"
        " WHERE state NOT IN ('succeeded', 'failed', 'cancelled') AND NOT id::text = ANY(%s)",
        db=db,
        params=ids,
    )[0][0]
    if orphans:  # a row whose submission the client never saw confirmed and that never ran
        result.lost += int(orphans)
        result.notes.append(f"{orphans} unconfirmed job rows never ran")
    if not_done:
        result.notes.append(f"not succeeded: {not_done}")
    return result


@contextlib.contextmanager
def environment(long: bool = LONG) -> Iterator[dict[str, Any]]:
    """Private PostgreSQL (with a migrated template database) and Redis, torn down after."""
    root = Path(tempfile.mkdtemp(prefix="cp-reliability-"))
    os.chmod(root, 0o755)  # noqa: S103 - the postgres OS user must reach its folder
    pg_root = root / "pg"
    pg_root.mkdir()
    redis_root = root / "redis"
    redis_root.mkdir()
    pg = Postgres(pg_root)
    broker = Redis(redis_root)
    try:
        pg.init()
        broker.start()
        template = migrate_template(pg)
        yield {"root": root, "pg": pg, "redis": broker, "template": template, "long": long}
    finally:
        broker.stop()
        pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
