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
import numpy as np
import pandas as pd

from zk_pipelines.domain.change_detection import canonical_json
from zk_pipelines.domain.entities import SNAPSHOT_SOURCES, STAGED_COLUMNS, STAGED_SOURCES
from zk_pipelines.domain.staging_schemas import REFERENCE_CHECK_PREFIX, REJECT_COLUMNS
from zk_pipelines.storage.database import one_row, registered
from zk_pipelines.storage.push_store import ensure_push_tables
from zk_pipelines.storage.reconcile_store import INACTIVE_MARK, ensure_report_table
from zk_pipelines.storage.schema import create_tables, describe_tables
from zk_pipelines.storage.state_store import (
    ID_MAP,
    REJECTS,
    RESOLVED_SETTINGS,
    new_ids,
    replicate,
)

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
    """`map_pending`: staged (new or changed) since mapping last read the row."""
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in STAGED_COLUMNS[entity])
    return (f"CREATE TABLE IF NOT EXISTS stg.kaseya_{entity} (\n    {columns},\n"
            f"    staged_at TIMESTAMPTZ,\n    run_id VARCHAR,\n    map_pending BOOLEAN NOT NULL DEFAULT true,\n"
            f"    PRIMARY KEY (kaseya_id)\n)")


def ensure_pull_tables(connection: duckdb.DuckDBPyConnection, targets: Iterable[str] = ()) -> None:
    create_tables(connection, [*(stg_ddl(entity) for entity in STAGED_COLUMNS),
                               *(MAPPED_DDL.format(name=name) for name in targets),
                               # a file made before the column existed: every row is mapped once more
                               *(f"ALTER TABLE stg.kaseya_{entity} ADD COLUMN IF NOT EXISTS map_pending BOOLEAN "
                                 "DEFAULT true" for entity in STAGED_COLUMNS)])


# --- stg --------------------------------------------------------------------------------------------


def upsert_stg(connection: duckdb.DuckDBPyConnection, entity: str, valid: pd.DataFrame, *, run_id: str,
               now: datetime) -> int:
    if not len(valid):
        return 0
    columns = [name for name, _ in STAGED_COLUMNS[entity]]
    frame = valid[columns].copy()
    with registered(connection, "incoming_stg", frame):
        names = ", ".join(columns)
        connection.execute(
            f"INSERT OR REPLACE INTO stg.kaseya_{entity} ({names}, staged_at, run_id, map_pending) "
            f"SELECT {names}, $now, $run_id, true FROM incoming_stg",
            {"now": now, "run_id": run_id},
        )
    return len(frame)


def read_stg(connection: duckdb.DuckDBPyConnection, entity: str, *, pending_only: bool = False,
             kaseya_ids: Iterable[int] = ()) -> pd.DataFrame:
    """The staged rows (`pending_only`: those mapping has not read since they were staged, and `kaseya_ids`)."""
    columns = ", ".join(name for name, _ in STAGED_COLUMNS[entity])
    ids = sorted(set(int(i) for i in kaseya_ids))
    if not pending_only:
        return connection.execute(f"SELECT {columns} FROM stg.kaseya_{entity} ORDER BY kaseya_id").df()
    return connection.execute(
        f"""SELECT {columns} FROM stg.kaseya_{entity} WHERE map_pending OR list_contains($ids, kaseya_id)
            ORDER BY kaseya_id""",
        {"ids": ids},
    ).df()


def mapped_read(connection: duckdb.DuckDBPyConnection, entity: str, kaseya_ids: Iterable[int]) -> None:
    """Mapping has read these staged rows: pending no more (until staged again)."""
    ids = pd.DataFrame({"kaseya_id": np.asarray(list(kaseya_ids), dtype="int64")})
    if not len(ids):
        return
    with registered(connection, "incoming_mapped_ids", ids):
        connection.execute(f"""UPDATE stg.kaseya_{entity} SET map_pending = false
                               WHERE map_pending AND kaseya_id IN (SELECT kaseya_id FROM incoming_mapped_ids)""")


