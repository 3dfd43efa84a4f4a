"""The pull's reads and writes of DuckDB, as explicit SQL with parameters.

Identifiers (table and column names) come only from the entity tables in code, never from data; values are
always bound parameters or registered DataFrames.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from zk_pipelines.domain.change_detection import canonical_json
from zk_pipelines.domain.entities import SNAPSHOT_SOURCES, STAGED_COLUMNS, STAGED_SOURCES
from zk_pipelines.domain.kaseya_staging import (
    CONTACT_EMAIL_WIRE_FIELDS,
    CONTACT_PHONE_WIRE_FIELDS,
    CONTACT_READ_NAMES,
    CONTACT_WIRE_FIELDS,
    STRIPPED_CHARACTERS,
    folded_name,
)
from zk_pipelines.domain.staging_schemas import REFERENCE_CHECK_PREFIX, REJECT_COLUMNS, as_validated_types
from zk_pipelines.storage.database import one_row, registered
from zk_pipelines.storage.push_store import ensure_push_tables
from zk_pipelines.storage.reconcile_store import INACTIVE_MARK, ensure_report_table
from zk_pipelines.storage.schema import create_tables, describe_tables
from zk_pipelines.storage.state_store import (
    ID_MAP,
    PRODUCT_PRICING,
    REJECTS,
    RESOLVED_SETTINGS,
    SYNC_EVENTS,
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


# --- raw ------------------------------------------------------------------------------------------


OLDEST = datetime.min.replace(tzinfo=UTC)  # where a record without a readable ModifiedOn sorts


@dataclass(frozen=True)
class RawRecord:
    kaseya_id: int
    modified_on: datetime | None
    payload: Mapping[str, Any]


def upsert_incremental_raw(connection: duckdb.DuckDBPyConnection, table: str, records: Sequence[RawRecord], *,
                           window_start: datetime | None, window_end: datetime, run_id: str, now: datetime) -> int:
    """Keep the newest payload of each Kaseya record. A record seen twice (on two pages, in two batches of one
    extraction, or in two runs) keeps its latest `ModifiedOn`: an older payload never replaces a newer one,
    and a payload without a readable `ModifiedOn` counts as the oldest (it replaces only another without one),
    as staging counts it."""
    latest: dict[int, RawRecord] = {}
    for record in records:
        seen = latest.get(record.kaseya_id)
        if seen is None or (record.modified_on or OLDEST) >= (seen.modified_on or OLDEST):
            latest[record.kaseya_id] = record
    if not latest:
        return 0
    frame = pd.DataFrame({
        "kaseya_id": [r.kaseya_id for r in latest.values()],
        "modified_on": pd.to_datetime([r.modified_on for r in latest.values()], utc=True),
        "payload": [json.dumps(r.payload, ensure_ascii=False) for r in latest.values()],
    })
    with registered(connection, "incoming_raw", frame):
        connection.execute(
            f"""
            INSERT INTO raw.{table} AS t
                (kaseya_id, modified_on, payload, window_start, window_end, extracted_at, run_id)
            SELECT kaseya_id, modified_on, payload::JSON, $window_start, $window_end, $now, $run_id
            FROM incoming_raw
            ON CONFLICT (kaseya_id) DO UPDATE SET
                modified_on = excluded.modified_on, payload = excluded.payload,
                window_start = excluded.window_start, window_end = excluded.window_end,
                extracted_at = excluded.extracted_at, run_id = excluded.run_id,
                -- staging reads the record again only when what Kaseya sent changed
                stage_pending = t.stage_pending OR CAST(t.payload AS VARCHAR) <> CAST(excluded.payload AS VARCHAR)
            WHERE t.modified_on IS NULL OR excluded.modified_on >= t.modified_on
            """,
            {"window_start": window_start, "window_end": window_end, "now": now, "run_id": run_id},
        )
    return len(latest)


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
    """Store an hourly snapshot: (key, payload, content hash) per record. Unchanged records keep their payload
    and `changed_at` (only their `extracted_at` moves: the payload of an hour that changed nothing is not written
    again); records no longer listed by Kaseya are counted as gone (kept, for the audit trail)."""
    before = dict(connection.execute(f"SELECT kaseya_key, content_hash FROM raw.{table}").fetchall())
    latest = {key: (payload, digest) for key, payload, digest in rows}  # a key listed twice: its last row
    keys = set(latest)
    differing = [(key, payload, digest) for key, (payload, digest) in latest.items() if before.get(key) != digest]
    frame = pd.DataFrame({
        "kaseya_key": [key for key, _, _ in differing],
        "payload": [json.dumps(payload, ensure_ascii=False) for _, payload, _ in differing],
        "content_hash": [digest for _, _, digest in differing],
    })
    unchanged = sorted(keys - {key for key, _, _ in differing})
    connection.execute(f"UPDATE raw.{table} SET extracted_at = $now, run_id = $run_id WHERE list_contains($keys, "
                       "kaseya_key)", {"now": now, "run_id": run_id, "keys": unchanged})
    if len(frame):
        with registered(connection, "incoming_snapshot", frame):
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
    new = sum(1 for key in keys if key not in before)
    changed = sum(1 for key, _, _ in differing if key in before)
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
    """New products first (never priced), then those whose listing changed since their pricing was read (a
    product edited in Kaseya this hour gets its prices this hour too), then the least recently refreshed of
    those refreshed before `stale_before`, at most `limit`."""
    ids = sorted(set(int(i) for i in product_index_ids))
    if not ids or limit <= 0:
        return []
    rows = connection.execute(
        """
        SELECT ids.id FROM (SELECT unnest($ids) AS id) ids
        LEFT JOIN raw.kaseya_product_pricing p ON p.product_index_id = ids.id
        LEFT JOIN raw.kaseya_products listing ON listing.kaseya_key = CAST(ids.id AS VARCHAR)
        WHERE p.refreshed_at IS NULL OR p.refreshed_at < $stale_before OR listing.changed_at > p.refreshed_at
        ORDER BY p.refreshed_at IS NULL DESC, coalesce(listing.changed_at > p.refreshed_at, false) DESC,
                 p.refreshed_at ASC, ids.id
        LIMIT $limit
        """,
        {"ids": ids, "limit": limit, "stale_before": stale_before},
    ).fetchall()
    return [r[0] for r in rows]


def upsert_pricing(connection: duckdb.DuckDBPyConnection, prices: Sequence[tuple[int, Any, Any, Any]], *,
                   run_id: str, now: datetime) -> None:
    """One row per product from `(product_index_id, pricing_levels, suppliers, default_cost)`, in one
    statement; each product index id at most once."""
    if not prices:
        return
    connection.execute(
        """
        INSERT INTO raw.kaseya_product_pricing AS t
            (product_index_id, pricing_levels, suppliers, default_cost, refreshed_at, run_id, changed_at)
        SELECT unnest($ids), unnest($levels)::JSON, unnest($suppliers)::JSON, unnest($costs)::JSON, $now, $run_id, $now
        ON CONFLICT (product_index_id) DO UPDATE SET pricing_levels = excluded.pricing_levels,
            suppliers = excluded.suppliers, default_cost = excluded.default_cost,
            refreshed_at = excluded.refreshed_at, run_id = excluded.run_id,
            changed_at = CASE WHEN t.pricing_levels::VARCHAR IS NOT DISTINCT FROM excluded.pricing_levels::VARCHAR
                               AND t.suppliers::VARCHAR IS NOT DISTINCT FROM excluded.suppliers::VARCHAR
                               AND t.default_cost::VARCHAR IS NOT DISTINCT FROM excluded.default_cost::VARCHAR
                              THEN t.changed_at ELSE excluded.refreshed_at END
        """,
        {"ids": [int(p[0]) for p in prices], "levels": [json.dumps(p[1]) for p in prices],
         "suppliers": [json.dumps(p[2]) for p in prices], "costs": [json.dumps(p[3]) for p in prices],
         "now": now, "run_id": run_id},
    )
    replicate(connection, PRODUCT_PRICING, "list_contains($ids, t.product_index_id)",
              {"ids": [int(p[0]) for p in prices]})


def read_pricing(connection: duckdb.DuckDBPyConnection) -> dict[int, dict[str, Any]]:
    rows = connection.execute(
        "SELECT product_index_id, pricing_levels, suppliers, default_cost FROM raw.kaseya_product_pricing"
    ).fetchall()
    return {pid: {"pricing_levels": json.loads(levels) or [], "suppliers": json.loads(suppliers) or [],
                  "default_cost": json.loads(cost)} for pid, levels, suppliers, cost in rows}


def oldest_pricing_refresh(connection: duckdb.DuckDBPyConnection) -> datetime | None:
    return one_row(connection.execute("SELECT min(refreshed_at) FROM raw.kaseya_product_pricing"))[0]


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
        # The canonical text the payload hash is taken over: the column-wise mapping stores the very text it
        # hashed, without building a second rendering.
        "payload": [canonical_json(r.payload) if r.payload is not None else None for r in records],
        "payload_hash": [r.payload_hash for r in records],
        "problem": [r.problem for r in records],
        "waiting": [r.waiting for r in records],
        "source_modified_on": pd.to_datetime([r.source_modified_on for r in records], utc=True),
    }).drop_duplicates("kaseya_id", keep="last")
    return upsert_mapped_frame(connection, name, frame, run_id=run_id, now=now)


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
    with registered(connection, "incoming_id_map", frame):
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
        replicate(connection, ID_MAP, "EXISTS (SELECT 1 FROM incoming_id_map i "
                  "WHERE i.entity = t.entity AND i.kaseya_id = t.kaseya_id)")


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
    ids = new_ids(connection, SYNC_EVENTS, len(frame))
    frame["event_id"] = ids
    with registered(connection, "incoming_events", frame):
        connection.execute(
            """INSERT INTO audit.sync_events (event_id, occurred_at, run_id, partition_key, direction, entity,
                                             kaseya_id, zomentum_id, action, reason, changed_fields, link,
                                             settings_fingerprint)
               SELECT event_id, $now, $run_id, $partition_key, direction, entity, kaseya_id, zomentum_id, action,
                      reason, changed_fields::JSON, link, $fingerprint
               FROM incoming_events ORDER BY event_id""",
            {"now": now, "run_id": run_id, "partition_key": partition_key, "fingerprint": settings_fingerprint},
        )
    replicate(connection, SYNC_EVENTS, "list_contains($ids, t.event_id)", {"ids": ids})


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


# --- contacts, column-wise ---------------------------------------------------------------------------
# A million contacts staged, validated and mapped one Python dict at a time take gigabytes and minutes; these
# reads and writes move them a chunk of ids at a time, as typed columns.


def read_raw_in_order(connection: duckdb.DuckDBPyConnection, table: str, kaseya_ids: np.ndarray) -> list[Any]:
    """The raw payloads of `kaseya_ids`, in that order (ids not in the table are left out)."""
    chunk = pd.DataFrame({"kaseya_id": np.asarray(kaseya_ids, dtype="int64"),
                          "position": np.arange(len(kaseya_ids), dtype="int64")})
    with registered(connection, "incoming_raw_ids", chunk):
        rows = connection.execute(
            f"""SELECT r.payload FROM raw.{table} r JOIN incoming_raw_ids i USING (kaseya_id)
                ORDER BY i.position""").fetchall()
    return [json.loads(payload) for (payload,) in rows]


def staging_order(connection: duckdb.DuckDBPyConnection, table: str, retry_ids: Iterable[int]) -> np.ndarray:
    """The raw records a staging reads, in the order the per-record staging reads them: those pending (new or
    changed since staging last read them) by id, then the `retry_ids` not pending by id."""
    pending = connection.execute(
        f"SELECT kaseya_id FROM raw.{table} WHERE stage_pending ORDER BY kaseya_id").fetchnumpy()["kaseya_id"]
    retry = np.array(sorted(set(int(i) for i in retry_ids)), dtype="int64")
    retry = retry[~np.isin(retry, pending)]
    stored = connection.execute(
        f"SELECT kaseya_id FROM raw.{table} WHERE list_contains($ids, kaseya_id) ORDER BY kaseya_id",
        {"ids": retry.tolist()},
    ).fetchnumpy()["kaseya_id"] if len(retry) else np.array([], dtype="int64")
    return np.concatenate([np.asarray(pending, dtype="int64"), np.asarray(stored, dtype="int64")])


def staged_read(connection: duckdb.DuckDBPyConnection, table: str, kaseya_ids: np.ndarray) -> None:
    """Staging has read these raw records: they are pending no more (until Kaseya sends them changed)."""
    if not len(kaseya_ids):
        return
    ids = pd.DataFrame({"kaseya_id": np.asarray(kaseya_ids, dtype="int64")})
    with registered(connection, "incoming_staged_ids", ids):
        connection.execute(f"""UPDATE raw.{table} SET stage_pending = false
                               WHERE stage_pending AND kaseya_id IN (SELECT kaseya_id FROM incoming_staged_ids)""")


def _present(value: str) -> str:
    return f"({value} IS NOT NULL AND json_type({value}) <> 'NULL')"


def _whole_number(value: str) -> str:
    return (f"(NOT {_present(value)} OR (json_type({value}) IN ('BIGINT', 'UBIGINT') "
            f"AND TRY_CAST({value} AS BIGINT) IS NOT NULL))")


def _of_kind(value: str, kind: str) -> str:
    return f"(NOT {_present(value)} OR json_type({value}) = '{kind}')"


def _spelled_as_wire(keys: str, names: str, spellings: str) -> str:
    """No key among `keys` that reads as one of `names` (case and underscores ignored) is spelled otherwise
    than in `spellings`."""
    return (f"len(list_filter({keys}, lambda k: list_contains({names}, lower(replace(k, '_', ''))) "
            f"AND NOT list_contains({spellings}, k))) = 0")


def _stripped(text: str) -> str:
    return f"nullif(regexp_replace({text}, $strip, '', 'g'), '')"


def _moment_value(text: str) -> str:
    # `parse_kaseya_moment` drops fraction digits beyond the sixth and reads a naive time as UTC.
    return (f"TRY_CAST(regexp_replace({text}, '(\\.\\d{{6}})\\d+', '\\1') || "
            f"CASE WHEN regexp_matches({text}, '(Z|[+-]\\d\\d:\\d\\d)$') THEN '' ELSE '+00:00' END AS TIMESTAMPTZ)")


@functools.cache
def _contacts_chunk_sql() -> str:
    """One parse of each payload (`json_extract` of every field at once), then small parses of the values."""
    columns = list(CONTACT_WIRE_FIELDS)
    paths = ", ".join(f"'$.{CONTACT_WIRE_FIELDS[column]}'" for column in columns)

    def field(column: str) -> str:
        return f"v[{columns.index(column) + 1}]"

    entries = {  # column -> (names, spellings, paths of an entry, entry readable, entry value)
        "email": ("$email_names", "$email_spellings", "['$.emailAddress', '$.isDefault']",
                  f"{_of_kind('x[1]', 'VARCHAR')} AND {_of_kind('x[2]', 'BOOLEAN')}",
                  _stripped("x[1] ->> '$'"), "x[2]"),
        "phone": ("$phone_names", "$phone_spellings", "['$.phone', '$.phoneNumber', '$.isDefault']",
                  f"{_of_kind('x[1]', 'VARCHAR')} AND {_of_kind('x[2]', 'VARCHAR')} AND {_of_kind('x[3]', 'BOOLEAN')}",
                  # the first non-null of Phone, PhoneNumber, then trimmed (a blank Phone hides PhoneNumber)
                  _stripped("coalesce(x[1] ->> '$', x[2] ->> '$')"), "x[3]"),
    }
    readable = ["kind = 'OBJECT'", _spelled_as_wire("keys", "$names", "$spellings"), _present(field("kaseya_id"))]
    selected = []
    for column in ("kaseya_id", "account_id", "location_id"):
        readable.append(_whole_number(field(column)))
        selected.append(f"TRY_CAST({field(column)} AS BIGINT) AS {column}")
    for column in ("account_name", "first_name", "last_name", "job_title"):
        readable.append(_of_kind(field(column), "VARCHAR"))
        selected.append(f"{_stripped(f'{field(column)} ->> {chr(39)}${chr(39)}')} AS {column}")
    listed = []
    for column, (names, spellings, entry_paths, entry_readable, entry_value, entry_default) in entries.items():
        value = field(column)
        # each entry: (its keys, its fields) from one parse of the entry
        listed.append(f"list_transform(CASE WHEN json_type({value}) = 'ARRAY' THEN json_extract({value}, '$[*]') "
                      f"ELSE [] END, lambda e: {{'kind': json_type(e), 'keys': json_keys(e), "
                      f"'x': json_extract(e, {entry_paths})}}) AS {column}_entries")
        readable.append(f"(NOT {_present(value)} OR (json_type({value}) = 'ARRAY' AND coalesce(list_bool_and("
                        f"list_transform({column}_entries, lambda s: s.kind = 'OBJECT' AND "
                        f"{_spelled_as_wire('s.keys', names, spellings)} AND "
                        f"{entry_readable.replace('x[', 's.x[')})), true)))")
        # the first entry with a value flagged IsDefault, else the first entry with a value
        with_value = (f"list_filter(list_transform({column}_entries, lambda s: {{'value': "
                      f"{entry_value.replace('x[', 's.x[')}, 'is_default': "
                      f"coalesce({entry_default.replace('x[', 's.x[')} ->> '$' = 'true', false)}}), "
                      f"lambda s: s.value IS NOT NULL)")
        selected.append(f"coalesce(list_filter({with_value}, lambda s: s.is_default)[1].value, "
                        f"({with_value})[1].value) AS {column}")
    for column in ("is_poc", "is_active"):
        readable.append(_of_kind(field(column), "BOOLEAN"))
    selected.append(f"coalesce({field('is_poc')} ->> '$' = 'true', false) AS is_poc")
    selected.append(f"CASE WHEN json_type({field('is_active')}) = 'BOOLEAN' "
                    f"THEN {field('is_active')} ->> '$' = 'true' END AS is_active")
    for column in ("created_on", "modified_on"):
        value = field(column)
        moment = _moment_value(f"({value} ->> '$')")
        readable.append(f"(NOT {_present(value)} OR (json_type({value}) = 'VARCHAR' AND "
                        f"regexp_full_match({value} ->> '$', $moment) AND {moment} IS NOT NULL))")
        selected.append(f"CASE WHEN {_present(value)} THEN {moment} END AS {column}")
    return f"""
        WITH chunk AS (
            SELECT c.position, r.payload
            FROM incoming_contacts_chunk c JOIN raw.kaseya_contacts r ON r.kaseya_id = c.kaseya_id
            WHERE r.kaseya_id BETWEEN $lowest AND $highest
        ), parsed AS (
            SELECT position, payload, json_type(payload) AS kind, json_keys(payload) AS keys,
                   json_extract(payload, [{paths}]) AS v
            FROM chunk
        ), listed AS (
            SELECT *, {', '.join(listed)} FROM parsed
        ), judged AS (
            SELECT *, coalesce({' AND '.join(readable)}, false) AS readable FROM listed
        )
        SELECT position, readable, CASE WHEN readable THEN NULL ELSE payload::VARCHAR END AS payload,
               {', '.join(selected)}
        FROM judged ORDER BY position"""


def read_contacts_chunk(connection: duckdb.DuckDBPyConnection, kaseya_ids: np.ndarray, positions: np.ndarray
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The raw contacts `kaseya_ids` (their places in the batch: `positions`) staged in SQL: (typed rows of
    the records read there, with their `position`; position + payload text of the others, for
    `kaseya_staging.stage_contacts`). The typed rows are `stage_contacts`' rows, typed as `validate_rows`
    types them."""
    blank = "".join(f"\\x{{{ord(c):x}}}" for c in STRIPPED_CHARACTERS)
    parameters = {
        "lowest": int(kaseya_ids.min()) if len(kaseya_ids) else 0,
        "highest": int(kaseya_ids.max()) if len(kaseya_ids) else -1,
        "names": sorted({folded_name(n) for n in CONTACT_READ_NAMES}),
        "spellings": sorted(CONTACT_WIRE_FIELDS.values()),
        "email_names": sorted({folded_name(n) for n in CONTACT_EMAIL_WIRE_FIELDS}),
        "email_spellings": list(CONTACT_EMAIL_WIRE_FIELDS),
        "phone_names": sorted({folded_name(n) for n in CONTACT_PHONE_WIRE_FIELDS}),
        "phone_spellings": list(CONTACT_PHONE_WIRE_FIELDS),
        "strip": f"^[{blank}]+|[{blank}]+$",
        "moment": r"(19|20|21)\d\d-\d\d-\d\dT([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?",
    }
    chunk = pd.DataFrame({"kaseya_id": kaseya_ids, "position": positions})
    with registered(connection, "incoming_contacts_chunk", chunk):
        frame = connection.execute(_contacts_chunk_sql(), parameters).df()
    readable = frame["readable"].to_numpy(dtype=bool)
    others = frame.loc[~readable, ["position", "payload"]].reset_index(drop=True)
    typed = frame.loc[readable].reset_index(drop=True)
    return pd.concat([typed[["position"]].astype("int64"), as_validated_types(typed, STAGED_COLUMNS["contacts"])],
                     axis=1), others


