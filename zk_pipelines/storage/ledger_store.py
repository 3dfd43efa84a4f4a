"""The ledger both directions write and the reconciliation reads: the id map (which Kaseya record is which
Zomentum record, and the hash of what was last sent) and the sync events (`audit.sync_events`, one line per
outcome), as explicit SQL with parameters."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from zk_pipelines.storage.database import records_frame, registered
from zk_pipelines.storage.state_store import (
    ID_MAP,
    SYNC_EVENTS,
    new_ids,
    replicate,
)

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
    frame = records_frame(entries, ("entity", "kaseya_id", "zomentum_id", "link_kind", "payload_hash", "payload"),
                          as_json={"payload"}, dtype="string").drop_duplicates(["entity", "kaseya_id"], keep="last")
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
    frame = records_frame(events, ("direction", "entity", "kaseya_id", "zomentum_id", "action", "reason",
                                   "changed_fields", "link"), as_json={"changed_fields"})
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
