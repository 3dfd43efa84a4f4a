"""The DuckDB tables of a tenant, as idempotent DDL. Table name = asset key (`raw.kaseya_accounts` is the
asset `["raw", "kaseya_accounts"]`)."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

SCHEMAS = ("raw", "stg", "mapped", "zomentum", "audit", "settings", "push")

# Incremental Kaseya entities: one row per Kaseya record, the latest payload seen, and the extraction window
# that brought it.
INCREMENTAL_RAW_TABLES = ("kaseya_accounts", "kaseya_contacts", "kaseya_opportunities")

# Snapshot Kaseya entities (no incremental filter in the API): change-detected by content hash.
SNAPSHOT_RAW_TABLES = (
    "kaseya_products",
    "kaseya_employees",
    "kaseya_opportunity_statuses",
    "kaseya_account_types",
    "kaseya_product_categories",
    "kaseya_warehouses",
    "kaseya_lookups",
)

_INCREMENTAL_RAW = """
CREATE TABLE IF NOT EXISTS raw.{table} (
    kaseya_id     BIGINT PRIMARY KEY,
    modified_on   TIMESTAMPTZ,
    payload       JSON NOT NULL,
    window_start  TIMESTAMPTZ,
    window_end    TIMESTAMPTZ,
    extracted_at  TIMESTAMPTZ NOT NULL,
    run_id        VARCHAR
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
    # Per-product pricing calls are budgeted: this is what each product's last refresh brought.
    """
    CREATE TABLE IF NOT EXISTS raw.kaseya_product_pricing (
        product_index_id BIGINT PRIMARY KEY,
        pricing_levels   JSON,
        suppliers        JSON,
        default_cost     JSON,
        refreshed_at     TIMESTAMPTZ NOT NULL,
        run_id           VARCHAR
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
    for table in SNAPSHOT_RAW_TABLES:
        connection.execute(_SNAPSHOT_RAW.format(table=table))
    for ddl in (*FIXED_DDL, *extra_ddl):
        connection.execute(ddl)
