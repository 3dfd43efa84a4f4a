"""The state store's two backends, through the same tests: migrations, the replica, ids, the budget, the push
claim, export and import. PostgreSQL is a real server (zk_pipelines_tests/postgres.py)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd
import psycopg2
import pytest

from zk_pipelines.commands.state import run_state_command
from zk_pipelines.storage import ledger_store, pull_store, push_store, raw_store
from zk_pipelines.storage.budget_store import budget_store_for
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.schema import create_tables
from zk_pipelines.storage.state_store import (
    CODE_VERSION,
    DURABLE_TABLES,
    DuckDBStateStore,
    PostgresStateStore,
    StateStoreError,
    export_state,
    hydrate,
    import_state,
    open_store,
    unbind,
)

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["duckdb", "postgresql"])
def backend(request, tmp_path):
    """(url or None, a factory of workers' DuckDB files): each worker opens the same store from its own file."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    opened = []

    def worker(name: str):
        database = tmp_path / name / "tenant.duckdb" if url else tmp_path / "tenant.duckdb"
        store = open_store(database, url, "zk_acme" if url else None)
        opened.append(database)
        return database, store

    yield url, worker
    for database in opened:
        unbind(database)


def _event(kaseya_id: str) -> ledger_store.SyncEvent:
    return ledger_store.SyncEvent(direction="pull", entity="clients", action="created", kaseya_id=kaseya_id,
                                zomentum_id=f"z{kaseya_id}")


def test_a_store_is_migrated_from_empty_to_this_codes_version_and_again_is_a_no_op(backend):
    url, worker = backend
    _, store = worker("a")
    assert store.version() == CODE_VERSION[store.backend]
    assert store.migrate() == []
    assert all(store.rows(table) == [] for table in DURABLE_TABLES)


def test_every_worker_sees_one_ledger_and_one_id_map_with_ids_that_never_collide(backend):
    url, worker = backend
    a, store_a = worker("a")
    b, store_b = worker("b")
    with connect(a) as connection:
        ledger_store.record_events(connection, [_event("1"), _event("2")], run_id="run-a", partition_key=None,
                                 settings_fingerprint=None, now=NOW)
        ledger_store.upsert_id_map(
            connection, [ledger_store.IdMapEntry("clients", "1", "z1", "created", "h1", {"n": 1})], NOW)
    with connect(b) as connection:
        ledger_store.record_events(connection, [_event("3")], run_id="run-b", partition_key=None,
                                 settings_fingerprint=None, now=NOW)
    if url:
        hydrate(a, store_a)
        hydrate(b, store_b)
    for database in {a, b}:
        with connect(database) as connection:
            events = connection.execute("SELECT event_id, kaseya_id FROM audit.sync_events ORDER BY event_id"
                                        ).fetchall()
            assert [k for _, k in events] == ["1", "2", "3"]
            assert len({i for i, _ in events}) == 3
            assert ledger_store.read_id_map(connection, "clients") == {"1": "z1"}
    # The store itself holds the one ledger.
    assert [row["kaseya_id"] for row in store_b.rows(DURABLE_TABLES[1])] == ["1", "2", "3"]


def test_a_pair_the_push_makes_never_replaces_the_pulls_pair_written_by_another_worker(backend):
    url, worker = backend
    a, _ = worker("a")
    b, store_b = worker("b")
    with connect(a) as connection:
        ledger_store.upsert_id_map(
            connection, [ledger_store.IdMapEntry("clients", "7", "z7", "created", "h", {"x": 1})], NOW)
    with connect(b) as connection:  # b has not seen a's pair yet
        push_store.ensure_push_tables(connection)
        push_store.pair_pushed_record(connection, "clients", 7, "z-other", NOW)
    rows = [row for row in store_b.rows(DURABLE_TABLES[0]) if row["kaseya_id"] == "7"]
    assert [(r["zomentum_id"], r["link_kind"]) for r in rows] == [("z7", "created")]


def test_a_document_held_by_a_push_on_one_worker_cannot_be_claimed_on_another(backend):
    url, worker = backend
    a, _ = worker("a")
    b, _ = worker("b")
    with connect(a) as connection:
        assert push_store.start_document(connection, "doc-1", "v1", run_id="run-a", fingerprint="f", now=NOW) == 1
    with connect(b) as connection, pytest.raises(push_store.DocumentHeld) as held:
        push_store.start_document(connection, "doc-1", "v2", run_id="run-b", fingerprint="f",
                                  now=NOW + timedelta(minutes=1))
    assert held.value.run_id == "run-a"
    with connect(b) as connection:  # another document is never held up
        assert push_store.start_document(connection, "doc-2", "v1", run_id="run-b", fingerprint="f", now=NOW) == 1


def test_the_kaseya_budget_is_one_budget_for_every_worker(backend):
    url, worker = backend
    a, store_a = worker("a")
    b, store_b = worker("b")
    first = budget_store_for(a, store_a).grant("GET /v2/crm/accounts", 80, 100, now=1000.0)
    second = budget_store_for(b, store_b).grant("GET /v2/crm/accounts", 80, 100, now=1001.0)
    other = budget_store_for(b, store_b).grant("GET /v2/crm/contacts", 80, 100, now=1001.0)
    assert (first.calls, second.calls, other.calls) == (80, 20, 80)
    assert budget_store_for(a, store_a).used(1002.0) == {"GET /v2/crm/accounts": 100, "GET /v2/crm/contacts": 80}


def test_a_store_newer_than_the_code_is_refused_with_what_to_do(backend):
    url, worker = backend
    database, store = worker("a")
    if url:
        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("INSERT INTO zk_acme.schema_version (version, description) VALUES (99, 'future')")
    else:
        with connect(database) as connection:
            connection.execute("INSERT INTO state.schema_version VALUES (99, 'future', now())")
    with pytest.raises(StateStoreError, match="schema version 99, newer than this code knows"):
        store.migrate()


def test_a_postgresql_store_at_the_previous_version_is_migrated_keeping_its_rows(postgres_url):
    store = PostgresStateStore(postgres_url, "zk_old")
    assert [m.version for m in store.migrate(target=1)] == [1]
    with store.cursor() as cursor:  # a row as version 1 wrote it
        cursor.execute("INSERT INTO id_map (entity, kaseya_id, zomentum_id, link_kind, first_synced_at, "
                       "last_synced_at, zk_changed) VALUES ('clients', '1', 'z1', 'created', now(), now(), 1)")
    assert [m.version for m in store.migrate()] == [2, 3]
    assert store.version() == CODE_VERSION["postgresql"]
    assert [row["zomentum_id"] for row in store.rows(DURABLE_TABLES[0])] == ["z1"]
    store.close()


def test_a_duckdb_file_from_before_versions_is_migrated_keeping_its_rows(tmp_path):
    database = tmp_path / "old.duckdb"
    with duckdb.connect(str(database)) as connection:  # the layout of the release before versions
        for schema in ("audit",):
            connection.execute(f"CREATE SCHEMA {schema}")
        connection.execute("""CREATE TABLE audit.rejects (run_id VARCHAR, partition_key VARCHAR,
            entity VARCHAR NOT NULL,
            kaseya_id VARCHAR, check_name VARCHAR NOT NULL, column_name VARCHAR, value VARCHAR,
            reason VARCHAR NOT NULL, rejected_at TIMESTAMPTZ NOT NULL)""")
        connection.execute("INSERT INTO audit.rejects VALUES ('r', NULL, 'contacts', '5', 'email', 'email', 'x', "
                           "'not an e-mail', now())")
    store = DuckDBStateStore(database)
    assert store.version() == 0
    assert [m.version for m in store.migrate()] == [1, 2]
    assert store.version() == CODE_VERSION["duckdb"]
    with connect(database) as connection:
        assert connection.execute("SELECT reason, reject_id FROM audit.rejects").fetchall() == [("not an e-mail", None)]


def _fill(database) -> None:
    with connect(database) as connection:
        create_tables(connection, push_store.PUSH_DDL)
        ledger_store.record_events(connection, [_event(str(i)) for i in range(1, 40)], run_id="r1",
                                 partition_key="2026-12-07-08:00", settings_fingerprint="fp", now=NOW)
        ledger_store.upsert_id_map(connection, [ledger_store.IdMapEntry("clients", str(i), f"z{i}", "created", f"h{i}",
                                                                    {"name": f"Client {i}", "n": [i, "ü"]})
                                              for i in range(1, 40)], NOW)
        pull_store.insert_rejects(connection, pd.DataFrame([{
            "entity": "contacts", "kaseya_id": 5, "check": "email_format", "column": "email",
            "value": "x@", "reason": "not an e-mail"}]), run_id="r1", partition_key=None, now=NOW)
        pull_store.save_resolved_settings(connection, "fp", {"mode": "kaseya_as_crm"}, run_id="r1", now=NOW)
        raw_store.upsert_pricing(connection, [(11, [{"level": 1}], [], {"cost": 2.5})], run_id="r1", now=NOW)
        push_store.start_document(connection, "doc-9", "v1", run_id="r2", fingerprint="fp", now=NOW)
        request = push_store.record_intent(connection, push_store.RequestIntent(
            "doc-9", "v1", "r2", 1, 1, "kaseya", "create_opportunity", "POST", "/v2/crm/opportunities",
            {"name": "Deal"}, "the opportunity", None), NOW)
        push_store.settle_request(connection, request, state=push_store.SENT, response_status=200, record_id="44",
                                  now=NOW)


def test_export_and_import_move_a_tenant_from_duckdb_to_postgresql_and_back_unchanged(tmp_path, postgres_url):
    source = DuckDBStateStore(tmp_path / "source.duckdb")
    source.migrate()
    _fill(source.database)
    export_state(source, tmp_path / "export-1")
    target = PostgresStateStore(postgres_url, "zk_moved")
    import_state(target, tmp_path / "export-1")
    for table in DURABLE_TABLES:
        assert target.rows(table) == source.rows(table), table.name
    export_state(target, tmp_path / "export-2")
    back = DuckDBStateStore(tmp_path / "back.duckdb")
    import_state(back, tmp_path / "export-2")
    for table in DURABLE_TABLES:
        assert back.rows(table) == source.rows(table), table.name
    # Ids go on from the imported ones, in both backends.
    assert target.new_ids(DURABLE_TABLES[1], 1)[0] > 39
    with connect(back.database) as connection:
        ledger_store.record_events(connection, [_event("99")], run_id="r3", partition_key=None,
                                 settings_fingerprint=None, now=NOW)
        assert connection.execute("SELECT count(DISTINCT event_id) FROM audit.sync_events").fetchone()[0] == 40
    with pytest.raises(StateStoreError, match="already holds rows"):
        import_state(target, tmp_path / "export-1")
    target.close()


def test_zk_state_status_and_migrate_name_the_store_without_its_password(postgres_url, tmp_path):
    with_password = postgres_url.replace("postgres@", "postgres:hunter2-secret@")
    environ = {"ZK_STATE_URL": with_password, "ZK_STATE_SCHEMA": "zk_shown"}
    out = io.StringIO()
    assert run_state_command("migrate", None, environ, out) == 0
    assert run_state_command("status", None, environ, out) == 0
    text = out.getvalue()
    assert "hunter2" not in text
    version = CODE_VERSION["postgresql"]
    assert f"schema version: {version} (this code: {version}) - up to date" in text
    assert "schema zk_shown" in text and "zomentum.id_map" in text


def test_zk_state_export_and_import_print_each_table_as_it_is_done(tmp_path):
    source = DuckDBStateStore(tmp_path / "source.duckdb")
    source.migrate()
    _fill(source.database)
    source.close()
    out = io.StringIO()
    assert run_state_command("export", tmp_path / "export", {"ZK_DUCKDB_PATH": str(tmp_path / "source.duckdb")},
                             out) == 0
    assert run_state_command("import", tmp_path / "export", {"ZK_DUCKDB_PATH": str(tmp_path / "copy.duckdb")},
                             out) == 0
    lines = out.getvalue().splitlines()
    per_table = len(DURABLE_TABLES)
    assert lines[0].startswith("exporting ") and lines[per_table + 1].startswith("exported ")
    assert lines[per_table + 2].startswith("importing ") and lines[-1].startswith("imported ")
    assert [line.split()[0] for line in lines[1:per_table + 1]] == [table.name for table in DURABLE_TABLES]
    assert "zomentum.id_map" in lines[per_table + 3 + [t.name for t in DURABLE_TABLES].index("zomentum.id_map")]


def test_an_unreachable_store_is_one_line_naming_it_without_its_password(tmp_path):
    store = PostgresStateStore("postgresql://zk:hunter2-secret@127.0.0.1:1/nowhere", "zk_acme")
    with pytest.raises(StateStoreError) as error:
        store.migrate()
    assert "hunter2" not in str(error.value) and "127.0.0.1:1/nowhere" in str(error.value)
    assert "cannot be reached" in str(error.value)


def test_a_connection_the_server_drops_is_one_error_naming_the_store_and_the_next_call_reconnects(postgres_url):
    store = PostgresStateStore(postgres_url, "zk_dropped")
    store.migrate()
    with psycopg2.connect(postgres_url) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE application_name = 'zk_pipelines' AND datname = current_database() "
                       "AND pid <> pg_backend_pid()")
    with pytest.raises(StateStoreError, match="schema zk_dropped failed"):
        store.version()
    assert store.version() == CODE_VERSION["postgresql"]
    store.close()


