"""Domain errors of metering (all in core.errors' one family)."""

from __future__ import annotations

from rest_framework import status

from core.errors import Conflict, DomainError


class BatchSignatureInvalid(DomainError):
    """The batch does not verify with the activation's device key: tampered, or signed by
    another device. Nothing of it is stored."""

    code = "BATCH_SIGNATURE_INVALID"
    http_status = status.HTTP_401_UNAUTHORIZED


class BatchMalformed(DomainError):
    code = "BATCH_MALFORMED"
    http_status = status.HTTP_400_BAD_REQUEST


class BatchActivationMismatch(DomainError):
    """A correctly signed body names another activation than the one it was sent for."""

    code = "BATCH_ACTIVATION_MISMATCH"
    http_status = status.HTTP_400_BAD_REQUEST


class BatchTooLarge(DomainError):
    code = "BATCH_TOO_LARGE"
    http_status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


class EventTimeInFuture(DomainError):
    code = "EVENT_TIME_IN_FUTURE"
    http_status = status.HTTP_422_UNPROCESSABLE_ENTITY


class EventTimeTooOld(DomainError):
    code = "EVENT_TIME_TOO_OLD"
    http_status = status.HTTP_422_UNPROCESSABLE_ENTITY


class UsageRecordConflict(Conflict):
    """The same idempotency key was recorded earlier with other figures."""

    code = "USAGE_RECORD_CONFLICT"