def mapping_order(connection: duckdb.DuckDBPyConnection, entity: str, kaseya_ids: Iterable[int]) -> np.ndarray:
    """The ids `read_stg(..., pending_only=True, kaseya_ids=...)` reads, ascending, without the rows."""
    retry = pd.DataFrame({"kaseya_id": np.array(sorted(set(int(i) for i in kaseya_ids)), dtype="int64")})
    with registered(connection, "incoming_retry_ids", retry):
        ids = connection.execute(
            f"""SELECT kaseya_id FROM stg.kaseya_{entity} WHERE map_pending
                UNION SELECT s.kaseya_id FROM stg.kaseya_{entity} s SEMI JOIN incoming_retry_ids r USING (kaseya_id)
                ORDER BY kaseya_id""",
        ).fetchnumpy()["kaseya_id"]
    return np.asarray(ids, dtype="int64")


def read_stg_ids(connection: duckdb.DuckDBPyConnection, entity: str, kaseya_ids: np.ndarray) -> pd.DataFrame:
    """The staged rows of `kaseya_ids`, as `read_stg` returns them, by id."""
    columns = ", ".join(f"s.{name}" for name, _ in STAGED_COLUMNS[entity])
    ids = pd.DataFrame({"kaseya_id": np.asarray(kaseya_ids, dtype="int64")})
    with registered(connection, "incoming_stg_ids", ids):
        return connection.execute(
            f"""SELECT {columns} FROM stg.kaseya_{entity} s SEMI JOIN incoming_stg_ids i USING (kaseya_id)
                WHERE s.kaseya_id BETWEEN $lowest AND $highest ORDER BY s.kaseya_id""",
            {"lowest": int(np.min(kaseya_ids)) if len(kaseya_ids) else 0,
             "highest": int(np.max(kaseya_ids)) if len(kaseya_ids) else -1},
        ).df()


