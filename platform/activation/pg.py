"""The SDK hot path's SQL on PostgreSQL: the same rules as the ORM path in services.py, in as
few round trips as the rules allow.

Activation, inside one transaction (durable commit):
1. `LOCK_LICENCE`: the licence row FOR UPDATE, joined with its policy (one statement);
2. `SEATS`: the recent activation events (rate limit) and the active activations (seats,
   fingerprint matching), read *after* the lock is held, so a concurrent activation of the
   same licence is either committed and counted, or waiting behind us;
3. `INSERT_ACTIVATION` / `REACTIVATE`: one statement whose data-modifying CTEs write the
   activation, its ActivationEvent and the audit row.

The common case, a machine new to a licence whose row this process has read before, takes one
round trip: `LOCK_LICENCE` then `INSERT_ACTIVATION_IF_FREE`, which writes the same three rows
only if the licence row still equals what the request was decided on and steps 2's rules
leave nothing to decide (under the rate limit, a free seat, and no active activation sharing a
fingerprint component). Otherwise it writes nothing and the three steps above run.

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
import functools
import re
import select
import weakref
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection
from psycopg import abc, pq
from psycopg import errors as pg_errors
from psycopg.adapt import AdaptersMap, PyFormat, Transformer
from psycopg.types.datetime import TimestamptzLoader

_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)
_OPEN = -1  # an implicit BEGIN in the list of expected results


@dataclass(frozen=True)
class Result:
    """One statement's outcome: its rows (tuples, loaded by psycopg's loaders) and the number
    of rows it affected or returned."""

    rows: list[tuple[Any, ...]]
    rowcount: int


@dataclass
class _Session:
    """What this module keeps per psycopg connection: what it prepared ((sql, parameter types)
    -> name), and one Transformer (its dumpers and loaders are built once per connection, as
    a psycopg cursor keeps its own)."""

    transformer: abc.Transformer
    prepared: dict[tuple[str, tuple[int, ...]], bytes] = field(default_factory=dict)


_sessions: weakref.WeakKeyDictionary[psycopg.Connection[Any], _Session] = (
    weakref.WeakKeyDictionary()
)


class _Context:
    """An adaptation context (what psycopg's Transformer reads): the connection, and adapters."""

    def __init__(self, raw: psycopg.Connection[Any], adapters: AdaptersMap) -> None:
        self.connection = raw
        self.adapters = adapters


def _transformer(raw: psycopg.Connection[Any]) -> abc.Transformer:
    """The connection's adapters, except for timestamptz: psycopg's own loader (C) instead of
    Django's subclass of the pure-Python one, which cost as much as a statement here. Both give
    an aware datetime of the same instant (Django's with datetime.UTC, psycopg's with the
    session's zone, UTC on Django's connections)."""
    adapters = AdaptersMap(raw.adapters)
    adapters.register_loader("timestamptz", TimestamptzLoader)
    return Transformer(_Context(raw, adapters))


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


@functools.lru_cache(maxsize=64)
def _numbered(sql: str) -> bytes:
    """`%s` placeholders as PostgreSQL's `$1, $2, ...` (the statements here use no other %)."""
    counter = iter(range(1, 1 << 16))
    return re.sub("%s", lambda _: f"${next(counter)}", sql).encode()


def execute_batch(statements: list[tuple[str, Any]]) -> list[Result]:
    """Run `statements` (sql, params) in order in one round trip, and return one Result each.

    Driven on libpq's pipeline directly (psycopg's `pq` layer, its C adapters for the
    parameters and rows): psycopg's cursor and pipeline objects cost more CPU than the
    statements themselves on this path. Each statement is a server-side prepared statement,
    parsed and planned once per connection (`DATABASE_PREPARED_STATEMENTS=0`: unnamed ones,
    for a pooler that cannot keep them). psycopg itself never prepares on these connections
    (Django leaves its prepare_threshold at None), so it never sends the DEALLOCATE ALL that
    would drop ours.

    PostgreSQL runs them one after the other, each with its own snapshot, so a read after
    `SELECT ... FOR UPDATE` sees what the lock holder committed. A failing statement aborts
    the rest of the batch and raises Django's database errors, as the ORM would."""
    with connection.wrap_database_errors:
        raw = _raw_connection()
        try:
            return _run(raw, statements)
        except psycopg.Error:
            raise
        except BaseException:
            # Interrupted half-way through the protocol: the connection's state is unknown.
            raw.close()
            raise


def _run(raw: psycopg.Connection[Any], statements: list[tuple[str, Any]]) -> list[Result]:
    pgconn = raw.pgconn
    if pgconn.pipeline_status != pq.PipelineStatus.OFF or raw.closed:
        raise pg_errors.InterfaceError("the connection is busy or closed")
    session = _sessions.get(raw)
    if session is None:
        session = _sessions[raw] = _Session(_transformer(raw))
    prepare = settings.DATABASE_PREPARED_STATEMENTS
    tx = session.transformer
    # One entry per result the server will send: None for a PREPARE, _OPEN for an implicit
    # BEGIN, else the index of the statement; and the names to remember once their PREPARE
    # succeeded.
    expected: list[int | None] = []
    new_names: list[tuple[tuple[str, tuple[int, ...]], bytes]] = []
    pgconn.enter_pipeline_mode()
    try:
        if not raw.autocommit and pgconn.transaction_status == pq.TransactionStatus.IDLE:
            # Inside Django's atomic block psycopg opens the transaction lazily, before its
            # first statement; when these come first, open it here, as psycopg would.
            pgconn.send_query_params(b"BEGIN", None)
            expected.append(_OPEN)
        for index, (sql, params) in enumerate(statements):
            query = _numbered(sql)
            if params is None:
                pgconn.send_query_params(query, None)
                expected.append(index)
                continue
            values = tx.dump_sequence(params, [PyFormat.TEXT] * len(params))
            types = tuple(tx.types or ())
            if not prepare:
                pgconn.send_query_params(query, values, param_types=types)
                expected.append(index)
                continue
            key = (sql, types)
            name = session.prepared.get(key)
            if name is None:
                name = f"sdk_{len(session.prepared) + len(new_names)}".encode()
                pgconn.send_prepare(name, query, param_types=types)
                expected.append(None)
                new_names.append((key, name))
            pgconn.send_query_prepared(name, values)
            expected.append(index)
        pgconn.pipeline_sync()
        results = _collect(pgconn)
    finally:
        if pgconn.pipeline_status != pq.PipelineStatus.OFF and not pgconn.is_busy():
            with contextlib.suppress(psycopg.Error):
                pgconn.exit_pipeline_mode()
    first_error: pg_errors.Error | None = None
    out: list[Result | None] = [None] * len(statements)
    prepared_ok: list[bool] = []
    for slot, res in zip(expected, results, strict=True):
        if res.status not in _OK:
            if first_error is None and res.status == pq.ExecStatus.FATAL_ERROR:
                first_error = pg_errors.error_from_result(res, encoding=raw.info.encoding)
            if slot is None:
                prepared_ok.append(False)
            continue
        if slot is None:
            prepared_ok.append(True)
            continue
        if slot == _OPEN:
            continue
        rows: list[tuple[Any, ...]] = []
        if res.status == pq.ExecStatus.TUPLES_OK and res.ntuples:
            tx.set_pgresult(res)
            rows = tx.load_rows(0, res.ntuples, tuple)
        out[slot] = Result(rows, res.command_tuples or 0)
    for (key, name), ok in zip(new_names, prepared_ok, strict=True):
        if ok:
            session.prepared[key] = name
    if first_error is not None:
        raise first_error
    return [r if r is not None else Result([], 0) for r in out]


def _collect(pgconn: pq.abc.PGconn) -> list[pq.abc.PGresult]:
    """Send what is buffered, then read every result up to the pipeline's sync point."""
    fd = pgconn.socket
    while pgconn.flush():
        select.select([fd], [fd], [])
        pgconn.consume_input()
    results: list[pq.abc.PGresult] = []
    while True:
        while pgconn.is_busy():
            select.select([fd], [], [])
            pgconn.consume_input()
        res = pgconn.get_result()
        if res is None:
            continue  # the end of one statement's results
        if res.status == pq.ExecStatus.PIPELINE_SYNC:
            return results
        results.append(res)


def rollback_quietly() -> None:
    """End a transaction opened with BEGIN on an autocommit connection (no-op outside one)."""
    raw = connection.connection
    if raw is None or raw.closed:  # closed: its transaction went with it; do not reconnect
        return
    with contextlib.suppress(DatabaseError), connection.wrap_database_errors:
        raw.rollback()  # psycopg's own: a no-op when the server reports no open transaction


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

# One statement, after LOCK_LICENCE in the same transaction (so its snapshot is taken with the
# lock held, like SEATS): insert the activation, its event and the audit row only if the licence
# and policy columns are still those the caller decided on (the LOCK_LICENCE row it saw before,
# compared column by column), the rate limit and the seat limit leave room, and no active
# activation shares a fingerprint component (a possible re-activation: the full path decides).
# Inserts nothing otherwise. Params: licence id; the 12 LOCK_LICENCE columns from customer_id on
# (key_sha256 included); licence id, event kind, now; licence id, state; licence id, state,
# components (text[]); then
# INSERT_ACTIVATION's activation columns without licence_id, event kind and created_at, and
# the audit row values.
# The subqueries take the licence id as a parameter, not `l.id`: correlated on l.id, the
# planner may count seats through an index on state alone (every active activation).
INSERT_ACTIVATION_IF_FREE = """
WITH free AS (
    SELECT l.id
    FROM licences_licence l JOIN licences_licencepolicy p ON p.id = l.policy_id
    WHERE l.id = %s
      AND (l.customer_id, l.policy_id, l.state, l.key_sha256, l.max_activations,
           l.entitlements::text, l.expires_at,
           p.certificate_lifetime_s, p.offline_grace_s, p.heartbeat_window_s,
           p.activation_rate_limit, p.activation_rate_window_s)
          IS NOT DISTINCT FROM (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
      AND (
          SELECT count(*) FROM activation_activationevent e
          WHERE e.licence_id = %s AND e.kind = %s
            AND e.created_at > %s - p.activation_rate_window_s * interval '1 second'
      ) < p.activation_rate_limit
      AND (
          SELECT count(*) FROM activation_activation s WHERE s.licence_id = %s AND s.state = %s
      ) < l.max_activations
      AND NOT EXISTS (
          SELECT 1 FROM activation_activation a
          WHERE a.licence_id = %s AND a.state = %s
            AND EXISTS (
                SELECT 1 FROM unnest(%s::text[]) AS c (part) WHERE strpos(a.fingerprint, c.part) > 0
            )
      )
), activation AS (
    INSERT INTO activation_activation (
        id, licence_id, fingerprint, device_public_key, platform, hostname, state,
        activated_at, last_seen_at, certificate_key_id, certificate_expires_at,
        certificate_valid_until
    )
    SELECT %s::uuid, free.id, %s::text, %s::bytea, %s::text, %s::text, %s::text,
           %s::timestamptz, %s::timestamptz, %s::text, %s::timestamptz, %s::timestamptz
    FROM free
    RETURNING id, licence_id
), event AS (
    INSERT INTO activation_activationevent (licence_id, activation_id, kind, created_at)
    SELECT licence_id, id, %s::text, %s::timestamptz FROM activation
)
INSERT INTO core_auditlog (
    created_at, actor_kind, actor_label, request_id, action, object_type, object_id,
    customer_id, changes
)
SELECT %s::timestamptz, %s::text, %s::text, %s::text, %s::text, %s::text, %s::text, %s::uuid,
       %s::jsonb
FROM activation
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
