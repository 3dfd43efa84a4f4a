"""The real hourly job against both sandboxes: a run's Kaseya steps share one client, so a run logs in once,
and each step's `step_kaseya_calls` is its own share of the run's calls; likewise the run's Zomentum steps
share one client and one access token. The state store resource creates the pull's tables once per run and
reads the run's resolved settings once, and still fails a step when the settings file changed during the run."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from zk_pipelines.config import ConfigurationError
from zk_pipelines.defs import resources
from zk_pipelines.defs.resources import StateStoreResource
from zk_pipelines.domain.entities import KASEYA_SOURCE, KASEYA_SOURCES
from zk_pipelines.domain.settings import settings_fingerprint
from zk_pipelines.domain.settings_file import load_settings
from zk_pipelines.pull.extract import extract_changes
from zk_pipelines.sandbox.kaseya import start_kaseya_sandbox
from zk_pipelines.sandbox.zomentum import start_zomentum_sandbox
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import ensure_pull_tables
from zk_pipelines_tests.pipeline_harness import (
    PipelineHarness,
    step_errors,
    write_settings,
)

AUTH_ROUTES = ("/v2/security/authenticate", "/v2/security/refreshtoken")


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    kaseya = start_kaseya_sandbox(scale="small_recent")
    zomentum = start_zomentum_sandbox(scale="small_recent")
    yield PipelineHarness(kaseya, zomentum, tmp_path_factory.mktemp("run_client"))
    kaseya.stop()
    zomentum.stop()


@pytest.fixture(scope="module")
def backfill(harness) -> tuple[dg.ExecuteInProcessResult, list[dict]]:
    """The initial sync, with the Kaseya requests it made."""
    harness.kaseya.state.clear_requests()
    result = harness.backfill()
    return result, harness.kaseya.state.requests()


def materializations(result: dg.ExecuteInProcessResult) -> list[tuple[str, dict]]:
    return [("/".join(m.asset_key.path), {name: value.value for name, value in m.metadata.items()})
            for m in (e.event_specific_data.materialization for e in result.get_asset_materialization_events())]


def check_one_login_and_calls_add_up(result: dg.ExecuteInProcessResult, log: list[dict]) -> dict[str, dict]:
    assert result.success, step_errors(result)
    logins = [e for e in log if e["route"] == AUTH_ROUTES[0]]
    data_calls = [e for e in log if e["route"] not in AUTH_ROUTES]
    steps = {asset: {name.removeprefix("step_"): value for name, value in metadata.items()}
             for asset, metadata in materializations(result) if {"kaseya_calls", "step_kaseya_calls"} & set(metadata)}
    assert len(logins) == 1
    # kaseya_changes and kaseya_catalogue, each once (not once per partition); a staging step that read records
    # it held back again by id reports its own calls.
    raw = [asset for asset in steps if asset.startswith("raw_")]
    assert len(raw) == 2
    assert all(steps[asset]["held_back_read_again"] > 0 for asset in set(steps) - set(raw))
    assert sum(m["kaseya_calls"] for m in steps.values()) == len(data_calls)
    assert sum(m["kaseya_logins"] for m in steps.values()) == 1
    return {name: metadata for name, metadata in materializations(result) if name.startswith("raw_")}


@pytest.mark.slow
def test_a_backfill_run_and_an_hourly_run_each_log_in_once(harness, backfill):
    result, log = backfill
    raw = check_one_login_and_calls_add_up(result, log)
    assert set(raw) == {"raw_kaseya_changes", *(f"raw_{s.raw_table}" for s in KASEYA_SOURCES if not s.incremental)}
    products = raw["raw_kaseya_products"]
    pricing = [e for e in log if e["route"].startswith("/v2/inventory/products/{")]
    assert products["pricing_calls"] == len(pricing) > 0

    harness.kaseya.state.clear_requests()
    hourly = harness.run_hour(harness.current_hour - timedelta(hours=1))
    check_one_login_and_calls_add_up(hourly, harness.kaseya.state.requests())


def zomentum_refreshes(log: list[dict]) -> int:
    return sum(1 for e in log if "auth0/access_token" in e["path"])


def test_a_run_takes_one_zomentum_access_token_and_each_load_reports_its_own_calls(harness, backfill):
    result, _ = backfill
    assert result.success, step_errors(result)
    harness.zomentum.state.clear_requests()
    hourly = harness.run_hour(harness.current_hour - timedelta(hours=1))
    assert hourly.success, step_errors(hourly)
    sent = harness.zomentum.state.requests()
    assert zomentum_refreshes(sent) == 1  # settings_resolved and four loads: one token
    steps = {name: metadata for name, metadata in materializations(hourly) if "zomentum_calls" in metadata}
    assert set(steps) == {"settings_resolved", "zomentum_items", "zomentum_clients", "zomentum_client_users",
                          "zomentum_opportunities"}
    # Each step's `zomentum_calls` is its own share of the run's client: they add up to the run's requests.
    assert sum(m["zomentum_calls"] for m in steps.values()) == len(sent)


def test_a_run_creates_the_pull_tables_and_reads_its_resolved_settings_once(harness, backfill, monkeypatch):
    calls = {"ensure_pull_tables": 0, "resolved_for_step": 0}
    for name in calls:
        real = getattr(resources, name)

        def counted(*args, _name=name, _real=real, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(resources, name, counted)
    result = harness.run_hour(harness.current_hour - timedelta(hours=1))
    assert result.success, step_errors(result)
    mapping_steps = [e.step_key for e in result.get_step_success_events()
                     if e.step_key.startswith(("mapped_", "zomentum_"))]
    assert len(mapping_steps) == 8
    assert calls == {"ensure_pull_tables": 1, "resolved_for_step": 1}


def state_store(harness: PipelineHarness) -> StateStoreResource:
    """A run's copy of the state store resource."""
    return StateStoreResource(duckdb_path=str(harness.database), settings_path=str(harness.settings_path))


