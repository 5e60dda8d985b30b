"""Writes of the activation app: activate, heartbeat, deactivate, release stale activations.

Concurrency: every seat change locks the licence row (SELECT ... FOR UPDATE) first, then
counts seats and recent events inside the same transaction. On PostgreSQL this serialises
seat changes per licence across processes, so a seat limit M holds under N > M parallel
activations, and rate limits hold across web workers.

Activation and heartbeat are the SDK hot path: on PostgreSQL they run the hand-written
statements of activation/pg.py (same rules, fewer round trips: see docs/control-plane.md,
Performance); on SQLite, the embedded default, the ORM path below.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import connection, models, transaction
from django.db.models import Value
from django.db.models.base import DEFERRED
from django.db.models.functions import Coalesce
from django.utils import timezone
from licences import keys
from licences.errors import NoSigningKey, licence_refusal
from licences.models import Licence, LicencePolicy, RevocationList
from licences.services import entitlements_of, revocation_list_current, revocation_list_publish

import licensing
from activation import pg, protocol
from activation.errors import (
    ActivationInactive,
    ActivationNotFound,
    ClockSkew,
    EntitlementMissing,
    InvalidLicenceKey,
    ProofInvalid,
    SeatLimitReached,
)
from activation.models import Activation, ActivationEvent
from core import metrics
from core.audit import Actor, audit_record, audit_record_many, audit_row_values
from core.errors import DomainError, RateLimited
from core.models import AuditLog


@dataclass(frozen=True)
class CertificateGrant:
    """What activate and heartbeat return: the activation, a fresh certificate and the newest
    revocation list."""

    activation: Activation
    licence: Licence
    certificate: str
    certificate_expires_at: int
    revocation: RevocationList
    server_time: int
    created: bool = False  # a new activation (HTTP 201)
    reactivated: bool = False  # an existing activation of the same machine was re-used


def _now() -> tuple[dt.datetime, int]:
    now = timezone.now()
    return now, int(now.timestamp())


def _check_timestamp(timestamp: int, now_ts: int) -> None:
    if abs(now_ts - timestamp) > protocol.TIMESTAMP_TOLERANCE_S:
        raise ClockSkew(
            "The request timestamp is too far from server time; correct the clock and retry.",
            details={"server_time": now_ts, "tolerance_s": protocol.TIMESTAMP_TOLERANCE_S},
        )


def _sdk_actor(request_id: str, label: str) -> Actor:
    return Actor(kind=AuditLog.ActorKind.SDK, label=label, request_id=request_id)


# The same licence key arrives from every device of a fleet, and its signature check is a pure
# function of the token and the keyring: remember the keys that verified, per keyring version
# (a rotation or retirement starts afresh). The validity window is checked on every request.
_VERIFIED_KEYS_MAX = 4096
_verified_keys: dict[tuple[str, str], licensing.LicenceClaims] = {}


def _verify_licence_key(
    licence_key: str, snapshot: keys.KeyringSnapshot, now_ts: int
) -> licensing.LicenceClaims:
    cache_key = (snapshot.version, licence_key)
    claims = _verified_keys.get(cache_key)
    try:
        if claims is None:
            claims = licensing.verify_licence_key(licence_key, snapshot.keyring, now=now_ts)
            if len(_verified_keys) >= _VERIFIED_KEYS_MAX:
                _verified_keys.clear()
            _verified_keys[cache_key] = claims
        else:
            licensing.check_validity_window(
                issued_at=claims.issued_at,
                not_before=claims.not_before,
                expires_at=claims.expires_at,
                now=now_ts,
                skew_s=licensing.DEFAULT_SKEW_S,
            )
    except licensing.LicensingError as exc:
        if exc.code == licensing.Code.EXPIRED:
            raise licence_refusal("expired") from exc
        if exc.code == licensing.Code.NOT_YET_VALID:
            raise licence_refusal("not_yet_valid") from exc
        raise InvalidLicenceKey(
            "The licence key is not valid.", details={"reason": str(exc.code)}
        ) from exc
    return claims


def _enforce_rate_limit(
    *, licence: Licence, kind: str, limit: int, window_s: int, now: dt.datetime
) -> None:
    """Refuse with 429 when `limit` events of `kind` happened in the last `window_s` seconds.
    Must run under the licence row lock, so concurrent requests count each other's rows."""
    recent = ActivationEvent.objects.filter(
        licence=licence, kind=kind, created_at__gt=now - dt.timedelta(seconds=window_s)
    )
    if recent.count() < limit:
        return
    oldest = recent.order_by("created_at").values_list("created_at", flat=True).first()
    raise _rate_limited(kind=kind, limit=limit, window_s=window_s, oldest=oldest, now=now)


