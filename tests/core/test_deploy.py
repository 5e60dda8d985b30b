"""Deployment: `check --deploy` is clean with production values, production refuses default
secrets, .env.example names every variable the code reads, and the compose file validates with
a real compose parser (Debian's docker-compose, when installed)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


def production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env.update(
        PRODUCTION="1",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        SIGNING_KEY_KEK=secrets.token_urlsafe(32),
        DJANGO_ALLOWED_HOSTS="controlplane.example.com",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://controlplane.example.com",
        DJANGO_SECURE_PROXY_SSL_HEADER="1",
        DATABASE_URL="postgres://controlplane:pw@db.example.com:5432/controlplane",
        CELERY_BROKER_URL="redis://redis.example.com:6379/0",
        METRICS_TOKEN=secrets.token_urlsafe(24),
    )
    env.update(extra)
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_values() -> None:
    out = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert out.returncode == 0, out.stdout + out.stderr
    assert "System check identified no issues" in out.stdout


def test_production_refuses_to_start_without_its_secrets() -> None:
    env = production_env()
    del env["DJANGO_SECRET_KEY"]
    out = manage("check", env=env)
    assert out.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when PRODUCTION=1" in out.stderr


def test_env_example_names_every_variable_the_code_reads() -> None:
    example = (DOCKER / ".env.example").read_text()
    named = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    read: set[str] = set()
    pattern = re.compile(r"(?:env_(?:str|bool|int|list)|environ\.get|getenv)\(\s*\"([A-Z0-9_]+)\"")
    for path in [*(REPO / "platform").rglob("*.py"), *(REPO / "codec_engine").rglob("*.py")]:
        read |= set(pattern.findall(path.read_text()))
    ignored = {"DJANGO_SETTINGS_MODULE", "PYTHONPATH", "XDG_CONFIG_HOME", "HOME"}
    assert sorted(read - named - ignored) == []


def test_compose_file_validates() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install -y docker-compose)")
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "CONTROLPLANE_ENV_FILE": ".env.example",
    }
    out = subprocess.run(
        [binary, "-f", "compose.yaml", "--env-file", ".env.example", "config"],
        cwd=DOCKER,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    config = out.stdout
    for service in ("postgres:", "redis:", "migrate:", "web:", "worker:", "beat:"):
        assert f"\n  {service}" in config
    assert config.count("condition: service_completed_successfully") == 3
    assert "encode,celery" in config
