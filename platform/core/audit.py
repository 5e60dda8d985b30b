"""Who did something, and the one function that writes audit rows (called inside services)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from core.models import AuditLog


@dataclass(frozen=True)
class Actor:
    """The author of a change, carried from the edge (request, command, task) into services."""

    kind: str  # one of AuditLog.ActorKind
    label: str
    request_id: str = ""

    @classmethod
    def system(cls, label: str) -> Actor:
        return cls(kind=AuditLog.ActorKind.SYSTEM, label=label)

    @classmethod
    def cli(cls, command: str) -> Actor:
        return cls(kind=AuditLog.ActorKind.CLI, label=command)


def audit_record(
    *,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: Any,
    customer_id: uuid.UUID | None = None,
    changes: dict[str, Any] | None = None,
) -> AuditLog:
    """Append one audit row. Call it inside the service's transaction, never on its own."""
    return AuditLog.objects.create(
        actor_kind=actor.kind,
        actor_label=actor.label[:200],
        request_id=actor.request_id[:64],
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        customer_id=customer_id,
        changes=changes or {},
    )


def audit_row_values(
    *,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: Any,
    customer_id: uuid.UUID | None,
    changes: dict[str, Any],
    created_at: dt.datetime,
) -> list[Any]:
    """The values `audit_record` would write, for a service that inserts its audit row in the
    same SQL statement as its change (the SDK activation hot path on PostgreSQL). Order:
    created_at, actor_kind, actor_label, request_id, action, object_type, object_id,
    customer_id, changes (JSON text)."""
    return [
        created_at,
        str(actor.kind),
        actor.label[:200],
        actor.request_id[:64],
        action,
        object_type,
        str(object_id),
        customer_id,
        json.dumps(changes),
    ]


def audit_record_many(
    *,
    actor: Actor,
    action: str,
    object_type: str,
    rows: list[tuple[Any, uuid.UUID | None, dict[str, Any]]],
) -> None:
    """Append one audit row per (object_id, customer_id, changes) in a single INSERT."""
    AuditLog.objects.bulk_create(
        AuditLog(
            actor_kind=actor.kind,
            actor_label=actor.label[:200],
            request_id=actor.request_id[:64],
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            customer_id=customer_id,
            changes=changes,
        )
        for object_id, customer_id, changes in rows
    )