def _issue_certificate(
    *,
    activation: Activation,
    licence: Licence,
    policy: LicencePolicy,
    now: dt.datetime,
    now_ts: int,
    snapshot: keys.KeyringSnapshot,
) -> tuple[str, int, str]:
    """Sign a certificate for `activation` with the newest key; returns (token, expiry, key id).
    A certificate never outlives its licence."""
    snapshot_key_id = _newest_key_id(snapshot)
    expires_ts = min(now_ts + policy.certificate_lifetime_s, int(licence.expires_at.timestamp()))
    claims = licensing.CertificateClaims(
        licence_id=str(licence.pk),
        activation_id=str(activation.pk),
        customer_id=str(licence.customer_id),
        fingerprint=activation.fingerprint,
        device_public_key=bytes(activation.device_public_key),
        entitlements=entitlements_of(licence.entitlements, max_activations=licence.max_activations),
        issued_at=now_ts,
        not_before=now_ts,
        expires_at=expires_ts,
        offline_grace_s=policy.offline_grace_s,
    )
    token = licensing.issue_certificate(claims, keys.signer(snapshot_key_id))
    return token, expires_ts, snapshot_key_id


def _newest_key_id(snapshot: keys.KeyringSnapshot) -> str:
    key_id = snapshot.newest_key_id
    if key_id is None:
        raise NoSigningKey("No active signing key.")
    return key_id


def _set_certificate(activation: Activation, token_expiry: int, key_id: str, grace_s: int) -> None:
    expires = dt.datetime.fromtimestamp(token_expiry, tz=dt.UTC)
    activation.certificate_expires_at = expires
    activation.certificate_valid_until = expires + dt.timedelta(seconds=grace_s)
    activation.certificate_key_id = key_id


def activation_activate(
    *,
    licence_key: str,
    fingerprint: str,
    device_public_key: bytes,
    platform: str,
    hostname: str,
    timestamp: int,
    signature: bytes,
    request_id: str = "",
) -> CertificateGrant:
    """Activate a device on a licence and return its certificate.

    Checks, in order: timestamp, licence key signature, fingerprint syntax, proof of
    possession of the device key, then under the licence row lock: licence state, platform
    entitlement, activation rate limit, and the seat limit. A fingerprint that tolerantly
    matches an active activation re-uses it (same id, no extra seat; the device key and
    certificate are replaced). Side effects: an Activation row (new or updated), an
    ActivationEvent, an audit row. Idempotent for the same device within the rate limit."""
    now, now_ts = _now()
    _check_timestamp(timestamp, now_ts)
    snapshot = keys.keyring_snapshot()
    claims = _verify_licence_key(licence_key, snapshot, now_ts)
    try:
        presented = licensing.Fingerprint.from_string(fingerprint)
    except licensing.LicensingError as exc:
        raise DomainError(
            "The fingerprint is malformed.",
            code="VALIDATION_ERROR",
            details={"fingerprint": [str(exc)]},
        ) from exc
    message = licensing.activation_proof_message(
        licence_key=licence_key,
        fingerprint=fingerprint,
        device_public_key=device_public_key,
        timestamp=timestamp,
    )
    try:
        licensing.verify_device_signature(
            device_public_key, protocol.ACTIVATE_PURPOSE, message, signature
        )
    except licensing.LicensingError as exc:
        raise ProofInvalid("The activation proof does not verify with the device key.") from exc

    key_sha = hashlib.sha256(licence_key.encode()).hexdigest()
    seat_request = _SeatRequest(
        licence_id=claims.licence_id,
        key_sha=key_sha,
        presented=presented,
        fingerprint=fingerprint,
        device_public_key=device_public_key,
        platform=platform,
        hostname=hostname,
        request_id=request_id,
        now=now,
        now_ts=now_ts,
        snapshot=snapshot,
    )
    if connection.vendor == "postgresql":
        activation, licence, token, expires_ts, match = _take_seat_postgresql(seat_request)
    else:
        activation, licence, token, expires_ts, match = _take_seat_orm(seat_request)
    metrics.activation_observed("reactivated" if match else "created")
    revocation = revocation_list_current(actor=Actor.system("revocation-list"))
    return CertificateGrant(
        activation=activation,
        licence=licence,
        certificate=token,
        certificate_expires_at=expires_ts,
        revocation=revocation,
        server_time=now_ts,
        created=not match,
        reactivated=match,
    )


