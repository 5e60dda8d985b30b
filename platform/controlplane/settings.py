"""Settings of the control plane, all taken from environment variables.

Defaults give the embedded setup (`make demo`): SQLite under ./var, tasks run eagerly, Stripe off.
Production sets DATABASE_URL, CELERY_BROKER_URL, DJANGO_SECRET_KEY, SIGNING_KEY_KEK,
STRIPE_API_KEY...
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent  # the repository root
VAR_DIR = Path(os.environ.get("CONTROLPLANE_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def _dev_secret(filename: str, nbytes: int = 32) -> str:
    """A per-checkout random secret kept in ./var (git-ignored) for the embedded setup only."""
    path = VAR_DIR / filename
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(nbytes))
    return path.read_text().strip()


DEBUG = env_bool("DJANGO_DEBUG", default=False)
# PRODUCTION=1 turns every secret default off: the process refuses to start without them.
PRODUCTION = env_bool("PRODUCTION", default=False)


def _required_secret(name: str, dev_file: str) -> str:
    value = env_str(name)
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(f"{name} must be set when PRODUCTION=1")
    return _dev_secret(dev_file)


SECRET_KEY = _required_secret("DJANGO_SECRET_KEY", "dev_secret_key")
# Key-encryption key for the Ed25519 signing keys stored in the database (never stored beside them).
SIGNING_KEY_KEK = _required_secret("SIGNING_KEY_KEK", "dev_signing_key_kek")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# HTTPS (docs/deployment.md): on by default with PRODUCTION=1, each one overridable. Behind a
# TLS-terminating proxy set DJANGO_SECURE_PROXY_SSL_HEADER=1 (only when the proxy overwrites
# X-Forwarded-Proto: otherwise a client could claim HTTPS).
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", default=PRODUCTION)
# Probes and scrapers speak plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", default=PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", default=PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", default=PRODUCTION)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env_bool("DJANGO_USE_X_FORWARDED_HOST", default=False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our own static files, no CDN
    "core",
    "customers",
    "licences",
    "activation",
    "metering",
    "billing",
    "jobs",
    "portal",
]

MIDDLEWARE = [
    "core.metrics.MetricsMiddleware",  # outermost: the latency covers the whole stack
    "core.middleware.RequestIdMiddleware",
    "core.logging.LogContextMiddleware",  # the request id in every log record of the request
    "django.middleware.security.SecurityMiddleware",
    # The SDK's activate and heartbeat (well-formed requests only) end here: see its docstring.
    "activation.middleware.SdkFastPathMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'controlplane.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        # A persistent connection is checked (`SELECT 1`) before its first use in a request, so
        # a database restart costs no request a 503 once it is back; the SDK hot path skips
        # the check (activation/pg.py) and retries on the client side instead.
        conn_health_checks=True,
    )
}
# Server-side prepared statements on the SDK hot path (activation/pg.py prepares its own on
# each connection). Turn off behind a pooler that cannot keep them across transactions
# (PgBouncer < 1.21 in transaction mode). psycopg itself prepares nothing: Django leaves its
# prepare_threshold at None, and it must stay so (psycopg would otherwise send DEALLOCATE ALL
# after any rollback, dropping the hot path's statements too).
DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; a busy timeout turns contention into waiting instead of errors.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGIN_URL = "portal:sign_in"
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("DJANGO_MEDIA_ROOT") or VAR_DIR / "media")

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": ["core.authentication.ApiTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Neural codec control plane API",
    "DESCRIPTION": "Licences, SDK activation, usage metering, savings invoices and encode jobs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "LicenceStateEnum": "licences.models.Licence.State",
        "ActivationStateEnum": "activation.models.Activation.State",
        "SigningKeyStateEnum": "licences.models.SigningKey.State",
        "ActivationEventKindEnum": "activation.models.ActivationEvent.Kind",
        "InvoiceStateEnum": "billing.models.Invoice.State",
        "InvoiceLineKindEnum": "billing.models.InvoiceLine.Kind",
        "EncodeJobStateEnum": "jobs.models.EncodeJob.State",
        "EncodeJobKindEnum": "jobs.models.EncodeJob.Kind",
    },
}

# Celery: with no broker configured, tasks run eagerly in-process (the embedded default).
# Eager mode follows the environment; the in-memory URL only keeps kombu from warning about a
# missing broker host when nothing is ever sent to it.
CELERY_TASK_ALWAYS_EAGER = not env_str("CELERY_BROKER_URL")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "memory://"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # Free the seats of devices whose heartbeats stopped for longer than their policy's window.
    # Every 2 minutes (Keygen's culling interval); expires so a backlog never stacks up runs.
    "release-stale-activations": {
        "task": "activation.release_stale_activations",
        "schedule": 120.0,
        "options": {"expires": 110},
    },
    # Monthly close: hourly, idempotent; invoices a month once its ingestion cutoff has passed.
    "close-billing-period": {"task": "billing.close_previous_months", "schedule": 3600.0},
    # Dunning: hourly; suspends licences when a payment is still failed after the grace period.
    "enforce-dunning": {"task": "billing.enforce_dunning", "schedule": 3600.0},
    # Encode jobs nobody looks after: past their time limit → failed, worker died → requeued,
    # never started → failed. Every minute (a lease is 60 s); expires so runs never stack up.
    "sweep-stuck-encode-jobs": {
        "task": "jobs.sweep_stuck_jobs",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
}

# Encode jobs (docs/jobs.md): upload limits, then time limits. Workers consume the "encode"
# queue only; a job's lease is renewed by its running attempt, so a dead worker is noticed.
JOBS_MAX_INPUT_BYTES = env_int("JOBS_MAX_INPUT_BYTES", 100 * 1024 * 1024)
JOBS_MAX_WIDTH = env_int("JOBS_MAX_WIDTH", 4096)
JOBS_MAX_HEIGHT = env_int("JOBS_MAX_HEIGHT", 4096)
JOBS_MAX_FRAMES = env_int("JOBS_MAX_FRAMES", 300)
JOBS_MAX_TOTAL_PIXELS = env_int("JOBS_MAX_TOTAL_PIXELS", 300_000_000)
JOBS_SOFT_TIME_LIMIT_S = env_int("JOBS_SOFT_TIME_LIMIT_S", 1800)
JOBS_TIME_LIMIT_S = env_int("JOBS_TIME_LIMIT_S", JOBS_SOFT_TIME_LIMIT_S + 60)
JOBS_LEASE_S = env_int("JOBS_LEASE_S", 60)
JOBS_MAX_ATTEMPTS = env_int("JOBS_MAX_ATTEMPTS", 3)
JOBS_MAX_RETRIES = env_int("JOBS_MAX_RETRIES", 4)
JOBS_QUEUE_TIMEOUT_S = env_int("JOBS_QUEUE_TIMEOUT_S", 24 * 3600)
# A queued job whose message may be lost (broker crash without persistence, a web process
# that died between commit and publish) is sent again after this long; duplicates are
# harmless (the claim), so this only bounds how long such a job can wait.
JOBS_REDISPATCH_AFTER_S = env_int("JOBS_REDISPATCH_AFTER_S", 600)
if not 0 < JOBS_SOFT_TIME_LIMIT_S < JOBS_TIME_LIMIT_S:
    raise ImproperlyConfigured(
        "JOBS_SOFT_TIME_LIMIT_S must be positive and below JOBS_TIME_LIMIT_S"
    )
CELERY_TASK_ROUTES = {"jobs.run_encode_job": {"queue": "encode"}}
# Publishing rides out a broker restart (about 15 s of retries); past that the job stays
# accepted and queued, and the sweeper sends it once the broker is back (jobs/services.py).
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": env_int("CELERY_PUBLISH_MAX_RETRIES", 12),
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 2,
}
# Redis redelivers an unacknowledged message after the visibility timeout: longer than the
# longest job (else a live job is delivered twice; harmless, the claim refuses it, but wasteful).
# A killed worker's job is picked up sooner by the sweeper (lease expired → requeued).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_S", JOBS_TIME_LIMIT_S + 300),
    "unacked_restore_interval": env_int("CELERY_UNACKED_RESTORE_INTERVAL_S", 10),
}

STRIPE_API_KEY = env_str("STRIPE_API_KEY")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = env_str(
    "STRIPE_API_BASE"
)  # tests point this at the local Stripe-compatible server

# Metrics at /metrics (core/metrics.py); with METRICS_TOKEN set, scrapers send it as a bearer.
METRICS_TOKEN = env_str("METRICS_TOKEN")

# JSON lines on stdout with request/task ids, secrets redacted (core/logging.py).
# LOG_FORMAT=text for a human-readable console.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "core.logging.ContextFilter"},
        "redact": {"()": "core.logging.RedactFilter"},
    },
    "formatters": {
        "json": {"()": "core.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "text" if env_str("LOG_FORMAT", "json") == "text" else "json",
            "filters": ["context", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
# The worker logs through LOGGING above (JSON, task ids), not Celery's own root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
