"""Opening the tenant's DuckDB file.

DuckDB allows one read-write process per file. A run's steps share its process (the hourly job's executor
runs several at once, in threads, all through the one attachment below); connections are short-lived so
that another process (`zk audit`, a push run) gets the file as soon as the run's blocks are done. A process
that finds the file locked waits a bounded time.

Starting a DuckDB database costs ~15 ms of CPU whatever the file (its built-in catalogue), and a run opens
the file some seventy times. So each process keeps one in-memory DuckDB (`_Engine`, holding no data and
nothing of any tenant) and attaches the file to it while at least one `connect` block of the process uses
it: ~3 ms, and the file is detached (checkpointed, its lock released) as soon as the last block ends, as
closing a database did.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

LOCK_WAIT_SECONDS = 120.0


class DatabaseUnusable(Exception):
    """The DuckDB path is not a usable DuckDB file (a directory, another kind of file, a damaged or truncated
    database): no wait helps, and no lock is involved. The message names the path and what it is."""


# DuckDB's words for a file that is not a database, or a damaged one (found when a block reads it).
_DAMAGE = ("not a valid duckdb database file", "corrupt database file", "could not read enough bytes",
           "could not read from file", "is a directory", "database file has a format version")


def _a_directory(path: Path) -> DatabaseUnusable:
    return DatabaseUnusable(f"{path} is a directory, not a DuckDB file (ZK_DUCKDB_PATH names the file)")


def _unusable(path: Path, exc: BaseException) -> DatabaseUnusable | None:
    """The error to raise instead of `exc` when it says the file itself is unusable; None otherwise."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    lowered = text.lower()
    if path.is_dir():
        return _a_directory(path)
    if "not a valid duckdb database file" in lowered:
        return DatabaseUnusable(f"{path} is not a DuckDB database file (another kind of file, or an empty one); "
                                "point ZK_DUCKDB_PATH at the tenant's DuckDB file")
    if any(words in lowered for words in _DAMAGE):
        return DatabaseUnusable(f"{path} is a damaged or truncated DuckDB file ({text}); restore it from a backup "
                                "or move it aside to start a new one")
    if "cannot open file" in lowered and path.exists():
        return DatabaseUnusable(f"{path} cannot be opened ({text})")
    return None


def _is_lock_error(exc: duckdb.Error) -> bool:
    """DuckDB's words for a file another process holds (not any message that happens to name a path with
    "lock" in it)."""
    text = str(exc).lower()
    return any(words in text for words in ("could not set lock", "conflicting lock", "being used by another process"))


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
        # Spills of large sorts go to a directory of the process's own (an attached file's database would
        # have used <file>.tmp; an in-memory one would use ./.tmp wherever the process was started).
        # DuckDB makes the directory only if it spills, and removes it when the engine closes.
        spill = os.path.join(tempfile.gettempdir(), f"zk-duckdb-spill-{self.pid}")
        self.database = duckdb.connect(":memory:", config={"temp_directory": spill})
        self.lock = threading.Lock()
        self.attached: dict[str, _Attachment] = {}
        self.reading = threading.local()  # files this thread holds read-only blocks of, and how many

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
                if self._held_read_only(file):
                    raise duckdb.IOException(f"{file} is open read-only in an outer connect() of this thread; "
                                             "it cannot be opened for writing within it")
                return None
            attachment.users += 1
            try:
                connection = self.database.cursor()
                connection.execute(f"USE {attachment.alias}")
            except BaseException:
                self._leave(file, attachment)
                raise
            if attachment.read_only:
                self._count_read_only(file, +1)
            return attachment, connection

    def leave(self, file: str, attachment: _Attachment) -> None:
        with self.lock:
            if attachment.read_only:
                self._count_read_only(file, -1)
            self._leave(file, attachment)

    def _leave(self, file: str, attachment: _Attachment) -> None:
        attachment.users -= 1
        if attachment.users == 0:
            self.database.execute(f"DETACH {attachment.alias}")  # raises: still attached, still counted
            del self.attached[file]

    def _held_read_only(self, file: str) -> bool:
        return getattr(self.reading, "files", {}).get(file, 0) > 0

    def _count_read_only(self, file: str, change: int) -> None:
        files = self.reading.__dict__.setdefault("files", {})
        files[file] = files.get(file, 0) + change


_engine: _Engine | None = None
_engine_lock = threading.Lock()
# A forked child makes an engine of its own: the parent's is unusable there, and is kept referenced, never
# freed, since freeing a DuckDB instance in a forked child waits for worker threads that were not forked.
_engines_of_the_parent: list[_Engine] = []


def _after_fork_in_child() -> None:
    global _engine_lock
    _engine_lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def _process_engine() -> _Engine:
    """This process's engine, made on first use."""
    global _engine
    with _engine_lock:
        if _engine is None or _engine.pid != os.getpid():
            if _engine is not None:
                _engines_of_the_parent.append(_engine)
            _engine = _Engine()
        return _engine


@contextmanager
def connect(path: Path | str, *, read_only: bool = False, wait_seconds: float = LOCK_WAIT_SECONDS
            ) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the DuckDB file at `path` for the block; a transaction left open at its end is rolled
    back. Waits up to `wait_seconds` while another process holds the file (then raises duckdb.IOException)."""
    path = Path(path)
    if path.is_dir():
        raise _a_directory(path)
    if not read_only:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnusable(f"{path}: its folder cannot be made ({exc.strerror or exc})") from None
    file = os.path.realpath(path)
    engine = _process_engine()
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        try:
            entered = engine.enter(file, read_only)
        except duckdb.Error as exc:
            unusable = _unusable(path, exc)
            if unusable is not None:
                raise unusable from None
            if not isinstance(exc, duckdb.IOException) or not _is_lock_error(exc) or time.monotonic() >= deadline:
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
    except duckdb.Error as exc:
        # A damaged file is found only when a block reads the damaged part.
        unusable = _unusable(path, exc)
        if unusable is not None:
            raise unusable from None
        raise
    finally:
        try:
            connection.close()
        finally:
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


def records_frame(records: Sequence[Any], attributes: Sequence[str], *, as_json: Collection[str] = (),
                  dtype: str | None = None) -> pd.DataFrame:
    """A frame of the records (dataclasses) for `registered`: a column per attribute, in that order, named as
    the attribute; the `as_json` ones as JSON text (a sequence as a JSON list, None as NULL), for a `::JSON`
    cast in SQL."""

    def column(name: str) -> list[Any]:
        values = [getattr(record, name) for record in records]
        if name not in as_json:
            return values
        return [None if value is None else json.dumps(value) for value in values]

    return pd.DataFrame({name: column(name) for name in attributes}, dtype=dtype)


@contextmanager
def transaction(connection: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The block's statements land together or not at all (rolled back on any exception or interrupt)."""
    connection.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def one_row(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """The one row a statement always answers (an aggregate such as `SELECT count(*)`, an `INSERT ... RETURNING`
    of one row): a statement that answers none is a bug, said as such rather than as a TypeError on None."""
    row = result.fetchone()
    if row is None:
        raise LookupError("the statement answered no row")
    return row
