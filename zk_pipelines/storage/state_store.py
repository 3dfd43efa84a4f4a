"""The tenant's durable state, behind one interface with two backends.

Durable state is what a later run needs and cannot rebuild from Kaseya: the id map, the pull's ledger
(`audit.sync_events`) and rejects (which also hold the records waiting for a parent), the push ledger
(`push.documents`, `push.requests`), the resolved settings, the per-product pricing (costly to read again),
and the Kaseya call budget. Everything else in the tenant's DuckDB file (raw, stg, mapped, the extraction
coverage, snapshot versions) is a cache: a fresh file re-extracts the whole history on its first run (the
onboarding path, `ceil(rows / 100)` calls per list) and its change detection against the id map's hashes
finds nothing new to write.

- **DuckDB** (the default): the durable tables live in the tenant's DuckDB file beside the cache, as they
  always did. Nothing more is needed on one machine.
- **PostgreSQL** (`ZK_STATE_URL=postgresql://...`): the durable tables live in PostgreSQL, one schema per
  tenant (`ZK_STATE_SCHEMA`, default `zk_default`), and are the truth. The DuckDB file keeps a replica of them
  so the pull's SQL can join them with staging: every write of a durable table goes to PostgreSQL in the call
  that writes the replica (`replicate`), append-only tables take their ids from PostgreSQL sequences
  (`new_ids`) so workers never collide, and each step starts by bringing the replica up to date (`hydrate`,
  incremental by the id of the transaction that wrote each row). The budget lives only in PostgreSQL
  (`PostgresBudgetStore`) and a push claims its document under a PostgreSQL advisory lock (`lock`): the
  database orders the writers, nobody waits on a file lock.

The same durable-table registry (`DURABLE_TABLES`) drives replication, hydration, export and import.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import pandas as pd

from zk_pipelines.storage.database import connect, one_row, registered, transaction


class StateStoreError(Exception):
    """The state store cannot be used as configured (unreachable, newer than this code, not empty for an
    import). The message names the store without its password."""


@dataclass(frozen=True)
class DurableTable:
    """A durable table: its name in the DuckDB file, its name in the tenant's PostgreSQL schema, its key, its
    columns with their PostgreSQL types, and the columns an update keeps (a pair keeps how it was made)."""

    name: str
    pg_name: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]
    sequence: str | None = None  # the DuckDB sequence of an append-only table's id (same name in PostgreSQL)
    kept_on_update: tuple[str, ...] = ()
    append_only: bool = False

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def json_columns(self) -> tuple[str, ...]:
        return tuple(name for name, kind in self.columns if kind == "json")


_T, _TS, _J, _B, _I = "text", "timestamptz", "json", "bigint", "integer"

ID_MAP = DurableTable(
    "zomentum.id_map", "id_map", ("entity", "kaseya_id"),
    (("entity", _T), ("kaseya_id", _T), ("zomentum_id", _T), ("link_kind", _T), ("payload_hash", _T),
     ("payload", _J), ("first_synced_at", _TS), ("last_synced_at", _TS)),
    kept_on_update=("link_kind", "first_synced_at"))
SYNC_EVENTS = DurableTable(
    "audit.sync_events", "sync_events", ("event_id",),
    (("event_id", _B), ("occurred_at", _TS), ("run_id", _T), ("partition_key", _T), ("direction", _T),
     ("entity", _T), ("kaseya_id", _T), ("zomentum_id", _T), ("action", _T), ("reason", _T),
     ("changed_fields", _J), ("link", _T), ("settings_fingerprint", _T)),
    sequence="audit.sync_event_seq", append_only=True)
REJECTS = DurableTable(
    "audit.rejects", "rejects", ("reject_id",),
    (("reject_id", _B), ("run_id", _T), ("partition_key", _T), ("entity", _T), ("kaseya_id", _T),
     ("check_name", _T), ("column_name", _T), ("value", _T), ("reason", _T), ("rejected_at", _TS)),
    sequence="audit.reject_seq", append_only=True)
RESOLVED_SETTINGS = DurableTable(
    "settings.resolved", "resolved_settings", ("fingerprint",),
    (("fingerprint", _T), ("resolved", _J), ("resolved_at", _TS), ("run_id", _T)))
PRODUCT_PRICING = DurableTable(
    "raw.kaseya_product_pricing", "product_pricing", ("product_index_id",),
    (("product_index_id", _B), ("pricing_levels", _J), ("suppliers", _J), ("default_cost", _J),
     ("refreshed_at", _TS), ("run_id", _T), ("changed_at", _TS)))
PUSH_DOCUMENTS = DurableTable(
    "push.documents", "push_documents", ("document_id", "document_version"),
    (("document_id", _T), ("document_version", _T), ("state", _T), ("attempts", _I), ("run_id", _T),
     ("settings_fingerprint", _T), ("zomentum_opportunity_id", _T), ("kaseya_account_id", _B),
     ("kaseya_contact_id", _B), ("kaseya_opportunity_id", _B), ("kaseya_quote_id", _B), ("writes_sent", _I),
     ("error", _T), ("started_at", _TS), ("finished_at", _TS)))
PUSH_REQUESTS = DurableTable(
    "push.requests", "push_requests", ("request_id",),
    (("request_id", _B), ("document_id", _T), ("document_version", _T), ("run_id", _T), ("attempt", _I),
     ("step", _I), ("system", _T), ("endpoint", _T), ("method", _T), ("path", _T), ("body", _J),
     ("purpose", _T), ("record_key", _T), ("state", _T), ("response_status", _I), ("record_id", _T),
     ("error", _T), ("intended_at", _TS), ("settled_at", _TS)),
    sequence="push.request_seq")

DURABLE_TABLES = (ID_MAP, SYNC_EVENTS, REJECTS, RESOLVED_SETTINGS, PRODUCT_PRICING, PUSH_DOCUMENTS, PUSH_REQUESTS)
DURABLE_BY_NAME = {table.name: table for table in DURABLE_TABLES}



# --- migrations ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


def _pg_table_ddl(table: DurableTable) -> str:
    columns = ", ".join(f"{name} {kind}" for name, kind in table.columns)
    return (f"CREATE TABLE IF NOT EXISTS {table.pg_name} ({columns}, zk_changed bigint NOT NULL, "
            f"PRIMARY KEY ({', '.join(table.key)}))")


POSTGRES_MIGRATIONS = (
    Migration(1, "the durable tables, their id sequences and the change counter", (
        "CREATE SEQUENCE IF NOT EXISTS zk_changed_seq",
        *(f"CREATE SEQUENCE IF NOT EXISTS {t.sequence.replace('.', '_')}" for t in DURABLE_TABLES if t.sequence),
        *(_pg_table_ddl(t) for t in DURABLE_TABLES),
        *(f"CREATE INDEX IF NOT EXISTS {t.pg_name}_changed ON {t.pg_name} (zk_changed)" for t in DURABLE_TABLES),
        """CREATE TABLE IF NOT EXISTS budget_grants (grant_id bigserial PRIMARY KEY, endpoint text NOT NULL,
               granted_at double precision NOT NULL, calls integer NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS budget_spent (endpoint text PRIMARY KEY, until double precision NOT NULL,
               message text NOT NULL)""",
    )),
    Migration(2, "lookups of one record's trail (zk history) and of a document's pushes", (
        "CREATE INDEX IF NOT EXISTS sync_events_record ON sync_events (entity, kaseya_id)",
        "CREATE INDEX IF NOT EXISTS push_requests_document ON push_requests (document_id)",
    )),
    # A change counter drawn from a sequence orders rows by when their numbers were drawn, not by when their
    # transactions committed: a reader could pass a row committed late. The writing transaction's id, compared
    # with the oldest transaction a reader's snapshot still saw running, misses nothing.
    Migration(3, "rows carry the id of the transaction that last wrote them (exact incremental hydration)", (
        *(f"ALTER TABLE {t.pg_name} ADD COLUMN IF NOT EXISTS zk_xact xid8 NOT NULL DEFAULT pg_current_xact_id()"
          for t in DURABLE_TABLES),
        *(f"CREATE INDEX IF NOT EXISTS {t.pg_name}_xact ON {t.pg_name} (zk_xact)" for t in DURABLE_TABLES),
    )),
)

# The DuckDB file's versions. Version 1 is the layout the file had before versions were recorded (a file
# without `state.schema_version` is at version 0 and its tables are created or completed idempotently);
# version 2 gives rejects ids, so that they replicate like the other append-only tables.
DUCKDB_MIGRATIONS = (
    Migration(1, "the tenant's tables (created idempotently)", ()),
    Migration(2, "rejects carry an id", (
        "CREATE SEQUENCE IF NOT EXISTS audit.reject_seq",
        "ALTER TABLE audit.rejects ADD COLUMN IF NOT EXISTS reject_id BIGINT",
    )),
)

CODE_VERSION = {"duckdb": DUCKDB_MIGRATIONS[-1].version, "postgresql": POSTGRES_MIGRATIONS[-1].version}


# --- the stores -----------------------------------------------------------------------------------------


def shown_url(url: str) -> str:
    """The URL without its password (for messages and status)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


class StateStore:
    """Where the tenant's durable state lives. `DuckDBStateStore` keeps it in the tenant's DuckDB file;
    `PostgresStateStore` in PostgreSQL with the DuckDB file as its replica."""

    backend: str
    remote: bool = False

    def describe(self) -> str:
        raise NotImplementedError

    def migrate(self, target: int | None = None) -> list[Migration]:
        raise NotImplementedError

    def version(self) -> int:
        raise NotImplementedError

    def rows(self, table: DurableTable) -> list[dict[str, Any]]:
        """Every row of the table, in key order, values as JSON-ready Python values."""
        raise NotImplementedError

    def load_rows(self, table: DurableTable, rows: Sequence[dict[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def check_version(store: StateStore, found: int) -> None:
    known = CODE_VERSION[store.backend]
    if found > known:
        raise StateStoreError(
            f"the state store {store.describe()} is at schema version {found}, newer than this code knows "
            f"({known}): a newer zk_pipelines migrated it; run that version (or newer) here")


def _json_ready(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


class DuckDBStateStore(StateStore):
    backend = "duckdb"

    def __init__(self, database: Path) -> None:
        self.database = Path(database)

    def describe(self) -> str:
        return f"DuckDB file {self.database}"

    def version(self) -> int:
        with connect(self.database) as connection:
            return _duckdb_version(connection)

    def migrate(self, target: int | None = None) -> list[Migration]:
        # The file's tables live with their DDL (imported here: those modules write through this one).
        from zk_pipelines.storage.push_store import PUSH_DDL
        from zk_pipelines.storage.schema import create_tables

        with connect(self.database) as connection:
            found = _duckdb_version(connection)
            check_version(self, found)
            applied = []
            connection.execute("CREATE SCHEMA IF NOT EXISTS state")
            connection.execute("CREATE TABLE IF NOT EXISTS state.schema_version (version INTEGER PRIMARY KEY, "
                               "description VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
            create_tables(connection, PUSH_DDL)
            for migration in DUCKDB_MIGRATIONS:
                if migration.version <= found or (target is not None and migration.version > target):
                    continue
                with transaction(connection):
                    for statement in migration.statements:
                        connection.execute(statement)
                    connection.execute("INSERT INTO state.schema_version VALUES ($v, $d, now())",
                                       {"v": migration.version, "d": migration.description})
                applied.append(migration)
            return applied

    def rows(self, table: DurableTable) -> list[dict[str, Any]]:
        with connect(self.database, read_only=True) as connection:
            return _duckdb_rows(connection, table)

    def load_rows(self, table: DurableTable, rows: Sequence[dict[str, Any]]) -> None:
        with connect(self.database) as connection, transaction(connection):
            apply_to_replica(connection, table, pd.DataFrame(rows, columns=list(table.column_names)))
            if table.sequence:
                advance_duckdb_sequence(connection, table)


def _duckdb_version(connection: duckdb.DuckDBPyConnection) -> int:
    exists = one_row(connection.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'state' AND table_name = 'schema_version'"))[0]
    if not exists:
        return 0
    return int(one_row(connection.execute("SELECT coalesce(max(version), 0) FROM state.schema_version"))[0])


def _duckdb_rows(connection: duckdb.DuckDBPyConnection, table: DurableTable) -> list[dict[str, Any]]:
    columns = ", ".join(f"{name}::VARCHAR" if kind == _J else name for name, kind in table.columns)
    result = connection.execute(f"SELECT {columns} FROM {table.name} ORDER BY {', '.join(table.key)}").fetchall()
    return [{name: _json_ready(value) for name, value in zip(table.column_names, row, strict=True)} for row in result]


def advance_duckdb_sequence(connection: duckdb.DuckDBPyConnection, table: DurableTable) -> None:
    """Past the largest id the table holds (DuckDB has no setval: the sequence is drawn that many times)."""
    id_column, sequence = table.key[0], table.sequence
    if sequence is None:
        raise ValueError(f"{table.name} takes its ids from no sequence")
    highest = one_row(connection.execute(f"SELECT coalesce(max({id_column}), 0) FROM {table.name}"))[0]
    current = one_row(connection.execute(f"SELECT currval('{sequence}')"))[0] if _drawn(connection, sequence) else 0
    if highest > current:
        connection.execute(f"SELECT max(nextval('{sequence}')) FROM range($n)", {"n": int(highest - current)})


def _drawn(connection: duckdb.DuckDBPyConnection, sequence: str) -> bool:
    schema, name = sequence.split(".")
    row = connection.execute("SELECT last_value FROM duckdb_sequences() WHERE database_name = current_database() "
                             "AND schema_name = $s AND sequence_name = $n", {"s": schema, "n": name}).fetchone()
    return row is not None and row[0] is not None


class PostgresStateStore(StateStore):
    backend = "postgresql"
    remote = True

    def __init__(self, url: str, schema: str = "zk_default") -> None:
        if not schema.replace("_", "").isalnum() or not schema[0].isalpha() or schema != schema.lower():
            raise StateStoreError(f"state schema {schema!r}: use lower-case letters, digits and '_', "
                                  "starting with a letter")
        self.url = url
        self.schema = schema
        self._connection: Any = None
        self._lock = threading.RLock()
        # Per DuckDB file this store hydrated in this process: the watermark of its last hydration.
        self._replica_watermarks: dict[str, int] = {}

    def describe(self) -> str:
        return f"PostgreSQL {shown_url(self.url)}, schema {self.schema}"

    def _connect(self) -> Any:
        import psycopg2

        try:
            connection = psycopg2.connect(self.url, connect_timeout=10,
                                          application_name="zk_pipelines", options=f"-c search_path={self.schema}")
        except psycopg2.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StateStoreError(f"the state store {self.describe()} cannot be reached: {reason}") from None
        return connection

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        """A cursor in one transaction, committed at the end of the block (rolled back on error). A connection
        lost on the way (the server restarted, the network dropped) is a StateStoreError naming the store; the
        next block connects again."""
        import psycopg2

        with self._lock:
            if self._connection is None or self._connection.closed:
                self._connection = self._connect()
            connection = self._connection
            try:
                with connection.cursor() as cursor:
                    yield cursor
                connection.commit()
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self._connection = None
                if not connection.closed:
                    connection.close()
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise StateStoreError(f"the state store {self.describe()} failed: {reason}") from None
            except BaseException:
                if not connection.closed:
                    connection.rollback()
                raise

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and not self._connection.closed:
                self._connection.close()
            self._connection = None

    def version(self) -> int:
        with self.cursor() as cursor:
            cursor.execute("SELECT to_regclass('schema_version') IS NOT NULL")
            if not cursor.fetchone()[0]:
                return 0
            cursor.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            return int(cursor.fetchone()[0])

    def migrate(self, target: int | None = None) -> list[Migration]:
        applied = []
        with self.cursor() as cursor:
            # One migrator at a time per tenant schema; the others wait here and find nothing left to do.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"zk-migrate:{self.schema}",))
            cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            cursor.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
                           "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            cursor.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            found = int(cursor.fetchone()[0])
            check_version(self, found)
            for migration in POSTGRES_MIGRATIONS:
                if migration.version <= found or (target is not None and migration.version > target):
                    continue
                for statement in migration.statements:
                    cursor.execute(statement)
                cursor.execute("INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                               (migration.version, migration.description))
                applied.append(migration)
        return applied

    # --- the replica -----------------------------------------------------------------------------------

    def new_ids(self, table: DurableTable, count: int) -> list[int]:
        assert table.sequence
        with self.cursor() as cursor:
            cursor.execute(f"SELECT nextval('{table.sequence.replace('.', '_')}') FROM generate_series(1, %s)",
                           (count,))
            return [int(row[0]) for row in cursor.fetchall()]

    def upsert(self, table: DurableTable, rows: Sequence[tuple], *, keep_existing: bool = False) -> None:
        """Rows (in `table.columns` order) written to PostgreSQL: inserted, or updated except the columns an
        update keeps (left as they are entirely with `keep_existing`)."""
        if not rows:
            return
        from psycopg2.extras import execute_values

        names = table.column_names
        if keep_existing or table.append_only:
            conflict = "DO NOTHING"
        else:
            updated = [name for name in names if name not in table.key and name not in table.kept_on_update]
            conflict = "DO UPDATE SET " + ", ".join(
                [f"{name} = excluded.{name}" for name in updated]
                + ["zk_changed = excluded.zk_changed", "zk_xact = pg_current_xact_id()"])
        template = "(" + ", ".join(["%s"] * len(names)) + ", nextval('zk_changed_seq'))"
        with self.cursor() as cursor:
            execute_values(cursor, f"INSERT INTO {table.pg_name} ({', '.join(names)}, zk_changed) VALUES %s "
                                   f"ON CONFLICT ({', '.join(table.key)}) {conflict}",
                           [tuple(_pg_value(value) for value in row) for row in rows], template=template,
                           page_size=1000)

    def changes_since(self, watermark: int) -> tuple[dict[str, list[tuple]], int]:
        """The rows of every durable table written by transactions that the snapshot of the read that gave
        `watermark` could not see yet (and a few it could: applied again, harmlessly), read in one snapshot;
        and the watermark of this read (its snapshot's oldest running transaction)."""
        changes: dict[str, list[tuple]] = {}
        with self.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
            new_watermark = int(cursor.fetchone()[0])
            for table in DURABLE_TABLES:
                columns = ", ".join(f"{name}::text" if kind == _J else name for name, kind in table.columns)
                cursor.execute(f"SELECT {columns} FROM {table.pg_name} WHERE zk_xact >= %s::text::xid8",
                               (str(watermark),))
                changes[table.name] = cursor.fetchall()
        return changes, new_watermark

    def changed_since(self, watermark: int) -> bool:
        """Whether any durable row was written by a transaction that the read which gave `watermark` could not
        see yet: one statement, over the tables' indexes on `zk_xact`."""
        written = " OR ".join(f"EXISTS (SELECT 1 FROM {table.pg_name} WHERE zk_xact >= %(w)s::text::xid8)"
                              for table in DURABLE_TABLES)
        with self.cursor() as cursor:
            cursor.execute(f"SELECT {written}", {"w": str(watermark)})
            return bool(cursor.fetchone()[0])

    def replica_watermark(self, database: Path) -> int | None:
        """The watermark of this store's last hydration of `database` in this process (None: not hydrated)."""
        with self._lock:
            return self._replica_watermarks.get(_file_key(database))

    def hydrated(self, database: Path, watermark: int) -> None:
        with self._lock:
            self._replica_watermarks[_file_key(database)] = watermark

    def rows(self, table: DurableTable) -> list[dict[str, Any]]:
        columns = ", ".join(f"{name}::text" if kind == _J else name for name, kind in table.columns)
        with self.cursor() as cursor:
            cursor.execute(f"SELECT {columns} FROM {table.pg_name} ORDER BY {', '.join(table.key)}")
            return [{name: _json_ready(value) for name, value in zip(table.column_names, row, strict=True)}
                    for row in cursor.fetchall()]

    def load_rows(self, table: DurableTable, rows: Sequence[dict[str, Any]]) -> None:
        self.upsert(table, [tuple(row.get(name) for name in table.column_names) for row in rows])
        if table.sequence:
            with self.cursor() as cursor:
                cursor.execute(f"SELECT setval('{table.sequence.replace('.', '_')}', "
                               f"greatest((SELECT coalesce(max({table.key[0]}), 0) FROM {table.pg_name}), 1))")

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """An exclusive lock on `key` within the tenant's schema, held for the block on a connection of its
        own (another process or thread asking for the same key waits; other keys never do)."""
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (f"{self.schema}:{key}",))
            connection.commit()
            yield
        finally:
            connection.close()  # the session's advisory lock goes with it


def _pg_value(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if value is not None and not isinstance(value, str | bytes) and pd.isna(value):
        return None
    return value


# --- binding a DuckDB file to its store --------------------------------------------------------------

_stores: dict[str, StateStore] = {}
_stores_lock = threading.Lock()


def _file_key(path: Path | str) -> str:
    import os

    return os.path.realpath(path)


def bind(database: Path, store: StateStore) -> None:
    """From now on in this process, durable writes to `database` also go to `store` (a PostgreSQL store)."""
    with _stores_lock:
        _stores[_file_key(database)] = store


def unbind(database: Path) -> None:
    with _stores_lock:
        store = _stores.pop(_file_key(database), None)
    if store is not None:
        store.close()


def remote_store_of(connection: duckdb.DuckDBPyConnection) -> PostgresStateStore | None:
    """The PostgreSQL store the connection's DuckDB file replicates, if any."""
    if not _stores:
        return None
    rows = connection.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
                              ).fetchall()
    if not rows or not rows[0][0]:
        return None
    store = _stores.get(_file_key(rows[0][0]))
    return store if isinstance(store, PostgresStateStore) else None


def new_ids(connection: duckdb.DuckDBPyConnection, table: DurableTable, count: int) -> list[int]:
    """Ids for `count` new rows of an append-only table: from PostgreSQL when the file is a replica (so that no
    two workers hand out one id), else from the file's own sequence."""
    if count <= 0:
        return []
    store = remote_store_of(connection)
    if store is not None:
        return store.new_ids(table, count)
    return [int(row[0]) for row in connection.execute(
        f"SELECT nextval('{table.sequence}') FROM range($n)", {"n": count}).fetchall()]


def replicate(connection: duckdb.DuckDBPyConnection, table: DurableTable, where: str,
              parameters: dict[str, Any] | None = None, *, keep_existing: bool = False) -> None:
    """After a write of durable rows in the replica: the rows `where` selects sent to PostgreSQL (nothing to
    do for a DuckDB store). Called in the same call as the write, before it returns."""
    store = remote_store_of(connection)
    if store is None:
        return
    columns = ", ".join(f"{name}::VARCHAR" if kind == _J else name for name, kind in table.columns)
    rows = connection.execute(f"SELECT {columns} FROM {table.name} t WHERE {where}", parameters or {}).fetchall()
    store.upsert(table, rows, keep_existing=keep_existing)


def apply_to_replica(connection: duckdb.DuckDBPyConnection, table: DurableTable, frame: pd.DataFrame) -> None:
    """Rows (a frame of the table's columns, JSON as text) written into the DuckDB table: inserted, or
    replacing the row of the same key (append-only rows are only ever inserted)."""
    if not len(frame):
        return
    names = table.column_names
    select = ", ".join(f"{name}::JSON" if kind == _J else name for name, kind in table.columns)
    keys = " AND ".join(f"t.{k} IS NOT DISTINCT FROM incoming_rows.{k}" for k in table.key)
    with registered(connection, "incoming_rows", frame[list(names)]):
        connection.execute(f"DELETE FROM {table.name} t WHERE EXISTS (SELECT 1 FROM incoming_rows WHERE {keys})")
        connection.execute(f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {select} FROM incoming_rows")


def hydrate(database: Path, store: PostgresStateStore) -> dict[str, int]:
    """Bring the DuckDB file's replica of the durable tables up to date with PostgreSQL: the rows changed since
    the replica's watermark per table. Returns the rows applied per table.

    When this store hydrated the file before in this process and no durable row has been written since (one
    statement asks PostgreSQL), nothing is applied and the file is not opened: the replica holds everything
    committed before its watermark, and a transaction still running then writes rows at or past it, so an
    unchanged answer is exact. What this process wrote itself went to PostgreSQL too (`replicate`) and counts
    as a change, so the next hydration applies it again, harmlessly, as before."""
    known = store.replica_watermark(database)
    if known is not None and not store.changed_since(known):
        return {table.name: 0 for table in DURABLE_TABLES}
    with connect(database) as connection:
        applied, watermark = _hydrate(connection, store)
    store.hydrated(database, watermark)
    return applied


def hydrate_into(connection: duckdb.DuckDBPyConnection, store: PostgresStateStore) -> dict[str, int]:
    """`hydrate` into an open connection of the replica, always reading the changes since its watermark."""
    return _hydrate(connection, store)[0]


def _hydrate(connection: duckdb.DuckDBPyConnection, store: PostgresStateStore) -> tuple[dict[str, int], int]:
    applied: dict[str, int] = {}
    connection.execute("CREATE SCHEMA IF NOT EXISTS state")
    connection.execute("CREATE TABLE IF NOT EXISTS state.replica (table_name VARCHAR PRIMARY KEY, "
                       "watermark BIGINT NOT NULL, source VARCHAR NOT NULL)")
    source = hashlib.sha256(f"{shown_url(store.url)}|{store.schema}".encode()).hexdigest()[:16]
    marks = dict(connection.execute("SELECT table_name, watermark FROM state.replica WHERE source = $s",
                                    {"s": source}).fetchall())
    changes, watermark = store.changes_since(min((int(marks.get(t.name, 0)) for t in DURABLE_TABLES), default=0))
    for table in DURABLE_TABLES:
        rows = changes[table.name]
        if rows:
            frame = pd.DataFrame(rows, columns=list(table.column_names))
            with transaction(connection):
                apply_to_replica(connection, table, frame)
        connection.execute(
            "INSERT INTO state.replica VALUES ($t, $w, $s) ON CONFLICT (table_name) DO UPDATE SET "
            "watermark = excluded.watermark, source = excluded.source",
            {"t": table.name, "w": watermark, "s": source})
        applied[table.name] = len(rows)
    return applied, watermark


# --- export and import ----------------------------------------------------------------------------------


def export_state(store: StateStore, directory: Path,
                 progress: Callable[[str, int], None] = lambda _table, _rows: None) -> dict[str, int]:
    """Every durable table as JSON lines (one file per table) and a manifest with the schema version;
    `progress` is told each table's rows as it is written."""
    directory.mkdir(parents=True, exist_ok=True)
    counts = {}
    for table in DURABLE_TABLES:
        rows = store.rows(table)
        with (directory / f"{table.name}.jsonl").open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, sort_keys=True) + "\n")
        counts[table.name] = len(rows)
        progress(table.name, len(rows))
    (directory / "manifest.json").write_text(json.dumps(
        {"format": "zk_pipelines state export", "backend": store.backend, "version": store.version(),
         "tables": counts}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return counts


def import_state(store: StateStore, directory: Path,
                 progress: Callable[[str, int], None] = lambda _table, _rows: None) -> dict[str, int]:
    """The export in `directory` loaded into `store`, which must hold no durable rows yet; `progress` is told
    each table's rows as it is loaded."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        raise StateStoreError(f"{directory} holds no manifest.json: not a `zk state export` directory")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    store.migrate()
    occupied = [table.name for table in DURABLE_TABLES if store.rows(table)]
    if occupied:
        raise StateStoreError(f"the state store {store.describe()} already holds rows in {', '.join(occupied)}: "
                              "import into an empty store")
    counts = {}
    for table in DURABLE_TABLES:
        path = directory / f"{table.name}.jsonl"
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
            if path.exists() else []
        expected = manifest.get("tables", {}).get(table.name, len(rows))
        if expected != len(rows):
            raise StateStoreError(f"{path} holds {len(rows)} rows, the manifest says {expected}")
        for row in rows:
            for name, kind in table.columns:
                if kind == _TS and row.get(name) is not None:
                    row[name] = datetime.fromisoformat(row[name])
        store.load_rows(table, rows)
        counts[table.name] = len(rows)
        progress(table.name, len(rows))
    return counts


# --- opening the configured store -------------------------------------------------------------------------


def open_store(database: Path, state_url: str | None = None, schema: str | None = None) -> StateStore:
    """The tenant's store, migrated, and (PostgreSQL) bound to the DuckDB file and hydrated into it."""
    if not state_url:
        store: StateStore = DuckDBStateStore(database)
        store.migrate()
        return store
    if not state_url.startswith(("postgresql://", "postgres://")):
        raise StateStoreError(f"ZK_STATE_URL must be a postgresql:// URL (got {shown_url(state_url)!r})")
    remote = PostgresStateStore(state_url, schema or "zk_default")
    remote.migrate()
    DuckDBStateStore(database).migrate()  # the replica's own tables and version
    bind(database, remote)
    hydrate(database, remote)
    return remote
