"""The id map written once per ledger flush (one statement for every pair of the flush), on a real DuckDB file:
the same rows as one upsert per pair would leave."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from zk_pipelines.storage.database import connect
from zk_pipelines.storage.ledger_store import IdMapEntry, read_id_map_payloads, upsert_id_map
from zk_pipelines.storage.pull_store import ensure_pull_tables

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)

COLUMNS = "entity, kaseya_id, zomentum_id, link_kind, payload_hash, payload, first_synced_at, last_synced_at"


def id_map_rows(path: Path) -> list[tuple]:
    with connect(path) as connection:
        return connection.execute(f"SELECT {COLUMNS} FROM zomentum.id_map ORDER BY entity, kaseya_id").fetchall()


def test_a_flush_pairs_new_records_and_updates_known_ones_keeping_how_and_when_they_were_first_paired(tmp_path):
    path = tmp_path / "tenant.duckdb"
    with connect(path) as connection:
        ensure_pull_tables(connection)
        upsert_id_map(connection, [IdMapEntry("clients", "1", "z-1", "created", "h1", {"name": "Acme"}),
                                   IdMapEntry("client_users", "1", "z-u1", "matched", None, None)], T0)
        upsert_id_map(connection, [
            IdMapEntry("clients", "1", "z-1b", "matched", "h1b", {"name": "Acme Ltd", "note": "ü ✓"}),
            IdMapEntry("clients", "2", "z-2", "matched", "h2", {"name": "Beta"}),
        ], T1)

        assert id_map_rows(path) == [
            ("client_users", "1", "z-u1", "matched", None, None, T0, T0),
            ("clients", "1", "z-1b", "created", "h1b", '{"name": "Acme Ltd", "note": "\\u00fc \\u2713"}', T0, T1),
            ("clients", "2", "z-2", "matched", "h2", '{"name": "Beta"}', T1, T1),
        ]
        assert read_id_map_payloads(connection, "clients")["1"] == {"name": "Acme Ltd", "note": "ü ✓"}


def test_a_kaseya_record_twice_in_one_flush_keeps_its_last_pair(tmp_path):
    path = tmp_path / "tenant.duckdb"
    with connect(path) as connection:
        ensure_pull_tables(connection)
        upsert_id_map(connection, [IdMapEntry("items", "7", "z-a", "created", "ha", {"name": "A"}),
                                   IdMapEntry("items", "7", "z-b", "created", "hb", {"name": "B"})], T0)
        upsert_id_map(connection, [], T1)

    assert id_map_rows(path) == [("items", "7", "z-b", "created", "hb", '{"name": "B"}', T0, T0)]