def test_a_row_committed_after_a_later_one_still_reaches_every_replica(postgres_url, tmp_path):
    """Two writers: the first takes its transaction, the second writes and commits, a replica hydrates, then
    the first commits. The replica's next hydration brings the first's row although the second's was newer."""
    reader = tmp_path / "reader.duckdb"
    store = open_store(reader, postgres_url, "zk_order")
    slow = psycopg2.connect(postgres_url, options="-c search_path=zk_order")
    try:
        with slow.cursor() as cursor:  # begins its transaction (and its id) first
            cursor.execute("SELECT pg_current_xact_id()")
            store.upsert(DURABLE_TABLES[0], [("clients", "2", "z2", "created", None, None, NOW, NOW)])
            assert hydrate(reader, store)["zomentum.id_map"] == 1
            cursor.execute("INSERT INTO id_map (entity, kaseya_id, zomentum_id, link_kind, first_synced_at, "
                           "last_synced_at, zk_changed) VALUES ('clients', '1', 'z1', 'created', now(), now(), 1)")
        slow.commit()
        hydrate(reader, store)
        with connect(reader) as connection:
            assert ledger_store.read_id_map(connection, "clients") == {"1": "z1", "2": "z2"}
        assert hydrate(reader, store)["zomentum.id_map"] <= 1  # only what may not have been seen is read again
    finally:
        slow.close()
        unbind(reader)


