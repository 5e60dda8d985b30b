"""One domain error family, mapped to HTTP in one place.

Every API error body has the same shape:
{"error": {"code": "...", "message": "...", "details": ...}}.
Services raise `DomainError` subclasses; views never build error responses by hand.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404
from kombu.exceptions import OperationalError as BrokerOperationalError
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class DomainError(Exception):
    """A refused operation: a stable machine-readable `code`, an HTTP status, a human message."""

    code: str = "ERROR"
    http_status: int = status.HTTP_400_BAD_REQUEST

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status
        self.details = details


class NotFound(DomainError):
    code = "NOT_FOUND"
    http_status = status.HTTP_404_NOT_FOUND


class Conflict(DomainError):
    code = "CONFLICT"
    http_status = status.HTTP_409_CONFLICT


class Forbidden(DomainError):
    code = "FORBIDDEN"
    http_status = status.HTTP_403_FORBIDDEN


class RateLimited(DomainError):
    code = "RATE_LIMITED"
    http_status = status.HTTP_429_TOO_MANY_REQUESTS


class ServiceUnavailable(DomainError):
    """A transient failure the caller should retry (database or broker briefly away)."""

    code = "SERVICE_UNAVAILABLE"
    http_status = status.HTTP_503_SERVICE_UNAVAILABLE


DB_RETRY_AFTER_S = 2


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return {"error": body}


_DRF_CODES: dict[type[drf_exceptions.APIException], str] = {
    drf_exceptions.ValidationError: "VALIDATION_ERROR",
    drf_exceptions.ParseError: "MALFORMED_REQUEST",
    drf_exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    drf_exceptions.NotAuthenticated: "NOT_AUTHENTICATED",
    drf_exceptions.AuthenticationFailed: "AUTHENTICATION_FAILED",
    drf_exceptions.PermissionDenied: "FORBIDDEN",
    drf_exceptions.NotFound: "NOT_FOUND",
    drf_exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    drf_exceptions.NotAcceptable: "NOT_ACCEPTABLE",
    drf_exceptions.Throttled: "RATE_LIMITED",
}


def domain_error_parts(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]] | None:
    """(status, body, headers) for a refused operation or a briefly absent database or broker;
    None for anything else. The one mapping used by DRF views and the SDK fast path."""
    if isinstance(exc, OperationalError | InterfaceError | BrokerOperationalError):
        # The database or the broker is away (restart, failover, connection limit): retryable,
        # never a 500.
        # Django drops the broken connection at the end of the request (CONN_HEALTH_CHECKS
        # revalidates a persistent one), so the next request reconnects.
        exc = ServiceUnavailable(
            "The service is briefly unavailable; retry shortly.",
            details={"retry_after_s": DB_RETRY_AFTER_S},
        )
    if not isinstance(exc, DomainError):
        return None
    headers: dict[str, str] = {}
    if isinstance(exc, ServiceUnavailable) and not isinstance(exc.details, dict):
        headers["Retry-After"] = str(DB_RETRY_AFTER_S)
    if isinstance(exc, RateLimited | ServiceUnavailable) and isinstance(exc.details, dict):
        retry_after = exc.details.get("retry_after_s")
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
    return exc.http_status, error_body(exc.code, exc.message, exc.details), headers


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: every error becomes the one JSON error shape."""
    parts = domain_error_parts(exc)
    if parts is not None:
        status_code, body, headers = parts
        return Response(body, status=status_code, headers=headers)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, drf_exceptions.APIException):
        return response  # an unexpected error: Django's 500 handling (logged, no detail leaked)

    code = next(
        (value for cls, value in _DRF_CODES.items() if isinstance(exc, cls)),
        str(exc.default_code).upper(),
    )
    if isinstance(exc, drf_exceptions.ValidationError):
        response.data = error_body(code, "The request is not valid.", exc.detail)
    else:
        response.data = error_body(code, str(exc.detail))
    return response
