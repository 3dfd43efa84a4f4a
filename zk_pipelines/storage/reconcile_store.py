"""The reconciliation's SQL: the pairs and payloads it compares, and its report (`audit.reconciliation`).

The report is a cache like the pull's tables (the ledger, `audit.sync_events`, is where the reconciliation's
outcomes are durable): it holds the differences the latest reconciliation of each entity found, with what was
done about each, and is replaced entity by entity."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from zk_pipelines.domain.reconcile import Pair
from zk_pipelines.storage.database import one_row, records_frame, registered, transaction

REPORT_DDL = """
CREATE SCHEMA IF NOT EXISTS audit;
CREATE TABLE IF NOT EXISTS audit.reconciliation (
    run_id        VARCHAR NOT NULL,
    reconciled_at TIMESTAMPTZ NOT NULL,
    entity        VARCHAR NOT NULL,
    class         VARCHAR NOT NULL,
    kaseya_id     VARCHAR,
    zomentum_id   VARCHAR,
    changed_in    VARCHAR,
    fields        JSON,
    detail        VARCHAR NOT NULL,
    outcome       VARCHAR NOT NULL,
    kaseya_link   VARCHAR,
    zomentum_link VARCHAR
)"""


@dataclass(frozen=True)
class ReportRow:
    entity: str
    kind: str
    kaseya_id: str | None
    zomentum_id: str | None
    changed_in: str | None
    fields: Sequence[str]
    detail: str
    outcome: str  # reported | repaired | recreated | marked | planned | failed: <reason>
    kaseya_link: str | None
    zomentum_link: str | None


def ensure_report_table(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(REPORT_DDL)


# The key the id map's payload carries for a record Zomentum was told is inactive in Kaseya (written by the
# pull's load, `pull_store.mark_activity`; never sent as such: the load sends it as the "Kaseya status" field).
INACTIVE_MARK = "kaseya_status"


def read_pairs(connection: duckdb.DuckDBPyConnection, entity: str, *, matched_were_sent: bool) -> list[Pair]:
    """The entity's pairs with what the pull last sent. `matched_were_sent=False` (Zomentum as CRM): a pair made
    by matching an existing Zomentum record was never written (Zomentum kept its own values), so it has no
    last-sent payload to compare with."""
    # The Kaseya active flag Zomentum was told (INACTIVE_MARK) is bookkeeping, not a field the pull sends: it
    # is not compared.
    rows = connection.execute(
        """SELECT kaseya_id, zomentum_id,
                  CASE WHEN payload IS NOT NULL AND ($matched_were_sent OR link_kind <> 'matched')
                       THEN json_merge_patch(payload, $unmark) END
           FROM zomentum.id_map WHERE entity = $entity ORDER BY kaseya_id""",
        {"entity": entity, "matched_were_sent": matched_were_sent,
         "unmark": json.dumps({INACTIVE_MARK: None})}).fetchall()
    return [Pair(kid, zid, json.loads(payload) if payload is not None else None) for kid, zid, payload in rows]


def read_desired(connection: duckdb.DuckDBPyConnection, entity: str) -> dict[str, dict[str, Any]]:
    """Kaseya id -> the pull's mapping of the latest staged Kaseya record (`mapped.zomentum_<entity>`)."""
    if not one_row(connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'mapped' AND table_name = $t",
            {"t": f"zomentum_{entity}"}))[0]:
        return {}
    return {kid: json.loads(payload) for kid, payload in connection.execute(
        f"SELECT kaseya_id, payload FROM mapped.zomentum_{entity} WHERE payload IS NOT NULL AND problem IS NULL"
    ).fetchall()}


def replace_report(connection: duckdb.DuckDBPyConnection, entities: Sequence[str], rows: Sequence[ReportRow], *,
                   run_id: str, now: datetime) -> None:
    """The entities' differences as this run found them, replacing the previous reconciliation's."""
    ensure_report_table(connection)
    frame = records_frame(rows, ("entity", "kind", "kaseya_id", "zomentum_id", "changed_in", "fields", "detail",
                                 "outcome", "kaseya_link", "zomentum_link"), as_json={"fields"}, dtype="object")
    with transaction(connection):
        connection.execute("DELETE FROM audit.reconciliation WHERE list_contains($entities, entity)",
                           {"entities": list(entities)})
        if len(frame):
            with registered(connection, "incoming_reconciliation", frame):
                connection.execute(
                    """INSERT INTO audit.reconciliation
                       SELECT $run_id, $now, entity, kind, kaseya_id, zomentum_id, changed_in, fields::JSON,
                              detail, outcome, kaseya_link, zomentum_link
                       FROM incoming_reconciliation""",
                    {"run_id": run_id, "now": now})


def read_report(connection: duckdb.DuckDBPyConnection) -> list[ReportRow]:
    ensure_report_table(connection)
    rows = connection.execute(
        """SELECT entity, class, kaseya_id, zomentum_id, changed_in, fields::VARCHAR, detail, outcome, kaseya_link,
                  zomentum_link
           FROM audit.reconciliation ORDER BY entity, class, kaseya_id, zomentum_id""").fetchall()
    return [ReportRow(e, k, kid, zid, ch, tuple(json.loads(f or "[]")), d, o, kl, zl)
            for e, k, kid, zid, ch, f, d, o, kl, zl in rows]
