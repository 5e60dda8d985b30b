"""Writes of the licences app: products, policies, licences, signing keys, revocation lists."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
import uuid
from typing import Any

from customers.models import Customer
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

import licensing
from core.audit import Actor, audit_record
from core.errors import Conflict, DomainError, NotFound
from licences import keys
from licences.errors import LicenceNotFound, LicenceStateConflict, NoSigningKey
from licences.models import Licence, LicencePolicy, Product, RevocationList, SigningKey

ENTITLEMENT_FIELDS = (
    "features",
    "max_width",
    "max_height",
    "max_fps",
    "platforms",
    "model_versions",
)


def entitlements_of(data: dict[str, Any], *, max_activations: int) -> licensing.Entitlements:
    """Build the library's Entitlements from a stored JSON snapshot."""
    return licensing.Entitlements(
        features=tuple(data.get("features", ())),
        max_width=int(data.get("max_width", 0)),
        max_height=int(data.get("max_height", 0)),
        max_fps=int(data.get("max_fps", 0)),
        max_activations=max_activations,
        platforms=tuple(data.get("platforms", ())),
        model_versions=tuple(data.get("model_versions", ())),
    )


def _ts(value: dt.datetime) -> int:
    return int(value.timestamp())


# --- products and policies -------------------------------------------------------------------


def product_create(*, actor: Actor, code: str, name: str) -> Product:
    """Create a product. Writes an audit row; a duplicate code is a 409."""
    try:
        with transaction.atomic():
            product = Product.objects.create(code=code, name=name)
            audit_record(
                actor=actor,
                action="product.create",
                object_type="product",
                object_id=product.pk,
                changes={"code": code, "name": name},
            )
    except IntegrityError as exc:
        raise Conflict(f"Product {code!r} exists.", code="PRODUCT_EXISTS") from exc
    return product


def policy_create(
    *, actor: Actor, product_id: uuid.UUID, code: str, name: str, **fields: Any
) -> LicencePolicy:
    """Create a licence policy. `fields` are LicencePolicy's limit fields (validated by the
    caller's serializer). Writes an audit row; a duplicate code per product is a 409."""
    entitlements = fields.get("entitlements") or {}
    unknown = set(entitlements) - set(ENTITLEMENT_FIELDS)
    if unknown:
        raise DomainError(
            f"Unknown entitlement fields: {sorted(unknown)}.", code="VALIDATION_ERROR"
        )
    try:
        with transaction.atomic():
            if not Product.objects.filter(pk=product_id).exists():
                raise NotFound("No such product.", code="PRODUCT_NOT_FOUND")
            policy = LicencePolicy.objects.create(
                product_id=product_id, code=code, name=name, **fields
            )
            audit_record(
                actor=actor,
                action="policy.create",
                object_type="licence_policy",
                object_id=policy.pk,
                changes={"code": code, "name": name, **_jsonable(fields)},
            )
    except IntegrityError as exc:
        raise Conflict(f"Policy {code!r} exists for this product.", code="POLICY_EXISTS") from exc
    return policy


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v if isinstance(v, int | str | list | dict | None) else str(v))
        for k, v in fields.items()
    }


# --- signing keys ----------------------------------------------------------------------------


def signing_key_rotate(*, actor: Actor) -> SigningKey:
    """Generate a new Ed25519 key; it signs every token from now on. Older keys stay in the
    keyring (still verifying) until retired. Writes an audit row (never the key material)."""
    now = timezone.now()
    key_id = f"k{now:%Y%m%d}-{secrets.token_hex(4)}"
    key = licensing.SigningKey.generate(key_id)
    with transaction.atomic():
        row = SigningKey.objects.create(
            key_id=key_id,
            public_key=key.public_key_bytes(),
            encrypted_private_key=keys.seal_private_key(key_id, key.private_bytes()),
            created_at=now,
        )
        transaction.on_commit(keys.keyring_invalidate)
        audit_record(
            actor=actor,
            action="signing_key.rotate",
            object_type="signing_key",
            object_id=key_id,
            changes={"public_key": key.public_key_bytes().hex()},
        )
    return row