def upsert_mapped_frame(connection: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame, *, run_id: str,
                        now: datetime) -> int:
    """`upsert_mapped` for records already in columns: kaseya_id, payload (JSON text), payload_hash, problem,
    waiting, source_modified_on; one statement."""
    if not len(frame):
        return 0
    with registered(connection, "incoming_mapped_frame", frame):
        connection.execute(
            f"""INSERT OR REPLACE INTO mapped.zomentum_{name}
                (kaseya_id, payload, payload_hash, problem, waiting, source_modified_on, mapped_at, run_id)
                SELECT kaseya_id, payload::JSON, payload_hash, problem, waiting, source_modified_on, $now, $run_id
                FROM incoming_mapped_frame""",
            {"now": now, "run_id": run_id},
        )
    return len(frame)


@dataclass(frozen=True)
class PendingCounts:
    problems: int  # cannot be sent (yet)
    never_sent: int
    changed: int  # sent before with another hash
    unchanged: int


def count_pending(connection: duckdb.DuckDBPyConnection, name: str) -> PendingCounts:
    """What `pending_records` would hand the load, counted in SQL with its conditions: `changed` are pending
    only when linked records are updated (Kaseya as CRM)."""
    row = one_row(connection.execute(
        f"""
        SELECT count(*) FILTER (WHERE m.problem IS NOT NULL),
               count(*) FILTER (WHERE m.problem IS NULL AND i.zomentum_id IS NULL),
               count(*) FILTER (WHERE m.problem IS NULL AND i.zomentum_id IS NOT NULL
                                  AND i.payload_hash IS DISTINCT FROM m.payload_hash),
               count(*) FILTER (WHERE m.problem IS NULL AND i.zomentum_id IS NOT NULL
                                  AND i.payload_hash IS NOT DISTINCT FROM m.payload_hash)
        FROM mapped.zomentum_{name} m
        LEFT JOIN zomentum.id_map i ON i.entity = $entity AND i.kaseya_id = m.kaseya_id
        """,
        {"entity": name},
    ))
    return PendingCounts(*(int(value) for value in row))


