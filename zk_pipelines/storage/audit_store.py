"""Reading the ledger for the audit views (`zk audit`, `zk history`, the `audit_sync_events` asset), as
explicit SQL with parameters. Nothing here writes.

The ledger is `audit.sync_events` (every outcome the pull or the push recorded) together with
`audit.rejects` (rows that failed validation at staging). A reject is shown as an event of direction
`pull` and action `rejected` (`deferred` when only a reference check failed: the row waits for its account
or status), under the name of the Zomentum entity its Kaseya entity becomes (a rejected Kaseya contact is a
`client_users` error), so one entity name selects a record's whole trail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from zk_pipelines.domain.entities import ZOMENTUM_TARGETS
from zk_pipelines.domain.staging_schemas import REFERENCE_CHECK_PREFIX
from zk_pipelines.storage.database import one_row

# Kaseya staged entity -> the ledger's entity name (the Zomentum target it becomes).
LEDGER_ENTITY_OF_REJECTS = {target.source: target.name for target in ZOMENTUM_TARGETS}
REJECTED = "rejected"
FAILED = "failed"
CONFLICT = "conflict"  # the pull found the two systems disagreeing in a way a person must settle
ERROR_ACTIONS = (FAILED, REJECTED, CONFLICT)
# Not an error (nothing to fix on the record itself) and not done: waits for its parent or its pricing.
DEFERRED = "deferred"


def table_exists(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return one_row(connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_schema = $schema AND table_name = $table",
        {"schema": schema, "table": table},
    ))[0] > 0


def has_ledger(connection: duckdb.DuckDBPyConnection) -> bool:
    return table_exists(connection, "audit", "sync_events") and table_exists(connection, "audit", "rejects")


# The two tables as one relation. `seq` orders events written at the same instant (a ledger flush stamps a
# batch with one time); rejects come before the events of the same instant, as staging runs before loading.
_LEDGER = """
    SELECT occurred_at, run_id, partition_key, direction, entity, kaseya_id, zomentum_id, action, reason,
           changed_fields::VARCHAR AS changed_fields, link, settings_fingerprint, 1 AS source_order, event_id AS seq
    FROM audit.sync_events
    UNION ALL
    SELECT r.rejected_at, r.run_id, r.partition_key, 'pull', coalesce(m.ledger_entity, r.entity), r.kaseya_id,
           NULL, CASE WHEN starts_with(r.check_name, $waiting_check) THEN 'deferred' ELSE 'rejected' END,
           r.reason || CASE WHEN r.check_name IS NULL THEN '' ELSE ' [check ' || r.check_name || ']' END,
           NULL, NULL, NULL, 0, 0
    FROM audit.rejects r
    LEFT JOIN (SELECT unnest($kaseya_entities) AS kaseya_entity, unnest($ledger_entities) AS ledger_entity) m
        ON m.kaseya_entity = r.entity