def signing_key_ensure(*, actor: Actor) -> SigningKey:
    """The newest active key, creating the first one if there is none (idempotent)."""
    row = SigningKey.objects.filter(state=SigningKey.State.ACTIVE).first()
    return row if row is not None else signing_key_rotate(actor=actor)


def signing_key_retire(*, actor: Actor, key_id: str) -> SigningKey:
    """Retire a key: verifiers then refuse its tokens (KEY_RETIRED). Refused (409) for the last
    active key, and while unexpired live licences or activation certificates depend on it."""
    now = timezone.now()
    with transaction.atomic():
        row = SigningKey.objects.select_for_update().filter(key_id=key_id).first()
        if row is None:
            raise NotFound("No such signing key.", code="SIGNING_KEY_NOT_FOUND")
        if row.state == SigningKey.State.RETIRED:
            raise Conflict("The key is already retired.", code="SIGNING_KEY_RETIRED")
        others = SigningKey.objects.filter(state=SigningKey.State.ACTIVE).exclude(pk=row.pk)
        if not others.exists():
            raise Conflict(
                "Rotate first: this is the last active signing key.", code="LAST_ACTIVE_KEY"
            )
        licences_in_use = Licence.objects.filter(
            signing_key=row,
            state__in=[Licence.State.ACTIVE, Licence.State.SUSPENDED],
            expires_at__gt=now,
        ).count()
        from activation.models import Activation  # activation depends on licences, not back

        certificates_in_use = Activation.objects.filter(
            certificate_key_id=key_id, certificate_valid_until__gt=now
        ).count()
        if licences_in_use or certificates_in_use:
            raise Conflict(
                "Live licences or certificates were signed with this key; reissue them or wait "
                "until they expire.",
                code="SIGNING_KEY_IN_USE",
                details={"licences": licences_in_use, "certificates": certificates_in_use},
            )
        row.state = SigningKey.State.RETIRED
        row.retired_at = now
        row.save(update_fields=["state", "retired_at"])
        transaction.on_commit(keys.keyring_invalidate)
        audit_record(
            actor=actor, action="signing_key.retire", object_type="signing_key", object_id=key_id
        )
    return row


# --- licences --------------------------------------------------------------------------------


def licence_issue(
    *,
    actor: Actor,
    customer_id: uuid.UUID,
    policy_id: uuid.UUID,
    not_before: dt.datetime | None = None,
    expires_at: dt.datetime | None = None,
    max_activations: int | None = None,
) -> Licence:
    """Issue a licence from a policy: sign a licence key with the newest signing key and store
    it. Writes an audit row. Defaults: valid from now for the policy's validity period, the
    policy's seat count."""
    now = timezone.now().replace(microsecond=0)
    with transaction.atomic():
        customer = Customer.objects.filter(pk=customer_id).first()
        if customer is None:
            raise NotFound("No such customer.", code="CUSTOMER_NOT_FOUND")
        policy = LicencePolicy.objects.select_related("product").filter(pk=policy_id).first()
        if policy is None:
            raise NotFound("No such licence policy.", code="POLICY_NOT_FOUND")
        snapshot = keys.keyring_snapshot(max_age_s=0)
        if snapshot.newest_key_id is None:
            raise NoSigningKey("No active signing key: run `manage.py rotate_signing_key`.")
        starts = (not_before or now).replace(microsecond=0)
        ends = (expires_at or starts + dt.timedelta(days=policy.licence_validity_days)).replace(
            microsecond=0
        )
        if ends <= starts:
            raise DomainError("expires_at must be after not_before.", code="VALIDATION_ERROR")
        if starts < LICENCE_TIME_MIN or ends > LICENCE_TIME_MAX:
            # Licence keys carry times as unsigned 32-bit seconds (see docs/licensing.md).
            raise DomainError(
                "not_before and expires_at must lie between 1970 and 2106.",
                code="VALIDATION_ERROR",
            )
        seats = max_activations or policy.max_activations
        entitlements = entitlements_of(policy.entitlements, max_activations=seats)
        licence_id = uuid.uuid4()
        claims = licensing.LicenceClaims(
            licence_id=str(licence_id),
            customer_id=str(customer.pk),
            product=policy.product.code,
            entitlements=entitlements,
            issued_at=_ts(now),
            not_before=_ts(starts),
            expires_at=_ts(ends),
            offline_grace_s=policy.offline_grace_s,
        )
        key = licensing.issue_licence_key(claims, keys.signer(snapshot.newest_key_id))
        licence = Licence.objects.create(
            id=licence_id,
            customer=customer,
            policy=policy,
            key=key,
            key_sha256=hashlib.sha256(key.encode()).hexdigest(),
            signing_key=SigningKey.objects.get(key_id=snapshot.newest_key_id),
            max_activations=seats,
            entitlements=entitlements.to_dict(),
            not_before=starts,
            expires_at=ends,
            issued_at=now,
        )
        audit_record(
            actor=actor,
            action="licence.issue",
            object_type="licence",
            object_id=licence.pk,
            customer_id=customer.pk,
            changes={
                "policy": str(policy.pk),
                "max_activations": seats,
                "not_before": starts.isoformat(),
                "expires_at": ends.isoformat(),
                "key_id": snapshot.newest_key_id,
            },
        )
    return licence


