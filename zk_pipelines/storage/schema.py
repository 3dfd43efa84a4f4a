"""The DuckDB tables of a tenant, as idempotent DDL. Table name = asset key (`raw.kaseya_accounts` is the
asset `["raw", "kaseya_accounts"]`)."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from zk_pipelines.domain.entities import INCREMENTAL_SOURCES, SNAPSHOT_SOURCES

SCHEMAS = ("raw", "stg", "mapped", "zomentum", "audit", "settings", "push", "budget", "state")

# Incremental Kaseya entities: one row per Kaseya record, the latest payload seen, and the extraction window
# that brought it. Snapshot entities (no incremental filter in the API): change-detected by content hash.
INCREMENTAL_RAW_TABLES = tuple(source.raw_table for source in INCREMENTAL_SOURCES)
SNAPSHOT_RAW_TABLES = tuple(source.raw_table for source in SNAPSHOT_SOURCES)

# `stage_pending`: the payload is new or changed since staging last read it (staging reads what is pending,
# whichever run extracted it).
_INCREMENTAL_RAW = """
CREATE TABLE IF NOT EXISTS raw.{table} (
    kaseya_id     BIGINT PRIMARY KEY,
    modified_on   TIMESTAMPTZ,
    payload       JSON NOT NULL,
    window_start  TIMESTAMPTZ,
    window_end    TIMESTAMPTZ,
    extracted_at  TIMESTAMPTZ NOT NULL,
    run_id        VARCHAR,
    stage_pending BOOLEAN NOT NULL DEFAULT true
)"""

_SNAPSHOT_RAW = """
CREATE TABLE IF NOT EXISTS raw.{table} (
    kaseya_key    VARCHAR PRIMARY KEY,
    payload       JSON NOT NULL,
    content_hash  VARCHAR NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    changed_at    TIMESTAMPTZ NOT NULL,
    extracted_at  TIMESTAMPTZ NOT NULL,
    run_id        VARCHAR
)"""

FIXED_DDL = (
    # How far back each incremental entity is known to be extracted without a gap: everything Kaseya held that
    # was modified up to `covered_through` is in raw (the first run of a tenant extracts its whole history).
    """
    CREATE TABLE IF NOT EXISTS raw.extraction_coverage (
        entity          VARCHAR PRIMARY KEY,
        covered_through TIMESTAMPTZ NOT NULL,
        run_id          VARCHAR,
        updated_at      TIMESTAMPTZ NOT NULL
    )""",
    # The tenant's Kaseya calls per endpoint (clients/kaseya_budget.py): grants of calls recorded before they are
    # sent, settled with the calls actually sent; and endpoints Kaseya itself declared spent until a moment.
    "CREATE SEQUENCE IF NOT EXISTS budget.grant_seq",
    """
    CREATE TABLE IF NOT EXISTS budget.kaseya_grants (
        grant_id   BIGINT DEFAULT nextval('budget.grant_seq') PRIMARY KEY,
        endpoint   VARCHAR NOT NULL,
        granted_at DOUBLE NOT NULL,  -- epoch seconds
        calls      INTEGER NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS budget.kaseya_spent (
        endpoint VARCHAR PRIMARY KEY,
        until    DOUBLE NOT NULL,  -- epoch seconds
        message  VARCHAR NOT NULL
    )""",
    # Per-product pricing calls are budgeted: this is what each product's last refresh brought, and when what it
    # brought last changed.
    """
    CREATE TABLE IF NOT EXISTS raw.kaseya_product_pricing (
        product_index_id BIGINT PRIMARY KEY,
        pricing_levels   JSON,
        suppliers        JSON,
        default_cost     JSON,
        refreshed_at     TIMESTAMPTZ NOT NULL,
        run_id           VARCHAR,
        changed_at       TIMESTAMPTZ
    )""",
    "ALTER TABLE raw.kaseya_product_pricing ADD COLUMN IF NOT EXISTS changed_at TIMESTAMPTZ",
    # The sources each snapshot entity was last staged from (`pull_store.snapshot_version`): an hour whose
    # snapshots brought nothing new stages nothing again.
    """
    CREATE TABLE IF NOT EXISTS stg.snapshot_versions (
        entity    VARCHAR PRIMARY KEY,
        version   VARCHAR NOT NULL,
        staged_at TIMESTAMPTZ NOT NULL
    )""",
    # Rows that failed validation, one per failed check, with the run that saw them.
    """
    CREATE TABLE IF NOT EXISTS audit.rejects (
        run_id        VARCHAR,
        partition_key VARCHAR,
        entity        VARCHAR NOT NULL,
        kaseya_id     VARCHAR,
        check_name    VARCHAR NOT NULL,
        column_name   VARCHAR,
        value         VARCHAR,
        reason        VARCHAR NOT NULL,
        rejected_at   TIMESTAMPTZ NOT NULL
    )""",
    # Ids of rejects (state store version 2): drawn from this sequence, or from PostgreSQL's when the file is
    # a replica (storage/state_store.py).
    "CREATE SEQUENCE IF NOT EXISTS audit.reject_seq",
    "ALTER TABLE audit.rejects ADD COLUMN IF NOT EXISTS reject_id BIGINT",
    # Which Zomentum record each Kaseya record is, how the pair was made, and what we last sent.
    """
    CREATE TABLE IF NOT EXISTS zomentum.id_map (
        entity          VARCHAR NOT NULL,
        kaseya_id       VARCHAR NOT NULL,
        zomentum_id     VARCHAR NOT NULL,
        link_kind       VARCHAR NOT NULL,
        payload_hash    VARCHAR,
        payload         JSON,
        first_synced_at TIMESTAMPTZ NOT NULL,
        last_synced_at  TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (entity, kaseya_id)
    )""",
    "CREATE SEQUENCE IF NOT EXISTS audit.sync_event_seq",
    # Append-only: every outcome of every entity the pull or the push touched.
    """
    CREATE TABLE IF NOT EXISTS audit.sync_events (
        event_id             BIGINT DEFAULT nextval('audit.sync_event_seq') PRIMARY KEY,
        occurred_at          TIMESTAMPTZ NOT NULL,
        run_id               VARCHAR,
        partition_key        VARCHAR,
        direction            VARCHAR NOT NULL,
        entity               VARCHAR NOT NULL,
        kaseya_id            VARCHAR,
        zomentum_id          VARCHAR,
        action               VARCHAR NOT NULL,  -- created|updated|unchanged|matched|deferred|failed|skipped
        reason               VARCHAR,
        changed_fields       JSON,
        link                 VARCHAR,
        settings_fingerprint VARCHAR
    )""",
    # The settings a run resolved against the live systems, and the names it resolved them with.
    """
    CREATE TABLE IF NOT EXISTS settings.resolved (
        fingerprint  VARCHAR PRIMARY KEY,
        resolved     JSON NOT NULL,
        resolved_at  TIMESTAMPTZ NOT NULL,
        run_id       VARCHAR
    )""",
)


def create_tables(connection: duckdb.DuckDBPyConnection, extra_ddl: Sequence[str] = ()) -> None:
    for schema in SCHEMAS:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for table in INCREMENTAL_RAW_TABLES:
        connection.execute(_INCREMENTAL_RAW.format(table=table))
        # A file made before the column existed: every row counts as pending once.
        connection.execute(f"ALTER TABLE raw.{table} ADD COLUMN IF NOT EXISTS stage_pending BOOLEAN DEFAULT true")
    for table in SNAPSHOT_RAW_TABLES:
        connection.execute(_SNAPSHOT_RAW.format(table=table))
    for ddl in (*FIXED_DDL, *extra_ddl):
        connection.execute(ddl)


def describe_tables(connection: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    """Every table of the connection's database as `schema.table` -> [(column, type)], in column order."""
    tables: dict[str, list[tuple[str, str]]] = {}
    for schema, table, column, kind in connection.execute(
            """SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns
               WHERE table_catalog = current_database() ORDER BY table_schema, table_name, ordinal_position"""
    ).fetchall():
        tables.setdefault(f"{schema}.{table}", []).append((column, kind))
    return tables