# `map_client_user`'s payload as the canonical JSON `payload_hash` hashes (keys sorted, no spaces), built in
# SQL: DuckDB's `to_json` quotes a text as `json.dumps` does once control characters are ruled out (rows
# holding one are left to the per-record renderer). Tested equal to `map_client_user` + `canonical_json`.
_CLIENT_USER_TEXT_COLUMNS = ("email", "job_title", "first_name", "last_name", "phone")
_CLIENT_USER_PAYLOAD_SQL = (
    "'{\"client_company_id\":' || to_json(c.zomentum_id) || ',\"contact_type\":' || "
    "CASE WHEN coalesce(s.is_poc, false) THEN '\"primary_contact\"' ELSE '\"secondary_contact\"' END || "
    "',\"email\":' || coalesce(to_json(s.email), 'null') || ',\"job_title\":' || "
    "coalesce(to_json(s.job_title), 'null') || ',\"name\":{\"first\":' || coalesce(to_json(s.first_name), 'null') "
    "|| ',\"last\":' || coalesce(to_json(s.last_name), 'null') || '},\"phone\":' || "
    "coalesce(to_json(s.phone), 'null') || '}'"
)


def upsert_client_users_mapped(connection: duckdb.DuckDBPyConnection, kaseya_ids: np.ndarray, *, run_id: str,
                               now: datetime) -> tuple[int, int, np.ndarray]:
    """Map the staged contacts `kaseya_ids` to client-user payloads in SQL and upsert them into
    `mapped.zomentum_client_users` in one statement: a contact whose account has a Zomentum client gets its
    payload and hash, the others `map_rows`' waiting problem. Returns (rows written, of them waiting, the
    ids left out because a text holds a control character, for the per-record renderer)."""
    if not len(kaseya_ids):
        return 0, 0, np.array([], dtype="int64")
    special = " OR ".join(f"regexp_matches(coalesce(s.{name}, ''), '[\\x00-\\x1f]')"
                          for name in _CLIENT_USER_TEXT_COLUMNS)
    ids = pd.DataFrame({"kaseya_id": np.asarray(kaseya_ids, "int64")})
    with registered(connection, "incoming_client_user_ids", ids):
        connection.execute(
            f"""CREATE OR REPLACE TEMP TABLE client_user_chunk AS
                SELECT s.kaseya_id, s.account_id, s.modified_on, c.zomentum_id, ({special}) AS special,
                       CASE WHEN c.zomentum_id IS NOT NULL THEN {_CLIENT_USER_PAYLOAD_SQL} END AS payload
                FROM stg.kaseya_contacts s SEMI JOIN incoming_client_user_ids i USING (kaseya_id)
                LEFT JOIN zomentum.id_map c ON c.entity = 'clients' AND c.kaseya_id = CAST(s.account_id AS VARCHAR)
                WHERE s.kaseya_id BETWEEN $lowest AND $highest""",
            {"lowest": int(np.min(kaseya_ids)), "highest": int(np.max(kaseya_ids))})
        connection.execute(
            """INSERT OR REPLACE INTO mapped.zomentum_client_users
                   (kaseya_id, payload, payload_hash, problem, waiting, source_modified_on, mapped_at, run_id)
               SELECT CAST(kaseya_id AS VARCHAR), payload::JSON, sha256(payload),
                      CASE WHEN zomentum_id IS NULL THEN 'contact ' || kaseya_id || ': waits for its Kaseya account '
                           || coalesce(CAST(account_id AS VARCHAR), 'None') || ' to be in Zomentum (that client '
                           || 'failed, or has not been pulled yet); retried every run' END,
                      zomentum_id IS NULL, modified_on, $now, $run_id
               FROM client_user_chunk WHERE NOT (special AND zomentum_id IS NOT NULL)""",
            {"now": now, "run_id": run_id})
        written, waiting = one_row(connection.execute(
            """SELECT count(*) FILTER (WHERE NOT (special AND zomentum_id IS NOT NULL)),
                      count(*) FILTER (WHERE zomentum_id IS NULL) FROM client_user_chunk"""))
        left = connection.execute(
            "SELECT kaseya_id FROM client_user_chunk WHERE special AND zomentum_id IS NOT NULL ORDER BY kaseya_id"
        ).fetchnumpy()["kaseya_id"]
        connection.execute("DROP TABLE client_user_chunk")
    return int(written), int(waiting), np.asarray(left, dtype="int64")


