"""Fault-injection report: the reliability scenarios with longer loads and more faults.

Starts its own PostgreSQL and Redis on free loopback ports (tests/reliability/harness.py),
runs the app under gunicorn and a real Celery worker, and injects faults:
1. PostgreSQL restarted (clean stops, then crashes) during activation load;
2. Redis (the broker) restarted while encode jobs are submitted and run.
Prints a table, then as its LAST line one JSON object:
{"requests": ..., "faults": ..., "lost": ..., "duplicates": ...} (lost and duplicates must be 0).
Run: .venv/bin/python benchmarks/reliability_report.py [--seconds 30] [--jobs 20]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.reliability import harness  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="activation load per phase")
    parser.add_argument("--restarts", type=int, default=4, help="PostgreSQL restarts per phase")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--broker-restarts", type=int, default=3)
    args = parser.parse_args()
    missing = harness.missing_tools()
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 2

    results: list[harness.Result] = []
    with harness.environment(long=True) as env:
        pg: harness.Postgres = env["pg"]
        root: Path = env["root"]
        url = pg.clone(env["template"], "rep_activation")
        seed = harness.seed(url, licences=8)
        server = harness.Server(harness.app_env(url, None), root / "act-web.log")
        server.start()
        try:
            for crash in (False, True):
                result = harness.activation_under_postgres_restarts(
                    pg,
                    "rep_activation",
                    server,
                    seed.keys,
                    seconds=args.seconds,
                    restarts=args.restarts,
                    crash=crash,
                )
                result.scenario += " (crash)" if crash else " (clean stop)"
                results.append(result)
        finally:
            server.stop()

        broker: harness.Redis = env["redis"]
        url = pg.clone(env["template"], "rep_jobs")
        seed = harness.seed(url, licences=1)
        app_env = harness.app_env(
            url,
            broker.url(0),
            DJANGO_MEDIA_ROOT=str(root / "media"),
            JOBS_LEASE_S="5",
            CELERY_VISIBILITY_TIMEOUT_S="20",
            CELERY_UNACKED_RESTORE_INTERVAL_S="1",
            JOBS_SOFT_TIME_LIMIT_S="60",
            JOBS_TIME_LIMIT_S="90",
        )
        server = harness.Server(app_env, root / "jobs-web.log")
        worker = harness.Worker(app_env, root / "worker.log")
        server.start()
        worker.start()
        try:
            results.append(
                harness.encode_jobs_under_broker_restarts(
                    pg,
                    "rep_jobs",
                    broker,
                    server,
                    seed.customer,
                    jobs=args.jobs,
                    restarts=args.broker_restarts,
                    seconds=args.seconds,
                )
            )
        finally:
            worker.stop()
            server.stop()

    header = (
        f"{'scenario':<46} {'requests':>8} {'faults':>6} {'confirmed':>9} {'lost':>4} "
        f"{'dup':>4} {'5xx':>4} {'retryable':>9} {'seconds':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.scenario:<46} {r.requests:>8} {r.faults:>6} {r.confirmed:>9} {r.lost:>4} "
            f"{r.duplicates:>4} {r.server_errors:>4} {sum(r.retryable.values()):>9} "
            f"{r.seconds:>7.1f}"
        )
        for note in r.notes[:5]:
            print(f"    note: {note}")
    summary = {
        "requests": sum(r.requests for r in results),
        "faults": sum(r.faults for r in results),
        "lost": sum(r.lost for r in results),
        "duplicates": sum(r.duplicates for r in results),
    }
    print(json.dumps(summary))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