@dataclass(frozen=True)
class _SeatRequest:
    """A verified activation request (key signature, fingerprint syntax, proof checked)."""

    licence_id: str
    key_sha: str
    presented: licensing.Fingerprint
    fingerprint: str
    device_public_key: bytes
    platform: str
    hostname: str
    request_id: str
    now: dt.datetime
    now_ts: int
    snapshot: keys.KeyringSnapshot


# (activation, licence, certificate, certificate expiry, re-used an existing activation)
_SeatTaken = tuple[Activation, Licence, str, int, bool]


def _unknown_licence() -> InvalidLicenceKey:
    # Signed by us but not (or no longer) a key we hold: treat as unknown.
    return InvalidLicenceKey("The licence key is not valid.", details={"reason": "UNKNOWN_LICENCE"})


def _check_licence_usable(licence: Licence, platform: str) -> None:
    """Under the licence row lock: licence state, then platform entitlement."""
    state = licence.effective_state
    if state != Licence.State.ACTIVE:
        raise licence_refusal(state)
    platforms = licence.entitlements.get("platforms") or []
    if platforms and platform not in platforms:
        raise EntitlementMissing(
            f"The licence does not cover platform {platform!r}.",
            details={"platforms": platforms},
        )


def _rate_limited(
    *, kind: str, limit: int, window_s: int, oldest: dt.datetime | None, now: dt.datetime
) -> RateLimited:
    retry_after = window_s if oldest is None else (oldest - now).total_seconds() + window_s
    return RateLimited(
        f"Too many {kind} requests for this licence; retry later.",
        details={
            "retry_after_s": max(1, math.ceil(retry_after)),
            "limit": limit,
            "window_s": window_s,
        },
    )


def _seat_limit(licence: Licence, active: int) -> SeatLimitReached:
    return SeatLimitReached(
        "Every seat of this licence is in use; deactivate a device first.",
        details={"max_activations": licence.max_activations, "active": active},
    )


def _new_activation(req: _SeatRequest, licence: Licence, activation_id: uuid.UUID) -> Activation:
    return Activation(
        id=activation_id,
        licence=licence,
        fingerprint=req.fingerprint,
        device_public_key=req.device_public_key,
        platform=req.platform,
        hostname=req.hostname,
        state=Activation.State.ACTIVE,
        activated_at=req.now,
        last_seen_at=req.now,
    )


def _activation_audit(req: _SeatRequest, licence: Licence) -> tuple[Actor, dict[str, Any]]:
    actor = _sdk_actor(req.request_id, f"licence:{licence.pk}")
    changes = {"licence": str(licence.pk), "platform": req.platform, "hostname": req.hostname}
    return actor, changes


def _take_seat_orm(req: _SeatRequest) -> _SeatTaken:
    """The portable path (SQLite, the embedded default): the same rules through the ORM."""
    now = req.now
    with transaction.atomic():
        licence = (
            Licence.objects.select_for_update(of=("self",))
            .select_related("policy")
            .filter(pk=req.licence_id)
            .first()
        )
        if licence is None or licence.key_sha256 != req.key_sha:
            raise _unknown_licence()
        _check_licence_usable(licence, req.platform)
        policy = licence.policy
        _enforce_rate_limit(
            licence=licence,
            kind=ActivationEvent.Kind.ACTIVATE,
            limit=policy.activation_rate_limit,
            window_s=policy.activation_rate_window_s,
            now=now,
        )
        active = list(
            Activation.objects.filter(licence=licence, state=Activation.State.ACTIVE)
            .order_by("-activated_at")
            .only("id", "fingerprint")
        )
        match = next(
            (a for a in active if _fingerprint_matches(a.fingerprint, req.presented)), None
        )
        if match is None and len(active) >= licence.max_activations:
            raise _seat_limit(licence, len(active))
        activation = _new_activation(req, licence, match.pk if match else uuid.uuid4())
        token, expires_ts, key_id = _issue_certificate(
            activation=activation,
            licence=licence,
            policy=policy,
            now=now,
            now_ts=req.now_ts,
            snapshot=req.snapshot,
        )
        _set_certificate(activation, expires_ts, key_id, policy.offline_grace_s)
        if match is None:
            activation.save(force_insert=True)
        else:
            # The instance was built fresh (no extra SELECT of the whole row), so update by pk.
            Activation.objects.filter(pk=activation.pk).update(
                fingerprint=req.fingerprint,
                device_public_key=req.device_public_key,
                platform=req.platform,
                hostname=req.hostname,
                last_seen_at=now,
                certificate_expires_at=activation.certificate_expires_at,
                certificate_valid_until=activation.certificate_valid_until,
                certificate_key_id=key_id,
            )
        ActivationEvent.objects.create(
            licence=licence,
            activation=activation,
            kind=ActivationEvent.Kind.ACTIVATE,
            created_at=now,
        )
        actor, changes = _activation_audit(req, licence)
        audit_record(
            actor=actor,
            action="activation.create" if match is None else "activation.reactivate",
            object_type="activation",
            object_id=activation.pk,
            customer_id=licence.customer_id,
            changes=changes,
        )
    return activation, licence, token, expires_ts, match is not None


