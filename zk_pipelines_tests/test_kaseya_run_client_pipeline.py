"""The real hourly job against both sandboxes: every Kaseya step of a run shares one client, so a run logs in
once, and each step's `kaseya_calls` is its own share of the run's calls; likewise the run's Zomentum steps
share one client and one access token. The run's resource also creates the
pull's tables once and reads the run's resolved settings once, and still fails a step when the settings file
changed during the run."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from zk_pipelines.config import ConfigurationError
from zk_pipelines.defs import resources
from zk_pipelines.defs.resources import TenantResource
from zk_pipelines.domain.entities import KASEYA_SOURCES
from zk_pipelines.domain.settings import load_settings, settings_fingerprint
from zk_pipelines.sandbox.kaseya import start_kaseya_sandbox
from zk_pipelines.sandbox.zomentum import start_zomentum_sandbox
from zk_pipelines.storage.database import connect
from zk_pipelines_tests.pipeline_harness import PipelineHarness, step_errors, write_settings

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


def kaseya_step_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    """Each asset's materialization metadata that reports Kaseya calls (once per asset: a run over several
    partitions repeats the same metadata for each partition)."""
    found: dict[str, dict] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        metadata = {name: value.value for name, value in materialization.metadata.items()}
        if "kaseya_calls" in metadata:
            found["/".join(materialization.asset_key.path)] = metadata
    return found


def check_one_login_and_calls_add_up(result: dg.ExecuteInProcessResult, log: list[dict]) -> dict:
    assert result.success, step_errors(result)
    logins = [e for e in log if e["route"] == AUTH_ROUTES[0]]
    data_calls = [e for e in log if e["route"] not in AUTH_ROUTES]
    steps = kaseya_step_metadata(result)
    assert len(logins) == 1
    assert {name for name in steps if name.startswith("raw/")} == {f"raw/{s.raw_table}" for s in KASEYA_SOURCES}
    assert sum(m["kaseya_calls"] for m in steps.values()) == len(data_calls)
    assert sum(m["kaseya_logins"] for m in steps.values()) == 1
    return steps


def test_a_backfill_run_and_an_hourly_run_each_log_in_once(harness, backfill):
    result, log = backfill
    steps = check_one_login_and_calls_add_up(result, log)
    # The products step reports its own calls (the product scans and the pricing reads), not the run's, though
    # the run's extractions run side by side through one client.
    products = steps["raw/kaseya_products"]
    pricing = [e for e in log if e["route"].startswith("/v2/inventory/products/{")]
    scans = [e for e in log if e["route"] == "/v2/inventory/products/searchselect"]
    assert products["pricing_calls"] == len(pricing) > 0
    categories = [e for e in log if e["route"] == "/v2/inventory/products/categories/lookup"]
    assert len(categories) == 2  # one read by raw/kaseya_product_categories, one by raw/kaseya_products
    assert steps["raw/kaseya_product_categories"]["kaseya_calls"] == 1
    assert products["kaseya_calls"] == len(pricing) + len(scans) + 1
    accounts = [e for e in log if e["route"] == "/v2/crm/accounts/summary"]
    assert steps["raw/kaseya_accounts"]["kaseya_calls"] == len(accounts) > 0

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
    assert zomentum_refreshes(sent) == 1  # settings/resolved and four loads: one token
    steps = {"/".join(m.asset_key.path): {k: v.value for k, v in m.metadata.items()}
             for m in (e.event_specific_data.materialization for e in hourly.get_asset_materialization_events())
             if "zomentum_calls" in m.metadata}
    assert set(steps) == {"settings/resolved", "zomentum/items", "zomentum/clients", "zomentum/client_users",
                          "zomentum/opportunities"}
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
                     if e.step_key.startswith(("mapped__", "zomentum__"))]
    assert len(mapping_steps) == 8
    assert calls == {"ensure_pull_tables": 1, "resolved_for_step": 1}


def test_the_resolved_settings_are_read_from_duckdb_once_per_run(harness, backfill):
    assert backfill[0].success, step_errors(backfill[0])
    tenant = harness.tenant()  # a run's copy of the resource
    first = tenant.resolved_settings()
    assert first.fingerprint == settings_fingerprint(load_settings(harness.settings_path))
    with connect(harness.database) as connection:
        stored = connection.execute("SELECT * FROM settings.resolved").fetchall()
        connection.execute("DELETE FROM settings.resolved")
    try:
        assert tenant.resolved_settings() is first  # not read again: the stored resolution is gone
        with pytest.raises(ConfigurationError, match="not been resolved yet"):
            harness.tenant().resolved_settings()  # another run reads it
    finally:
        with connect(harness.database) as connection:
            connection.executemany("INSERT INTO settings.resolved VALUES (?, ?, ?, ?)", stored)


def test_a_settings_file_changed_during_the_run_fails_its_next_read_of_the_settings(harness, backfill):
    assert backfill[0].success, step_errors(backfill[0])
    tenant = harness.tenant()
    tenant.resolved_settings()
    original = harness.settings_path.read_text()
    try:
        write_settings(harness.settings_path, mode="zomentum_as_crm")
        with pytest.raises(ConfigurationError, match="changed since the run resolved it"):
            tenant.resolved_settings()
    finally:
        harness.settings_path.write_text(original)
    assert tenant.resolved_settings().fingerprint == settings_fingerprint(load_settings(harness.settings_path))


def test_the_pull_tables_are_created_by_the_first_step_of_a_run_that_asks(tmp_path):
    tenant = TenantResource(kaseya_base_url="http://127.0.0.1:1", kaseya_username="u", kaseya_password="p",
                            kaseya_tenant="t", zomentum_base_url="http://127.0.0.1:1", zomentum_refresh_token="r",
                            settings_path=str(tmp_path / "settings.yaml"), duckdb_path=str(tmp_path / "t.duckdb"))
    assert tenant.pull_database() == tmp_path / "t.duckdb"
    with connect(tmp_path / "t.duckdb") as connection:
        tables = {row[0] for row in connection.execute(
            "SELECT schema_name || '.' || table_name FROM duckdb_tables()").fetchall()}
        assert {"raw.kaseya_accounts", "stg.kaseya_contacts", "mapped.zomentum_client_users",
                "settings.resolved", "zomentum.id_map", "audit.sync_events"} <= tables
        connection.execute("DROP TABLE stg.kaseya_contacts")
    tenant.pull_database()  # the same run: not created again
    with connect(tmp_path / "t.duckdb") as connection:
        assert not connection.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'kaseya_contacts' "
                                      "AND schema_name = 'stg'").fetchone()[0]
    fresh = TenantResource(**tenant.model_dump())  # the next run's copy
    fresh.pull_database()
    with connect(tmp_path / "t.duckdb") as connection:
        assert connection.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'kaseya_contacts' "
                                  "AND schema_name = 'stg'").fetchone()[0] == 1


def test_a_terminated_run_sends_nothing_more_to_either_api(kaseya, zomentum, tmp_path):
    # What the hourly job's executor does when the run is terminated (`interrupt_run`): the run's clients, in
    # whichever step's thread, raise Dagster's interrupt before their next request. The next run's copy of
    # the resource starts afresh.
    tenant = TenantResource(kaseya_base_url=kaseya.base_url, kaseya_username=kaseya.username,
                            kaseya_password=kaseya.password, kaseya_tenant=kaseya.tenant,
                            zomentum_base_url=zomentum.base_url, zomentum_refresh_token=zomentum.refresh_token,
                            settings_path=str(tmp_path / "settings.yaml"), duckdb_path=str(tmp_path / "t.duckdb"))
    kaseya_client, zomentum_client = tenant.kaseya_client(), tenant.zomentum_client()
    kaseya_client.account_types()  # logs in and reads
    sent = (len(kaseya.state.requests()), len(zomentum.state.requests()))

    tenant.interrupt_run()

    with pytest.raises(dg.DagsterExecutionInterruptedError):
        kaseya_client.account_types()
    with pytest.raises(dg.DagsterExecutionInterruptedError):
        zomentum_client.pipelines()
    assert (len(kaseya.state.requests()), len(zomentum.state.requests())) == sent
    tenant.teardown_after_execution(dg.build_init_resource_context())
    assert tenant.kaseya_client().account_types()  # a new client of the next run, not interrupted
