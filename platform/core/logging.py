"""Structured logs: one JSON object per line, with the request id or the Celery task id.

`LogContextMiddleware` (after core.middleware.RequestIdMiddleware) copies the request id into a
context variable for the duration of the request, so every record emitted while serving it
carries `request_id`, whichever library logs it. In a Celery worker `task_id` and `task` come
from the current task. `RedactFilter` is defence in depth: code must never log a secret, but
a token that slips into a message, an argument or a traceback is masked before it is written.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

# Our token formats (docs/licensing.md, core/tokens.py) and third-party secrets. A match keeps
# its prefix so an operator still sees *what kind* of secret was about to leak.
_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\b(NC[LCR]1\.)[A-Za-z0-9_.~+/=-]+"),  # licence keys, certificates, CRLs
    re.compile(r"\b(ncp_)[A-Za-z0-9_-]+"),  # API tokens
    re.compile(r"\b((?:sk|rk|pk)_(?:live|test)_)[A-Za-z0-9]+"),  # Stripe API keys
    re.compile(r"\b(sk_)[A-Za-z0-9]{16,}"),
    re.compile(r"\b(whsec_)[A-Za-z0-9+/=]+"),  # Stripe webhook secrets
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),  # Authorization header values
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
)
REDACTED = "[REDACTED]"


def _configured_secrets() -> list[str]:
    """Literal values of the secrets in settings (Django secret key, KEK, Stripe keys)."""
    try:
        from django.conf import settings

        names = ("SECRET_KEY", "SIGNING_KEY_KEK", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET")
        values = [str(getattr(settings, name, "") or "") for name in names]
        values.append(str(getattr(settings, "METRICS_TOKEN", "") or ""))
    except Exception:  # settings not configured (a bare script): patterns only
        return []
    return [value for value in values if len(value) >= 8]


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(
            lambda m: (m.group(1) if m.groups() else "") + REDACTED,
            text,
        )
    for value in _configured_secrets():
        if value in text:
            text = text.replace(value, REDACTED)
    return text


class RedactFilter(logging.Filter):
    """Masks secrets in the message, its arguments and the exception text of a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the raw template
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class ContextFilter(logging.Filter):
    """Adds `request_id` (during a request) and `task_id`/`task` (inside a Celery task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is None:
            # django.request logs 4xx/5xx after the middleware chain returned; it passes the
            # request along, which carries the id RequestIdMiddleware gave it.
            request_id = getattr(getattr(record, "request", None), "request_id", None)
        record.request_id = request_id
        task_id = task_name = None
        try:
            from celery._state import get_current_task

            task = get_current_task()
            if task is not None and task.request is not None and task.request.id:
                task_id, task_name = task.request.id, task.name
        except ImportError:  # pragma: no cover - celery is a dependency
            pass
        record.task_id = task_id
        record.task = task_name
        return True


# Attributes every LogRecord has; anything else was passed with `extra=` and is logged too.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_OWN = {"request_id", "task_id", "task"}


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "request_id"?, "task_id"?, ...extra, "exc"?}`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "task_id", "task"):
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in _OWN and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # Redact the final line too: extras and exception text bypass the filter's message pass.
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


class LogContextMiddleware:
    """Binds the request id set by RequestIdMiddleware to the logging context."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = request_id_var.set(getattr(request, "request_id", None))
        try:
            return self.get_response(request)
        finally:
            request_id_var.reset(token)