_M = TypeVar("_M", bound=models.Model)


def _loaded(model: type[_M], related: dict[str, models.Model] | None = None, **values: Any) -> _M:
    """An instance of a row this request read or wrote, built as QuerySet.only() builds one
    (Model.from_db: no defaults computed; fields not given are deferred and load on access),
    with `related` objects already cached (no query on access)."""
    row = [values.pop(f.attname, DEFERRED) for f in model._meta.concrete_fields]
    if values:
        raise TypeError(f"{model.__name__} has no fields {sorted(values)}")
    instance = model.from_db(connection.alias, (), row)
    for name, obj in (related or {}).items():
        model._meta.get_field(name).set_cached_value(instance, obj)  # type: ignore[union-attr]
    return instance


def _json_field(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _take_seat_postgresql(req: _SeatRequest) -> _SeatTaken:
    """The same rules as `_take_seat_orm` with one durable commit (see activation/pg.py): a new
    machine on a licence row this process has read before in one round trip, [BEGIN; lock;
    conditional insert; COMMIT]; otherwise (or when that wrote nothing) two: [BEGIN; lock
    licence + policy; read events + seats under the lock], then [write activation + event +
    audit row; COMMIT]. Inside a caller's transaction it runs in a savepoint and leaves the
    commit to the caller."""
    try:
        licence_id = uuid.UUID(req.licence_id)
    except (TypeError, ValueError, AttributeError):
        raise _unknown_licence() from None
    if connection.in_atomic_block or not connection.get_autocommit():
        with transaction.atomic():
            return _take_seat_pg(req, licence_id, own_transaction=False)
    try:
        return _take_seat_pg(req, licence_id, own_transaction=True)
    except BaseException:
        pg.rollback_quietly()
        raise


def _take_seat_pg(req: _SeatRequest, licence_id: uuid.UUID, *, own_transaction: bool) -> _SeatTaken:
    row = _licence_rows.get(licence_id)
    if row is not None:
        taken = _take_new_seat_in_one_trip(req, licence_id, row, own_transaction=own_transaction)
        if taken is not None:
            return taken
    return _take_seat_statements(req, licence_id, own_transaction=own_transaction)


# The LOCK_LICENCE row (licence + policy columns) this process read last, per licence: the
# one-trip path decides on it and has PostgreSQL check, under the lock, that it still holds.
_licence_rows: dict[uuid.UUID, tuple[Any, ...]] = {}
_LICENCE_ROWS_MAX = 4096


def _remember_licence_row(licence_id: uuid.UUID, row: tuple[Any, ...]) -> None:
    if len(_licence_rows) >= _LICENCE_ROWS_MAX and licence_id not in _licence_rows:
        _licence_rows.clear()
    _licence_rows[licence_id] = row


def _licence_from_row(
    licence_id: uuid.UUID, key_sha: str, row: tuple[Any, ...]
) -> tuple[Licence, LicencePolicy]:
    (customer_id, policy_id, state, _, max_activations, entitlements, expires_at) = row[:7]
    lifetime_s, grace_s, window_s, rate_limit, rate_window_s = row[7:]
    policy = _loaded(
        LicencePolicy,
        id=policy_id,
        certificate_lifetime_s=lifetime_s,
        offline_grace_s=grace_s,
        heartbeat_window_s=window_s,
        activation_rate_limit=rate_limit,
        activation_rate_window_s=rate_window_s,
    )
    licence = _loaded(
        Licence,
        {"policy": policy},
        id=licence_id,
        customer_id=customer_id,
        policy_id=policy_id,
        state=state,
        key_sha256=key_sha,
        max_activations=max_activations,
        entitlements=_json_field(entitlements),
        expires_at=expires_at,
    )
    return licence, policy


def _seat_written(
    req: _SeatRequest, licence: Licence, policy: LicencePolicy, match_id: uuid.UUID | None
) -> tuple[Activation, str, int, list[Any], list[Any]]:
    """The activation as it will be written, its certificate (token, expiry), and the values
    of the write: the activation's columns (INSERT_ACTIVATION's order, or REACTIVATE's when
    `match_id` re-uses an activation), then the event's and the audit row's."""
    now = req.now
    activation = _loaded(
        Activation,
        {"licence": licence},
        id=match_id or uuid.uuid4(),
        licence_id=licence.pk,
        fingerprint=req.fingerprint,
        device_public_key=req.device_public_key,
        platform=req.platform,
        hostname=req.hostname,
        state=Activation.State.ACTIVE.value,
        activated_at=now,
        last_seen_at=now,
    )
    token, expires_ts, key_id = _issue_certificate(
        activation=activation,
        licence=licence,
        policy=policy,
        now=now,
        now_ts=req.now_ts,
        snapshot=req.snapshot,
    )
    _set_certificate(activation, expires_ts, key_id, policy.offline_grace_s)
    if match_id is None:
        columns = [
            activation.pk,
            licence.pk,
            req.fingerprint,
            req.device_public_key,
            req.platform,
            req.hostname,
            activation.state,
            now,
            now,
            key_id,
            activation.certificate_expires_at,
            activation.certificate_valid_until,
        ]
    else:
        columns = [
            req.fingerprint,
            req.device_public_key,
            req.platform,
            req.hostname,
            now,
            activation.certificate_expires_at,
            activation.certificate_valid_until,
            key_id,
            activation.pk,
        ]
    actor, changes = _activation_audit(req, licence)
    event_and_audit = [licence.pk, activation.pk, ActivationEvent.Kind.ACTIVATE.value, now]
    event_and_audit += audit_row_values(
        actor=actor,
        action="activation.create" if match_id is None else "activation.reactivate",
        object_type="activation",
        object_id=activation.pk,
        customer_id=licence.customer_id,
        changes=changes,
        created_at=now,
    )
    return activation, token, expires_ts, columns, event_and_audit


def _take_new_seat_in_one_trip(
    req: _SeatRequest, licence_id: uuid.UUID, row: tuple[Any, ...], *, own_transaction: bool
) -> _SeatTaken | None:
    """A new activation in one round trip, decided on the licence row this process read last
    (`row`); PostgreSQL writes it only if, under the lock, that row is unchanged and the seat
    rules leave nothing to decide (pg.INSERT_ACTIVATION_IF_FREE). None when it wrote nothing:
    the caller then runs the full path, which also gives any refusal on the current row."""
    if row[3] != req.key_sha:
        return None
    licence, policy = _licence_from_row(licence_id, req.key_sha, row)
    try:
        _check_licence_usable(licence, req.platform)
    except DomainError:
        return None
    activation, token, expires_ts, columns, event_and_audit = _seat_written(
        req, licence, policy, None
    )
    active_state = Activation.State.ACTIVE.value
    conditions = [
        licence_id,
        *row,
        *(licence_id, ActivationEvent.Kind.ACTIVATE.value, req.now),
        *(licence_id, active_state),
        *(licence_id, active_state, _component_needles(req.presented)),
    ]
    # The statement takes licence_id from the licence row, and the event's licence and
    # activation ids from the activation it inserted.
    params = [*conditions, columns[0], *columns[2:], *event_and_audit[2:]]
    statements: list[tuple[str, Any]] = [("BEGIN", None)] if own_transaction else []
    statements += [(pg.LOCK_LICENCE, (licence_id,)), (pg.INSERT_ACTIVATION_IF_FREE, params)]
    # The commit is the default, durable one; when nothing was written it only ends the lock.
    statements += [("COMMIT", None)] if own_transaction else []
    results = pg.execute_batch(statements)
    locked, inserted = results[1:3] if own_transaction else results[0:2]
    if inserted.rowcount != 1:
        if locked.rows:
            _remember_licence_row(licence_id, locked.rows[0])
        else:
            _licence_rows.pop(licence_id, None)
        return None
    return activation, licence, token, expires_ts, False


def _take_seat_statements(
    req: _SeatRequest, licence_id: uuid.UUID, *, own_transaction: bool
) -> _SeatTaken:
    now = req.now
    active_state = Activation.State.ACTIVE.value
    activate = ActivationEvent.Kind.ACTIVATE.value
    statements: list[tuple[str, Any]] = [("BEGIN", None)] if own_transaction else []
    statements += [
        (pg.LOCK_LICENCE, (licence_id,)),
        (
            pg.SEATS,
            (
                *(licence_id, activate, now, licence_id),
                *(licence_id, active_state),
                *(licence_id, active_state, _component_needles(req.presented)),
            ),
        ),
    ]
    *_, locked_rows, seat_rows = pg.execute_batch(statements)
    locked, seats = locked_rows.rows, seat_rows.rows
    if not locked or locked[0][3] != req.key_sha:
        raise _unknown_licence()
    row = locked[0]
    _remember_licence_row(licence_id, row)
    licence, policy = _licence_from_row(licence_id, req.key_sha, row)
    max_activations, rate_limit = licence.max_activations, policy.activation_rate_limit
    rate_window_s = policy.activation_rate_window_s
    _check_licence_usable(licence, req.platform)
    if seats[0][0] >= rate_limit:
        since = now - dt.timedelta(seconds=rate_window_s)
        (oldest,) = pg.execute_batch([(pg.OLDEST_EVENT, (licence_id, activate, since))])
        raise _rate_limited(
            kind=activate,
            limit=rate_limit,
            window_s=rate_window_s,
            oldest=oldest.rows[0][0],
            now=now,
        )
    in_use = seats[0][1]
    # Only activations sharing a component with the presented fingerprint came back (a match
    # needs a majority of equal components); newest first, like the ORM path.
    candidates = [(pk, stored) for _, _, pk, stored in seats if pk is not None]
    match_id = next(
        (pk for pk, stored in candidates if _fingerprint_matches(stored, req.presented)), None
    )
    if match_id is None and in_use >= max_activations:
        raise _seat_limit(licence, in_use)
    activation, token, expires_ts, columns, event_and_audit = _seat_written(
        req, licence, policy, match_id
    )
    sql = pg.INSERT_ACTIVATION if match_id is None else pg.REACTIVATE
    params = columns + event_and_audit
    # The commit is the default, durable one: the activation is a state change.
    pg.execute_batch([(sql, params)] + ([("COMMIT", None)] if own_transaction else []))
    return activation, licence, token, expires_ts, match_id is not None


def _fingerprint_matches(stored: str, presented: licensing.Fingerprint) -> bool:
    parsed = _stored_fingerprint(stored)
    return parsed is not None and parsed.matches(presented)


def _component_needles(presented: licensing.Fingerprint) -> list[str]:
    """`name=value` of each component: a stored fingerprint string that contains none of them
    shares no component with `presented`, so cannot match it (`Fingerprint.matches` needs a
    strict majority of equal components)."""
    return [f"{name}={value}" for name, value in presented.components.items()]


@functools.lru_cache(maxsize=8192)
def _stored_fingerprint(stored: str) -> licensing.Fingerprint | None:
    """Stored fingerprints are compared on every activation of their licence; parse each
    string once per process (a Fingerprint is immutable)."""
    try:
        return licensing.Fingerprint.from_string(stored)
    except licensing.LicensingError:
        return None


def _load_signed_activation(
    *, activation_id: uuid.UUID, action: str, purpose: str, timestamp: int, signature: bytes
) -> Activation:
    activation = _load_activation(activation_id)
    if activation is None:
        raise ActivationNotFound("No such activation.")
    message = protocol.device_request_message(
        action=action, activation_id=str(activation_id), timestamp=timestamp
    )
    try:
        licensing.verify_device_signature(
            bytes(activation.device_public_key), purpose, message, signature
        )
    except licensing.LicensingError as exc:
        raise ProofInvalid("The request signature does not verify with the device key.") from exc
    return activation


def _load_activation(activation_id: uuid.UUID) -> Activation | None:
    """The activation with its licence and policy (one query)."""
    if connection.vendor != "postgresql":
        return Activation.objects.select_related("licence__policy").filter(pk=activation_id).first()
    # Raw SQL: the ORM spends more time building this join than PostgreSQL answering it.
    (loaded,) = pg.execute_batch([(pg.LOAD_FOR_HEARTBEAT, (activation_id,))])
    if not loaded.rows:
        return None
    row = loaded.rows[0]
    (licence_id, fingerprint, device_public_key, platform, hostname, state) = row[:6]
    (activated_at, first_beat, last_beat, last_seen, ended_at) = row[6:11]
    (key_id, cert_expires, cert_valid_until) = row[11:14]
    (customer_id, policy_id, licence_state, max_activations, entitlements, expires_at) = row[14:20]
    lifetime_s, grace_s, window_s = row[20:]
    policy = _loaded(
        LicencePolicy,
        id=policy_id,
        certificate_lifetime_s=lifetime_s,
        offline_grace_s=grace_s,
        heartbeat_window_s=window_s,
    )
    licence = _loaded(
        Licence,
        {"policy": policy},
        id=licence_id,
        customer_id=customer_id,
        policy_id=policy_id,
        state=licence_state,
        max_activations=max_activations,
        entitlements=_json_field(entitlements),
        expires_at=expires_at,
    )
    return _loaded(
        Activation,
        {"licence": licence},
        id=activation_id,
        licence_id=licence_id,
        fingerprint=fingerprint,
        device_public_key=bytes(device_public_key),
        platform=platform,
        hostname=hostname,
        state=state,
        activated_at=activated_at,
        first_heartbeat_at=first_beat,
        last_heartbeat_at=last_beat,
        last_seen_at=last_seen,
        ended_at=ended_at,
        certificate_key_id=key_id,
        certificate_expires_at=cert_expires,
        certificate_valid_until=cert_valid_until,
    )


def _inactive(activation: Activation) -> ActivationInactive:
    return ActivationInactive(
        f"The activation is {activation.state}; activate again.",
        details={"activation_state": activation.state},
    )


def activation_heartbeat(
    *, activation_id: uuid.UUID, timestamp: int, signature: bytes, request_id: str = ""
) -> CertificateGrant:
    """Record a heartbeat (signed by the device key) and renew the certificate.

    A suspended, revoked or expired licence is refused with LICENCE_<STATE> and no
    certificate; an ended activation with ACTIVATION_INACTIVE. Side effects: updates the
    activation's heartbeat times and certificate expiry (one conditional UPDATE; no audit row,
    a heartbeat is not a state change)."""
    now, now_ts = _now()
    _check_timestamp(timestamp, now_ts)
    activation = _load_signed_activation(
        activation_id=activation_id,
        action="heartbeat",
        purpose=protocol.HEARTBEAT_PURPOSE,
        timestamp=timestamp,
        signature=signature,
    )
    licence = activation.licence
    state = licence.effective_state
    if state != Licence.State.ACTIVE:
        latest = revocation_list_current(actor=Actor.system("revocation-list"))
        raise licence_refusal(state, revocation_serial=latest.serial)
    if activation.state != Activation.State.ACTIVE:
        raise _inactive(activation)
    policy = licence.policy
    token, expires_ts, key_id = _issue_certificate(
        activation=activation,
        licence=licence,
        policy=policy,
        now=now,
        now_ts=now_ts,
        snapshot=keys.keyring_snapshot(),
    )
    _set_certificate(activation, expires_ts, key_id, policy.offline_grace_s)
    updated = _record_heartbeat(activation, now=now, key_id=key_id)
    if not updated:
        activation.refresh_from_db()
        licence.refresh_from_db()
        if licence.effective_state != Licence.State.ACTIVE:
            latest = revocation_list_current(actor=Actor.system("revocation-list"))
            raise licence_refusal(licence.effective_state, revocation_serial=latest.serial)
        raise _inactive(activation)
    activation.last_heartbeat_at = now
    activation.last_seen_at = now
    activation.first_heartbeat_at = activation.first_heartbeat_at or now
    return CertificateGrant(
        activation=activation,
        licence=licence,
        certificate=token,
        certificate_expires_at=expires_ts,
        revocation=revocation_list_current(actor=Actor.system("revocation-list")),
        server_time=now_ts,
    )


def _record_heartbeat(activation: Activation, *, now: dt.datetime, key_id: str) -> int:
    """Move the heartbeat times and certificate expiry; returns the rows updated (0 when a
    concurrent revoke, suspension or release won: the update is conditional on both states).

    A heartbeat only moves timestamps; losing the last fraction of a second of them in a
    database crash is harmless (the next beat repeats them), so on PostgreSQL its commit does
    not wait for the WAL flush, which costs milliseconds per commit on ordinary disks. Every
    state change keeps the default, durable commit."""
    if connection.vendor == "postgresql":
        # Outside a transaction the UPDATE is its own (one round trip, no BEGIN/COMMIT) and
        # relaxes only its own commit; inside a caller's transaction it stays durable.
        sql = (
            pg.HEARTBEAT_UPDATE if connection.in_atomic_block else pg.HEARTBEAT_UPDATE_ASYNC_COMMIT
        )
        params = (
            now,
            now,
            now,
            activation.certificate_expires_at,
            activation.certificate_valid_until,
            key_id,
            activation.pk,
            Activation.State.ACTIVE.value,
            Licence.State.ACTIVE.value,
        )
        (updated,) = pg.execute_batch([(sql, params)])
        return int(updated.rowcount)
    with transaction.atomic():
        return Activation.objects.filter(
            pk=activation.pk, state=Activation.State.ACTIVE, licence__state=Licence.State.ACTIVE
        ).update(
            last_heartbeat_at=now,
            last_seen_at=now,
            first_heartbeat_at=Coalesce("first_heartbeat_at", Value(now)),
            certificate_expires_at=activation.certificate_expires_at,
            certificate_valid_until=activation.certificate_valid_until,
            certificate_key_id=key_id,
        )


def activation_deactivate_signed(
    *, activation_id: uuid.UUID, timestamp: int, signature: bytes, request_id: str = ""
) -> tuple[Activation, RevocationList]:
    """Deactivate from the device itself (signed by its device key). Rate limited per
    licence. See `activation_deactivate` for the side effects."""
    _, now_ts = _now()
    _check_timestamp(timestamp, now_ts)
    activation = _load_signed_activation(
        activation_id=activation_id,
        action="deactivate",
        purpose=protocol.DEACTIVATE_PURPOSE,
        timestamp=timestamp,
        signature=signature,
    )
    return activation_deactivate(
        actor=_sdk_actor(request_id, f"activation:{activation.pk}"),
        activation_id=activation.pk,
        enforce_rate_limit=True,
    )


def activation_deactivate(
    *, actor: Actor, activation_id: uuid.UUID, enforce_rate_limit: bool
) -> tuple[Activation, RevocationList]:
    """End an active activation and free its seat. Side effects (one transaction, under the
    licence row lock): state → deactivated, an ActivationEvent, an audit row, and a new
    revocation list listing the activation while its certificate could still be used.
    Refused: 409 ACTIVATION_INACTIVE when already ended; 429 over the deactivation rate."""
    now = timezone.now()
    with transaction.atomic():
        licence_id = (
            Activation.objects.filter(pk=activation_id).values_list("licence_id", flat=True).first()
        )
        if licence_id is None:
            raise ActivationNotFound("No such activation.")
        licence = (
            Licence.objects.select_for_update(of=("self",))
            .select_related("policy")
            .get(pk=licence_id)
        )
        activation = Activation.objects.select_for_update().get(pk=activation_id)
        if activation.state != Activation.State.ACTIVE:
            raise _inactive(activation)
        if enforce_rate_limit:
            _enforce_rate_limit(
                licence=licence,
                kind=ActivationEvent.Kind.DEACTIVATE,
                limit=licence.policy.deactivation_rate_limit,
                window_s=licence.policy.deactivation_rate_window_s,
                now=now,
            )
        activation.state = Activation.State.DEACTIVATED
        activation.ended_at = now
        activation.save(update_fields=["state", "ended_at"])
        ActivationEvent.objects.create(
            licence=licence,
            activation=activation,
            kind=ActivationEvent.Kind.DEACTIVATE,
            created_at=now,
        )
        audit_record(
            actor=actor,
            action="activation.deactivate",
            object_type="activation",
            object_id=activation.pk,
            customer_id=licence.customer_id,
            changes={"licence": str(licence.pk), "state": activation.state},
        )
        if activation.certificate_valid_until > now:
            revocation = revocation_list_publish(
                actor=actor, reason=f"activation {activation.pk} deactivated"
            )
        else:
            revocation = revocation_list_current(actor=actor)
    return activation, revocation


def activation_release_stale(*, now: dt.datetime | None = None, batch_size: int = 500) -> int:
    """Release activations whose last activation/heartbeat is older than their policy's
    heartbeat window, freeing their seats. Released activations are not revoked: an offline
    device keeps working until its certificate and offline grace run out.

    Side effects: state → released and one audit row per activation. Idempotent and safe to
    run concurrently (rows are claimed with SKIP LOCKED and a conditional state)."""
    now = now or timezone.now()
    actor = Actor.system("release_stale_activations")
    released = 0
    for policy_id, window_s in LicencePolicy.objects.values_list("id", "heartbeat_window_s"):
        cutoff = now - dt.timedelta(seconds=window_s)
        while True:
            with transaction.atomic():
                rows = list(
                    Activation.objects.select_for_update(skip_locked=True, of=("self",))
                    .filter(
                        state=Activation.State.ACTIVE,
                        licence__policy_id=policy_id,
                        last_seen_at__lt=cutoff,
                    )
                    .values_list("id", "licence__customer_id", "last_seen_at")[:batch_size]
                )
                if not rows:
                    break
                Activation.objects.filter(
                    pk__in=[r[0] for r in rows], state=Activation.State.ACTIVE
                ).update(state=Activation.State.RELEASED, ended_at=now)
                audit_record_many(
                    actor=actor,
                    action="activation.release",
                    object_type="activation",
                    rows=[
                        (pk, customer_id, {"last_seen_at": seen.isoformat()})
                        for pk, customer_id, seen in rows
                    ],
                )
                released += len(rows)
            if len(rows) < batch_size:
                break
    return released