# The staged entities a record may wait for (its reference checks), by entity.
WAITS_FOR = {source.name: tuple(key.target for key in source.staging.foreign_keys)
             for source in STAGED_SOURCES if source.staging is not None}


def deferred_ids(connection: duckdb.DuckDBPyConnection, entity: str) -> list[int]:
    """Raw records held back only because a record they reference (an account, a status) was not staged
    yet, and since then something was staged where it may be: staged again until the reference arrives, so
    that a contact extracted an hour before its account is not lost (and an hour that staged no account does
    not try its waiting contacts again for nothing)."""
    parents = " UNION ALL ".join(f"SELECT max(staged_at) AS staged FROM stg.kaseya_{parent}"
                                 for parent in WAITS_FOR.get(entity, ()))
    if not parents:
        return []
    rows = connection.execute(
        f"""WITH waiting AS (
                SELECT kaseya_id, max(rejected_at) AS since FROM audit.rejects
                WHERE entity = $entity AND starts_with(check_name, $prefix) GROUP BY kaseya_id
            ), staged_parent AS (SELECT max(staged) AS latest FROM ({parents}))
            SELECT DISTINCT r.kaseya_id FROM raw.kaseya_{entity} r
            JOIN waiting w ON w.kaseya_id = CAST(r.kaseya_id AS VARCHAR)
            WHERE w.since <= (SELECT latest FROM staged_parent)
              AND r.kaseya_id NOT IN (SELECT kaseya_id FROM stg.kaseya_{entity})
            ORDER BY r.kaseya_id""",
        {"entity": entity, "prefix": REFERENCE_CHECK_PREFIX},
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
    ids = new_ids(connection, REJECTS, len(frame))
    frame["reject_id"] = ids
    with registered(connection, "incoming_rejects", frame):
        connection.execute(
            """INSERT INTO audit.rejects (reject_id, run_id, partition_key, entity, kaseya_id, check_name,
                                          column_name, value, reason, rejected_at)
               SELECT reject_id, $run_id, $partition_key, entity, kaseya_id, check_name, column_name, value,
                      reason, $now
               FROM incoming_rejects""",
            {"run_id": run_id, "partition_key": partition_key, "now": now},
        )
    replicate(connection, REJECTS, "list_contains($ids, t.reject_id)", {"ids": ids})
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
        # The canonical text the payload hash is taken over, as the column-wise mapping stores it.
        "payload": [canonical_json(r.payload) if r.payload is not None else None for r in records],
        "payload_hash": [r.payload_hash for r in records],
        "problem": [r.problem for r in records],
        "waiting": [r.waiting for r in records],
        "source_modified_on": pd.to_datetime([r.source_modified_on for r in records], utc=True),
    }).drop_duplicates("kaseya_id", keep="last")
    with registered(connection, "incoming_mapped_frame", frame):
        connection.execute(
            f"""INSERT OR REPLACE INTO mapped.zomentum_{name}
                (kaseya_id, payload, payload_hash, problem, waiting, source_modified_on, mapped_at, run_id)
                SELECT kaseya_id, payload::JSON, payload_hash, problem, waiting, source_modified_on, $now, $run_id
                FROM incoming_mapped_frame""",
            {"now": now, "run_id": run_id},
        )
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


def opportunity_status_ids(connection: duckdb.DuckDBPyConnection, kaseya_ids: Iterable[str]) -> dict[str, int]:
    """Kaseya opportunity id -> its staged status id, for the stage tie-break on first sight."""
    ids = [int(i) for i in kaseya_ids if str(i).lstrip("-").isdigit()]
    if not ids:
        return {}
    return {str(k): int(s) for k, s in connection.execute(
        "SELECT kaseya_id, status_id FROM stg.kaseya_opportunities WHERE list_contains($ids, kaseya_id)",
        {"ids": ids}).fetchall() if s is not None}


