"""Domain errors of encode jobs (all in core.errors' one family, mapped to HTTP there)."""

from __future__ import annotations

from typing import Any

from rest_framework import status

from core.errors import Conflict, DomainError, Forbidden, NotFound


class JobNotFound(NotFound):
    code = "JOB_NOT_FOUND"


class JobNotCancellable(Conflict):
    code = "JOB_NOT_CANCELLABLE"


class JobOutputUnavailable(Conflict):
    """Output or preview asked for before the job succeeded."""

    code = "JOB_OUTPUT_UNAVAILABLE"


class NoUsableLicence(Conflict):
    code = "NO_ACTIVE_LICENCE"


class CustomerTokenRequired(Forbidden):
    code = "CUSTOMER_TOKEN_REQUIRED"


class _WithStatus(DomainError):
    """Sets its HTTP status per instance (the base class pins the attribute's type to 400)."""

    status_code: int = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("http_status", self.status_code)
        super().__init__(message, **kwargs)


class InputTooLarge(_WithStatus):
    code = "INPUT_TOO_LARGE"
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


class InputRejected(_WithStatus):
    """The upload is readable but outside the limits (resolution, frames), or unreadable."""

    code = "INPUT_REJECTED"
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
