"""The pull's reads and writes of DuckDB, as explicit SQL with parameters.

Identifiers (table and column names) come only from the entity tables in code, never from data; values are
always bound parameters or registered DataFrames.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

from zk_pipelines.domain.kaseya_staging import ENTITY_COLUMNS
from zk_pipelines.domain.staging_schemas import REJECT_COLUMNS
from zk_pipelines.storage.schema import create_tables

MAPPED_DDL = """
CREATE TABLE IF NOT EXISTS mapped.zomentum_{name} (
    kaseya_id     VARCHAR PRIMARY KEY,
    payload       JSON,
    payload_hash  VARCHAR,
    problem       VARCHAR,
    waiting       BOOLEAN NOT NULL DEFAULT false,
    source_modified_on TIMESTAMPTZ,
    mapped_at     TIMESTAMPTZ NOT NULL,
    run_id        VARCHAR
)"""


def stg_ddl(entity: str) -> str:
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in ENTITY_COLUMNS[entity])
    return (f"CREATE TABLE IF NOT EXISTS stg.kaseya_{entity} (\n    {columns},\n"
            f"    staged_at TIMESTAMPTZ,\n    run_id VARCHAR,\n    PRIMARY KEY (kaseya_id)\n)")


def ensure_pull_tables(connection: duckdb.DuckDBPyConnection, targets: Iterable[str] = ()) -> None:
    create_tables(connection, [*(stg_ddl(entity) for entity in ENTITY_COLUMNS),
                               *(MAPPED_DDL.format(name=name) for name in targets)])


# --- raw ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRecord:
    kaseya_id: int
    modified_on: datetime | None
    payload: Mapping[str, Any]


def upsert_incremental_raw(connection: duckdb.DuckDBPyConnection, table: str, records: Sequence[RawRecord], *,
                           window_start: datetime, window_end: datetime, run_id: str, now: datetime) -> int:
    """Keep the newest payload of each Kaseya record. A record seen twice in one extraction (the same id on
    two pages, or modified while being paged) keeps its latest `ModifiedOn`; an older payload never replaces
    a newer one already stored."""
    latest: dict[int, RawRecord] = {}
    for record in records:
        seen = latest.get(record.kaseya_id)
        if seen is None or (record.modified_on or datetime.min) >= (seen.modified_on or datetime.min):
            latest[record.kaseya_id] = record
    if not latest:
        return 0
    frame = pd.DataFrame({
        "kaseya_id": [r.kaseya_id for r in latest.values()],
        "modified_on": pd.to_datetime([r.modified_on for r in latest.values()], utc=True),
        "payload": [json.dumps(r.payload, ensure_ascii=False) for r in latest.values()],
    })
    connection.register("incoming_raw", frame)
    try:
        connection.execute(
            f"""
            INSERT INTO raw.{table} AS t
                (kaseya_id, modified_on, payload, window_start, window_end, extracted_at, run_id)
            SELECT kaseya_id, modified_on, payload::JSON, $window_start, $window_end, $now, $run_id
            FROM incoming_raw
            ON CONFLICT (kaseya_id) DO UPDATE SET
                modified_on = excluded.modified_on, payload = excluded.payload,
                window_start = excluded.window_start, window_end = excluded.window_end,
                extracted_at = excluded.extracted_at, run_id = excluded.run_id
            WHERE excluded.modified_on IS NULL OR t.modified_on IS NULL OR excluded.modified_on >= t.modified_on
            """,
            {"window_start": window_start, "window_end": window_end, "now": now, "run_id": run_id},
        )
    finally:
        connection.unregister("incoming_raw")
    return len(latest)


def read_raw_window(connection: duckdb.DuckDBPyConnection, table: str, query_from: datetime,
                    query_to: datetime) -> list[dict[str, Any]]:
    rows = connection.execute(
        f"SELECT payload FROM raw.{table} WHERE modified_on BETWEEN $from AND $to ORDER BY kaseya_id",
        {"from": query_from, "to": query_to},
    ).fetchall()
    return [json.loads(payload) for (payload,) in rows]


def read_raw_ids(connection: duckdb.DuckDBPyConnection, table: str, kaseya_ids: Iterable[int]) -> list[dict]:
    ids = sorted(set(int(i) for i in kaseya_ids))
    if not ids:
        return []
    rows = connection.execute(
        f"SELECT payload FROM raw.{table} WHERE list_contains($ids, kaseya_id) ORDER BY kaseya_id", {"ids": ids}
    ).fetchall()
    return [json.loads(payload) for (payload,) in rows]


@dataclass(frozen=True)
class SnapshotCounts:
    total: int
    new: int
    changed: int
    unchanged: int
    gone: int


def upsert_snapshot(connection: duckdb.DuckDBPyConnection, table: str,
                    rows: Sequence[tuple[str, Mapping[str, Any] | list, str]], *, run_id: str, now: datetime,
                    ) -> SnapshotCounts:
    """Store an hourly snapshot: (key, payload, content hash) per record. Unchanged records keep their
    `changed_at`; records no longer listed by Kaseya are counted as gone (kept, for the audit trail)."""
    before = dict(connection.execute(f"SELECT kaseya_key, content_hash FROM raw.{table}").fetchall())
    frame = pd.DataFrame({
        "kaseya_key": [key for key, _, _ in rows],
        "payload": [json.dumps(payload, ensure_ascii=False) for _, payload, _ in rows],
        "content_hash": [digest for _, _, digest in rows],
    })
    if len(frame):
        frame = frame.drop_duplicates("kaseya_key", keep="last")
        connection.register("incoming_snapshot", frame)
        try:
            connection.execute(
                f"""
                INSERT INTO raw.{table} AS t
                    (kaseya_key, payload, content_hash, first_seen_at, changed_at, extracted_at, run_id)
                SELECT kaseya_key, payload::JSON, content_hash, $now, $now, $now, $run_id FROM incoming_snapshot
                ON CONFLICT (kaseya_key) DO UPDATE SET
                    payload = excluded.payload,
                    changed_at = CASE WHEN t.content_hash = excluded.content_hash THEN t.changed_at
                                      ELSE excluded.changed_at END,
                    content_hash = excluded.content_hash,
                    extracted_at = excluded.extracted_at, run_id = excluded.run_id
                """,
                {"now": now, "run_id": run_id},
            )
        finally:
            connection.unregister("incoming_snapshot")
    keys = set(frame["kaseya_key"]) if len(frame) else set()
    new = sum(1 for key in keys if key not in before)
    changed = sum(1 for key, _, digest in rows if key in before and before[key] != digest)
    return SnapshotCounts(total=len(keys), new=new, changed=changed, unchanged=len(keys) - new - changed,
                          gone=len(set(before) - keys))


def read_snapshot(connection: duckdb.DuckDBPyConnection, table: str) -> list[Any]:
    return [json.loads(p) for (p,) in connection.execute(
        f"SELECT payload FROM raw.{table} ORDER BY kaseya_key").fetchall()]


def read_snapshot_changed_since(connection: duckdb.DuckDBPyConnection, table: str, since: datetime
                                ) -> set[str]:
    return {k for (k,) in connection.execute(
        f"SELECT kaseya_key FROM raw.{table} WHERE changed_at >= $since", {"since": since}).fetchall()}


# --- product pricing (budgeted per-product calls) --------------------------------------------------


def pricing_refresh_order(connection: duckdb.DuckDBPyConnection, product_index_ids: Iterable[int],
                          limit: int, stale_before: datetime) -> list[int]:
    """New products first (never priced), then the least recently refreshed of those refreshed before
    `stale_before`, at most `limit`."""
    ids = sorted(set(int(i) for i in product_index_ids))
    if not ids or limit <= 0:
        return []
    rows = connection.execute(
        """
        SELECT ids.id FROM (SELECT unnest($ids) AS id) ids
        LEFT JOIN raw.kaseya_product_pricing p ON p.product_index_id = ids.id
        WHERE p.refreshed_at IS NULL OR p.refreshed_at < $stale_before
        ORDER BY p.refreshed_at ASC NULLS FIRST, ids.id
        LIMIT $limit
        """,
        {"ids": ids, "limit": limit, "stale_before": stale_before},
    ).fetchall()
    return [r[0] for r in rows]


def upsert_pricing(connection: duckdb.DuckDBPyConnection, product_index_id: int, *, pricing_levels: Any,
                   suppliers: Any, default_cost: Any, run_id: str, now: datetime) -> None:
    connection.execute(
        """
        INSERT INTO raw.kaseya_product_pricing AS t
            (product_index_id, pricing_levels, suppliers, default_cost, refreshed_at, run_id)
        VALUES ($id, $levels::JSON, $suppliers::JSON, $cost::JSON, $now, $run_id)
        ON CONFLICT (product_index_id) DO UPDATE SET pricing_levels = excluded.pricing_levels,
            suppliers = excluded.suppliers, default_cost = excluded.default_cost,
            refreshed_at = excluded.refreshed_at, run_id = excluded.run_id
        """,
        {"id": product_index_id, "levels": json.dumps(pricing_levels), "suppliers": json.dumps(suppliers),
         "cost": json.dumps(default_cost), "now": now, "run_id": run_id},
    )


def read_pricing(connection: duckdb.DuckDBPyConnection) -> dict[int, dict[str, Any]]:
    rows = connection.execute(
        "SELECT product_index_id, pricing_levels, suppliers, default_cost FROM raw.kaseya_product_pricing"
    ).fetchall()
    return {pid: {"pricing_levels": json.loads(levels) or [], "suppliers": json.loads(suppliers) or [],
                  "default_cost": json.loads(cost)} for pid, levels, suppliers, cost in rows}


def oldest_pricing_refresh(connection: duckdb.DuckDBPyConnection) -> datetime | None:
    return connection.execute("SELECT min(refreshed_at) FROM raw.kaseya_product_pricing").fetchone()[0]


# --- stg --------------------------------------------------------------------------------------------


def upsert_stg(connection: duckdb.DuckDBPyConnection, entity: str, valid: pd.DataFrame, *, run_id: str,
               now: datetime) -> int:
    if not len(valid):
        return 0
    columns = [name for name, _ in ENTITY_COLUMNS[entity]]
    frame = valid[columns].copy()
    connection.register("incoming_stg", frame)
    try:
        names = ", ".join(columns)
        connection.execute(
            f"INSERT OR REPLACE INTO stg.kaseya_{entity} ({names}, staged_at, run_id) "
            f"SELECT {names}, $now, $run_id FROM incoming_stg",
            {"now": now, "run_id": run_id},
        )
    finally:
        connection.unregister("incoming_stg")
    return len(frame)


def read_stg(connection: duckdb.DuckDBPyConnection, entity: str, *, modified_from: datetime | None = None,
             modified_to: datetime | None = None, kaseya_ids: Iterable[int] = ()) -> pd.DataFrame:
    columns = ", ".join(name for name, _ in ENTITY_COLUMNS[entity])
    ids = sorted(set(int(i) for i in kaseya_ids))
    if modified_from is None:
        return connection.execute(f"SELECT {columns} FROM stg.kaseya_{entity} ORDER BY kaseya_id").df()
    return connection.execute(
        f"""SELECT {columns} FROM stg.kaseya_{entity}
            WHERE modified_on BETWEEN $from AND $to OR list_contains($ids, kaseya_id)
            ORDER BY kaseya_id""",
        {"from": modified_from, "to": modified_to, "ids": ids},
    ).df()


def deferred_ids(connection: duckdb.DuckDBPyConnection, entity: str) -> list[int]:
    """Raw records held back only because a record they reference (an account, a status) was not staged
    yet: staged again by every run until the reference arrives, so that a contact extracted an hour before
    its account is not lost."""
    rows = connection.execute(
        f"""SELECT DISTINCT r.kaseya_id FROM raw.kaseya_{entity} r
            JOIN audit.rejects j ON j.entity = $entity AND j.kaseya_id = CAST(r.kaseya_id AS VARCHAR)
            WHERE starts_with(j.check_name, $prefix)
              AND r.kaseya_id NOT IN (SELECT kaseya_id FROM stg.kaseya_{entity})
            ORDER BY r.kaseya_id""",
        {"entity": entity, "prefix": "known_"},
    ).fetchall()
    return [r[0] for r in rows]


def stg_ids(connection: duckdb.DuckDBPyConnection, entity: str) -> set[int]:
    return {r[0] for r in connection.execute(f"SELECT kaseya_id FROM stg.kaseya_{entity}").fetchall()}


def insert_rejects(connection: duckdb.DuckDBPyConnection, rejects: pd.DataFrame, *, run_id: str,
                   partition_key: str | None, now: datetime) -> int:
    if not len(rejects):
        return 0
    frame = rejects[[name for name, _ in REJECT_COLUMNS]].copy()
    frame["kaseya_id"] = frame["kaseya_id"].astype("string")
    frame.columns = ["entity", "kaseya_id", "check_name", "column_name", "value", "reason"]
    connection.register("incoming_rejects", frame)
    try:
        connection.execute(
            """INSERT INTO audit.rejects
               (run_id, partition_key, entity, kaseya_id, check_name, column_name, value, reason, rejected_at)
               SELECT $run_id, $partition_key, entity, kaseya_id, check_name, column_name, value, reason, $now
               FROM incoming_rejects""",
            {"run_id": run_id, "partition_key": partition_key, "now": now},
        )
    finally:
        connection.unregister("incoming_rejects")
    return len(frame)


# --- mapped -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappedRecord:
    kaseya_id: str
    payload: Mapping[str, Any] | None
    payload_hash: str | None
    problem: str | None  # why it cannot be sent (yet)
    source_modified_on: datetime | None
    waiting: bool = False  # the problem is a missing prerequisite (a parent, the pricing), not bad data


def upsert_mapped(connection: duckdb.DuckDBPyConnection, name: str, records: Sequence[MappedRecord], *,
                  run_id: str, now: datetime) -> int:
    if not records:
        return 0
    frame = pd.DataFrame({
        "kaseya_id": [r.kaseya_id for r in records],
        "payload": [json.dumps(r.payload, ensure_ascii=False) if r.payload is not None else None for r in records],
        "payload_hash": [r.payload_hash for r in records],
        "problem": [r.problem for r in records],
        "waiting": [r.waiting for r in records],
        "source_modified_on": pd.to_datetime([r.source_modified_on for r in records], utc=True),
    }).drop_duplicates("kaseya_id", keep="last")
    connection.register("incoming_mapped", frame)
    try:
        connection.execute(
            f"""INSERT OR REPLACE INTO mapped.zomentum_{name}
                (kaseya_id, payload, payload_hash, problem, waiting, source_modified_on, mapped_at, run_id)
                SELECT kaseya_id, payload::JSON, payload_hash, problem, waiting, source_modified_on, $now, $run_id
                FROM incoming_mapped""",
            {"now": now, "run_id": run_id},
        )
    finally:
        connection.unregister("incoming_mapped")
    return len(frame)


def mapped_problem_ids(connection: duckdb.DuckDBPyConnection, name: str) -> set[str]:
    return {r[0] for r in connection.execute(
        f"SELECT kaseya_id FROM mapped.zomentum_{name} WHERE problem IS NOT NULL").fetchall()}


@dataclass(frozen=True)
class PendingRecord:
    kaseya_id: str
    payload: dict[str, Any] | None
    payload_hash: str | None
    problem: str | None
    waiting: bool
    zomentum_id: str | None
    sent_payload: dict[str, Any] | None
    sent_hash: str | None


def pending_records(connection: duckdb.DuckDBPyConnection, name: str, *, include_linked_updates: bool
                    ) -> list[PendingRecord]:
    """Mapped records that differ from what Zomentum was last sent: never sent, changed since (only when
    linked records are updated, i.e. Kaseya as CRM), or unmappable (a problem to report)."""
    rows = connection.execute(
        f"""
        SELECT m.kaseya_id, m.payload, m.payload_hash, m.problem, m.waiting, i.zomentum_id, i.payload,
               i.payload_hash
        FROM mapped.zomentum_{name} m
        LEFT JOIN zomentum.id_map i ON i.entity = $entity AND i.kaseya_id = m.kaseya_id
        WHERE m.problem IS NOT NULL
           OR i.zomentum_id IS NULL
           OR ($updates AND i.payload_hash IS DISTINCT FROM m.payload_hash)
        ORDER BY m.kaseya_id
        """,
        {"entity": name, "updates": include_linked_updates},
    ).fetchall()
    return [PendingRecord(kid, json.loads(p) if p else None, h, problem, waiting, zid,
                          json.loads(sp) if sp else None, sh)
            for kid, p, h, problem, waiting, zid, sp, sh in rows]


def count_mapped(connection: duckdb.DuckDBPyConnection, name: str) -> int:
    return connection.execute(f"SELECT count(*) FROM mapped.zomentum_{name}").fetchone()[0]


# --- id map and ledger ------------------------------------------------------------------------------


def read_id_map(connection: duckdb.DuckDBPyConnection, entity: str) -> dict[str, str]:
    return dict(connection.execute(
        "SELECT kaseya_id, zomentum_id FROM zomentum.id_map WHERE entity = $entity", {"entity": entity}
    ).fetchall())


def read_id_map_payloads(connection: duckdb.DuckDBPyConnection, entity: str) -> dict[str, dict[str, Any]]:
    return {k: json.loads(p) for k, p in connection.execute(
        "SELECT kaseya_id, payload FROM zomentum.id_map WHERE entity = $entity AND payload IS NOT NULL",
        {"entity": entity}).fetchall()}


@dataclass(frozen=True)
class IdMapEntry:
    entity: str
    kaseya_id: str
    zomentum_id: str
    link_kind: str  # created | matched
    payload_hash: str | None
    payload: Mapping[str, Any] | None


def upsert_id_map(connection: duckdb.DuckDBPyConnection, entries: Sequence[IdMapEntry], now: datetime) -> None:
    """Pair each entry's records, in one statement. A pair already known keeps its `link_kind` and
    `first_synced_at`; an entity's Kaseya id listed twice keeps its last entry."""
    if not entries:
        return
    frame = pd.DataFrame({
        "entity": [e.entity for e in entries],
        "kaseya_id": [e.kaseya_id for e in entries],
        "zomentum_id": [e.zomentum_id for e in entries],
        "link_kind": [e.link_kind for e in entries],
        "payload_hash": [e.payload_hash for e in entries],
        "payload": [json.dumps(e.payload) if e.payload is not None else None for e in entries],
    }, dtype="string").drop_duplicates(["entity", "kaseya_id"], keep="last")
    connection.register("incoming_id_map", frame)
    try:
        connection.execute(
            """
            INSERT INTO zomentum.id_map AS t (entity, kaseya_id, zomentum_id, link_kind, payload_hash, payload,
                                              first_synced_at, last_synced_at)
            SELECT entity, kaseya_id, zomentum_id, link_kind, payload_hash, payload::JSON, $now, $now
            FROM incoming_id_map
            ON CONFLICT (entity, kaseya_id) DO UPDATE SET zomentum_id = excluded.zomentum_id,
                payload_hash = excluded.payload_hash, payload = excluded.payload,
                last_synced_at = excluded.last_synced_at
            """,
            {"now": now},
        )
    finally:
        connection.unregister("incoming_id_map")


