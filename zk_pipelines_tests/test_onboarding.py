"""Onboarding a tenant: its first run syncs everything Kaseya holds, whatever the hour it is for and however
old the records; later runs read their hours and whatever hours no run covered; a full re-sync is a run
setting; the ledger and the partitions' metadata say which hours a run was for."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from zk_pipelines_tests.pipeline_harness import (
    REPO,
    PipelineHarness,
    hour_key,
    reset_sandboxes,
    step_errors,
)

YEARS_AGO = datetime(2021, 3, 4, 5, 6, tzinfo=UTC)


@pytest.fixture
def harness(sandboxes, tmp_path) -> PipelineHarness:
    kaseya, zomentum = reset_sandboxes(sandboxes)
    return PipelineHarness(kaseya, zomentum, tmp_path)


def account_queries(harness: PipelineHarness) -> list[dict]:
    return [e for e in harness.kaseya.state.requests() if e["route"] == "/v2/crm/accounts/summary"]


@pytest.mark.slow
def test_the_first_run_of_a_tenant_syncs_records_older_than_its_first_partition(harness):
    old = harness.kaseya.state.create_record("accounts", {"accountName": "Since 2021 Ltd"})
    harness.set_modified_on("accounts", old["id"], YEARS_AGO)
    harness.kaseya.state.clear_requests()

    first = harness.run_hour(harness.current_hour - timedelta(hours=1))  # one hour, long after the record

    assert first.success, step_errors(first)
    assert str(old["id"]) in harness.id_map("clients")
    (query,) = account_queries(harness)
    assert "ModifiedOnFrom" not in query["query"]  # no lower bound: the whole history
    with harness.kaseya.state.lock:
        listed = sum(1 for a in harness.kaseya.state.tenant.accounts.values()
                     if a.stamps.modified_on <= harness.current_hour)
    assert harness.sql("SELECT count(*) FROM raw.kaseya_accounts") == [(listed,)]


@pytest.mark.slow
def test_later_runs_read_their_hour_and_the_hours_no_run_covered(harness):
    last = harness.current_hour - timedelta(hours=1)
    assert harness.run_hour(last - timedelta(hours=4)).success  # the first run: everything up to that hour
    harness.kaseya.state.clear_requests()
    missed = harness.kaseya.state.create_record("accounts", {"accountName": "Edited While Nobody Ran Ltd"})
    harness.set_modified_on("accounts", missed["id"], last - timedelta(hours=2))  # an hour no run was for

    result = harness.run_hour(last)

    assert result.success, step_errors(result)
    (query,) = account_queries(harness)
    assert f"ModifiedOnFrom={(last - timedelta(hours=3, minutes=15)):%Y-%m-%dT%H}" in query["query"].replace("%3A", ":")
    assert str(missed["id"]) in harness.id_map("clients")

    harness.kaseya.state.clear_requests()
    assert harness.run_hour(last).success  # the same hour again: its window alone
    (query,) = account_queries(harness)
    assert f"ModifiedOnFrom={(last - timedelta(minutes=15)):%Y-%m-%dT%H}" in query["query"].replace("%3A", ":")


@pytest.mark.slow
def test_a_full_re_sync_reads_the_whole_history_again_and_writes_only_what_changed(harness):
    hour = harness.current_hour - timedelta(hours=1)
    assert harness.run_hour(hour).success
    writes = len(harness.zomentum_writes())
    harness.kaseya.state.clear_requests()

    again = harness.run_hour(hour, whole_history=True)

    assert again.success, step_errors(again)
    (query,) = account_queries(harness)
    assert "ModifiedOnFrom" not in query["query"]
    assert len(harness.zomentum_writes()) == writes  # nothing changed: nothing sent


@pytest.mark.slow
def test_the_ledger_and_the_metadata_say_which_hours_a_run_was_for(harness):
    last = harness.current_hour - timedelta(hours=1)
    first_hour = last - timedelta(hours=3)
    ranged = harness.backfill(first_hour, last - timedelta(hours=1))
    assert ranged.success, step_errors(ranged)
    extracted = harness.sql("SELECT count(*) FROM raw.kaseya_accounts WHERE run_id = ?", [ranged.run_id])[0][0]
    edited = harness.kaseya_records("accounts")[0]
    harness.kaseya.state.update_record("accounts", edited["id"], {"website": "https://edited.example"})
    harness.set_modified_on("accounts", edited["id"], last + timedelta(minutes=10))

    hourly = harness.run_hour(last)

    assert hourly.success, step_errors(hourly)
    keys = dict(harness.sql("SELECT run_id, any_value(partition_key) FROM audit.sync_events GROUP BY run_id"))
    assert keys == {ranged.run_id: f"{hour_key(first_hour)}...{hour_key(last - timedelta(hours=1))}",
                    hourly.run_id: hour_key(last)}
    # A ranged run: each hour's materialization says what that hour brought; the run's figures once, on its last.
    events = [e.event_specific_data.materialization for e in ranged.get_asset_materialization_events()
              if e.event_specific_data.materialization.asset_key == dg.AssetKey("raw_kaseya_changes")]
    assert [m.partition for m in events] == [hour_key(first_hour + timedelta(hours=n)) for n in range(3)]
    assert all({"accounts_modified_in_hour", "contacts_modified_in_hour", "opportunities_modified_in_hour"}
               <= set(m.metadata) for m in events)
    with_run_figures = [m.partition for m in events if "accounts_rows" in m.metadata]
    assert with_run_figures == [hour_key(last - timedelta(hours=1))]
    per_hour = sum(m.metadata["accounts_modified_in_hour"].value for m in events)
    # the tenant's first run: its whole history, the records older than its first hour counted to that hour
    assert events[0].metadata["accounts_modified_in_hour"].value > 10
    assert per_hour == events[-1].metadata["accounts_rows"].value == extracted


def _dagster_private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        found += [f"{path.relative_to(REPO)}: {name}" for name in names if name.startswith("dagster._")]
    return found


def test_nothing_in_the_repository_imports_dagsters_private_modules():
    files = [path for folder in ("zk_pipelines", "zk_pipelines_tests", "benchmarks")
             for path in (REPO / folder).rglob("*.py")]
    assert len(files) > 50
    assert [hit for path in files for hit in _dagster_private_imports(path)] == []
    assert _dagster_private_imports(Path(__file__)) == []  # the check itself reads real imports:
    probe = REPO / "zk_pipelines_tests" / "data" / "private_import_probe.py"
    try:
        probe.write_text("from dagster._core.events import DagsterEvent\nimport dagster._utils\n")
        assert len(_dagster_private_imports(probe)) == 2
    finally:
        probe.unlink()