"""


def _ledger_parameters() -> dict[str, object]:
    return {"kaseya_entities": list(LEDGER_ENTITY_OF_REJECTS),
            "ledger_entities": list(LEDGER_ENTITY_OF_REJECTS.values()), "waiting_check": REFERENCE_CHECK_PREFIX}


@dataclass(frozen=True)
class LedgerEntry:
    occurred_at: datetime
    run_id: str | None
    partition_key: str | None
    direction: str  # pull | push
    entity: str
    kaseya_id: str | None
    zomentum_id: str | None
    action: str  # created | updated | unchanged | matched | deferred | failed | conflict | skipped | rejected
    reason: str | None
    changed_fields: tuple[str, ...] | None
    link: str | None
    settings_fingerprint: str | None

    @property
    def is_error(self) -> bool:
        return self.action in ERROR_ACTIONS


@dataclass(frozen=True)
class LedgerFilter:
    entities: tuple[str, ...] | None = None  # ledger entity names; None: all
    errors: bool | None = None  # True: failed and rejected only; False: everything else; None: both
    since: datetime | None = None
    run_id_prefix: str | None = None  # a full run id or its first characters (the UI shows eight)


_COLUMNS = ("occurred_at, run_id, partition_key, direction, entity, kaseya_id, zomentum_id, action, reason, "
            "changed_fields, link, settings_fingerprint")


def _entry(row: tuple) -> LedgerEntry:
    values = list(row)
    fields = json.loads(values[9]) if values[9] is not None else None
    values[9] = tuple(str(f) for f in fields) if isinstance(fields, list) else None
    return LedgerEntry(*values)


def ledger_entries(connection: duckdb.DuckDBPyConnection, where: LedgerFilter) -> list[LedgerEntry]:
    """Every ledger entry that passes the filter, oldest first."""
    rows = connection.execute(
        f"""
        SELECT {_COLUMNS} FROM ({_LEDGER}) ledger
        WHERE ($entities IS NULL OR list_contains($entities, entity))
          AND ($errors IS NULL OR list_contains($error_actions, action) = $errors)
          AND ($since IS NULL OR occurred_at >= $since)
          AND ($run_prefix IS NULL OR starts_with(run_id, $run_prefix))
        ORDER BY occurred_at, source_order, seq, kaseya_id
        """,
        {**_ledger_parameters(), "entities": list(where.entities) if where.entities is not None else None,
         "errors": where.errors, "error_actions": list(ERROR_ACTIONS), "since": where.since,
         "run_prefix": where.run_id_prefix},
    ).fetchall()
    return [_entry(row) for row in rows]


def ledger_entity_names(connection: duckdb.DuckDBPyConnection) -> list[str]:
    return [name for (name,) in connection.execute(
        f"SELECT DISTINCT entity FROM ({_LEDGER}) ledger ORDER BY entity", _ledger_parameters()).fetchall()]


# --- one record's trail -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordPair:
    """A Kaseya record and its Zomentum record, as the ledger knows them (either id may be unknown: a
    record that never made it to the other system has only failures)."""

    entity: str
    kaseya_id: str | None
    zomentum_id: str | None
    link_kind: str | None  # created | matched | pushed; None when only the events know the record
    first_synced_at: datetime | None
    last_synced_at: datetime | None


def find_record_pairs(connection: duckdb.DuckDBPyConnection, entity: str, record_id: str) -> list[RecordPair]:
    """The pairs `record_id` (a Kaseya or a Zomentum id) belongs to: from the id map, else from the events
    and rejects that name it."""
    rows = connection.execute(
        """
        SELECT entity, kaseya_id, zomentum_id, link_kind, first_synced_at, last_synced_at FROM zomentum.id_map
        WHERE entity = $entity AND (kaseya_id = $id OR zomentum_id = $id)
        ORDER BY first_synced_at
        """,
        {"entity": entity, "id": record_id},
    ).fetchall()
    if rows:
        return [RecordPair(*row) for row in rows]
    rows = connection.execute(
        f"""
        SELECT arg_max(kaseya_id, occurred_at) FILTER (WHERE kaseya_id IS NOT NULL),
               arg_max(zomentum_id, occurred_at) FILTER (WHERE zomentum_id IS NOT NULL)
        FROM ({_LEDGER}) ledger
        WHERE entity = $entity AND (kaseya_id = $id OR zomentum_id = $id)
        """,
        {**_ledger_parameters(), "entity": entity, "id": record_id},
    ).fetchall()
    return [RecordPair(entity, kid, zid, None, None, None) for kid, zid in rows if kid is not None or zid is not None]


def record_trail(connection: duckdb.DuckDBPyConnection, entity: str, kaseya_id: str | None,
                 zomentum_id: str | None) -> list[LedgerEntry]:
    """Every ledger entry of the pair, oldest first: those naming its Kaseya id or its Zomentum id."""
    rows = connection.execute(
        f"""
        SELECT {_COLUMNS} FROM ({_LEDGER}) ledger
        WHERE entity = $entity AND (kaseya_id = $kaseya_id OR zomentum_id = $zomentum_id)
        ORDER BY occurred_at, source_order, seq
        """,
        {**_ledger_parameters(), "entity": entity, "kaseya_id": kaseya_id, "zomentum_id": zomentum_id},
    ).fetchall()
    return [_entry(row) for row in rows]


# --- what the push sent ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PushRequest:
    """One write a push sent (or meant to send), as `push.requests` recorded it."""

    intended_at: datetime
    settled_at: datetime | None
    run_id: str | None
    document_id: str
    document_version: str
    attempt: int
    system: str  # kaseya | zomentum
    method: str
    path: str
    body: Any
    purpose: str | None
    state: str  # intent | sent | refused | unknown | adopted | not_created | superseded
    response_status: int | None
    record_id: str | None
    error: str | None


def has_push_requests(connection: duckdb.DuckDBPyConnection) -> bool:
    return table_exists(connection, "push", "requests") and table_exists(connection, "push", "documents")


def push_requests_for(connection: duckdb.DuckDBPyConnection, entity: str, kaseya_id: str | None,
                      zomentum_id: str | None) -> list[PushRequest]:
    """What the push sent concerning the record, oldest first; empty when the push has never run (no push
    tables). An opportunity: every request of each push of its document (the push of a Won document is the
    push of its opportunity: account, contact, products, opportunity, quote and lines, the link written
    back). A client, contact or item: the requests that wrote that record (`record_key` account, contact,
    product or service), found through the Kaseya ids the push resolved or the id a request answered with."""
    if not has_push_requests(connection):
        return []
    rows = connection.execute(
        """
        SELECT r.intended_at, r.settled_at, r.run_id, r.document_id, r.document_version, r.attempt, r.system,
               r.method, r.path, r.body::VARCHAR, r.purpose, r.state, r.response_status, r.record_id, r.error
        FROM push.requests r
        LEFT JOIN push.documents d ON d.document_id = r.document_id AND d.document_version = r.document_version
        WHERE CASE $entity
            WHEN 'opportunities' THEN d.kaseya_opportunity_id::VARCHAR = $kaseya_id
                                      OR d.zomentum_opportunity_id = $zomentum_id
            WHEN 'clients' THEN r.record_key = 'account'
                                AND (d.kaseya_account_id::VARCHAR = $kaseya_id OR r.record_id = $kaseya_id)
            WHEN 'client_users' THEN r.record_key = 'contact'
                                     AND (d.kaseya_contact_id::VARCHAR = $kaseya_id OR r.record_id = $kaseya_id)
            WHEN 'items' THEN (starts_with(r.record_key, 'product ') OR starts_with(r.record_key, 'service '))
                              AND r.record_id = $kaseya_id
            ELSE false END
        ORDER BY r.intended_at, r.request_id
        """,
        {"entity": entity, "kaseya_id": kaseya_id, "zomentum_id": zomentum_id},
    ).fetchall()
    return [PushRequest(*(*row[:9], json.loads(row[9]) if row[9] is not None else None, *row[10:])) for row in rows]


# --- counts per entity, for the audit asset ----------------------------------------------------------------


@dataclass(frozen=True)
class EntityOutcomes:
    """Counts of one (direction, entity) in the last run that recorded any for it, and since a moment (the
    last day): errors (failed, rejected), waiting (deferred) and succeeded (every other outcome)."""

    direction: str
    entity: str
    last_run_id: str | None
    last_run_at: datetime
    last_run_succeeded: int
    last_run_errors: int
    last_run_waiting: int
    recent_succeeded: int
    recent_errors: int
    recent_waiting: int


def entity_outcomes(connection: duckdb.DuckDBPyConnection, since: datetime) -> list[EntityOutcomes]:
    rows = connection.execute(
        f"""
        WITH ledger AS (
            SELECT occurred_at, run_id, direction, entity,
                   CASE WHEN list_contains($error_actions, action) THEN 'error'
                        WHEN action = $deferred THEN 'waiting' ELSE 'succeeded' END AS outcome
            FROM ({_LEDGER}) l
        ), last_run AS (
            SELECT direction, entity, arg_max(run_id, occurred_at) AS run_id, max(occurred_at) AS at
            FROM ledger GROUP BY direction, entity
        )
        SELECT l.direction, l.entity, lr.run_id, lr.at,
               count(*) FILTER (WHERE l.run_id IS NOT DISTINCT FROM lr.run_id AND l.outcome = 'succeeded'),
               count(*) FILTER (WHERE l.run_id IS NOT DISTINCT FROM lr.run_id AND l.outcome = 'error'),
               count(*) FILTER (WHERE l.run_id IS NOT DISTINCT FROM lr.run_id AND l.outcome = 'waiting'),
               count(*) FILTER (WHERE l.occurred_at >= $since AND l.outcome = 'succeeded'),
               count(*) FILTER (WHERE l.occurred_at >= $since AND l.outcome = 'error'),
               count(*) FILTER (WHERE l.occurred_at >= $since AND l.outcome = 'waiting')
        FROM ledger l JOIN last_run lr ON lr.direction = l.direction AND lr.entity = l.entity
        GROUP BY l.direction, l.entity, lr.run_id, lr.at
        ORDER BY l.direction, l.entity
        """,
        {**_ledger_parameters(), "error_actions": list(ERROR_ACTIONS), "deferred": DEFERRED, "since": since},
    ).fetchall()
    return [EntityOutcomes(*row) for row in rows]


def run_outcome_counts(connection: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, dict[str, int]]:
    """What one run recorded, per entity and action (validation rejects included, as the ledger names them)."""
    rows = connection.execute(
        f"SELECT entity, action, count(*) FROM ({_LEDGER}) WHERE run_id = $run_id GROUP BY ALL ORDER BY ALL",
        {**_ledger_parameters(), "run_id": run_id}).fetchall()
    counts: dict[str, dict[str, int]] = {}
    for entity, action, count in rows:
        counts.setdefault(entity, {})[action] = int(count)
    return counts


def pull_record_outcomes(connection: duckdb.DuckDBPyConnection, run_id: str
                         ) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(entity, Kaseya id) -> (action, reason) of what a run's pull recorded for each record (its last event)."""
    return {(entity, kaseya_id): (action, reason) for entity, kaseya_id, action, reason in connection.execute(
        "SELECT entity, kaseya_id, action, reason FROM audit.sync_events WHERE run_id = $run_id "
        "AND direction = 'pull' ORDER BY event_id", {"run_id": run_id}).fetchall()}
