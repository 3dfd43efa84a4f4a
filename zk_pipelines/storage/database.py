"""Opening the tenant's DuckDB file.

DuckDB allows one read-write process per file. Every Dagster step that writes it is in the `duckdb`
concurrency pool (limit 1); connections are short-lived so that a reader (`zk audit`) or the next step
gets the file as soon as a step is done. A process that finds the file locked waits a bounded time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

LOCK_WAIT_SECONDS = 120.0


def _is_lock_error(exc: duckdb.Error) -> bool:
    text = str(exc).lower()
    return "lock" in text or "being used by another process" in text


@contextmanager
def connect(path: Path | str, *, read_only: bool = False, wait_seconds: float = LOCK_WAIT_SECONDS
            ) -> Iterator[duckdb.DuckDBPyConnection]:
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        try:
            connection = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if not _is_lock_error(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    try:
        connection.execute("SET TimeZone = 'UTC'")
        yield connection
    finally:
        connection.close()


@contextmanager
def registered(connection: duckdb.DuckDBPyConnection, name: str, frame: Any) -> Iterator[None]:
    """`frame` (a pandas frame) readable as the view `name` in the statements of the block: how rows reach
    an explicit `INSERT ... SELECT` or a join in one statement."""
    connection.register(name, frame)
    try:
        yield
    finally:
        connection.unregister(name)
