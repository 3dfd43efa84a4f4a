"""The extraction's reads and writes of DuckDB (`raw.*`): Kaseya's records as received, upserted on their ids,
the per-product pricing refreshed on a budget, and how far each list is extracted without a gap; explicit SQL
with parameters."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import pandas as pd

from zk_pipelines.domain.staging_schemas import REFERENCE_CHECK_PREFIX
from zk_pipelines.storage.database import one_row, registered
from zk_pipelines.storage.state_store import (
    PRODUCT_PRICING,
    replicate,
)

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


# --- extraction coverage ------------------------------------------------------------------------------


def read_coverage(connection: duckdb.DuckDBPyConnection, entity: str) -> datetime | None:
    """Up to when everything of the entity Kaseya holds is extracted (None: never, or a re-sync is due)."""
    row = connection.execute("SELECT covered_through FROM raw.extraction_coverage WHERE entity = $entity",
                             {"entity": entity}).fetchone()
    return row[0] if row else None


def held_back_ids(connection: duckdb.DuckDBPyConnection, table: str, entity: str, *, run_id: str, limit: int
                  ) -> list[int]:
    """Records of the entity whose last staging did not stage them (rejected by validation, or waiting for a
    parent) and that nothing since brought again: not pending in raw, not read by run `run_id`. Rejected first,
    then waiting, each by id; at most `limit`."""
    return [row[0] for row in connection.execute(
        f"""WITH latest AS (
                SELECT kaseya_id, max(rejected_at) AS at FROM audit.rejects WHERE entity = $entity GROUP BY ALL
            ), held AS (
                SELECT j.kaseya_id, l.at, bool_or(NOT starts_with(j.check_name, $prefix)) AS rejected
                FROM audit.rejects j JOIN latest l ON l.kaseya_id = j.kaseya_id AND j.rejected_at = l.at
                WHERE j.entity = $entity GROUP BY ALL
            )
            SELECT r.kaseya_id FROM raw.{table} r
            JOIN held h ON h.kaseya_id = CAST(r.kaseya_id AS VARCHAR)
            LEFT JOIN stg.kaseya_{entity} s ON s.kaseya_id = r.kaseya_id
            WHERE (s.staged_at IS NULL OR s.staged_at < h.at) AND NOT r.stage_pending
              AND r.run_id IS DISTINCT FROM $run_id
            ORDER BY h.rejected DESC, r.kaseya_id LIMIT $limit""",
        {"entity": entity, "prefix": REFERENCE_CHECK_PREFIX, "run_id": run_id, "limit": max(0, limit)}).fetchall()]


def pending_ids(connection: duckdb.DuckDBPyConnection, table: str, kaseya_ids: Sequence[int]) -> list[int]:
    """Those of `kaseya_ids` that staging has still to read (new or changed since it last read them)."""
    return [row[0] for row in connection.execute(
        f"SELECT kaseya_id FROM raw.{table} WHERE stage_pending AND list_contains($ids, kaseya_id) ORDER BY 1",
        {"ids": [int(i) for i in kaseya_ids]}).fetchall()]


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