def _locked_licence(licence_id: uuid.UUID) -> Licence:
    licence = Licence.objects.select_for_update().filter(pk=licence_id).first()
    if licence is None:
        raise LicenceNotFound("No such licence.")
    return licence


def licence_suspend(*, actor: Actor, licence_id: uuid.UUID, reason: str = "") -> Licence:
    """active → suspended. Devices are refused at their next heartbeat and the licence joins
    the next revocation list (published here). Writes an audit row."""
    with transaction.atomic():
        licence = _locked_licence(licence_id)
        if licence.state != Licence.State.ACTIVE:
            raise LicenceStateConflict(
                f"Only an active licence can be suspended; it is {licence.state}."
            )
        licence.state = Licence.State.SUSPENDED
        licence.state_reason = reason
        licence.suspended_at = timezone.now()
        licence.save(update_fields=["state", "state_reason", "suspended_at", "updated_at"])
        _audit_state(actor, licence, "licence.suspend", reason)
        revocation_list_publish(actor=actor, reason=f"licence {licence.pk} suspended")
    return licence


def licence_reinstate(*, actor: Actor, licence_id: uuid.UUID, reason: str = "") -> Licence:
    """suspended → active; the licence leaves the next revocation list (published here)."""
    with transaction.atomic():
        licence = _locked_licence(licence_id)
        if licence.state != Licence.State.SUSPENDED:
            raise LicenceStateConflict(
                f"Only a suspended licence can be reinstated; it is {licence.state}."
            )
        licence.state = Licence.State.ACTIVE
        licence.state_reason = reason
        licence.save(update_fields=["state", "state_reason", "updated_at"])
        _audit_state(actor, licence, "licence.reinstate", reason)
        revocation_list_publish(actor=actor, reason=f"licence {licence.pk} reinstated")
    return licence


def licence_revoke(*, actor: Actor, licence_id: uuid.UUID, reason: str = "") -> Licence:
    """active/suspended → revoked (final). Its active activations become revoked, the licence
    joins the next revocation list (published here). Writes an audit row."""
    from activation.models import Activation  # activation depends on licences, not back

    with transaction.atomic():
        licence = _locked_licence(licence_id)
        if licence.state == Licence.State.REVOKED:
            raise LicenceStateConflict("The licence is already revoked.")
        now = timezone.now()
        licence.state = Licence.State.REVOKED
        licence.state_reason = reason
        licence.revoked_at = now
        licence.save(update_fields=["state", "state_reason", "revoked_at", "updated_at"])
        revoked = Activation.objects.filter(licence=licence, state=Activation.State.ACTIVE).update(
            state=Activation.State.REVOKED, ended_at=now
        )
        _audit_state(actor, licence, "licence.revoke", reason, activations_revoked=revoked)
        revocation_list_publish(actor=actor, reason=f"licence {licence.pk} revoked")
    return licence


def _audit_state(actor: Actor, licence: Licence, action: str, reason: str, **extra: Any) -> None:
    audit_record(
        actor=actor,
        action=action,
        object_type="licence",
        object_id=licence.pk,
        customer_id=licence.customer_id,
        changes={"state": licence.state, "reason": reason, **extra},
    )