@dataclass(frozen=True)
class SyncEvent:
    direction: str  # pull | push
    entity: str
    action: str  # created | updated | unchanged | matched | failed | skipped
    kaseya_id: str | None = None
    zomentum_id: str | None = None
    reason: str | None = None
    changed_fields: Sequence[str] | None = None
    link: str | None = None


def record_events(connection: duckdb.DuckDBPyConnection, events: Sequence[SyncEvent], *, run_id: str | None,
                  partition_key: str | None, settings_fingerprint: str | None, now: datetime) -> None:
    if not events:
        return
    frame = pd.DataFrame({
        "direction": [e.direction for e in events],
        "entity": [e.entity for e in events],
        "kaseya_id": [e.kaseya_id for e in events],
        "zomentum_id": [e.zomentum_id for e in events],
        "action": [e.action for e in events],
        "reason": [e.reason for e in events],
        "changed_fields": [json.dumps(list(e.changed_fields)) if e.changed_fields is not None else None
                           for e in events],
        "link": [e.link for e in events],
    })
    connection.register("incoming_events", frame)
    try:
        connection.execute(
            """INSERT INTO audit.sync_events (occurred_at, run_id, partition_key, direction, entity, kaseya_id, zomentum_id,
                                             action, reason, changed_fields, link, settings_fingerprint)
               SELECT $now, $run_id, $partition_key, direction, entity, kaseya_id, zomentum_id, action, reason,
                      changed_fields::JSON, link, $fingerprint
               FROM incoming_events""",
            {"now": now, "run_id": run_id, "partition_key": partition_key, "fingerprint": settings_fingerprint},
        )
    finally:
        connection.unregister("incoming_events")


# --- resolved settings ------------------------------------------------------------------------------


def save_resolved_settings(connection: duckdb.DuckDBPyConnection, fingerprint: str, resolved: Mapping[str, Any],
                           *, run_id: str, now: datetime) -> None:
    connection.execute(
        """INSERT INTO settings.resolved AS t (fingerprint, resolved, resolved_at, run_id)
           VALUES ($fp, $resolved::JSON, $now, $run_id)
           ON CONFLICT (fingerprint) DO UPDATE SET resolved = excluded.resolved,
               resolved_at = excluded.resolved_at, run_id = excluded.run_id""",
        {"fp": fingerprint, "resolved": json.dumps(resolved), "now": now, "run_id": run_id},
    )


def latest_resolved_settings(connection: duckdb.DuckDBPyConnection) -> tuple[str, dict[str, Any]] | None:
    row = connection.execute(
        "SELECT fingerprint, resolved FROM settings.resolved ORDER BY resolved_at DESC LIMIT 1").fetchone()
    return (row[0], json.loads(row[1])) if row else None
