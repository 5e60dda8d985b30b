"""The SDK hot path's SQL on PostgreSQL: the same rules as the ORM path in services.py, in as
few round trips as the rules allow.

Activation, inside one transaction (durable commit):
1. `LOCK_LICENCE`: the licence row FOR UPDATE, joined with its policy (one statement);
2. `SEATS`: the recent activation events (rate limit) and the active activations (seats,
   fingerprint matching), read *after* the lock is held, so a concurrent activation of the
   same licence is either committed and counted, or waiting behind us;
3. `INSERT_ACTIVATION` / `REACTIVATE`: one statement whose data-modifying CTEs write the
   activation, its ActivationEvent and the audit row.

Heartbeat: one SELECT (activation + licence + policy), then one conditional UPDATE in its own
implicit transaction whose commit does not wait for the WAL flush (`set_config(...,
is_local)`); that is the heartbeat's documented trade-off (timestamps only), never used for a
state change.

Table and column names are spelled out (Django's defaults for activation.Activation,
activation.ActivationEvent, licences.Licence, licences.LicencePolicy, core.AuditLog); the
models are the source of truth and tests/activation run these statements on PostgreSQL, so a
migration that renames a column fails there until this file follows.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
from django.db import DatabaseError, connection
from psycopg.pq import ExecStatus

TUPLES_OK = ExecStatus.TUPLES_OK


def _raw_connection() -> psycopg.Connection[Any]:
    """The request's psycopg connection, opened if needed, *without* Django's per-request
    health check (a `SELECT 1` round trip, as costly here as a statement of the hot path).
    A connection broken by a database restart fails this request with a retryable 503 (the
    errors go through `wrap_database_errors`) and Django drops it at the end of the request
    (errors_occurred -> is_usable); SDK clients retry."""
    connection.ensure_connection()
    raw = connection.connection
    if not isinstance(raw, psycopg.Connection):  # pragma: no cover - psycopg 3 is required
        raise TypeError("the SDK hot path needs psycopg 3")
    return raw


def execute_batch(statements: list[tuple[str, Any]]) -> list[psycopg.Cursor[Any]]:
    """Run `statements` (sql, params) in order, in one pipeline: one round trip, server-side
    parameter binding and prepared statements (each statement is parsed and planned once per
    connection, not once per request; no client-side quoting of every parameter). Returns one
    cursor per statement (rows, rowcount).

    PostgreSQL runs them one after the other, each with its own snapshot, so a read after
    `SELECT ... FOR UPDATE` sees what the lock holder committed. A failing statement aborts
    the rest of the batch and raises Django's database errors, as the ORM would."""
    with connection.wrap_database_errors:
        raw = _raw_connection()
        done: list[psycopg.Cursor[Any]] = []
        with raw.pipeline():
            for sql, params in statements:
                statement = psycopg.Cursor(raw)
                # Prepared at first use, unless DATABASE_PREPARED_STATEMENTS=0 (settings.py
                # then sets the connection's prepare_threshold to None, which wins).
                statement.execute(sql, params, prepare=params is not None)
                done.append(statement)
        return done


def rows(statement: psycopg.Cursor[Any]) -> list[Any]:
    # The result's status, not `description`: that builds a Column object per column.
    result = statement.pgresult
    return statement.fetchall() if result is not None and result.status == TUPLES_OK else []


def rollback_quietly() -> None:
    """End a transaction opened with BEGIN on an autocommit connection (no-op outside one)."""
    raw = connection.connection
    if raw is None:  # closed: its transaction went with it; do not reconnect
        return
    # psycopg's own rollback, never a ROLLBACK statement in a pipeline: a rollback makes
    # psycopg forget its prepared statements and queue a DEALLOCATE ALL, which in pipeline
    # mode would go out *after* the next request's first Parse and drop that statement too
    # ("prepared statement _pg3_N does not exist" on the request after).
    with contextlib.suppress(DatabaseError), connection.wrap_database_errors:
        raw.rollback()  # a no-op when the server reports no open transaction


LOCK_LICENCE = """
SELECT l.customer_id, l.policy_id, l.state, l.key_sha256, l.max_activations,
       l.entitlements::text, l.expires_at,
       p.certificate_lifetime_s, p.offline_grace_s, p.heartbeat_window_s,
       p.activation_rate_limit, p.activation_rate_window_s
FROM licences_licence l JOIN licences_licencepolicy p ON p.id = l.policy_id
WHERE l.id = %s
FOR UPDATE OF l
"""