# --- revocation lists ------------------------------------------------------------------------


# Any constant unique to this lock; PostgreSQL advisory locks share one 64-bit namespace.
_REVOCATION_PUBLISH_LOCK = 0x4E43_5231  # "NCR1"


LICENCE_TIME_MIN = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LICENCE_TIME_MAX = dt.datetime.fromtimestamp(2**32 - 1, tz=dt.UTC)


def _lock_revocation_publishing() -> None:
    """Serialise publishers until the transaction ends (SQLite already serialises writers)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_REVOCATION_PUBLISH_LOCK])


def revocation_list_publish(*, actor: Actor, reason: str = "") -> RevocationList:
    """Sign and store the next revocation list (serial + 1). Call inside the transaction of
    the change it reflects, so the serial and the change commit together.

    Contents: suspended or revoked licences not yet expired, and explicitly deactivated or
    revoked activations whose certificate (plus offline grace) could still be used. Released
    activations (missed heartbeats) are *not* listed: an offline device keeps its grace."""
    from activation.models import Activation  # activation depends on licences, not back

    now = timezone.now()
    with transaction.atomic():
        # Publishers take serials one after the other. Locking the newest row is not enough:
        # a waiter would re-read that same row and pick the same serial, so take a
        # transaction-scoped lock first and read the newest serial only once it is held.
        _lock_revocation_publishing()
        latest = RevocationList.objects.order_by("-serial").first()
        serial = (latest.serial if latest else 0) + 1
        licence_ids = {
            str(pk)
            for pk in Licence.objects.filter(
                state__in=[Licence.State.SUSPENDED, Licence.State.REVOKED], expires_at__gt=now
            ).values_list("id", flat=True)
        }
        activation_ids = {
            str(pk)
            for pk in Activation.objects.filter(
                Q(state=Activation.State.DEACTIVATED) | Q(state=Activation.State.REVOKED),
                certificate_valid_until__gt=now,
            ).values_list("id", flat=True)
        }
        snapshot = keys.keyring_snapshot()
        if snapshot.newest_key_id is None:
            raise NoSigningKey("No active signing key: run `manage.py rotate_signing_key`.")
        token = licensing.issue_revocation_list(
            licensing.RevocationList(
                serial=serial,
                issued_at=_ts(now),
                licence_ids=frozenset(licence_ids),
                activation_ids=frozenset(activation_ids),
            ),
            keys.signer(snapshot.newest_key_id),
        )
        row = RevocationList.objects.create(
            serial=serial,
            issued_at=now,
            token=token,
            signing_key_id=snapshot.newest_key_id,
            licence_count=len(licence_ids),
            activation_count=len(activation_ids),
            reason=reason[:200],
        )
        transaction.on_commit(revocation_cache_invalidate)
        audit_record(
            actor=actor,
            action="revocation_list.publish",
            object_type="revocation_list",
            object_id=serial,
            changes={
                "licences": len(licence_ids),
                "activations": len(activation_ids),
                "reason": reason[:200],
            },
        )
    return row


# Every activation and heartbeat answer carries the newest list. It changes only when a licence
# or activation is revoked, so each process keeps it for REVOCATION_TTL_S; the publishing
# process drops it at commit. Refusals never depend on it: they read the licence row.
REVOCATION_TTL_S = 2.0
_latest_list: tuple[float, RevocationList] | None = None


def revocation_cache_invalidate() -> None:
    global _latest_list
    _latest_list = None


def revocation_list_current(*, actor: Actor, max_age_s: float = REVOCATION_TTL_S) -> RevocationList:
    """The newest revocation list, publishing serial 1 on first use (idempotent)."""
    global _latest_list
    cached = _latest_list
    now = time.monotonic()
    if cached is not None and now - cached[0] < max_age_s:
        return cached[1]
    latest = RevocationList.objects.order_by("-serial").first()
    if latest is not None:
        _latest_list = (now, latest)
        return latest
    try:
        return revocation_list_publish(actor=actor, reason="initial list")
    except IntegrityError:
        # Another process published serial 1 at the same moment: serve that one.
        return RevocationList.objects.order_by("-serial").first()  # type: ignore[return-value]