def test_the_resolved_settings_are_read_from_duckdb_once_per_run(harness, backfill):
    assert backfill[0].success, step_errors(backfill[0])
    state = state_store(harness)
    first = state.resolved_settings()
    assert first.fingerprint == settings_fingerprint(load_settings(harness.settings_path))
    with connect(harness.database) as connection:
        stored = connection.execute("SELECT * FROM settings.resolved").fetchall()
        connection.execute("DELETE FROM settings.resolved")
    try:
        assert state.resolved_settings() is first  # not read again: the stored resolution is gone
        with pytest.raises(ConfigurationError, match="not been resolved yet"):
            state_store(harness).resolved_settings()  # another run reads it
    finally:
        with connect(harness.database) as connection:
            connection.executemany("INSERT INTO settings.resolved VALUES (?, ?, ?, ?)", stored)


def test_a_settings_file_changed_during_the_run_fails_its_next_read_of_the_settings(harness, backfill):
    assert backfill[0].success, step_errors(backfill[0])
    state = state_store(harness)
    state.resolved_settings()
    original = harness.settings_path.read_text()
    try:
        write_settings(harness.settings_path, mode="zomentum_as_crm")
        with pytest.raises(ConfigurationError, match="changed since the run resolved it"):
            state.resolved_settings()
    finally:
        harness.settings_path.write_text(original)
    assert state.resolved_settings().fingerprint == settings_fingerprint(load_settings(harness.settings_path))


def test_the_pull_tables_are_created_by_the_first_step_of_a_run_that_asks(tmp_path):
    state = StateStoreResource(settings_path=str(tmp_path / "settings.yaml"), duckdb_path=str(tmp_path / "t.duckdb"))
    assert state.database() == tmp_path / "t.duckdb"
    with connect(tmp_path / "t.duckdb") as connection:
        tables = {row[0] for row in connection.execute(
            "SELECT schema_name || '.' || table_name FROM duckdb_tables()").fetchall()}
        assert {"raw.kaseya_accounts", "stg.kaseya_contacts", "mapped.zomentum_client_users",
                "settings.resolved", "zomentum.id_map", "audit.sync_events", "budget.kaseya_grants",
                "raw.extraction_coverage"} <= tables
        connection.execute("DROP TABLE stg.kaseya_contacts")
    state.database()  # the same run: not created again
    with connect(tmp_path / "t.duckdb") as connection:
        assert not connection.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'kaseya_contacts' "
                                      "AND schema_name = 'stg'").fetchone()[0]
    fresh = StateStoreResource(**state.model_dump())  # the next run's copy
    fresh.database()
    with connect(tmp_path / "t.duckdb") as connection:
        assert connection.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'kaseya_contacts' "
                                  "AND schema_name = 'stg'").fetchone()[0] == 1


class _Interrupted(BaseException):
    """Stands for Dagster's interrupt (a BaseException raised in the step's thread when the run is terminated)."""


class _SlowList:
    """A Kaseya client whose lists yield a row, then wait until told to go on (or stopped)."""

    def __init__(self) -> None:
        self.first_row = threading.Event()
        self.rows_after_interrupt = 0
        self.interrupted = threading.Event()

    def read_list(self, _endpoint, **_reading):
        for kaseya_id in range(1, 1000):
            if self.interrupted.is_set():
                self.rows_after_interrupt += 1
            yield {"id": kaseya_id, "modifiedOn": "2026-12-01T10:00:00Z"}
            self.first_row.set()
            threading.Event().wait(0.01)



def test_an_interrupted_extraction_stops_its_lists_at_their_next_row_and_keeps_what_they_read(tmp_path, monkeypatch):
    database = tmp_path / "t.duckdb"
    with connect(database) as connection:
        ensure_pull_tables(connection)
    client = _SlowList()
    sources = [KASEYA_SOURCE["accounts"], KASEYA_SOURCE["contacts"]]
    start = datetime(2026, 12, 1, 10, tzinfo=UTC)

    def interrupt_when_reading(*args, **kwargs):  # the step's thread, waiting for the lists, is interrupted
        client.first_row.wait(5)
        client.interrupted.set()
        raise _Interrupted()

    real_result = __import__("concurrent.futures").futures.Future.result
    monkeypatch.setattr("concurrent.futures.Future.result", interrupt_when_reading)
    with pytest.raises(_Interrupted):
        extract_changes(client, database, sources, start, start + timedelta(hours=1), overlap=timedelta(minutes=15),
                        whole_history=False, run_id="r", now=start)
    monkeypatch.setattr("concurrent.futures.Future.result", real_result)
    assert client.rows_after_interrupt <= len(sources)  # each list stops at the row after the interrupt
    with connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM raw.kaseya_accounts").fetchone()[0] >= 1
        assert connection.execute("SELECT count(*) FROM raw.extraction_coverage").fetchone()[0] == 0