def inactive_unpaired(connection: duckdb.DuckDBPyConnection, name: str, source: str, run_id: str
                      ) -> dict[str, bool]:
    """Kaseya id -> mapped in this run, of the target's staged rows inactive in Kaseya and paired with nothing."""
    return {str(k): bool(now) for k, now in connection.execute(
        f"""SELECT m.kaseya_id, m.run_id IS NOT DISTINCT FROM $run_id
            FROM mapped.zomentum_{name} m
            JOIN stg.kaseya_{source} s ON CAST(s.kaseya_id AS VARCHAR) = m.kaseya_id
            LEFT JOIN zomentum.id_map i ON i.entity = $entity AND i.kaseya_id = m.kaseya_id
            WHERE s.is_active = false AND i.zomentum_id IS NULL""",
        {"entity": name, "run_id": run_id}).fetchall()}


def activity_changes(connection: duckdb.DuckDBPyConnection, name: str, source: str) -> list[tuple[str, str, bool]]:
    """(Kaseya id, Zomentum id, inactive now) of the paired records whose Kaseya active flag differs from what
    Zomentum was last told (pairs the pull has sent nothing for yet are left to the pull's first sight)."""
    return [(str(k), str(z), bool(inactive)) for k, z, inactive in connection.execute(
        f"""SELECT i.kaseya_id, i.zomentum_id, s.is_active = false
            FROM zomentum.id_map i
            JOIN stg.kaseya_{source} s ON CAST(s.kaseya_id AS VARCHAR) = i.kaseya_id
            WHERE i.entity = $entity AND i.payload IS NOT NULL
              AND (s.is_active = false) IS DISTINCT FROM
                  (json_extract_string(i.payload, $mark) IS NOT DISTINCT FROM 'inactive')
            ORDER BY i.kaseya_id""",
        {"entity": name, "mark": f"$.{INACTIVE_MARK}"}).fetchall()]


def mark_activity(connection: duckdb.DuckDBPyConnection, name: str, kaseya_id: str, inactive: bool) -> None:
    """Record in the id map's payload what Zomentum was told of the record's Kaseya active flag."""
    connection.execute(
        """UPDATE zomentum.id_map
           SET payload = CASE WHEN $inactive THEN json_merge_patch(payload, $mark_json)
                              ELSE json_merge_patch(payload, $unmark_json) END
           WHERE entity = $entity AND kaseya_id = $kaseya_id""",
        {"entity": name, "kaseya_id": kaseya_id, "inactive": inactive,
         "mark_json": json.dumps({INACTIVE_MARK: "inactive"}), "unmark_json": json.dumps({INACTIVE_MARK: None})})
    replicate(connection, ID_MAP, "t.entity = $entity AND t.kaseya_id = $kaseya_id",
              {"entity": name, "kaseya_id": kaseya_id})


def restore_pairs(connection: duckdb.DuckDBPyConnection, pairs: Sequence[tuple[str, str, str]], now: datetime
                  ) -> dict[str, int]:
    """Pair (entity, Kaseya id, Zomentum id) as `zk state rebuild` found them, without a payload (the next
    pull takes its mapping as the baseline), unless the id map already pairs that Kaseya record or that
    Zomentum record. Returns how many were restored per entity."""
    restored: dict[str, int] = {}
    for entity, kaseya_id, zomentum_id in pairs:
        inserted = connection.execute(
            """
            INSERT INTO zomentum.id_map (entity, kaseya_id, zomentum_id, link_kind, payload_hash, payload,
                                         first_synced_at, last_synced_at)
            SELECT $entity, $kaseya_id, $zomentum_id, 'rebuilt', NULL, NULL, $now, $now
            WHERE NOT EXISTS (SELECT 1 FROM zomentum.id_map WHERE entity = $entity
                              AND (kaseya_id = $kaseya_id OR zomentum_id = $zomentum_id))
            RETURNING kaseya_id
            """,
            {"entity": entity, "kaseya_id": kaseya_id, "zomentum_id": zomentum_id, "now": now},
        ).fetchall()
        if inserted:
            replicate(connection, ID_MAP, "t.entity = $entity AND t.kaseya_id = $kaseya_id",
                      {"entity": entity, "kaseya_id": kaseya_id})
        restored[entity] = restored.get(entity, 0) + len(inserted)
    return restored


