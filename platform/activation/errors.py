"""Domain errors of the SDK endpoints (all in core.errors' one family)."""

from __future__ import annotations

from rest_framework import status

from core.errors import Conflict, DomainError, NotFound


class InvalidLicenceKey(DomainError):
    """The licence key does not verify; details.reason is the licensing library's code."""

    code = "INVALID_LICENCE_KEY"
    http_status = status.HTTP_401_UNAUTHORIZED


class ProofInvalid(DomainError):
    """The device signature does not verify against the (presented or registered) device key."""

    code = "PROOF_INVALID"
    http_status = status.HTTP_401_UNAUTHORIZED


class ClockSkew(DomainError):
    code = "CLOCK_SKEW"
    http_status = status.HTTP_400_BAD_REQUEST


class SeatLimitReached(Conflict):
    code = "SEAT_LIMIT_REACHED"


class ActivationNotFound(NotFound):
    code = "ACTIVATION_NOT_FOUND"


class ActivationInactive(Conflict):
    """The activation has ended (deactivated, released or revoked): activate again."""

    code = "ACTIVATION_INACTIVE"


class EntitlementMissing(DomainError):
    code = "ENTITLEMENT_MISSING"
    http_status = status.HTTP_403_FORBIDDEN
