"""Opening the tenant's DuckDB file.

DuckDB allows one read-write process per file. Every Dagster step that writes it is in the `duckdb`
concurrency pool (limit 1); connections are short-lived so that a reader (`zk audit`) or the next step
gets the file as soon as a step is done. A process that finds the file locked waits a bounded time.

Starting a DuckDB database costs ~15 ms of CPU whatever the file (its built-in catalogue), and a run opens
the file some seventy times. So each process keeps one in-memory DuckDB (`_Engine`, holding no data and
nothing of any tenant) and attaches the file to it while at least one `connect` block of the process uses
it: ~3 ms, and the file is detached (checkpointed, its lock released) as soon as the last block ends, as
closing a database did.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

LOCK_WAIT_SECONDS = 120.0


def _is_lock_error(exc: duckdb.Error) -> bool:
    text = str(exc).lower()
    return "lock" in text or "being used by another process" in text


@dataclass
class _Attachment:
    alias: str
    read_only: bool
    users: int = 0


class _Engine:
    """The process's in-memory DuckDB and which files are attached to it, for how many blocks. Its
    connection is used only under `lock` (a DuckDB connection object is not shared between threads)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.database = duckdb.connect(":memory:")
        self.lock = threading.Lock()
        self.attached: dict[str, _Attachment] = {}

    def enter(self, file: str, read_only: bool) -> tuple[_Attachment, duckdb.DuckDBPyConnection] | None:
        """Attach the file (or count one more user of it) and give a connection whose default catalogue it is;
        None while this process has the file attached read-only and a writer asks (it waits for the readers)."""
        with self.lock:
            attachment = self.attached.get(file)
            if attachment is None:
                alias = "tenant_" + hashlib.sha256(file.encode()).hexdigest()[:16]
                literal = file.replace("'", "''")
                self.database.execute(f"ATTACH '{literal}' AS {alias}" + (" (READ_ONLY)" if read_only else ""))
                attachment = self.attached[file] = _Attachment(alias, read_only)
            elif attachment.read_only and not read_only:
                return None
            attachment.users += 1
            try:
                connection = self.database.cursor()
                connection.execute(f"USE {attachment.alias}")
            except BaseException:
                self._leave(file, attachment)
                raise
            return attachment, connection

    def leave(self, file: str, attachment: _Attachment) -> None:
        with self.lock:
            self._leave(file, attachment)

    def _leave(self, file: str, attachment: _Attachment) -> None:
        attachment.users -= 1
        if attachment.users == 0:
            del self.attached[file]
            self.database.execute(f"DETACH {attachment.alias}")


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def _process_engine() -> _Engine:
    """This process's engine, made on first use (anew in a forked child: DuckDB does not survive a fork)."""
    global _engine
    with _engine_lock:
        if _engine is None or _engine.pid != os.getpid():
            _engine = _Engine()
        return _engine


@contextmanager
def connect(path: Path | str, *, read_only: bool = False, wait_seconds: float = LOCK_WAIT_SECONDS
            ) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the DuckDB file at `path` for the block; a transaction left open at its end is rolled
    back. Waits up to `wait_seconds` while another process holds the file (then raises duckdb.IOException)."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    file = os.path.realpath(path)
    engine = _process_engine()
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        try:
            entered = engine.enter(file, read_only)
        except duckdb.IOException as exc:
            if not _is_lock_error(exc) or time.monotonic() >= deadline:
                raise
            entered = None
        else:
            if entered is None and time.monotonic() >= deadline:
                raise duckdb.IOException(f"{path} stayed open read-only in this process; it was wanted for writing")
        if entered is not None:
            break
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    attachment, connection = entered
    try:
        connection.execute("SET TimeZone = 'UTC'")
        yield connection
    finally:
        connection.close()
        engine.leave(file, attachment)


@contextmanager
def registered(connection: duckdb.DuckDBPyConnection, name: str, frame: Any) -> Iterator[None]:
    """`frame` (a pandas frame) readable as the view `name` in the statements of the block: how rows reach
    an explicit `INSERT ... SELECT` or a join in one statement."""
    connection.register(name, frame)
    try:
        yield
    finally:
        connection.unregister(name)
