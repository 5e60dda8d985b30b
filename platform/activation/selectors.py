"""Reads of the activation app, shared by the API and (later) the portal."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from django.db.models import QuerySet
from licences import keys
from licences.models import Licence

import licensing
from activation.models import Activation


def activation_list(
    *,
    scope_customer_id: uuid.UUID | None,
    licence_id: uuid.UUID | None = None,
    state: str | None = None,
) -> QuerySet[Activation]:
    """Activations visible to the caller (a customer sees only its own licences')."""
    qs = Activation.objects.select_related("licence")
    if scope_customer_id is not None:
        qs = qs.filter(licence__customer_id=scope_customer_id)
    if licence_id is not None:
        qs = qs.filter(licence_id=licence_id)
    if state:
        qs = qs.filter(state=state)
    return qs.order_by("-activated_at")


def activation_get(
    *, activation_id: uuid.UUID, scope_customer_id: uuid.UUID | None
) -> Activation | None:
    """An activation, or None when absent or outside the caller's scope (the API answers 404)."""
    return activation_list(scope_customer_id=scope_customer_id).filter(pk=activation_id).first()


@dataclass(frozen=True)
class KeyCheck:
    """The answer of /sdk/validate: a licensing code, and the licence when the key verified."""

    code: str
    licence: Licence | None
    activation_id: uuid.UUID | None = None

    @property
    def valid(self) -> bool:
        return self.code == licensing.Code.VALID


def licence_key_check(*, licence_key: str, fingerprint: str | None = None) -> KeyCheck:
    """Validate a licence key online: signature and time (licensing), then the licence's
    state in our database, then (optionally) that an active activation matches the
    fingerprint. Returns the first failing code of licensing.Code, or VALID. No side effects."""
    snapshot = keys.keyring_snapshot()
    try:
        claims = licensing.verify_licence_key(licence_key, snapshot.keyring)
    except licensing.LicensingError as exc:
        licence = None
        if exc.code in (licensing.Code.EXPIRED, licensing.Code.NOT_YET_VALID):
            licence = _licence_for_token(licence_key)
        return KeyCheck(code=str(exc.code), licence=licence)
    licence = Licence.objects.select_related("policy__product").filter(pk=claims.licence_id).first()
    if licence is None:
        return KeyCheck(code=str(licensing.Code.UNKNOWN_KEY), licence=None)
    state = licence.effective_state
    if state in (Licence.State.SUSPENDED, Licence.State.REVOKED):
        return KeyCheck(code=str(licensing.Code.REVOKED), licence=licence)
    if state == Licence.State.EXPIRED:
        return KeyCheck(code=str(licensing.Code.EXPIRED), licence=licence)
    if fingerprint is None:
        return KeyCheck(code=str(licensing.Code.VALID), licence=licence)
    try:
        presented = licensing.Fingerprint.from_string(fingerprint)
    except licensing.LicensingError:
        return KeyCheck(code=str(licensing.Code.MALFORMED), licence=licence)
    for activation_id, stored in Activation.objects.filter(
        licence=licence, state=Activation.State.ACTIVE
    ).values_list("id", "fingerprint"):
        try:
            if licensing.Fingerprint.from_string(stored).matches(presented):
                return KeyCheck(
                    code=str(licensing.Code.VALID), licence=licence, activation_id=activation_id
                )
        except licensing.LicensingError:
            continue
    return KeyCheck(code=str(licensing.Code.FINGERPRINT_MISMATCH), licence=licence)


def _licence_for_token(licence_key: str) -> Licence | None:
    """The licence row of a key that verified but is outside its time window."""
    return Licence.objects.filter(
        key_sha256=hashlib.sha256(licence_key.encode()).hexdigest()
    ).first()