def unchanged_records(connection: duckdb.DuckDBPyConnection, name: str, *, run_id: str,
                      include_linked_updates: bool) -> list[tuple[str, str]]:
    """(Kaseya id, Zomentum id) of the records this run mapped that need no write: linked already and, when linked
    records are updated (Kaseya as CRM), sent as they are now."""
    return connection.execute(
        f"""SELECT m.kaseya_id, i.zomentum_id FROM mapped.zomentum_{name} m
            JOIN zomentum.id_map i ON i.entity = $entity AND i.kaseya_id = m.kaseya_id
            WHERE m.run_id = $run_id AND m.problem IS NULL
              AND ($updates = false OR i.payload_hash = m.payload_hash)""",
        {"entity": name, "run_id": run_id, "updates": include_linked_updates},
    ).fetchall()


def mapped_payload_hashes(connection: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
    """Kaseya id -> the hash of the payload last mapped for it (a snapshot target rewrites only what changed)."""
    return dict(connection.execute(f"SELECT kaseya_id, payload_hash FROM mapped.zomentum_{name}").fetchall())


def count_mapped(connection: duckdb.DuckDBPyConnection, name: str) -> int:
    return one_row(connection.execute(f"SELECT count(*) FROM mapped.zomentum_{name}"))[0]


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
    replicate(connection, RESOLVED_SETTINGS, "t.fingerprint = $fp", {"fp": fingerprint})


def latest_resolved_settings(connection: duckdb.DuckDBPyConnection) -> tuple[str, dict[str, Any]] | None:
    row = connection.execute(
        "SELECT fingerprint, resolved FROM settings.resolved ORDER BY resolved_at DESC LIMIT 1").fetchone()
    return (row[0], json.loads(row[1])) if row else None


# --- snapshot versions ---------------------------------------------------------------------------------

# The raw tables each staged snapshot entity is staged from.
STAGED_SNAPSHOT_TABLES = {source.name: (source.raw_table, *source.staging.also_reads)
                          for source in SNAPSHOT_SOURCES if source.staging is not None}


def snapshot_version(connection: duckdb.DuckDBPyConnection, entity: str) -> str:
    """What the entity's raw sources hold, as a version: their row counts and when a row of them last changed."""
    parts = []
    for table in STAGED_SNAPSHOT_TABLES[entity]:
        count, changed = one_row(connection.execute(f"SELECT count(*), max(changed_at) FROM raw.{table}"))
        parts.append(f"{table}:{count}:{changed.isoformat() if changed else '-'}")
    return ";".join(parts)


def staged_snapshot_version(connection: duckdb.DuckDBPyConnection, entity: str) -> str | None:
    row = connection.execute("SELECT version FROM stg.snapshot_versions WHERE entity = $entity",
                             {"entity": entity}).fetchone()
    return row[0] if row else None


def save_staged_snapshot_version(connection: duckdb.DuckDBPyConnection, entity: str, version: str, now: datetime
                                 ) -> None:
    connection.execute(
        """INSERT INTO stg.snapshot_versions (entity, version, staged_at) VALUES ($entity, $version, $now)
           ON CONFLICT (entity) DO UPDATE SET version = excluded.version, staged_at = excluded.staged_at""",
        {"entity": entity, "version": version, "now": now})


def table_columns(targets: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """The columns of every table the pull and the push keep, as the DDL makes them (in an in-memory database):
    what the catalogue shows of each table."""
    with duckdb.connect(":memory:") as connection:
        ensure_pull_tables(connection, targets)
        ensure_push_tables(connection)
        ensure_report_table(connection)
        return describe_tables(connection)


def count_rows(connection: duckdb.DuckDBPyConnection, table: str, where: str = "", params: Any = None) -> int:
    """The rows of a table the pipeline keeps (`table` is one of its own names, never user input)."""
    return one_row(connection.execute(f"SELECT count(*) FROM {table} {where}", params or []))[0]