# --- extraction coverage ------------------------------------------------------------------------------


def read_coverage(connection: duckdb.DuckDBPyConnection, entity: str) -> datetime | None:
    """Up to when everything of the entity Kaseya holds is extracted (None: never, or a re-sync is due)."""
    row = connection.execute("SELECT covered_through FROM raw.extraction_coverage WHERE entity = $entity",
                             {"entity": entity}).fetchone()
    return row[0] if row else None


def rejected_as_extracted(connection: duckdb.DuckDBPyConnection, table: str, entity: str) -> int:
    """How many records of the entity were rejected by validation in the version raw holds (not for a missing
    parent): a fix in Kaseya moves their ModifiedOn past the hour they were rejected in."""
    return one_row(connection.execute(
        f"""SELECT count(DISTINCT r.kaseya_id) FROM raw.{table} r
            JOIN audit.rejects j ON j.entity = $entity AND j.kaseya_id = CAST(r.kaseya_id AS VARCHAR)
            WHERE j.rejected_at >= r.extracted_at AND j.check_name NOT LIKE 'known_%'""",
        {"entity": entity}))[0]


def save_coverage(connection: duckdb.DuckDBPyConnection, entity: str, covered_through: datetime, *, run_id: str,
                  now: datetime) -> None:
    """Coverage only grows: two runs at once (a backfill beside the hourly run) keep the later moment."""
    connection.execute(
        """INSERT INTO raw.extraction_coverage AS t (entity, covered_through, run_id, updated_at)
           VALUES ($entity, $through, $run_id, $now)
           ON CONFLICT (entity) DO UPDATE SET covered_through = greatest(t.covered_through, excluded.covered_through),
               run_id = excluded.run_id, updated_at = excluded.updated_at""",
        {"entity": entity, "through": covered_through, "run_id": run_id, "now": now})


