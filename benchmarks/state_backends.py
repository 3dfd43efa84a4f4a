"""The PostgreSQL side of the benchmarks (`run.py --state duckdb,postgresql`): a database of the benchmark's own
for each run, the environment that puts a child's tenant state (`ZK_STATE_URL`, a schema of its own) and its
Dagster instance (`deploy/dagster.yaml`, `DAGSTER_POSTGRES_URL`) in it, and the export/import round trip of a
tenant's state (DuckDB -> PostgreSQL -> DuckDB) with its seconds each way.

The benchmark connects to `--postgres-url` only to create and drop its databases (`zk_bench_*`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from zk_pipelines.storage.state_store import (
    DURABLE_TABLES,
    DuckDBStateStore,
    PostgresStateStore,
    StateStore,
    export_state,
    import_state,
)

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("duckdb", "postgresql")
TENANT_SCHEMA = "zk_bench"  # the tenant's schema in the run's database; Dagster's tables are in `public`
ROUND_TRIP_SCHEMA = "zk_round_trip"


def parse_backends(text: str) -> list[str]:
    """`duckdb` or `duckdb,postgresql` (`postgresql` alone means both: the DuckDB runs are the other scenarios'
    and the peers' baseline)."""
    chosen = [b for b in text.split(",") if b]
    unknown = set(chosen) - set(BACKENDS)
    if unknown or not chosen:
        raise ValueError(f"{text!r}: the state backends are among {','.join(BACKENDS)}")
    return [b for b in BACKENDS if b in chosen or b == "duckdb"]


def database_url(server_url: str, name: str, driver: str = "postgresql") -> str:
    """`server_url` with its database replaced by `name` (and its scheme by `driver`)."""
    parts = urlsplit(server_url)
    return urlunsplit((driver, parts.netloc, f"/{name}", parts.query, ""))


@dataclass(frozen=True)
class BenchmarkDatabase:
    """A database of one benchmark run: the tenant's state in schema `zk_bench`, Dagster's instance in `public`."""

    url: str  # postgresql://... of this database

    @property
    def name(self) -> str:
        return urlsplit(self.url).path.lstrip("/")

    def environment(self) -> dict[str, str]:
        return {"ZK_STATE_URL": self.url, "ZK_STATE_SCHEMA": TENANT_SCHEMA,
                "DAGSTER_POSTGRES_URL": database_url(self.url, self.name, "postgresql+psycopg2")}

    def dagster_home(self, home: Path) -> Path:
        """A Dagster home holding the production instance file, its tables made in advance (a production
        instance exists long before a tenant's first run; a tenant's state schema does not, and its first run
        makes it, as the DuckDB file's first run makes its tables)."""
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
        subprocess.run([sys.executable, "-c", "import sys, dagster as dg\n"
                        "with dg.DagsterInstance.from_config(sys.argv[1]): pass", str(home)],
                       env={**os.environ, **self.environment()}, check=True, capture_output=True, timeout=300)
        return home


    def activity(self) -> dict[str, int]:
        """What this database's server has counted so far: transactions committed, rows written in Dagster's
        tables (`public`) and in the tenant's (`zk_bench`). Read before and after a run (a backend's counts reach
        the statistics when it ends, so the run's have when its process has exited)."""
        time.sleep(0.5)  # the run's connections end as its process exits; their counts follow at once
        connection = psycopg2.connect(self.url, connect_timeout=10)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
                (commits,) = cursor.fetchone()
                cursor.execute("SELECT schemaname, coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) "
                               "FROM pg_stat_user_tables GROUP BY schemaname")
                written = dict(cursor.fetchall())
                # A pull reads the push ledger only when it brings its replica up to date (every durable table,
                # one query each): the scans of push_documents count the run's hydrations.
                cursor.execute("SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0) "
                               "FROM pg_stat_user_tables WHERE schemaname = %s AND relname = 'push_documents'",
                               (TENANT_SCHEMA,))
                (hydrations,) = cursor.fetchone()
        finally:
            connection.close()
        return {"commits": int(commits), "dagster_rows_written": int(written.get("public", 0)),
                "state_rows_written": int(written.get(TENANT_SCHEMA, 0)), "state_hydrations": int(hydrations)}

    def commit_ms(self, commits: int = 100) -> float:
        """The server's time for one small durable commit (an insert and its WAL flush), over `commits` of them:
        what each of a run's transactions costs at least."""
        connection = psycopg2.connect(self.url, connect_timeout=10)
        try:
            with connection.cursor() as cursor:
                cursor.execute("CREATE TABLE zk_bench_commit_probe (n integer)")
                connection.commit()
                started = time.monotonic()
                for n in range(commits):
                    cursor.execute("INSERT INTO zk_bench_commit_probe VALUES (%s)", (n,))
                    connection.commit()
                seconds = time.monotonic() - started
                cursor.execute("DROP TABLE zk_bench_commit_probe")
                connection.commit()
        finally:
            connection.close()
        return round(seconds / commits * 1000, 2)


def activity_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after}