def test_a_record_waiting_for_its_parent_on_one_worker_is_released_on_another(backend):
    """The deferral is durable: worker A staged a contact whose account was not staged yet (a reference
    reject); worker B, once it has staged the account and holds the contact's raw record, takes the contact up."""
    url, worker = backend
    a, _ = worker("a")
    b, store_b = worker("b")
    with connect(a) as connection:
        pull_store.insert_rejects(connection, pd.DataFrame([{
            "entity": "contacts", "kaseya_id": 41, "check": "known_account", "column": "account_id", "value": "9",
            "reason": "contact 41: its account 9 is not staged yet"}]), run_id="run-a", partition_key=None, now=NOW)
    if url:
        hydrate(b, store_b)
    later = NOW + timedelta(hours=1)
    with connect(b) as connection:
        pull_store.ensure_pull_tables(connection)
        raw_store.upsert_incremental_raw(connection, "kaseya_contacts", [raw_store.RawRecord(41, NOW, {"id": 41})],
                                          window_start=None, window_end=later, run_id="run-b", now=later)
        connection.execute("INSERT INTO stg.kaseya_accounts (kaseya_id, name, staged_at) VALUES (9, 'Acme', $t)",
                           {"t": later})
        assert pull_store.deferred_ids(connection, "contacts") == [41]


