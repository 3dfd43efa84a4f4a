"""`storage.database.connect`: the tenant's DuckDB file is attached to the process's in-memory DuckDB only
while some block uses it, so another process gets the file (and everything written to it) as soon as the
last block ends, as when each block opened and closed the file itself."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pytest

from zk_pipelines.storage import database
from zk_pipelines.storage.database import connect

READER = "import duckdb, sys; print(duckdb.connect(sys.argv[1], read_only=True).execute(sys.argv[2]).fetchall())"
HOLDER = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
          "time.sleep(float(sys.argv[2]))")


def other_process_reads(path, sql: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", READER, str(path), sql], capture_output=True, text=True, timeout=60)


def test_another_process_gets_the_file_and_its_rows_once_the_block_ends(tmp_path):
    path = tmp_path / "tenant.duckdb"
    with connect(path) as connection:
        connection.execute("CREATE SCHEMA audit")
        connection.execute("CREATE TABLE audit.events (id INTEGER)")
        connection.execute("INSERT INTO audit.events VALUES (1), (2)")
        held = other_process_reads(path, "SELECT 1")
        assert held.returncode != 0 and "lock" in held.stderr.lower()
    after = other_process_reads(path, "SELECT sum(id) FROM audit.events")
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "[(3,)]"
    assert not path.with_suffix(".duckdb.wal").exists()  # checkpointed when detached, as on close


def test_nested_and_concurrent_blocks_share_the_file_and_release_it_after_the_last(tmp_path):
    path = tmp_path / "tenant.duckdb"
    with connect(path) as outer:
        outer.execute("CREATE TABLE t (worker INTEGER, n INTEGER)")
        with connect(path) as inner:
            inner.execute("INSERT INTO t VALUES (-1, 0)")
        assert outer.execute("SELECT count(*) FROM t").fetchone() == (1,)  # the inner block's end kept it

        def write(worker: int) -> None:
            for n in range(20):
                with connect(path) as connection:
                    connection.execute("INSERT INTO t VALUES (?, ?)", [worker, n])

        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(write, range(6)))
        assert outer.execute("SELECT count(*) FROM t").fetchone() == (121,)
    assert other_process_reads(path, "SELECT count(*) FROM t").stdout.strip() == "[(121,)]"


def test_a_transaction_left_open_is_rolled_back_and_the_file_is_released(tmp_path):
    path = tmp_path / "tenant.duckdb"
    with connect(path) as connection:
        connection.execute("CREATE TABLE t (n INTEGER)")
    with pytest.raises(RuntimeError, match="midway"), connect(path) as connection:
        connection.execute("BEGIN")
        connection.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("midway")
    assert other_process_reads(path, "SELECT count(*) FROM t").stdout.strip() == "[(0,)]"
    with connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_two_tenants_files_in_one_process_stay_apart(tmp_path):
    first, second = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    with connect(first) as a, connect(second) as b:
        for connection, rows in ((a, 1), (b, 2)):
            connection.execute("CREATE SCHEMA raw")
            connection.execute("CREATE TABLE raw.accounts AS SELECT range AS id FROM range(?)", [rows])
        assert a.execute("SELECT count(*) FROM raw.accounts").fetchone() == (1,)
        assert b.execute("SELECT count(*) FROM raw.accounts").fetchone() == (2,)
        assert a.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
                         ).fetchone() == (1,)
        assert a.execute("SELECT current_setting('TimeZone')").fetchone() == ("UTC",)


def test_a_writer_waits_for_this_process_s_readers_of_the_file(tmp_path):
    path = tmp_path / "tenant.duckdb"
    with connect(path) as connection:
        connection.execute("CREATE TABLE t (n INTEGER)")
    reading, done = threading.Event(), threading.Event()

    def read() -> None:
        with connect(path, read_only=True) as connection:
            connection.execute("SELECT count(*) FROM t").fetchall()
            reading.set()
            done.wait(10)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        reading.wait(10)
        with pytest.raises(duckdb.IOException, match="read-only"), connect(path, wait_seconds=0):
            pass
        threading.Timer(0.3, done.set).start()
        started = time.monotonic()
        with connect(path, wait_seconds=10) as connection:  # once the reader is done, the file is reattached
            connection.execute("INSERT INTO t VALUES (1)")
        assert time.monotonic() - started >= 0.2
    finally:
        done.set()
        reader.join()


def test_a_file_another_process_holds_is_waited_for_then_opened(tmp_path):
    path = tmp_path / "tenant.duckdb"
    with connect(path) as connection:
        connection.execute("CREATE TABLE t (n INTEGER)")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), "1.0"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(duckdb.IOException, match="lock"), connect(path, wait_seconds=0):
            pass
        with connect(path, wait_seconds=30) as connection:
            assert connection.execute("SELECT count(*) FROM t").fetchone() == (0,)
    finally:
        holder.wait(timeout=30)
    assert database._process_engine().attached == {}


def test_a_read_write_block_inside_a_read_only_block_of_the_same_file_is_refused_at_once(tmp_path):
    path = tmp_path / "tenant.duckdb"
    with connect(path) as connection:
        connection.execute("CREATE TABLE t (n INTEGER)")
    started = time.monotonic()
    with connect(path, read_only=True), pytest.raises(duckdb.IOException, match="outer connect"):
        with connect(path, wait_seconds=30):
            pass
    assert time.monotonic() - started < 5  # not the 30 s wait: waiting could never succeed
    with connect(path) as connection:  # and the file was let go
        connection.execute("INSERT INTO t VALUES (1)")


def test_a_forked_child_opens_the_file_with_an_engine_of_its_own(tmp_path):
    path = tmp_path / "tenant.duckdb"
    with connect(path) as connection:
        connection.execute("CREATE TABLE t (n INTEGER)")
    child = os.fork()
    if child == 0:  # the child: the parent's engine must be neither used nor freed
        code = 1
        try:
            with connect(path) as connection:
                connection.execute("INSERT INTO t VALUES (7)")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with connect(path) as connection:
        assert connection.execute("SELECT n FROM t").fetchall() == [(7,)]