def _admin(server_url: str, statement: str) -> None:
    connection = psycopg2.connect(server_url, connect_timeout=10)
    connection.autocommit = True  # CREATE / DROP DATABASE run outside a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


@contextmanager
def benchmark_database(server_url: str, name: str, *, keep: bool = False) -> Iterator[BenchmarkDatabase]:
    """A fresh database `name` on the server, dropped afterwards (kept with `keep`)."""
    if not name.replace("_", "").isalnum() or not name.islower():
        raise ValueError(f"{name!r}: a database name of lower-case letters, digits and _")
    _admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _admin(server_url, f"CREATE DATABASE {name}")
    try:
        yield BenchmarkDatabase(database_url(server_url, name))
    finally:
        if not keep:
            _admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def database_exists(server_url: str, name: str) -> bool:
    connection = psycopg2.connect(server_url, connect_timeout=10)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cursor.fetchone() is not None
    finally:
        connection.close()


# ----- export / import round trip ----------------------------------------------------------------------------


def _contents(store: StateStore) -> dict[str, list[dict[str, Any]]]:
    return {table.name: store.rows(table) for table in DURABLE_TABLES}


def _timed(action: Any) -> tuple[Any, float]:
    started = time.monotonic()
    value = action()
    return value, round(time.monotonic() - started, 3)


def state_round_trip(source: Path, database: BenchmarkDatabase, work: Path) -> dict[str, Any]:
    """The tenant's state in the DuckDB file `source` exported and imported into PostgreSQL (a schema of its own),
    then exported from there and imported into a new DuckDB file, with `export_state` / `import_state` as
    `zk state export|import` runs them: the seconds of each step, the rows per table in each store, and whether
    the three stores' contents are identical, table by table."""
    folder = Path(tempfile.mkdtemp(prefix="state-round-trip-", dir=work))
    original = DuckDBStateStore(source)
    postgres = PostgresStateStore(database.url, ROUND_TRIP_SCHEMA)
    back = DuckDBStateStore(folder / "back.duckdb")
    try:
        exported, duckdb_export_s = _timed(lambda: export_state(original, folder / "from-duckdb"))
        _, postgres_import_s = _timed(lambda: import_state(postgres, folder / "from-duckdb"))
        _, postgres_export_s = _timed(lambda: export_state(postgres, folder / "from-postgresql"))
        _, duckdb_import_s = _timed(lambda: import_state(back, folder / "from-postgresql"))
        contents = [_contents(store) for store in (original, postgres, back)]
    finally:
        postgres.close()
        original.close()
        back.close()
    differing = [name for name in contents[0] if not contents[0][name] == contents[1][name] == contents[2][name]]
    size_mb = sum(path.stat().st_size for path in (folder / "from-duckdb").iterdir()) / 1024 / 1024
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "rows": exported, "total_rows": sum(exported.values()), "export_mb": round(size_mb, 2),
        "rows_by_store": {store: {name: len(rows) for name, rows in found.items()}
                          for store, found in zip(("duckdb", "postgresql", "duckdb_again"), contents, strict=True)},
        "identical": not differing, "differing_tables": differing,
        "duckdb_to_postgresql_s": round(duckdb_export_s + postgres_import_s, 3),
        "postgresql_to_duckdb_s": round(postgres_export_s + duckdb_import_s, 3),
        "steps_s": {"duckdb_export": duckdb_export_s, "postgresql_import": postgres_import_s,
                    "postgresql_export": postgres_export_s, "duckdb_import": duckdb_import_s},
    }