def test_an_unchanged_store_is_not_hydrated_again_and_the_replica_file_is_not_opened(postgres_url, tmp_path,
                                                                                      monkeypatch):
    """Every step asks for the replica: once it is up to date and no durable row was written since, the ask is
    one statement to PostgreSQL, nothing is applied and the DuckDB file is not opened."""
    from zk_pipelines.storage import state_store

    replica = tmp_path / "replica.duckdb"
    store = open_store(replica, postgres_url, "zk_unchanged")
    try:
        store.upsert(DURABLE_TABLES[0], [("clients", "1", "z1", "created", None, None, NOW, NOW)])
        assert hydrate(replica, store)["zomentum.id_map"] == 1
        opened = []
        real_connect = state_store.connect

        def counted(path, *args, **kwargs):
            opened.append(path)
            return real_connect(path, *args, **kwargs)

        monkeypatch.setattr(state_store, "connect", counted)
        assert hydrate(replica, store) == {table.name: 0 for table in DURABLE_TABLES}
        assert hydrate(replica, store) == {table.name: 0 for table in DURABLE_TABLES}
        assert opened == []
    finally:
        unbind(replica)


def test_a_row_another_process_writes_after_a_skipped_hydration_reaches_the_replica_at_the_next(postgres_url,
                                                                                                tmp_path):
    """The skip never hides a change: another process writes the id map after this replica found nothing new;
    the next hydration applies its row (and the one after that finds nothing again)."""
    import subprocess
    import sys

    replica = tmp_path / "replica.duckdb"
    store = open_store(replica, postgres_url, "zk_moved")
    try:
        hydrate(replica, store)
        assert hydrate(replica, store)["zomentum.id_map"] == 0
        writer = ("import sys; from datetime import UTC, datetime\n"
                  "from zk_pipelines.storage.state_store import ID_MAP, PostgresStateStore\n"
                  "store = PostgresStateStore(sys.argv[1], 'zk_moved')\n"
                  "now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)\n"
                  "store.upsert(ID_MAP, [('clients', '7', 'z7', 'created', None, None, now, now)])\n"
                  "store.close()\n")
        subprocess.run([sys.executable, "-c", writer, postgres_url], check=True)
        assert hydrate(replica, store)["zomentum.id_map"] == 1
        with connect(replica, read_only=True) as connection:
            assert ledger_store.read_id_map(connection, "clients") == {"7": "z7"}
        assert hydrate(replica, store)["zomentum.id_map"] == 0
    finally:
        unbind(replica)
