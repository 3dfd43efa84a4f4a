"""`zk state migrate|status|export|import`: the tenant's durable state store (storage/state_store.py).

The store is the one the environment names: PostgreSQL with `ZK_STATE_URL` (schema `ZK_STATE_SCHEMA`), else
the DuckDB file `ZK_DUCKDB_PATH`. Export writes every durable table as JSON lines with a manifest; import
loads such a directory into an empty store: together they move a tenant from DuckDB to PostgreSQL and back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from zk_pipelines.commands.tenant_choice import tenant_environment
from zk_pipelines.config import DEFAULT_DUCKDB_PATH
from zk_pipelines.storage.state_store import (
    CODE_VERSION,
    DURABLE_TABLES,
    DuckDBStateStore,
    PostgresStateStore,
    StateStore,
    export_state,
    import_state,
)


def configured_store(environ: Mapping[str, str]) -> StateStore:
    """The store the environment names, not yet migrated or bound."""
    url = (environ.get("ZK_STATE_URL") or "").strip()
    if url:
        return PostgresStateStore(url, (environ.get("ZK_STATE_SCHEMA") or "").strip() or "zk_default")
    return DuckDBStateStore(Path(environ.get("ZK_DUCKDB_PATH") or DEFAULT_DUCKDB_PATH))


def _table_line(out: TextIO) -> Callable[[str, int], None]:
    """Each table's line as it is done: progress through a large store."""
    return lambda name, count: print(f"  {name:<28} {count:>10} rows", file=out, flush=True)


def run_state_command(action: str, directory: Path | None, environ: Mapping[str, str], out: TextIO,
                      tenant: str | None = None) -> int:
    store = configured_store(tenant_environment(environ, tenant))
    try:
        if action == "migrate":
            before = store.version()
            applied = store.migrate()
            for migration in applied:
                print(f"applied version {migration.version}: {migration.description}", file=out)
            print(f"{store.describe()}: schema version {store.version()} (was {before}); "
                  f"{'nothing to apply' if not applied else f'{len(applied)} migration(s) applied'}", file=out)
        elif action == "status":
            found = store.version()
            known = CODE_VERSION[store.backend]
            verdict = ("up to date" if found == known else
                       f"behind: `zk state migrate` (or the next run) applies {known - found} migration(s)"
                       if found < known else "NEWER than this code: run a newer zk_pipelines")
            print(f"state store: {store.describe()}", file=out)
            print(f"schema version: {found} (this code: {known}) - {verdict}", file=out)
            if found:
                for table in DURABLE_TABLES:
                    print(f"  {table.name:<28} {len(store.rows(table)):>10} rows", file=out)
        elif action == "export":
            assert directory is not None
            print(f"exporting {store.describe()} to {directory}", file=out, flush=True)
            counts = export_state(store, directory, progress=_table_line(out))
            print(f"exported {sum(counts.values())} rows from {store.describe()} to {directory}", file=out)
        elif action == "import":
            assert directory is not None
            print(f"importing {directory} into {store.describe()}", file=out, flush=True)
            counts = import_state(store, directory, progress=_table_line(out))
            print(f"imported {sum(counts.values())} rows from {directory} into {store.describe()}", file=out)
        return 0
    finally:
        store.close()