# Under the lock: the number of activation events inside the policy's rate window and the
# number of seats in use, on every row, then one row per active activation that shares a
# component (`name=value`) with the presented fingerprint, newest first; one row with NULL
# activation columns when there is none. Params: licence id, event kind, now, licence id,
# licence id, state, licence id, state, components (text[]).
SEATS = """
SELECT e.n, s.n, a.id, a.fingerprint
FROM (
    SELECT count(*) FROM activation_activationevent
    WHERE licence_id = %s AND kind = %s
      AND created_at > %s - (
          SELECT p.activation_rate_window_s * interval '1 second'
          FROM licences_licence l JOIN licences_licencepolicy p ON p.id = l.policy_id
          WHERE l.id = %s
      )
) AS e (n)
CROSS JOIN (
    SELECT count(*) FROM activation_activation WHERE licence_id = %s AND state = %s
) AS s (n)
LEFT JOIN activation_activation a
    ON a.licence_id = %s AND a.state = %s
    AND EXISTS (
        SELECT 1 FROM unnest(%s::text[]) AS c (part) WHERE strpos(a.fingerprint, c.part) > 0
    )
ORDER BY a.activated_at DESC
"""

# Only when refusing over the rate limit: when the oldest counted event leaves the window.
OLDEST_EVENT = """
SELECT min(created_at) FROM activation_activationevent
WHERE licence_id = %s AND kind = %s AND created_at > %s
"""

# Both write statements end with the ActivationEvent (a CTE) and the audit row (the main
# INSERT): one round trip writes all three rows.
INSERT_ACTIVATION = """
WITH activation AS (
    INSERT INTO activation_activation (
        id, licence_id, fingerprint, device_public_key, platform, hostname, state,
        activated_at, last_seen_at, certificate_key_id, certificate_expires_at,
        certificate_valid_until
    )
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
), event AS (
    INSERT INTO activation_activationevent (licence_id, activation_id, kind, created_at)
    VALUES (%s, %s, %s, %s)
)
INSERT INTO core_auditlog (
    created_at, actor_kind, actor_label, request_id, action, object_type, object_id,
    customer_id, changes
)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
"""

REACTIVATE = """
WITH activation AS (
    UPDATE activation_activation
    SET fingerprint = %s, device_public_key = %s, platform = %s, hostname = %s,
        last_seen_at = %s, certificate_expires_at = %s, certificate_valid_until = %s,
        certificate_key_id = %s
    WHERE id = %s
), event AS (
    INSERT INTO activation_activationevent (licence_id, activation_id, kind, created_at)
    VALUES (%s, %s, %s, %s)
)
INSERT INTO core_auditlog (
    created_at, actor_kind, actor_label, request_id, action, object_type, object_id,
    customer_id, changes
)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
"""

LOAD_FOR_HEARTBEAT = """
SELECT a.licence_id, a.fingerprint, a.device_public_key, a.platform, a.hostname, a.state,
       a.activated_at, a.first_heartbeat_at, a.last_heartbeat_at, a.last_seen_at, a.ended_at,
       a.certificate_key_id, a.certificate_expires_at, a.certificate_valid_until,
       l.customer_id, l.policy_id, l.state, l.max_activations, l.entitlements::text,
       l.expires_at,
       p.certificate_lifetime_s, p.offline_grace_s, p.heartbeat_window_s
FROM activation_activation a
JOIN licences_licence l ON l.id = a.licence_id
JOIN licences_licencepolicy p ON p.id = l.policy_id
WHERE a.id = %s
"""

_HEARTBEAT_SET = """
UPDATE activation_activation a
SET last_heartbeat_at = %s, last_seen_at = %s,
    first_heartbeat_at = COALESCE(a.first_heartbeat_at, %s),
    certificate_expires_at = %s, certificate_valid_until = %s, certificate_key_id = %s
FROM licences_licence l{extra_from}
WHERE a.id = %s AND a.state = %s AND l.id = a.licence_id AND l.state = %s
"""

# Run in autocommit: the statement is its own transaction, and set_config(..., true) lasts
# exactly until that transaction's commit, which then does not wait for the WAL flush.
HEARTBEAT_UPDATE_ASYNC_COMMIT = _HEARTBEAT_SET.format(
    extra_from=", (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit"
)
# Inside a caller's transaction: a plain (durable) UPDATE; never relax someone else's commit.
HEARTBEAT_UPDATE = _HEARTBEAT_SET.format(extra_from="")
