"""Domain errors of licences and activation (all in core.errors' one family)."""

from __future__ import annotations

from rest_framework import status

from core.errors import Conflict, DomainError, NotFound


class LicenceNotFound(NotFound):
    code = "LICENCE_NOT_FOUND"


class LicenceStateConflict(Conflict):
    """A state transition that is not allowed from the current state."""

    code = "INVALID_STATE_TRANSITION"


class LicenceRefused(DomainError):
    """The licence's state refuses the operation (SDK calls on suspended/revoked/expired)."""

    http_status = status.HTTP_403_FORBIDDEN


class NoSigningKey(DomainError):
    code = "NO_SIGNING_KEY"
    http_status = status.HTTP_503_SERVICE_UNAVAILABLE


def licence_refusal(state: str, *, revocation_serial: int | None = None) -> LicenceRefused:
    """The refusal for a licence that is not active: code LICENCE_<STATE>."""
    messages = {
        "suspended": "The licence is suspended. Contact your vendor.",
        "revoked": "The licence has been revoked.",
        "expired": "The licence has expired.",
    }
    details: dict[str, object] = {"licence_state": state}
    if revocation_serial is not None:
        details["revocation_serial"] = revocation_serial
    return LicenceRefused(
        messages.get(state, f"The licence is {state}."),
        code=f"LICENCE_{state.upper()}",
        details=details,
    )