def rows_by_hour(connection: duckdb.DuckDBPyConnection, table: str, run_id: str, hours: Sequence[str]
                 ) -> dict[str, int]:
    """The raw rows `run_id` wrote, counted by the hour of their `ModifiedOn` among `hours` (hourly partition
    keys, `YYYY-MM-DD-HH:00`, in order): rows modified before the first hour (or without a readable date) count
    to the first, after the last to the last."""
    if not hours:
        return {}
    rows = connection.execute(
        f"""SELECT strftime(date_trunc('hour', modified_on AT TIME ZONE 'UTC'), '%Y-%m-%d-%H:00') AS hour, count(*)
            FROM raw.{table} WHERE run_id = $run_id GROUP BY ALL""", {"run_id": run_id}).fetchall()
    counts: dict[str, int] = {}
    first, last = hours[0], hours[-1]
    for hour, count in rows:
        key = first if hour is None or hour < first else last if hour > last else hour
        counts[key] = counts.get(key, 0) + int(count)
    return counts


def read_snapshot_extracted(connection: duckdb.DuckDBPyConnection, table: str, lookup: str | None = None
                            ) -> tuple[list[Any], datetime | None]:
    """A snapshot's payloads (of `raw.kaseya_lookups`: one lookup table's) still listed by Kaseya at its last
    extraction, and when that was."""
    where = "WHERE payload->>'table' = $lookup" if lookup is not None else "WHERE $lookup IS NULL"
    rows = connection.execute(
        f"""WITH latest AS (SELECT max(extracted_at) AS latest_at FROM raw.{table} {where})
            SELECT payload, (SELECT latest_at FROM latest) FROM raw.{table} {where}
              AND extracted_at = (SELECT latest_at FROM latest) ORDER BY kaseya_key""", {"lookup": lookup}).fetchall()
    return [json.loads(payload) for payload, _ in rows], (rows[0][1] if rows else None)


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
